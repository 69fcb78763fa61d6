/**
 * `@gatehouse/redis`: rate-limit and quota counters in Redis, shared by every instance, through
 * rate-limiter-flexible's `RateLimiterRedis` (atomic Lua increments: no over-admission across
 * processes).
 *
 * @example
 * ```ts
 * import { Redis } from 'ioredis'
 * import { createRateLimitStage } from '@gatehouse/core'
 * import { createRedisBackend } from '@gatehouse/redis'
 * const client = new Redis({ enableOfflineQueue: false, maxRetriesPerRequest: 1 })
 * const limits = createRateLimitStage({
 *   backend: createRedisBackend({ client, insurance: true }),
 *   limits: [{ name: 'per-key', limit: 100, windowMs: '1m', onStoreError: 'insurance' }],
 * })
 * ```
 * @packageDocumentation
 */
import {
  ConfigError,
  createMemoryBackend,
  TypeValidator,
  type Clock,
  type LimiterSpec,
  type RateLimitBackend,
  type RateLimiterLike,
} from '@gatehouse/core'
import type { Redis } from 'ioredis'
import { RateLimiterRedis } from 'rate-limiter-flexible'

/** Options of {@link createRedisBackend}. */
export interface RedisBackendOptions {
  /**
   * An ioredis client you built. Create it with `enableOfflineQueue: false` (and a small
   * `maxRetriesPerRequest`) so that, while Redis is down, commands fail at once instead of
   * queueing, and each limit's failure mode applies within milliseconds.
   */
  readonly client: Redis
  /** Prefix of every key. @default 'gh' */
  readonly prefix?: string
  /**
   * Give each limiter an in-memory insurance limiter with the same limit, which
   * rate-limiter-flexible consults while Redis fails (the `insurance` failure mode). Counts are
   * then per process until Redis returns. @default false
   */
  readonly insurance?: boolean
  /**
   * Remember keys already over their limit in process memory until their window ends, so refused
   * floods never reach Redis (rate-limiter-flexible's `inMemoryBlockOnConsumed`). @default true
   */
  readonly inMemoryBlock?: boolean
  /** Clock of the insurance limiters. @default Date.now */
  readonly now?: Clock
}

const OPTION_NAMES = ['client', 'prefix', 'insurance', 'inMemoryBlock', 'now']

/**
 * Creates the Redis backend for `createRateLimitStage` and `createQuotaStage`.
 * @throws {ConfigError} for a bad option, or a window that is not a whole number of seconds
 */
export function createRedisBackend(options: Readonly<RedisBackendOptions>): RateLimitBackend {
  const v = new TypeValidator('redis')
  v.knownKeys(options as unknown as Record<string, unknown>, OPTION_NAMES)
  const client = options.client as Redis | undefined
  if (
    typeof client?.evalsha !== 'function' &&
    typeof (client as { eval?: unknown } | undefined)?.eval !== 'function'
  ) {
    v.fail('client', 'must be an ioredis client')
  }
  const prefix =
    v.string('prefix', options.prefix ?? 'gh', { pattern: /^[A-Za-z0-9_:.-]{1,32}$/ }) ?? 'gh'
  const insurance =
    options.insurance === undefined ? false : (v.boolean('insurance', options.insurance) ?? false)
  const inMemoryBlock =
    options.inMemoryBlock === undefined
      ? true
      : (v.boolean('inMemoryBlock', options.inMemoryBlock) ?? true)
  v.assert()
  const local = insurance
    ? createMemoryBackend(options.now === undefined ? {} : { now: options.now })
    : undefined
  return {
    name: 'redis',
    create(spec: LimiterSpec): RateLimiterLike {
      if (spec.durationMs % 1000 !== 0 || spec.blockDurationMs % 1000 !== 0) {
        throw new ConfigError(
          `redis: windows are whole seconds in Redis; ${spec.keyPrefix} has windowMs ${spec.durationMs} and blockDurationMs ${spec.blockDurationMs}`,
        )
      }
      const limiter = new RateLimiterRedis({
        storeClient: client,
        keyPrefix: `${prefix}:${spec.keyPrefix}`,
        points: spec.points,
        duration: spec.durationMs / 1000,
        blockDuration: spec.blockDurationMs / 1000,
        // Fail fast while disconnected instead of queueing; the limit's failure mode decides.
        rejectIfRedisNotReady: true,
        ...(inMemoryBlock && spec.blockDurationMs === 0 && spec.points < Number.MAX_SAFE_INTEGER
          ? { inMemoryBlockOnConsumed: spec.points + 1 }
          : {}),
        ...(local === undefined ? {} : { insuranceLimiter: local.create(spec) as never }),
      })
      return limiter as unknown as RateLimiterLike
    },
  }
}
