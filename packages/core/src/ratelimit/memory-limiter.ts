/**
 * A bounded in-memory fixed-window limiter with rate-limiter-flexible's contract (`consume`
 * resolves a `RateLimiterRes`, rejects with one when over the limit), so it composes with
 * `BurstyRateLimiter` and serves as the insurance limiter of the Redis limiters.
 *
 * rate-limiter-flexible's own `RateLimiterMemory` keeps one record and one timer per key until
 * the window ends, so a flood of distinct client IPs grows the heap without bound. This one keeps
 * at most `maxKeys` windows in an LRU and reads time from the injected clock.
 *
 * Reachable from `@portcullis/core`.
 * @packageDocumentation
 */
import { LRUCache } from 'lru-cache'
import { RateLimiterCompatibleAbstract, RateLimiterRes } from 'rate-limiter-flexible'
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

/**
 * The bounded memory limiter. It extends rate-limiter-flexible's public
 * `RateLimiterCompatibleAbstract`, so rate-limiter-flexible accepts it wherever it takes a limiter
 * (`BurstyRateLimiter`, and the `insuranceLimiter` of its Redis limiters).
 */
export class BoundedMemoryLimiter extends RateLimiterCompatibleAbstract {
  readonly points: number
  readonly durationMs: number
  // Own data properties shadow the abstract's throwing accessors; rate-limiter-flexible sets the
  // last two on insurance limiters (block duration in seconds).
  override readonly keyPrefix: string = ''
  override blockDuration: number
  override execEvenly: boolean = false
  readonly #now: Clock
  readonly #windows: LRUCache<string, Window>

  constructor(options: BoundedMemoryLimiterOptions) {
    super()
    this.points = options.points
    this.durationMs = options.durationMs
    this.blockDuration = (options.blockDurationMs ?? 0) / 1000
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
  override consume(
    key: string | number,
    points = 1,
    options: ConsumeOptions = {},
  ): Promise<RateLimiterRes> {
    const res = this.consumeNow(String(key), points, options.customDuration)
    return res.consumedPoints > this.points ? Promise.reject(res) : Promise.resolve(res)
  }

  /**
   * {@link consume} without the promise, for callers on the request path: the same counting, and
   * the window is over its limit when the answer's `consumedPoints` exceeds {@link points}.
   * @param customDurationSec window length in seconds for a new window (calendar quotas)
   */
  consumeNow(key: string, points = 1, customDurationSec?: number): RateLimiterRes {
    const now = this.#now()
    const duration = customDurationSec === undefined ? this.durationMs : customDurationSec * 1000
    const w = this.#window(key, now, duration)
    const first = w.consumed === 0
    const before = w.consumed
    w.consumed += points
    // Ban once, when the limit is first crossed (as rate-limiter-flexible's blockDuration).
    if (w.consumed > this.points && this.blockDuration > 0 && before <= this.points)
      w.resetAt = now + this.blockDuration * 1000
    return this.#res(w, now, first)
  }

  /** The current window, or `null`. */
  override get(key: string | number): Promise<RateLimiterRes | null> {
    const now = this.#now()
    const w = this.#windows.peek(String(key))
    return Promise.resolve(w === undefined || w.resetAt <= now ? null : this.#res(w, now, false))
  }

  /** Gives points back (e.g. refunds a failed request). */
  override reward(key: string | number, points = 1): Promise<RateLimiterRes> {
    const now = this.#now()
    const w = this.#window(String(key), now, this.durationMs)
    w.consumed = Math.max(0, w.consumed - points)
    return Promise.resolve(this.#res(w, now, false))
  }

  /** Adds points without checking the limit. */
  override penalty(key: string | number, points = 1): Promise<RateLimiterRes> {
    const now = this.#now()
    const w = this.#window(String(key), now, this.durationMs)
    w.consumed += points
    return Promise.resolve(this.#res(w, now, false))
  }

  /** Sets a key's consumed points for `secDuration` seconds (0: the limiter's window). */
  override set(key: string | number, points: number, secDuration: number): Promise<RateLimiterRes> {
    const now = this.#now()
    const w = {
      consumed: points,
      resetAt: now + (secDuration > 0 ? secDuration * 1000 : this.durationMs),
    }
    this.#windows.set(String(key), w)
    return Promise.resolve(this.#res(w, now, false))
  }

  /** Refuses a key for `secDuration` seconds. */
  override block(key: string | number, secDuration: number): Promise<RateLimiterRes> {
    return this.set(key, this.points + 1, secDuration)
  }

  /** Forgets a key's window. */
  override delete(key: string | number): Promise<boolean> {
    return Promise.resolve(this.#windows.delete(String(key)))
  }
}
