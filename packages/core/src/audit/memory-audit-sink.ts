/**
 * An audit sink that keeps events in memory: for tests and development.
 *
 * Reachable from `@gatehouse/core`.
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

/** Creates an in-memory audit sink. */
export function createMemoryAuditSink(): MemoryAuditSink {
  const events: AuditEvent[] = []
  return {
    name: 'memory',
    events,
    async write(batch: readonly AuditEvent[]): Promise<void> {
      events.push(...batch)
    },
    clear(): void {
      events.length = 0
    },
  }
}
