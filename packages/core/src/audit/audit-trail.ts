/**
 * The audit pipeline: events are queued on the request path and written in batches off it, per
 * sink, in order, with retries; `flush()` and `close()` wait until everything queued is written.
 *
 * Reachable from `@gatehouse/core`.
 * @packageDocumentation
 */
import { randomUUID } from 'node:crypto'
import {
  DEFAULT_AUDIT_BATCH_SIZE,
  DEFAULT_AUDIT_FLUSH_INTERVAL_MS,
  DEFAULT_AUDIT_MAX_QUEUE,
} from '../defaults.js'
import { getAccessContext } from '../context/access-context.js'
import { systemClock, unrefTimeout, type Clock } from '../internal/clock.js'
import { silentLogger, type Logger } from '../logger.js'
import { TypeValidator } from '../validation/type-validator.js'
import {
  AUDIT_EVENT_TYPES,
  type AuditEvent,
  type AuditEventInput,
  type AuditEventType,
  type AuditLevel,
  type AuditSink,
} from './audit-event.js'

/** Options of {@link createAuditTrail}. */
export interface AuditOptions {
  /** Where events go; several sinks each get every event. @default [] (events are discarded) */
  readonly sinks?: readonly AuditSink[]
  /** Which events are written. @default 'standard' */
  readonly level?: AuditLevel
  /** Events per sink write. @default 256 */
  readonly batchSize?: number
  /** Longest an event waits in memory. @default 50 */
  readonly flushIntervalMs?: number
  /** Events held in memory per sink before {@link AuditTrail.emit} returns `false`. @default 100000 */
  readonly maxQueue?: number
  /** Clock. @default Date.now */
  readonly now?: Clock
  /** Where write failures are reported. */
  readonly logger?: Logger
}

/** The audit trail the gate and the key manager write to. */
export interface AuditTrail {
  /** The configured level. */
  readonly level: AuditLevel
  /**
   * Queues an event (filling id and time). Returns `false` if a sink's queue is full, which the
   * gate treats as a reason to fail closed.
   */
  emit(event: AuditEventInput): boolean
  /**
   * Records an event from application code. The request context (request id, route, principal)
   * comes from AsyncLocalStorage; an unknown `type` is kept as `custom` with `customType` set.
   */
  record(type: string, details?: Omit<Partial<AuditEventInput>, 'type'>): boolean
  /** Whether an event of `type` and outcome is written (at this level, to at least one sink). */
  accepts(type: AuditEventType, outcome: 'success' | 'failure'): boolean
  /** Events queued and not yet acknowledged by every sink. */
  readonly pending: number
  /** Resolves when everything queued so far is written (or rejects if a sink keeps failing past `timeoutMs`). */
  flush(timeoutMs?: number): Promise<void>
  /** Flushes, then closes the sinks. */
  close(): Promise<void>
}

const OPTION_NAMES = ['sinks', 'level', 'batchSize', 'flushIntervalMs', 'maxQueue', 'now', 'logger']
const LEVELS = ['minimal', 'standard', 'verbose'] as const
const MAX_RETRY_DELAY_MS = 5_000

/**
 * Creates an audit trail.
 * @throws {ConfigError} for a bad option
 * @example
 * ```ts
 * const audit = createAuditTrail({ sinks: [createJsonLinesFileSink({ path: 'data/audit.jsonl' })] })
 * ```
 */
export function createAuditTrail(options: Readonly<AuditOptions> = {}): AuditTrail {
  const v = new TypeValidator('audit')
  v.knownKeys(options as Record<string, unknown>, OPTION_NAMES)
  const sinks = v.array('sinks', options.sinks ?? [], (sv, i, s) =>
    typeof (s as AuditSink | undefined)?.write === 'function'
      ? (s as AuditSink)
      : sv.fail(i, 'must be an AuditSink with write(events)'),
  )
  const level =
    options.level === undefined
      ? 'standard'
      : v.oneOf('level', options.level, LEVELS, 'audit level')
  const batchSize =
    options.batchSize === undefined
      ? DEFAULT_AUDIT_BATCH_SIZE
      : v.integer('batchSize', options.batchSize, { min: 1 })
  const flushIntervalMs =
    options.flushIntervalMs === undefined
      ? DEFAULT_AUDIT_FLUSH_INTERVAL_MS
      : v.integer('flushIntervalMs', options.flushIntervalMs, { min: 0 })
  const maxQueue =
    options.maxQueue === undefined
      ? DEFAULT_AUDIT_MAX_QUEUE
      : v.integer('maxQueue', options.maxQueue, { min: 1 })
  const logger = options.logger ?? silentLogger
  v.assert((m) => logger.warn(m))
  return new Trail(
    (sinks ?? []).map(
      (s) =>
        new SinkQueue(
          s,
          batchSize as number,
          flushIntervalMs as number,
          maxQueue as number,
          logger,
        ),
    ),
    level as AuditLevel,
    options.now ?? systemClock,
  )
}

class SinkQueue {
  readonly queue: AuditEvent[] = []
  #timer: NodeJS.Timeout | undefined
  #writing: Promise<void> | undefined
  #failures = 0
  readonly #waiters: Array<() => void> = []

  constructor(
    readonly sink: AuditSink,
    readonly batchSize: number,
    readonly intervalMs: number,
    readonly maxQueue: number,
    readonly logger: Logger,
  ) {}

  push(event: AuditEvent): boolean {
    if (this.queue.length >= this.maxQueue) return false
    this.queue.push(event)
    if (this.#timer === undefined && this.#writing === undefined) {
      this.#timer = unrefTimeout(
        () => this.#drain(),
        this.queue.length >= this.batchSize ? 0 : this.intervalMs,
      )
    }
    return true
  }

  #drain(): void {
    this.#timer = undefined
    if (this.#writing !== undefined) return
    if (this.queue.length === 0) {
      for (const w of this.#waiters.splice(0)) w()
      return
    }
    const batch = this.queue.slice(0, this.batchSize)
    this.#writing = this.sink.write(batch).then(
      () => {
        this.queue.splice(0, batch.length)
        this.#failures = 0
        this.#writing = undefined
        this.#drain()
      },
      (error: unknown) => {
        this.#failures++
        this.#writing = undefined
        const delay = Math.min(MAX_RETRY_DELAY_MS, 50 * 2 ** Math.min(this.#failures, 10))
        this.logger.error('audit sink write failed; will retry', {
          sink: this.sink.name,
          error: String(error),
          retryInMs: delay,
        })
        this.#timer = unrefTimeout(() => this.#drain(), delay)
      },
    )
  }

  /** Resolves when the queue is empty. */
  idle(): Promise<void> {
    if (this.queue.length === 0 && this.#writing === undefined) return Promise.resolve()
    return new Promise((resolve) => {
      this.#waiters.push(resolve)
      if (this.#writing === undefined && this.#failures === 0) {
        if (this.#timer !== undefined) clearTimeout(this.#timer)
        this.#drain()
      }
    })
  }
}

const KNOWN_TYPES = new Set<string>(AUDIT_EVENT_TYPES)
const SUCCESS_DECISIONS = new Set<AuditEventType>(['authn.success', 'authz.allow'])

class Trail implements AuditTrail {
  constructor(
    readonly queues: readonly SinkQueue[],
    readonly level: AuditLevel,
    readonly now: Clock,
  ) {}

  get pending(): number {
    let n = 0
    for (const q of this.queues) n = Math.max(n, q.queue.length)
    return n
  }

  accepts(type: AuditEventType, outcome: 'success' | 'failure'): boolean {
    // No sink: nothing to build (the gate skips the event entirely).
    if (this.queues.length === 0) return false
    return this.level !== 'minimal' || outcome === 'failure' || !SUCCESS_DECISIONS.has(type)
  }

  emit(input: AuditEventInput): boolean {
    if (!this.accepts(input.type, input.outcome)) return true
    const event = {
      ...input,
      id: input.id ?? randomUUID(),
      time: input.time ?? new Date(this.now()).toISOString(),
    } as AuditEvent
    let ok = true
    for (const q of this.queues) ok = q.push(event) && ok
    return ok
  }

  record(type: string, details: Omit<Partial<AuditEventInput>, 'type'> = {}): boolean {
    const ctx = getAccessContext()
    const known = KNOWN_TYPES.has(type)
    return this.emit({
      outcome: 'success',
      action: type,
      actor:
        ctx?.principal == null
          ? { id: null }
          : { id: ctx.principal.id, method: ctx.principal.method },
      ...(ctx === undefined
        ? {}
        : {
            request: {
              id: ctx.requestId,
              method: ctx.method,
              path: ctx.path,
              ...(ctx.route === undefined ? {} : { route: ctx.route }),
              ...(ctx.ip === undefined ? {} : { ip: ctx.ip }),
            },
          }),
      ...details,
      type: known ? (type as AuditEventType) : 'custom',
      ...(known ? {} : { customType: type.slice(0, 128) }),
    })
  }

  async flush(timeoutMs = 30_000): Promise<void> {
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<never>((_, reject) => {
      timer = unrefTimeout(
        () => reject(new Error(`audit flush timed out with ${this.pending} events pending`)),
        timeoutMs,
      )
    })
    try {
      await Promise.race([Promise.all(this.queues.map((q) => q.idle())), timeout])
    } finally {
      clearTimeout(timer)
    }
  }

  async close(): Promise<void> {
    await this.flush()
    for (const q of this.queues) await q.sink.close?.()
  }
}
