/**
 * The audit pipeline. On the request path `emit` only queues the event (per sink, bounded). Off it,
 * each sink's queue prepares events once (level, pseudonyms, redaction, compliance tags), links
 * them into the sink's keyed hash chain, and writes them in batches, in order. A sink that fails or
 * is slower than `writeTimeoutMs` switches its queue to the disk spool (when configured): events go
 * to an fsync'd local file and are replayed in order when the sink answers again. `flush()` and
 * `close()` wait until every sink has everything.
 *
 * Reachable from `@portcullis/core`.
 * @packageDocumentation
 */
import { getAccessContext } from '../context/access-context.js'
import { AuthError } from '../errors.js'
import { noopMetrics } from '../integrations/metrics.js'
import { systemClock, unrefTimeout, type Clock } from '../internal/clock.js'
import type { Logger } from '../logger.js'
import { AuditChainer } from './audit-chain.js'
import {
  isSecurityEvent,
  type AuditEvent,
  type AuditEventInput,
  type AuditEventType,
  type AuditLevel,
} from './audit-event.js'
import { resolveAuditOptions, type AuditOptions } from './audit-options.js'
import { complianceTags, KNOWN_TYPES, Preparer } from './audit-prepare.js'
import { Entry } from './audit-queue-entry.js'
import { monotonicMs } from './audit-sink-health.js'
import { SinkQueue, type AuditSinkCloseReport } from './audit-sink-queue.js'
import { AuditSpool } from './audit-spool.js'
import { ClockWatch } from './clock-watch.js'
import { auditComplianceReport, complianceStamp, type AuditComplianceReport } from './compliance.js'
import { compileAuditRedaction } from './redaction.js'

export type { AuditOptions, AuditSpoolOptions } from './audit-options.js'
export type { AuditSinkCloseReport } from './audit-sink-queue.js'

/** The audit trail the gate and the key manager write to. */
export interface AuditTrail {
  /** The configured level. */
  readonly level: AuditLevel
  /** Whether the gate waits for each request's event to be durable before answering (`durable`). */
  readonly durable?: boolean
  /**
   * Queues an event (filling id and time). Returns `false` when a sink's queue is full, which the
   * gate treats as a reason to fail closed. A security event is kept even then (within a reserve).
   */
  emit(event: AuditEventInput): boolean
  /**
   * Records an event from application code. The request context (request id, route, principal)
   * comes from AsyncLocalStorage; an unknown `type` is kept as `custom` with `customType` set.
   */
  record(type: string, details?: Omit<Partial<AuditEventInput>, 'type'>): boolean
  /**
   * Queues an event and resolves once every sink has it durably (written, or fsync'd in its spool).
   * It does not wait for a batching interval: its queue is written at once. The event stays queued
   * (and is written when the sink recovers) even when the promise rejects.
   * @throws {AuthError} `ERR_AUDIT_UNAVAILABLE` when the queue refused it, or when a sink's write of
   * it failed (or timed out after `writeTimeoutMs`) and no spool took it, or the sink is failing
   * already (between retries) and its spool cannot take events
   */
  commit(event: AuditEventInput): Promise<AuditEvent>
  /** Whether an event of `type` and outcome is written (at this level, to at least one sink). */
  accepts(type: AuditEventType, outcome: 'success' | 'failure'): boolean
  /** Events queued in memory and not yet acknowledged by every sink. */
  readonly pending: number
  /** Which events and controls this configuration covers, and its gaps. */
  report(options?: { readonly failClosed?: boolean }): AuditComplianceReport
  /** Resolves when everything queued so far is written (or rejects if a sink keeps failing past `timeoutMs`). */
  flush(timeoutMs?: number): Promise<void>
  /**
   * Writes a final checkpoint, flushes (leaving what a dead sink has not taken in its spool), then
   * closes the sinks. Settles within `timeoutMs` (default `closeTimeoutMs`) even while a sink does
   * not answer, with a report of what each sink was left without; it never rejects.
   */
  close(timeoutMs?: number): Promise<AuditCloseReport>
}

/** The result of {@link AuditTrail.close}. */
export interface AuditCloseReport {
  /** Whether every sink got every event (nothing lost, nothing left in a spool). */
  readonly complete: boolean
  /** Whether close gave up at its deadline (a sink did not answer in time). */
  readonly timedOut: boolean
  /** One entry per sink, in the order of `sinks`. */
  readonly sinks: readonly AuditSinkCloseReport[]
}

/**
 * Creates an audit trail.
 * @throws {ConfigError} for a bad option
 * @example
 * ```ts
 * const audit = createAuditTrail({
 *   sinks: [createJsonLinesFileSink({ path: 'data/audit.jsonl', maxBytes: 64 * 1024 * 1024 })],
 *   integrity: { key: process.env.AUDIT_CHAIN_KEY as string },
 *   spool: { dir: 'data/audit-spool' },
 *   compliance: ['SOC2', 'GDPR'],
 * })
 * ```
 */
export function createAuditTrail(options: Readonly<AuditOptions> = {}): AuditTrail {
  const o = resolveAuditOptions(options)
  const now = options.now ?? systemClock
  const metrics = options.metrics ?? noopMetrics
  const prep = new Preparer(
    o.level,
    compileAuditRedaction({ ...o.redaction, ip: o.ip }),
    options.pseudonyms,
    complianceTags(o.compliance),
    // Several sinks without a chain get the same event object: serialize it once for all.
    o.sinks.length > 1 && options.integrity === undefined,
    complianceStamp(o.compliance),
  )
  // The watch reports into the trail, which is made after the queues that hold the watch.
  const made: { trail?: Trail } = {}
  const clock =
    o.sinks.length > 0 && (now === systemClock || options.monotonicNow !== undefined)
      ? new ClockWatch({
          wall: now,
          monotonic: options.monotonicNow ?? monotonicMs,
          thresholdMs: o.clockJumpThresholdMs,
          report: (event) => made.trail?.emit(event),
        })
      : undefined
  const queues = o.sinks.map(
    (s) =>
      new SinkQueue(s, {
        batchSize: o.batchSize,
        intervalMs: o.flushIntervalMs,
        maxQueue: o.maxQueue,
        writeTimeoutMs: o.writeTimeoutMs,
        logger: o.logger,
        metrics,
        now,
        prep,
        clock,
        chainer: options.integrity === undefined ? undefined : new AuditChainer(options.integrity),
        spool:
          o.spool === undefined
            ? undefined
            : new AuditSpool(o.spool.dir, s.name, o.spool.maxBytes, o.spool.fsync),
      }),
  )
  const reportInput = {
    profiles: o.compliance,
    level: o.level,
    sinks: queues.length,
    integrity: options.integrity !== undefined,
    spool: o.spool !== undefined,
    ...(options.retentionDays === undefined ? {} : { retentionDays: options.retentionDays }),
    ip: o.ip,
    pseudonymize: options.pseudonyms !== undefined,
  }
  const trail = new Trail(
    queues,
    o.level,
    o.durable,
    now,
    (failClosed) =>
      auditComplianceReport({
        ...reportInput,
        ...(failClosed === undefined ? {} : { failClosed }),
      }),
    o.closeTimeoutMs,
    o.logger,
  )
  made.trail = trail
  return trail
}

class Trail implements AuditTrail {
  constructor(
    readonly queues: readonly SinkQueue[],
    readonly level: AuditLevel,
    readonly durable: boolean,
    readonly now: Clock,
    readonly makeReport: (failClosed: boolean | undefined) => AuditComplianceReport,
    readonly closeTimeoutMs: number,
    readonly logger: Logger,
  ) {
    for (const q of queues) q.onTrailEvent = (from, event) => this.#tell(from, event)
  }

  /**
   * A sink's health event goes to the other sinks at once and to its own queue behind what waits
   * there, so each sink's trail tells the whole story in its own order.
   */
  #tell(from: SinkQueue, event: AuditEventInput): void {
    const entry = new Entry(event, this.now(), true, this.queues.length)
    for (const q of this.queues) if (q !== from) q.add(entry)
    from.add(entry)
  }

  get pending(): number {
    let n = 0
    for (const q of this.queues) n = Math.max(n, q.depth)
    return n
  }

  accepts(type: AuditEventType, outcome: 'success' | 'failure'): boolean {
    // No sink: nothing to build (the gate skips the event entirely).
    if (this.queues.length === 0) return false
    return (
      this.level !== 'minimal' ||
      outcome === 'failure' ||
      (type !== 'authn.success' && type !== 'authz.allow')
    )
  }

  #enqueue(
    input: AuditEventInput,
    onDone?: (e: AuditEvent) => void,
    onFail?: (error: unknown) => void,
  ): boolean {
    const entry = new Entry(
      input,
      this.now(),
      isSecurityEvent(input.type),
      this.queues.length,
      onDone,
      onFail,
    )
    let ok = true
    for (const q of this.queues) ok = q.push(entry) && ok
    return ok
  }

  emit(input: AuditEventInput): boolean {
    if (!this.accepts(input.type, input.outcome)) return true
    return this.#enqueue(input)
  }

  commit(input: AuditEventInput): Promise<AuditEvent> {
    return new Promise((resolve, reject) => {
      if (this.queues.length === 0) {
        reject(new AuthError('ERR_AUDIT_UNAVAILABLE', 'No audit sink is configured'))
        return
      }
      let done: AuditEvent | undefined
      let queued = false
      const ok = this.#enqueue(
        input,
        (e) => {
          done = e
          if (queued) resolve(e)
        },
        (error) =>
          reject(
            new AuthError('ERR_AUDIT_UNAVAILABLE', 'The audit event could not be written', {
              cause: error,
              reason: 'audit write failed',
            }),
          ),
      )
      queued = true
      if (!ok) {
        reject(
          new AuthError('ERR_AUDIT_UNAVAILABLE', 'The audit queue is full', {
            reason: 'audit queue full',
          }),
        )
      } else if (done !== undefined) resolve(done)
    })
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
          : {
              id: ctx.principal.id,
              method: ctx.principal.method,
              ...(ctx.principal.tokenId === undefined ? {} : { tokenId: ctx.principal.tokenId }),
            },
      ...(ctx === undefined
        ? {}
        : {
            request: {
              id: ctx.requestId,
              method: ctx.method,
              path: ctx.path,
              ...(ctx.route === undefined ? {} : { route: ctx.route }),
              ...(ctx.ip === undefined ? {} : { ip: ctx.ip }),
              ...(ctx.userAgent === undefined ? {} : { userAgent: ctx.userAgent }),
            },
          }),
      ...details,
      type: known ? (type as AuditEventType) : 'custom',
      ...(known ? {} : { customType: String(type).slice(0, 128) }),
    })
  }

  report(options: { readonly failClosed?: boolean } = {}): AuditComplianceReport {
    return this.makeReport(options.failClosed)
  }

  async flush(timeoutMs = 30_000): Promise<void> {
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<never>((_, reject) => {
      timer = unrefTimeout(
        () => reject(new Error(`audit flush timed out with ${this.pending} events pending`)),
        timeoutMs,
      )
      // The drain timers are unref'd; a caller awaiting a flush (a script, a shutdown hook) must
      // keep the process alive until it settles.
      timer.ref()
    })
    try {
      await Promise.race([this.#allIdle(), timeout])
    } finally {
      clearTimeout(timer)
    }
  }

  /**
   * Resolves when every queue is idle at once: one sink's recovery queues an event for the others,
   * which may have been idle already.
   */
  async #allIdle(): Promise<void> {
    do await Promise.all(this.queues.map((q) => q.idle()))
    while (this.queues.some((q) => q.busy))
  }

  async close(timeoutMs = this.closeTimeoutMs): Promise<AuditCloseReport> {
    for (const q of this.queues) q.finalCheckpoint()
    const timers: NodeJS.Timeout[] = []
    const after = (ms: number): Promise<void> =>
      new Promise((resolve) => {
        const t = unrefTimeout(resolve, ms)
        // A caller awaiting close (a shutdown hook) keeps the process alive until it settles.
        t.ref()
        timers.push(t)
      })
    let timedOut = false
    const deadline = after(timeoutMs).then(() => {
      timedOut = true
    })
    const work = (async () => {
      // A sink that never answers must not hold the shutdown: the queues get most of the time to
      // drain, and the rest is for moving what is left to the spool and closing the sinks.
      await Promise.race([this.#allIdle(), after(Math.floor((timeoutMs * 3) / 4))])
      await Promise.all(this.queues.map((q) => q.stop()))
      await Promise.all(
        this.queues.map((q) =>
          Promise.resolve()
            .then(() => q.sink.close?.())
            .catch((error: unknown) =>
              this.logger.error(
                { sink: q.sink.name, error: String(error) },
                'audit sink close failed',
              ),
            ),
        ),
      )
    })()
    await Promise.race([work, deadline])
    for (const t of timers) clearTimeout(t)
    if (timedOut) for (const q of this.queues) q.abandon()
    const sinks = this.queues.map((q) => q.leftBehind())
    const report: AuditCloseReport = {
      complete: sinks.every((s) => s.unwritten === 0 && !s.spooled),
      timedOut,
      sinks,
    }
    if (!report.complete)
      this.logger.error(
        { timedOut, sinks: sinks.filter((s) => s.unwritten > 0 || s.spooled) },
        timedOut
          ? 'audit trail close timed out: events left behind'
          : 'audit trail closed with events left behind',
      )
    return report
  }
}
