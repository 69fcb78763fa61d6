/**
 * The only place in core that reads the real clock or schedules timers; everything else gets
 * `now` injected so tests control time.
 * @internal
 */

/** Milliseconds since the epoch. */
export type Clock = () => number

/** The real wall clock. */
export const systemClock: Clock = () => Date.now()

/** Monotonic high-resolution time in microseconds, for stage timings only. */
export function monotonicMicros(): number {
  return performance.now() * 1000
}

/** Schedules `fn` after `ms` without keeping the process alive. */
export function unrefTimeout(fn: () => void, ms: number): NodeJS.Timeout {
  const t = setTimeout(fn, ms)
  t.unref()
  return t
}

/** Schedules `fn` every `ms` without keeping the process alive. */
export function unrefInterval(fn: () => void, ms: number): NodeJS.Timeout {
  const t = setInterval(fn, ms)
  t.unref()
  return t
}
