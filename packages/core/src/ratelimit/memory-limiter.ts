/**
 * A bounded in-memory fixed-window limiter with rate-limiter-flexible's contract (`consume`
 * resolves a `RateLimiterRes`, rejects with one when over the limit), so it composes with
 * `BurstyRateLimiter` and serves as the insurance limiter of the Redis limiters.
 *
 * rate-limiter-flexible's own `RateLimiterMemory` keeps one record and one timer per key until
 * the window ends, so a flood of distinct client IPs grows the heap without bound. This one keeps
 * at most `maxKeys` windows in an LRU and reads time from the injected clock.
 *
 * Reachable from `@gatehouse/core`.
 * @packageDocumentation
 */
import { LRUCache } from 'lru-cache'
import { RateLimiterRes } from 'rate-limiter-flexible'
import type { Clock } from '../internal/clock.js'

/** Options of {@link BoundedMemoryLimiter}. */
export interface BoundedMemoryLimiterOptions {
  /** Points (requests, or weighted units) per window. */
  readonly points: number
  /** Window length in milliseconds. */
  readonly durationMs: number
  /** After exceeding the limit, refuse the key this long (a ban); 0: until the window ends. */
  readonly blockDurationMs?: number
  /** Most keys remembered; the least recently used window is dropped beyond it. */
  readonly maxKeys: number
  readonly now: Clock
}

interface Window {
  consumed: number
  resetAt: number
}

/** Per-call options, as in rate-limiter-flexible. */
export interface ConsumeOptions {
  /** Window length for a new window, in seconds (calendar-aligned quotas use it). */
  readonly customDuration?: number
}

/** The bounded memory limiter. */
export class BoundedMemoryLimiter {
  readonly points: number
  readonly durationMs: number
  readonly #blockMs: number
  readonly #now: Clock
  readonly #windows: LRUCache<string, Window>

  constructor(options: BoundedMemoryLimiterOptions) {
    this.points = options.points
    this.durationMs = options.durationMs
    this.#blockMs = options.blockDurationMs ?? 0
    this.#now = options.now
    this.#windows = new LRUCache<string, Window>({ max: options.maxKeys })
  }

  /** Keys currently remembered. */
  get size(): number {
    return this.#windows.size
  }

  #window(key: string, now: number, durationMs: number): Window {
    let w = this.#windows.get(key)
    if (w === undefined || w.resetAt <= now) {
      w = { consumed: 0, resetAt: now + durationMs }
      this.#windows.set(key, w)
    }
    return w
  }

  #res(w: Window, now: number, first: boolean): RateLimiterRes {
    return new RateLimiterRes(
      Math.max(0, this.points - w.consumed),
      Math.max(0, w.resetAt - now),
      w.consumed,
      first,
    )
  }

  /** Consumes `points`; rejects with a `RateLimiterRes` when the window is over its limit. */
  consume(key: string, points = 1, options: ConsumeOptions = {}): Promise<RateLimiterRes> {
    const now = this.#now()
    const duration =
      options.customDuration === undefined ? this.durationMs : options.customDuration * 1000
    const w = this.#window(key, now, duration)
    const first = w.consumed === 0
    const before = w.consumed
    w.consumed += points
    if (w.consumed > this.points) {
      // Ban once, when the limit is first crossed (as rate-limiter-flexible's blockDuration).
      if (this.#blockMs > 0 && before <= this.points) w.resetAt = now + this.#blockMs
      return Promise.reject(this.#res(w, now, first))
    }
    return Promise.resolve(this.#res(w, now, first))
  }

  /** The current window, or `null`. */
  get(key: string): Promise<RateLimiterRes | null> {
    const now = this.#now()
    const w = this.#windows.peek(key)
    return Promise.resolve(w === undefined || w.resetAt <= now ? null : this.#res(w, now, false))
  }

  /** Gives points back (e.g. refunds a failed request). */
  reward(key: string, points = 1): Promise<RateLimiterRes> {
    const now = this.#now()
    const w = this.#window(key, now, this.durationMs)
    w.consumed = Math.max(0, w.consumed - points)
    return Promise.resolve(this.#res(w, now, false))
  }

  /** Adds points without checking the limit. */
  penalty(key: string, points = 1): Promise<RateLimiterRes> {
    const now = this.#now()
    const w = this.#window(key, now, this.durationMs)
    w.consumed += points
    return Promise.resolve(this.#res(w, now, false))
  }

  /** Forgets a key's window. */
  delete(key: string): Promise<boolean> {
    return Promise.resolve(this.#windows.delete(key))
  }
}
