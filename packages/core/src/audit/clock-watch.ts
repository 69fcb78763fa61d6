/**
 * Watches the wall clock that stamps audit events against the monotonic clock. Between two checks
 * both should advance alike; when the wall clock has stepped backwards, or forwards by more than a
 * threshold, the trail records an `audit.clock_jump` event. The trail checks on its flush timer,
 * off the request path, so a jump is recorded at the first flush after it happened (events queued
 * between the jump and that flush carry the new time already; `data.lastCheck` bounds when it
 * happened).
 * @internal
 */
import type { Clock } from '../internal/clock.js'
import type { AuditEventInput } from './audit-event.js'

/** What a {@link ClockWatch} compares and where it reports. */
export interface ClockWatchOptions {
  /** The wall clock events are stamped with (ms since the epoch). */
  readonly wall: Clock
  /** A monotonic clock (ms, any origin), e.g. `performance.now`. */
  readonly monotonic: () => number
  /** A forward step larger than this is a jump (backward steps always are). */
  readonly thresholdMs: number
  /** Receives the `audit.clock_jump` event to record. */
  readonly report: (event: AuditEventInput) => void
}

/**
 * Steps within this are reading noise, not a jump: `Date.now()` has 1 ms resolution and the two
 * clocks cannot be read at the same instant.
 */
const NOISE_MS = 2
/**
 * A slewing time daemon moves the wall clock at most 500 ppm (the kernel's `adjtimex` limit); where
 * the monotonic clock is not slewed with it (macOS, Windows), the clocks drift apart that much,
 * which is not a step.
 */
const MAX_SLEW = 500e-6
/** Two monotonic readings further apart than this around a wall reading: read again. */
const MAX_READ_SPREAD_MS = 1

/** The latest time a `Date` holds (ms). */
const MAX_TIME = 8.64e15

function iso(ms: number): string {
  return Math.abs(ms) <= MAX_TIME ? new Date(ms).toISOString() : String(ms)
}

/** Compares the two clocks at each {@link ClockWatch.check}. @internal */
export class ClockWatch {
  #wall: number
  #mono: number

  constructor(readonly options: Readonly<ClockWatchOptions>) {
    const first = this.#read()
    this.#wall = first.wall
    this.#mono = first.mono
  }

  /**
   * Both clocks, read close together: a thread preempted between the readings would look like a
   * step of the time it was descheduled, so readings whose monotonic sandwich is wide are retried.
   */
  #read(): { wall: number; mono: number } {
    const { wall, monotonic } = this.options
    let before = monotonic()
    let w = wall()
    let after = monotonic()
    for (let i = 0; i < 3 && after - before > MAX_READ_SPREAD_MS; i++) {
      before = monotonic()
      w = wall()
      after = monotonic()
    }
    return { wall: w, mono: (before + after) / 2 }
  }

  /** Compares the clocks with the last check and reports a jump between them. */
  check(): void {
    const now = this.#read()
    if (!Number.isFinite(now.wall) || !Number.isFinite(now.mono)) return
    const elapsed = now.mono - this.#mono
    const expected = this.#wall + elapsed
    const deltaMs = now.wall - expected
    const since = this.#wall
    this.#wall = now.wall
    this.#mono = now.mono
    const tolerance = NOISE_MS + Math.max(0, elapsed) * MAX_SLEW
    const direction =
      deltaMs < -tolerance
        ? 'backward'
        : deltaMs > Math.max(this.options.thresholdMs, tolerance)
          ? 'forward'
          : undefined
    if (direction === undefined) return
    this.options.report({
      type: 'audit.clock_jump',
      outcome: 'success',
      actor: { id: null },
      action: 'audit.clock_jump',
      data: {
        direction,
        from: iso(expected),
        to: iso(now.wall),
        deltaMs: Math.round(deltaMs),
        thresholdMs: this.options.thresholdMs,
        lastCheck: iso(since),
      },
    })
  }
}
