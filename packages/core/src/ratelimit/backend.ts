/**
 * Where limit counters live. A backend makes rate-limiter-flexible-compatible limiters; the
 * memory backend ships here, the Redis backend in `@portcullis/redis`.
 *
 * Reachable from `@portcullis/core`.
 * @packageDocumentation
 */
import type { RateLimiterRes } from 'rate-limiter-flexible'
import { DEFAULT_RATE_LIMIT_MAX_KEYS } from '../defaults.js'
import { systemClock, type Clock } from '../internal/clock.js'
import { BoundedMemoryLimiter, type ConsumeOptions } from './memory-limiter.js'

/**
 * rate-limiter-flexible's limiter contract: `consume` resolves a `RateLimiterRes`, rejects with a
 * `RateLimiterRes` when over the limit, and rejects with an `Error` when the store fails.
 */
export interface RateLimiterLike {
  consume(key: string, points?: number, options?: ConsumeOptions): Promise<RateLimiterRes>
  get(key: string): Promise<RateLimiterRes | null>
  reward(key: string, points?: number): Promise<RateLimiterRes>
  delete(key: string): Promise<boolean>
}

/** What one limiter counts. */
export interface LimiterSpec {
  /** Namespaces the keys of this limiter in a shared store. */
  readonly keyPrefix: string
  readonly points: number
  readonly durationMs: number
  /** Ban length after exceeding; 0 for none. */
  readonly blockDurationMs: number
  /**
   * Refuse a consume that would take the counter past `points` without adding its points (the
   * quota stage asks for it: a request costing more than what is left must not spend the rest).
   * A backend that counts elsewhere than this process must do the check and the add atomically.
   * Core's memory limiters are undone by the quota stage in the same synchronous turn instead.
   * @default false
   */
  readonly allOrNothing?: boolean
}

/** Makes limiters. */
export interface RateLimitBackend {
  /** `memory`, `redis`, ... */
  readonly name: string
  create(spec: LimiterSpec): RateLimiterLike
  /**
   * The store's clock (epoch ms), for counters shared between processes: the quota stage takes
   * "now" (hence the calendar period's boundary) from it instead of its own clock, so nodes with
   * skewed clocks count into the same period and roll over at the same moment. A number when the
   * backend knows the store's time (e.g. a cached offset), a promise when it must ask. Absent for
   * the memory backend: one process, its own clock.
   */
  now?(): number | Promise<number>
  /**
   * Records `key` for `ttlMs` unless it is already recorded (Redis `SET NX PX`); resolves whether
   * this call recorded it. The quota stage's `Idempotency-Key` records live here when the counters
   * are shared; absent, the stage keeps them in a bounded LRU in process memory.
   */
  claim?(key: string, ttlMs: number): Promise<boolean>
  /** Forgets a key recorded by {@link RateLimitBackend.claim}. */
  release?(key: string): Promise<void>
}

/** Options of {@link createMemoryBackend}. */
export interface MemoryBackendOptions {
  /** Keys remembered per limiter; least recently used windows are dropped beyond. @default 100000 */
  readonly maxKeys?: number
  /** Clock. @default Date.now */
  readonly now?: Clock
}

/** The in-process backend: bounded, exact on one machine, not shared between processes. */
export function createMemoryBackend(options: MemoryBackendOptions = {}): RateLimitBackend {
  const maxKeys = options.maxKeys ?? DEFAULT_RATE_LIMIT_MAX_KEYS
  const now = options.now ?? systemClock
  return {
    name: 'memory',
    create: (spec) =>
      new BoundedMemoryLimiter({
        points: spec.points,
        durationMs: spec.durationMs,
        blockDurationMs: spec.blockDurationMs,
        maxKeys,
        now,
      }),
  }
}

/** The store errors behind answers of a backend's insurance limiter. */
const insured = new WeakMap<RateLimiterRes, { readonly error: unknown }>()

/**
 * Marks `res` (resolved or thrown by a backend's insurance limiter) as counted in process memory
 * because the shared store failed with `error`. The rate-limit stage reads the mark to count,
 * log and audit the outage and to mark the decision (`onStoreError: 'insurance'`); a backend with
 * an insurance limiter must mark every answer of it.
 * @returns `res`
 */
export function markInsured<T extends RateLimiterRes>(res: T, error: unknown): T {
  insured.set(res, { error })
  return res
}

/** The store failure behind an insurance answer (see {@link markInsured}); `undefined` for the store's own answers. */
export function insuredBy(res: RateLimiterRes): { readonly error: unknown } | undefined {
  return insured.get(res)
}
