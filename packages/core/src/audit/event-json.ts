/**
 * The JSON text of prepared audit events, made once and shared by every sink that writes JSON.
 * The trail records the text it already built (the canonical form its hash chain covers); sinks
 * ask {@link auditEventJson} and serialize only what the trail did not.
 * @packageDocumentation
 */
import type { AuditEvent } from './audit-event.js'

const texts = new WeakMap<object, string>()

/**
 * The event as one line of JSON (no trailing newline), for sinks that write JSON. Events the trail
 * hands to sinks often come with their text already made (a chained event's canonical RFC 8785
 * form, which its mac covers; an event shared by several sinks); any other object is serialized
 * with `JSON.stringify`. Either way the text parses to the same value.
 */
export function auditEventJson(event: AuditEvent): string {
  return texts.get(event) ?? JSON.stringify(event)
}

/** Records the JSON text of an event the trail built. @internal */
export function rememberAuditEventJson(event: AuditEvent, text: string): void {
  texts.set(event, text)
}
