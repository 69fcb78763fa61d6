/**
 * The `@fastify/rate-limit` drop-in's default store, over core's bounded memory limiter.
 * @packageDocumentation
 */
import { BoundedMemoryLimiter } from '../memory-limiter.js'
import type { RateLimitStoreCallback, RouteLimitParams, RouteLimitStore } from './types.js'

/**
 * `@fastify/rate-limit`'s memory store over core's bounded limiter: a fixed window from a key's
 * first hit; `continueExceeding` and `exponentialBackoff` restart it on hits over the limit.
 */
export class RouteLimitMemoryStore implements RouteLimitStore {
  readonly #limiter: BoundedMemoryLimiter
  readonly #windowMs: number

  constructor(readonly options: RouteLimitParams<unknown>) {
    this.#windowMs = typeof options.timeWindow === 'number' ? options.timeWindow : 60_000
    this.#limiter = new BoundedMemoryLimiter({
      points: Number.MAX_SAFE_INTEGER,
      durationMs: this.#windowMs,
      maxKeys: options.cache,
      now: Date.now,
    })
  }

  incr(key: string, callback: RateLimitStoreCallback, timeWindow: number, max: number): void {
    // The limiter's own window when it is the one asked for: ms / 1000 * 1000 is not always ms.
    const own = timeWindow === this.#windowMs
    const r = this.#limiter.consumeNow(key, 1, own ? undefined : timeWindow / 1000)
    let ttl = r.msBeforeNext
    const { continueExceeding, exponentialBackoff } = this.options
    if (r.consumedPoints > max && (continueExceeding || exponentialBackoff)) {
      // continueExceeding wins, as in @fastify/rate-limit.
      const backoff = timeWindow * 2 ** (r.consumedPoints - max - 1)
      ttl = continueExceeding ? timeWindow : Math.min(backoff, Number.MAX_SAFE_INTEGER)
      void this.#limiter.set(key, r.consumedPoints, ttl === this.#windowMs ? 0 : ttl / 1000)
    }
    callback(null, { current: r.consumedPoints, ttl })
  }

  read(key: string, callback: RateLimitStoreCallback): void {
    void this.#limiter.get(key).then((r) => {
      callback(null, { current: r?.consumedPoints ?? 0, ttl: r?.msBeforeNext ?? 0 })
    })
  }

  child(options: Readonly<Record<string, unknown>>): RouteLimitStore {
    return new RouteLimitMemoryStore(options as unknown as RouteLimitParams<unknown>)
  }
}
