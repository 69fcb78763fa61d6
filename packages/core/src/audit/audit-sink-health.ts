/**
 * One sink's health as its queue sees it: each write raced against `writeTimeoutMs`, failures
 * counted into a back-off with jitter (or the wait the sink asked for), and the trail's own events
 * about the sink: `audit.sink.degraded` on its first failure, `audit.sink.recovered` on its first
 * success after, `audit.dropped` when a full queue has room again.
 * @packageDocumentation
 */
import type { MetricsClient } from '../integrations/metrics.js'
import { monotonicMicros, unrefTimeout, type Clock } from '../internal/clock.js'
import type { Logger } from '../logger.js'
import type { AuditEvent, AuditEventInput, AuditSink } from './audit-event.js'
import { isoTime } from './audit-prepare.js'

const MAX_RETRY_DELAY_MS = 5_000

// Retries are scheduled on real elapsed time, not the injected clock: a frozen test clock must
// not stop a recovering sink from being retried.
export const monotonicMs = (): number => monotonicMicros() / 1000

export const sleep = (ms: number): Promise<void> =>
  new Promise((resolve) => {
    unrefTimeout(resolve, ms)
  })

/** Exponential back-off with jitter after `failures` failures in a row (ms). */
export function retryDelay(failures: number): number {
  const base = Math.min(MAX_RETRY_DELAY_MS, 50 * 2 ** Math.min(failures, 10))
  // Full jitter keeps many instances from retrying a recovering sink in lockstep.
  return Math.round(base / 2 + Math.random() * (base / 2))
}

/** The wait a failed write asked for (`retryAfterMs` on its error), or 0. */
function retryAfterOf(error: unknown): number {
  const ms = (error as { retryAfterMs?: unknown } | null)?.retryAfterMs
  return typeof ms === 'number' && Number.isFinite(ms) && ms > 0 ? ms : 0
}

/** What {@link SinkHealth} needs of the trail. */
export interface SinkHealthConfig {
  readonly writeTimeoutMs: number
  readonly maxQueue: number
  readonly logger: Logger
  readonly metrics: MetricsClient
  readonly now: Clock
}

/** What {@link SinkHealth} reads of, and tells, the queue it watches. */
export interface WatchedQueue {
  /** Events held for the sink (memory, in flight, moving to the spool). */
  readonly depth: number
  /** Whether a failed batch can go to the spool now (said in the failure's log). */
  readonly spoolUsable: boolean
  /** Tells the trail of an event about the sink (every sink's trail gets it). */
  tellTrail(event: AuditEventInput): void
  /** Queues an event of the trail's own for this sink alone. */
  addOwn(event: AuditEventInput): void
}

/** The health of one sink, kept by its queue. */
export class SinkHealth {
  /** Failures in a row (a write, or the drain loop itself), and when to try again (monotonic ms). */
  failures = 0
  retryAt = 0
  lastError: unknown
  /** The current episode of a full queue: events refused, and when the first and last were. */
  #episode: { count: number; from: number; to: number } | undefined
  /** When the sink began failing (the injected clock), and how many events have waited since. */
  #degraded: { since: number; error: string; waited: number } | undefined

  constructor(
    readonly sink: AuditSink,
    readonly labels: Readonly<Record<string, string>>,
    readonly c: SinkHealthConfig,
    readonly queue: WatchedQueue,
  ) {
    c.metrics.set('auditSinkHealthy', 1, labels)
  }

  /** An event queued for the sink: while it fails, counted for the recovery event. */
  queued(): void {
    if (this.#degraded !== undefined) this.#degraded.waited++
  }

  /** An event the full queue refused: counted into the current episode (its start told once). */
  dropped(type: AuditEventInput['type']): void {
    this.c.metrics.increment('auditEventsDropped', this.labels)
    const at = this.c.now()
    if (this.#episode === undefined) {
      this.#episode = { count: 0, from: at, to: at }
      // Once per episode; its end is told by the audit.dropped event and a warning.
      this.c.logger.error(
        { sink: this.sink.name, type, maxQueue: this.c.maxQueue },
        'audit queue full: events are being dropped',
      )
    }
    this.#episode.count++
    this.#episode.to = at
  }

  /**
   * The drain loop failed unexpectedly (the spool cannot be read, or its offset not recorded: a
   * failing disk): counted like a failed write and retried after a back-off.
   */
  unexpected(error: unknown): void {
    this.failures++
    this.lastError = error
    this.retryAt = monotonicMs() + retryDelay(this.failures)
    this.c.metrics.increment('auditSinkErrors', this.labels)
    this.c.logger.error(
      { sink: this.sink.name, error: String(error) },
      'audit queue: unexpected error; will retry',
    )
  }

  /** Writes a batch to the sink within `writeTimeoutMs`; `false` when it failed (retry scheduled). */
  async write(events: readonly AuditEvent[]): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined
    try {
      await Promise.race([
        this.sink.write(events),
        new Promise<never>((_, reject) => {
          timer = unrefTimeout(
            () => reject(new Error(`write timed out after ${this.c.writeTimeoutMs} ms`)),
            this.c.writeTimeoutMs,
          )
        }),
      ])
      this.failures = 0
      this.retryAt = 0
      this.c.metrics.increment('auditEvents', this.labels, events.length)
      if (this.#degraded !== undefined) this.#recovered()
      return true
    } catch (error) {
      this.failures++
      this.lastError = error
      // A sink may say how long to leave it alone (a collector's Retry-After): that wait is kept
      // even past the back-off's cap; the sink bounds it (the webhook's maxRetryAfterMs).
      const delay = Math.max(retryDelay(this.failures), retryAfterOf(error))
      this.retryAt = monotonicMs() + delay
      this.c.metrics.increment('auditSinkErrors', this.labels)
      this.c.logger.error(
        {
          sink: this.sink.name,
          error: String(error),
          retryInMs: delay,
          spool: this.queue.spoolUsable,
        },
        'audit sink write failed; will retry',
      )
      if (this.#degraded === undefined) this.#degrade(error)
      return false
    } finally {
      clearTimeout(timer)
    }
  }

  /** The sink's first failed write after working: told once, until it writes again. */
  #degrade(error: unknown): void {
    const message = String(error).slice(0, 1024)
    this.#degraded = { since: this.c.now(), error: message, waited: this.queue.depth }
    this.c.metrics.set('auditSinkHealthy', 0, this.labels)
    this.c.logger.error({ sink: this.sink.name, error: message }, 'audit sink degraded')
    this.queue.tellTrail(
      this.#event('audit.sink.degraded', 'failure', { sink: this.sink.name, error: message }),
    )
  }

  /** The sink's first successful write after failing. */
  #recovered(): void {
    const d = this.#degraded!
    this.#degraded = undefined
    const downMs = Math.max(0, this.c.now() - d.since)
    this.c.metrics.set('auditSinkHealthy', 1, this.labels)
    this.c.logger.warn({ sink: this.sink.name, downMs, waited: d.waited }, 'audit sink recovered')
    this.queue.tellTrail(
      this.#event('audit.sink.recovered', 'success', {
        sink: this.sink.name,
        since: isoTime(d.since),
        downMs,
        waited: d.waited,
        error: d.error,
      }),
    )
  }

  /**
   * Ends an episode of a full queue once it has room again (half of `maxQueue`, so that a queue
   * that stays at its limit is one episode, not one per batch): the count and time range go into
   * this sink's own trail (an `audit.dropped` event), so the gap is visible where it is.
   */
  endEpisode(queued: number): void {
    const e = this.#episode
    if (e === undefined || queued > this.c.maxQueue / 2) return
    this.#episode = undefined
    this.c.logger.warn(
      { sink: this.sink.name, dropped: e.count },
      'audit queue has room again: events were dropped',
    )
    this.queue.addOwn(
      this.#event('audit.dropped', 'failure', {
        sink: this.sink.name,
        count: e.count,
        from: isoTime(e.from),
        to: isoTime(e.to),
      }),
    )
  }

  /** An event of the trail's own about this sink. */
  #event(
    type: 'audit.sink.degraded' | 'audit.sink.recovered' | 'audit.dropped',
    outcome: AuditEventInput['outcome'],
    data: Record<string, unknown>,
  ): AuditEventInput {
    return {
      type,
      outcome,
      actor: { id: null },
      action: type,
      target: { type: 'audit.sink', id: this.sink.name },
      data,
    }
  }
}
