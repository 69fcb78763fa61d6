/**
 * An audit sink that keeps events in memory: for tests and development.
 *
 * Reachable from `@portcullis/core`.
 * @packageDocumentation
 */
import type { AuditEvent, AuditSink } from './audit-event.js'

/** An in-memory sink with its events readable. */
export interface MemoryAuditSink extends AuditSink {
  /** Everything written so far, in order. */
  readonly events: readonly AuditEvent[]
  /** Forgets all events. */
  clear(): void
}

/** Creates an in-memory audit sink. Like the durable sinks, it keeps each event id once. */
export function createMemoryAuditSink(options: { readonly name?: string } = {}): MemoryAuditSink {
  const events: AuditEvent[] = []
  const ids = new Set<string>()
  return {
    name: options.name ?? 'memory',
    events,
    async write(batch: readonly AuditEvent[]): Promise<void> {
      for (const e of batch) {
        if (ids.has(e.id)) continue
        ids.add(e.id)
        events.push(e)
      }
    },
    clear(): void {
      events.length = 0
      ids.clear()
    },
  }
}
