/**
 * One sink's queue: events wait in memory (bounded, with a reserve for security events), are
 * linked into the sink's hash chain and written in batches, in order, every `flushIntervalMs` or
 * at once for a full batch or a waiting `commit()`. A failing or slow sink switches the queue to
 * its disk spool (when configured), replayed in order when the sink answers again; close stops
 * retrying and moves what is left to the spool.
 * @packageDocumentation
 */
import { unrefTimeout } from '../internal/clock.js'
import type { AuditChainer } from './audit-chain.js'
import type { AuditEvent, AuditEventInput, AuditSink } from './audit-event.js'
import type { Preparer } from './audit-prepare.js'
import { CHECKPOINT_MARKER, Entry, linkEntries } from './audit-queue-entry.js'
import {
  monotonicMs,
  retryDelay,
  SinkHealth,
  sleep,
  type SinkHealthConfig,
  type WatchedQueue,
} from './audit-sink-health.js'
import type { AuditSpool } from './audit-spool.js'
import type { ClockWatch } from './clock-watch.js'

/** What {@link AuditTrail.close} left behind for one sink. */
export interface AuditSinkCloseReport {
  /** The sink's name. */
  readonly sink: string
  /** Events the sink did not get that were only in memory: lost with the process. */
  readonly unwritten: number
  /** Whether the sink's spool still holds events (the next trail on the same spool replays them). */
  readonly spooled: boolean
  /** Bytes of the events waiting in the spool. */
  readonly spoolBytes: number
}

/** What a sink's queue is configured with (one per trail, shared by its queues). */
export interface QueueConfig extends SinkHealthConfig {
  readonly batchSize: number
  readonly intervalMs: number
  readonly prep: Preparer
  /** Checks the wall clock for jumps on each flush timer (absent: not watched). */
  readonly clock: ClockWatch | undefined
  readonly chainer: AuditChainer | undefined
  readonly spool: AuditSpool | undefined
}

/** The queue of one sink. */
export class SinkQueue implements WatchedQueue {
  readonly queue: Entry[] = []
  readonly labels: Readonly<Record<string, string>>
  #running: Promise<void> | undefined
  #timer: NodeJS.Timeout | undefined
  /** Whether the pending timer is a drain at once (delay 0), not the batching interval. */
  #timerNow = false
  /** When the queue last went from empty to not empty (monotonic ms): its oldest entry's age. */
  #since = 0
  /** Spool appends failed in a row (a full disk), and when the next may be tried (monotonic ms). */
  #appendFailures = 0
  #appendRetryAt = 0
  /** Whether the queue may hold entries whose `commit()` waits: then it is written at once. */
  #urgent = false
  /** Linked events taken out of memory and not yet acknowledged (direct mode). */
  #inflight: { entries: Entry[]; events: AuditEvent[] } | undefined
  #spooling = false
  #spoolReady: Promise<void> | undefined
  #closing = false
  /** Where this queue reports its sink's health and its dropped events (set by the trail). */
  onTrailEvent: ((from: SinkQueue, event: AuditEventInput) => void) | undefined
  readonly #waiters: Array<() => void> = []
  readonly #reserve: number
  readonly #health: SinkHealth

  constructor(
    readonly sink: AuditSink,
    readonly c: QueueConfig,
  ) {
    this.labels = Object.freeze({ sink: sink.name })
    this.#health = new SinkHealth(sink, this.labels, c, this)
    this.#reserve = Math.max(1000, Math.ceil(c.maxQueue / 10))
    if (c.spool !== undefined) {
      this.#spoolReady = c.spool.open().then(
        () => {
          // Leftovers from a previous run (crash, or a sink that never came back) replay first.
          if (c.spool!.pendingBytes > 0) {
            this.#spooling = true
            this.#kick(0)
          }
        },
        (error: unknown) => {
          c.logger.error(
            { sink: sink.name, error: String(error) },
            'audit spool cannot be opened; events stay in memory',
          )
          this.#spoolBroken = true
        },
      )
    }
  }

  #spoolBroken = false
  #spoolFullLogged = false

  get depth(): number {
    return this.queue.length + (this.#inflight?.entries.length ?? 0) + this.#moving
  }

  /** Entries being appended to the spool right now. */
  #moving = 0

  get busy(): boolean {
    return (
      this.queue.length > 0 ||
      this.#inflight !== undefined ||
      (this.c.spool !== undefined && this.c.spool.pendingBytes > 0)
    )
  }

  push(entry: Entry): boolean {
    const n = this.queue.length
    if (n >= this.c.maxQueue) {
      // Security events are never refused while the reserve lasts; the caller still hears "full"
      // so the gate fails closed.
      if (entry.security && n < this.c.maxQueue + this.#reserve) {
        this.queue.push(entry)
        this.#kick(0)
      } else {
        entry.ack(this.c.prep)
        this.#health.dropped(entry.raw.type)
      }
      return false
    }
    this.#health.queued()
    this.queue.push(entry)
    if (n === 0) this.#since = monotonicMs()
    if (entry.onFail !== undefined) {
      // A committer waits: fail it now if the sink is down and nothing can take the event (it
      // stays queued for the retry), else write at once rather than after the interval.
      if (this.#unavailable()) entry.fail(this.#health.lastError)
      this.#urgent = true
      this.#kick(0)
      return true
    }
    // A full batch drains at once; otherwise the batching interval runs from the oldest entry.
    // While a write is in flight, the drain loop takes what is queued when it ends.
    if (this.#running === undefined) {
      if (n + 1 >= this.c.batchSize) {
        if (!this.#timerNow) this.#kick(0)
      } else if (this.#timer === undefined) this.#kick(this.c.intervalMs)
    }
    return true
  }

  /** Whether a sink write failed last and neither memory's spool can take events now. */
  #unavailable(): boolean {
    if (this.#health.failures === 0) return false
    const spool = this.c.spool
    return spool === undefined || this.#spoolBroken || this.#appendFailures > 0 || spool.full
  }

  /** Fails the committers waiting on this queue (its entries stay queued for the retry). */
  #failWaiting(error: unknown): void {
    for (const e of this.#inflight?.entries ?? []) e.fail(error)
    if (this.#urgent) for (const e of this.queue) e.fail(error)
  }

  #kick(delayMs: number): void {
    if (this.#running !== undefined) return
    if (this.#timer !== undefined) {
      if (delayMs > 0) return
      clearTimeout(this.#timer)
    }
    this.#timerNow = delayMs <= 0
    this.#timer = unrefTimeout(() => {
      this.c.clock?.check()
      this.#timer = undefined
      this.#timerNow = false
      this.#running ??= this.#runSafely().finally(() => {
        this.#running = undefined
        if (this.busy && !this.#closed) this.#kick(this.#untilDue())
        else if (!this.busy) for (const w of this.#waiters.splice(0)) w()
      })
    }, delayMs)
  }

  /** How long the queue's oldest entry may still wait for a fuller batch (0: due now). */
  #untilDue(): number {
    if (this.queue.length >= this.c.batchSize || this.#waiters.length > 0 || this.#urgent) return 0
    return Math.max(0, Math.ceil(this.c.intervalMs - (monotonicMs() - this.#since)))
  }

  #closed = false

  /**
   * Runs the drain loop; an error it did not expect (the spool cannot be read, or its offset not
   * recorded: a failing disk) is reported and retried after a back-off instead of rejecting
   * unheard (an unhandled rejection would end the process).
   */
  #runSafely(): Promise<void> {
    return this.#run().catch((error: unknown) => {
      this.#health.unexpected(error)
      this.#failWaiting(error)
    })
  }

  async #run(): Promise<void> {
    await this.#spoolReady
    for (let first = true; ; first = false) {
      if (this.#closed) return
      if (this.#spooling) {
        if (!(await this.#spoolStep())) return
        continue
      }
      if (this.#inflight === undefined) {
        if (this.queue.length === 0) return
        // After a write, what arrived meanwhile waits for a full batch or its interval (unless
        // someone waits for the queue to empty, or it is closing): under load, a write per
        // handful of events cost more than the events (a promise, a thread-pool hop and a
        // syscall each).
        if (!first && !this.#closing && this.#untilDue() > 0) return
        const entries = this.queue.splice(0, this.c.batchSize)
        if (this.queue.length === 0) this.#urgent = false
        this.#inflight = {
          entries,
          events: linkEntries(entries, this.c.prep, this.c.chainer, this.c.now),
        }
        this.#health.endEpisode(this.queue.length)
      }
      const { entries, events } = this.#inflight
      if (await this.#health.write(events)) {
        this.#inflight = undefined
        for (const e of entries) e.ack(this.c.prep)
        this.#report()
        continue
      }
      // Committers hear of it now unless the spool can take their events.
      if (this.#unavailable()) this.#failWaiting(this.#health.lastError)
      if (this.c.spool !== undefined && !this.#spoolBroken) {
        this.#spooling = true
        continue
      }
      this.#report()
      const wait = this.#health.retryAt - monotonicMs()
      if (wait > 0) {
        if (this.#closing) return
        await sleep(wait)
      }
    }
  }

  /** One step in spool mode; returns false when there is nothing left to do now. */
  async #spoolStep(): Promise<boolean> {
    const spool = this.c.spool as AuditSpool
    // 1. Whatever left memory (an in-flight batch first, to keep order) goes to disk, unless the
    // last append failed (a full disk) and its back-off has not run out.
    if (
      (this.#inflight !== undefined || this.queue.length > 0) &&
      monotonicMs() >= this.#appendRetryAt
    ) {
      if (spool.full) {
        if (!this.#spoolFullLogged)
          this.c.logger.error(
            { sink: this.sink.name, bytes: spool.pendingBytes },
            'audit spool full: events wait in memory',
          )
        this.#spoolFullLogged = true
        if (this.#unavailable()) this.#failWaiting(new Error('the audit spool is full'))
      } else {
        this.#spoolFullLogged = false
        const parts: { entries: Entry[]; events: AuditEvent[] } = this.#inflight ?? {
          entries: [],
          events: [],
        }
        this.#inflight = undefined
        const more = this.queue.splice(0, 4096)
        parts.entries.push(...more)
        parts.events.push(...linkEntries(more, this.c.prep, this.c.chainer, this.c.now))
        this.#moving = parts.entries.length
        try {
          await spool.append(parts.events)
        } catch (error) {
          this.#moving = 0
          this.c.logger.error(
            { sink: this.sink.name, error: String(error) },
            'audit spool append failed; events stay in memory',
          )
          // The append was cut back off the spool: the events wait in memory, in order, and the
          // append is tried again after a back-off (a full disk frees up).
          this.#inflight = parts
          this.#health.lastError = error
          this.#appendFailures++
          this.#appendRetryAt = monotonicMs() + retryDelay(this.#appendFailures)
          this.c.metrics.increment('auditSinkErrors', this.labels)
          this.#failWaiting(error)
          return true
        }
        this.#appendFailures = 0
        this.#appendRetryAt = 0
        this.#moving = 0
        for (const e of parts.entries) e.ack(this.c.prep)
        this.#health.endEpisode(this.queue.length)
        this.#report()
        return true
      }
    }
    // 2. Replay from disk when the sink is due another try.
    if (spool.pendingBytes === 0) {
      if (this.#inflight === undefined && this.queue.length === 0) {
        this.#spooling = false
        return true
      }
      if (monotonicMs() >= this.#appendRetryAt) return true
      // Nothing older waits on disk, and the spool refused what is in memory: the sink, when due,
      // may take it directly (back here if it fails).
      if (monotonicMs() >= this.#health.retryAt) {
        this.#spooling = false
        return true
      }
    }
    const wait = this.#health.retryAt - monotonicMs()
    if (wait > 0) {
      if (this.#closing) return false
      await sleep(Math.min(wait, Math.max(this.c.intervalMs, 10)))
      return true
    }
    const { events, next } = await spool.read(this.c.batchSize)
    if (events.length === 0) {
      await spool.commit(next)
      return true
    }
    if (await this.#health.write(events)) {
      await spool.commit(next)
      this.#report()
      return true
    }
    this.#report()
    return !this.#closing || this.queue.length > 0
  }

  /** Queues a checkpoint (on close) so the chain's end is signed. */
  finalCheckpoint(): void {
    if (this.c.chainer === undefined || this.#closed) return
    this.queue.push(new Entry(CHECKPOINT_MARKER, 0, true, 1))
    this.#kick(0)
  }

  tellTrail(event: AuditEventInput): void {
    this.onTrailEvent?.(this, event)
  }

  get spoolUsable(): boolean {
    return this.c.spool !== undefined && !this.#spoolBroken
  }

  /** Queues an event of the trail's own for this sink alone. */
  addOwn(event: AuditEventInput): void {
    this.add(new Entry(event, this.c.now(), true, 1))
  }

  /** Queues one of the trail's own events (within the reserve) and writes it without waiting. */
  add(entry: Entry): void {
    this.push(entry)
    this.#urgent = true
    this.#kick(0)
  }

  #report(): void {
    this.c.metrics.set('auditQueueDepth', this.depth, this.labels)
    if (this.c.spool !== undefined)
      this.c.metrics.set('auditSpoolBytes', this.c.spool.pendingBytes, this.labels)
  }

  /** Resolves when nothing is pending for this sink (a spool left by a previous run included). */
  async idle(): Promise<void> {
    await this.#spoolReady
    if (!this.busy && this.#running === undefined) return
    return new Promise((resolve) => {
      this.#waiters.push(resolve)
      this.#kick(0)
    })
  }

  /** What this sink was left without (for the close report). */
  leftBehind(): AuditSinkCloseReport {
    const spoolBytes = this.c.spool?.pendingBytes ?? 0
    return { sink: this.sink.name, unwritten: this.depth, spooled: spoolBytes > 0, spoolBytes }
  }

  /**
   * Gives up at close's deadline: no more retries, the drain loop ends at its next step (a write
   * that never settles is left to itself), and flush waiters are released.
   */
  abandon(): void {
    this.#closing = true
    this.#closed = true
    if (this.#timer !== undefined) clearTimeout(this.#timer)
    this.#timer = undefined
    for (const w of this.#waiters.splice(0)) w()
  }

  /** Stops retrying; memory that can still go to the spool goes there. */
  async stop(): Promise<void> {
    this.#closing = true
    if (this.#timer !== undefined) clearTimeout(this.#timer)
    this.#timer = undefined
    await this.#running
    if (this.depth > 0) {
      if (this.c.spool !== undefined && !this.#spoolBroken) this.#spooling = true
      await this.#runSafely()
    }
    this.#closed = true
    await this.c.spool?.close()
    for (const w of this.#waiters.splice(0)) w()
  }
}
