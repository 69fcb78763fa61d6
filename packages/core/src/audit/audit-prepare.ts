/**
 * Preparing an event: what a queued {@link AuditEventInput} becomes before any sink sees it. The
 * level trims fields, pseudonyms replace principal ids, redaction cleans every value, compliance
 * profiles add their controls' tags and their stamp; the result is what the sink's hash chain
 * links (see `audit-sink-queue.ts`). Runs once per event, off the request path.
 * @packageDocumentation
 */
import { randomUUID } from 'node:crypto'
import {
  AUDIT_EVENT_TYPES,
  type AuditEvent,
  type AuditEventInput,
  type AuditLevel,
} from './audit-event.js'
import {
  resolveCompliance,
  type AuditComplianceStamp,
  type ComplianceProfileName,
} from './compliance.js'
import { rememberAuditEventJson } from './event-json.js'
import type { Pseudonymizer } from './pseudonyms.js'
import { MASKED, REDACTED, type CompiledAuditRedaction } from './redaction.js'

/** The compliance tags each event type gets, by type (`SOC2:CC6.1`, ...). */
export function complianceTags(
  profiles: readonly ComplianceProfileName[],
): Map<string, readonly string[]> {
  const tags = new Map<string, string[]>()
  for (const control of resolveCompliance(profiles).controls) {
    for (const type of control.events) {
      let list = tags.get(type)
      if (list === undefined) tags.set(type, (list = []))
      list.push(`${control.profile}:${control.id}`)
    }
  }
  return tags
}

/** The event types of the schema (any other is written as `custom`). */
export const KNOWN_TYPES: ReadonlySet<string> = new Set<string>(AUDIT_EVENT_TYPES)

/** The field names of the event schema (top level and the known nested objects). */
const SCHEMA_FIELDS = [
  'id',
  'time',
  'level',
  'type',
  'customType',
  'outcome',
  'actor',
  'action',
  'target',
  'reason',
  'request',
  'tags',
  'data',
  'chain',
  'method',
  'tokenId',
  'code',
  'detail',
  'trace',
  'path',
  'route',
  'userAgent',
]
/** The fields an audit level may trim. */
interface Levelled {
  readonly reason: AuditEventInput['reason']
  readonly request: AuditEventInput['request']
}

/** The latest time a `Date` holds (ms). */
const MAX_TIME = 8.64e15
const EPOCH = new Date(0).toISOString()

/** Top-level fields with more keys than this go the generic way (which truncates them). */
const FAST_MAX_KEYS = 64

/** Turns a queued event into what sinks receive. Runs once per event, off the request path. */
export class Preparer {
  /**
   * Whether the schema's own field names are all plain `keep` fields under this configuration
   * (no PII field list names one of them). Then events are prepared in one pass that cleans the
   * top level itself (no intermediate copy) and hands each nested value to the redactor.
   */
  readonly #fast: boolean

  constructor(
    readonly level: AuditLevel,
    readonly redaction: CompiledAuditRedaction,
    readonly pseudonyms: Pseudonymizer | undefined,
    readonly tags: Map<string, readonly string[]>,
    readonly shareJson: boolean,
    readonly compliance: AuditComplianceStamp | undefined,
  ) {
    this.#fast = SCHEMA_FIELDS.every((f) => redaction.kind(f) === 'keep')
  }

  #isoSecond = Number.NaN
  #isoPrefix = ''

  /**
   * `new Date(at).toISOString()`, which costs more than the rest of an event's preparation:
   * events come many per second, so the text up to the second is made once per second.
   */
  #iso(at: number): string {
    const ms = at % 1000
    if (!Number.isInteger(at) || at < 0 || at > MAX_TIME) {
      const d = new Date(at)
      // A clock answering nonsense must not stop the trail: such an event gets the epoch.
      return Number.isNaN(d.getTime()) ? EPOCH : d.toISOString()
    }
    const second = at - ms
    if (second !== this.#isoSecond) {
      // `2026-11-28T15:18:32.` (the year may be longer: keep everything before the millis).
      this.#isoPrefix = new Date(second).toISOString().slice(0, -4)
      this.#isoSecond = second
    }
    return `${this.#isoPrefix}${ms < 10 ? '00' : ms < 100 ? '0' : ''}${ms}Z`
  }

  prepare(raw: AuditEventInput, at: number): AuditEvent {
    let e: AuditEvent
    try {
      e = (this.#fast ? this.#prepareFast(raw, at) : undefined) ?? this.#prepareGeneric(raw, at)
    } catch {
      e = this.#unreadable(raw, at)
    }
    // The trail's own field, like `level`: one frozen object shared by every event.
    if (this.compliance !== undefined)
      (e as { compliance?: AuditComplianceStamp }).compliance = this.compliance
    if (this.shareJson) rememberAuditEventJson(e, JSON.stringify(e))
    return e
  }

  /**
   * An event whose fields cannot be read (a getter or proxy that throws, a pseudonym store that
   * fails) is still written, as what could be read and a note: throwing here would stop the
   * queue, and dropping it could drop a security event.
   */
  #unreadable(raw: AuditEventInput, at: number): AuditEvent {
    let type: unknown
    let outcome: unknown
    try {
      type = raw.type
      outcome = raw.outcome
    } catch {
      // nothing readable
    }
    const known = typeof type === 'string' && KNOWN_TYPES.has(type)
    const e: Record<string, unknown> = {
      id: randomUUID(),
      time: this.#iso(at),
      level: this.level,
      type: known ? type : 'custom',
      outcome: outcome === 'success' ? 'success' : 'failure',
      actor: { id: null },
      action: known ? type : 'custom',
      data: { error: 'the event could not be prepared: its fields could not be read' },
    }
    if (!known) e.customType = 'unreadable'
    return e as unknown as AuditEvent
  }

  /** The event's fields before cleaning, filtered by level (a copy only where a field changes). */
  #levelled(raw: AuditEventInput): Levelled {
    let reason = raw.reason
    let request = raw.request
    if (this.level !== 'verbose') {
      // Fields by level: the trace of an allowed request is verbose-only; minimal keeps neither
      // traces nor user agents.
      if (reason?.trace !== undefined && (this.level === 'minimal' || raw.outcome === 'success')) {
        const { trace: _t, ...rest } = reason
        reason = rest
      }
      if (this.level === 'minimal' && request?.userAgent !== undefined) {
        const { userAgent: _u, ...rest } = request
        request = rest
      }
    }
    return { reason, request }
  }

  #actor(raw: AuditEventInput): unknown {
    const actor = raw.actor as AuditEventInput['actor'] | undefined
    if (this.pseudonyms !== undefined && typeof actor?.id === 'string')
      return { ...actor, id: this.pseudonyms.pseudonymFor(actor.id) }
    return actor
  }

  #tags(raw: AuditEventInput, type: string): unknown {
    const extra = this.tags.get(type)
    if (extra === undefined) return raw.tags
    return Array.isArray(raw.tags) ? [...new Set([...raw.tags, ...extra])] : extra
  }

  /**
   * One pass over the input: the fields the trail makes itself (id, time, level, type, outcome)
   * are written as they are; every other value goes through the redactor as the generic path
   * would clean it. Returns `undefined` for input the generic path must handle (odd keys).
   */
  #prepareFast(raw: AuditEventInput, at: number): AuditEvent | undefined {
    const r = this.redaction
    const keys = Object.keys(raw)
    if (keys.length > FAST_MAX_KEYS) return undefined
    const known = KNOWN_TYPES.has(raw.type)
    const type = known ? raw.type : 'custom'
    const id = raw.id
    const time = raw.time
    const e: Record<string, unknown> = {
      id: typeof id === 'string' && id !== '' ? r.text(id) : randomUUID(),
      time: typeof time === 'string' ? r.text(time) : this.#iso(at),
      level: this.level,
      type,
      outcome: raw.outcome === 'success' ? 'success' : 'failure',
    }
    if (!known) e.customType = r.text(String(raw.customType ?? raw.type))
    let levelled: Levelled | undefined
    for (const key of keys) {
      let value: unknown
      switch (key) {
        case 'id':
        case 'time':
        case 'level':
        case 'type':
        case 'outcome':
        case 'tags':
          continue
        case 'customType':
          if (!known) continue
          value = r.field(raw.customType, 1)
          break
        case 'actor': {
          const actor = r.field(this.#actor(raw), 1)
          value = typeof actor === 'object' && actor !== null ? actor : { id: null }
          break
        }
        case 'reason':
          levelled ??= this.#levelled(raw)
          value = r.field(levelled.reason, 1)
          break
        case 'request':
          levelled ??= this.#levelled(raw)
          value = r.field(levelled.request, 1)
          break
        case 'action':
          value = r.field(raw.action, 1)
          break
        default: {
          if (key === '__proto__' || key.length > 256) return undefined
          const kind = r.kind(key)
          const v = (raw as unknown as Record<string, unknown>)[key]
          if (kind === 'credential') value = REDACTED
          else if (kind === 'pii') value = MASKED
          else {
            value = r.field(v, 1)
            if (kind === 'ip' && typeof value === 'string') value = r.ip(value)
          }
        }
      }
      if (value !== undefined) e[key] = value
    }
    const tags = r.field(this.#tags(raw, type), 1)
    if (tags !== undefined) e.tags = tags
    if (typeof e.action !== 'string') e.action = type
    if (e.actor === undefined) e.actor = { id: null }
    return e as unknown as AuditEvent
  }

  /** The general path: a copy of the input with the trail's fields, cleaned as a whole. */
  #prepareGeneric(raw: AuditEventInput, at: number): AuditEvent {
    // id and time are made here, off the request path; `at` is when it was emitted.
    let e: Record<string, unknown> = {
      ...raw,
      id: typeof raw.id === 'string' && raw.id !== '' ? raw.id : randomUUID(),
      time: typeof raw.time === 'string' ? raw.time : this.#iso(at),
    }
    if (!KNOWN_TYPES.has(raw.type)) {
      e.customType = String(raw.customType ?? raw.type)
      e.type = 'custom'
    }
    const { reason, request } = this.#levelled(raw)
    if (reason !== raw.reason) e.reason = reason
    if (request !== raw.request) e.request = request
    if (this.pseudonyms !== undefined) e.actor = this.#actor(raw)
    const tags = this.#tags(raw, e.type as string)
    if (tags !== raw.tags) e.tags = tags
    e.level = this.level
    e = this.redaction.redact(e) as Record<string, unknown>
    // The schema's own fields must survive hostile input with their types.
    if (typeof e.id !== 'string') e.id = randomUUID()
    if (typeof e.time !== 'string') e.time = new Date(0).toISOString()
    if (e.outcome !== 'success' && e.outcome !== 'failure') e.outcome = 'failure'
    if (typeof e.action !== 'string') e.action = String(e.type)
    if (typeof e.actor !== 'object' || e.actor === null) e.actor = { id: null }
    return e as unknown as AuditEvent
  }
}

/** An injected clock's time as ISO 8601 (the epoch for a clock that answers nonsense). */
export function isoTime(at: number): string {
  const d = new Date(at)
  return Number.isNaN(d.getTime()) ? EPOCH : d.toISOString()
}
