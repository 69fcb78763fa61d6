/**
 * `@portcullis/redis`: rate-limit and quota counters in Redis, shared by every instance, through
 * rate-limiter-flexible's `RateLimiterRedis` (one atomic Lua call per consume: no over-admission
 * across processes). Also the pub/sub {@link createRedisBroker}, the cache tier
 * {@link createRedisCache} and the Streams audit sink {@link createRedisStreamAuditSink}.
 *
 * Reachable from `@portcullis/redis`.
 *
 * @example
 * ```ts
 * import { once } from 'node:events'
 * import { Redis } from 'ioredis'
 * import { createRateLimitStage } from '@portcullis/core'
 * import { createRedisBackend } from '@portcullis/redis'
 * const client = new Redis({ enableOfflineQueue: false, maxRetriesPerRequest: 1, commandTimeout: 500 })
 * client.on('error', () => {}) // ioredis wants a listener; the limits' failure modes report outages
 * await once(client, 'ready')
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
  silentLogger,
  TypeValidator,
  type Clock,
  type LimiterSpec,
  type Logger,
  type RateLimitBackend,
  type RateLimiterLike,
} from '@portcullis/core'
import type { Redis } from 'ioredis'
import { RateLimiterRedis, type RateLimiterCompatibleAbstract } from 'rate-limiter-flexible'

/** Options of {@link createRedisBackend}. */
export interface RedisBackendOptions {
  /**
   * An ioredis client you built (and own: close it yourself). Build it with
   * `enableOfflineQueue: false`, `maxRetriesPerRequest: 1` and a `commandTimeout`, so that while
   * Redis is down or hung every request settles within milliseconds and the limit's failure mode
   * applies, and wait for its `ready` event before serving: until then every consume fails.
   */
  readonly client: Redis
  /** First segment of every key, in place of core's `ptcl` (`<prefix>:rl:<limit>:...`). @default 'ptcl' */
  readonly prefix?: string
  /**
   * Give each limiter an in-memory insurance limiter with the same limit (core's bounded memory
   * limiter), which rate-limiter-flexible consults while Redis fails: the `insurance` failure
   * mode. Counts are then per process until Redis returns. It applies to every limiter of this
   * backend, whatever the limit's `onStoreError`: give `closed`/`open` limits and quotas a
   * backend without it. @default false
   */
  readonly insurance?: boolean
  /**
   * Remember keys already over their limit in process memory until their window ends, so refused
   * floods never reach Redis (rate-limiter-flexible's `inMemoryBlockOnConsumed`, set to
   * `points + 1`). Not applied to limits with a `blockDurationMs` ban. A reset or refund reaches
   * the other processes' memory only when the window ends. @default true
   */
  readonly inMemoryBlock?: boolean
  /** Clock of the insurance limiters. @default Date.now */
  readonly now?: Clock
  /** Receives warnings about unknown options and a client not set up to fail fast. @default silent */
  readonly logger?: Logger
}

const DEFAULT_PREFIX = 'ptcl'
const OPTION_NAMES = ['client', 'prefix', 'insurance', 'inMemoryBlock', 'now', 'logger']

interface ResolvedRedisBackendOptions {
  readonly client: Redis
  readonly prefix: string
  readonly insurance: boolean
  readonly inMemoryBlock: boolean
  readonly now: Clock | undefined
}

function isIoredisClient(value: unknown): value is Redis {
  const c = value as Partial<Record<'defineCommand' | 'multi' | 'del' | 'status', unknown>> | null
  return (
    typeof c === 'object' &&
    c !== null &&
    typeof c.defineCommand === 'function' &&
    typeof c.multi === 'function' &&
    typeof c.del === 'function' &&
    typeof c.status === 'string'
  )
}

function resolveRedisBackendOptions(
  options: Readonly<RedisBackendOptions>,
): ResolvedRedisBackendOptions {
  const v = new TypeValidator('redis')
  if (v.object('options', options) === undefined) v.assert()
  v.knownKeys(options as unknown as Record<string, unknown>, OPTION_NAMES)
  const client = isIoredisClient(options.client)
    ? options.client
    : v.fail('client', 'must be an ioredis client (new Redis(...) from ioredis 5 or 6)')
  const prefix =
    options.prefix === undefined
      ? DEFAULT_PREFIX
      : v.string('prefix', options.prefix, { pattern: /^[A-Za-z0-9_:.-]{1,32}$/ })
  const insurance =
    options.insurance === undefined ? false : v.boolean('insurance', options.insurance)
  const inMemoryBlock =
    options.inMemoryBlock === undefined ? true : v.boolean('inMemoryBlock', options.inMemoryBlock)
  const now = options.now === undefined ? undefined : v.function<Clock>('now', options.now)
  const logger = options.logger ?? silentLogger
  v.assert((m) => logger.warn({}, m))
  const c = client as Redis
  // rejectIfRedisNotReady covers new commands while disconnected; these settings cover the ones
  // in flight when the connection drops, and a Redis that hangs without closing the socket.
  const { enableOfflineQueue, maxRetriesPerRequest, commandTimeout } = c.options
  if (
    enableOfflineQueue !== false ||
    maxRetriesPerRequest === null ||
    (maxRetriesPerRequest ?? 20) > 2 ||
    commandTimeout === undefined
  ) {
    logger.warn(
      { enableOfflineQueue, maxRetriesPerRequest, commandTimeout },
      'redis.client: for bounded latency during outages build it with enableOfflineQueue: false, ' +
        'maxRetriesPerRequest: 1 and a commandTimeout (e.g. 500)',
    )
  }
  return Object.freeze({
    client: c,
    prefix: prefix as string,
    insurance: insurance as boolean,
    inMemoryBlock: inMemoryBlock as boolean,
    now,
  })
}

function assertWholeSeconds(spec: LimiterSpec): void {
  const issues: string[] = []
  for (const [field, ms] of [
    ['windowMs', spec.durationMs],
    ['blockDurationMs', spec.blockDurationMs],
  ] as const) {
    if (ms % 1000 !== 0) {
      const suggestion = Math.max(1, Math.round(ms / 1000)) * 1000
      issues.push(
        `redis: ${spec.keyPrefix}: ${field} must be a whole number of seconds, received ${ms}; ` +
          `Redis windows are whole seconds (its counters expire in seconds): use ${suggestion}`,
      )
    }
  }
  if (issues.length > 0) throw new ConfigError(issues)
}

/**
 * Creates the Redis backend for `createRateLimitStage` and `createQuotaStage`. Limiters are
 * rate-limiter-flexible `RateLimiterRedis` instances with `rejectIfRedisNotReady`, so a
 * disconnected client fails at once instead of queueing.
 * @throws {ConfigError} for a bad option; `create()` throws it for a window (or ban) that is not
 *   a whole number of seconds
 * @example
 * ```ts
 * const backend = createRedisBackend({ client, prefix: 'api' })
 * const limits = createRateLimitStage({ backend, limits: [{ name: 'burst', limit: 10, windowMs: '1s' }] })
 * ```
 */
export function createRedisBackend(options: Readonly<RedisBackendOptions>): RateLimitBackend {
  const config = resolveRedisBackendOptions(options)
  const local = config.insurance
    ? createMemoryBackend(config.now === undefined ? {} : { now: config.now })
    : undefined
  return {
    name: 'redis',
    create(spec: LimiterSpec): RateLimiterLike {
      assertWholeSeconds(spec)
      return new RateLimiterRedis({
        storeClient: config.client,
        keyPrefix: prefixed(config.prefix, spec.keyPrefix),
        points: spec.points,
        duration: spec.durationMs / 1000,
        blockDuration: spec.blockDurationMs / 1000,
        rejectIfRedisNotReady: true,
        // With inMemoryBlockDuration unset, rate-limiter-flexible blocks the key locally for the
        // window's remaining TTL (Retry-After stays exact). That branch skips writing a ban to
        // Redis, so limits with a ban keep it off; the sliding algorithm's uncapped base too.
        ...(config.inMemoryBlock &&
        spec.blockDurationMs === 0 &&
        spec.points < Number.MAX_SAFE_INTEGER
          ? { inMemoryBlockOnConsumed: spec.points + 1 }
          : {}),
        ...(local === undefined ? {} : { insuranceLimiter: insurer(local.create(spec)) }),
      })
    },
  }
}

/**
 * Core names its limiters `ptcl:rl:...` and `ptcl:q:...`; `prefix` takes the place of that `ptcl`, so
 * default keys read `ptcl:rl:...` (not `ptcl:ptcl:rl:...`) and `prefix: 'api'` gives `api:rl:...`.
 */
function prefixed(prefix: string, keyPrefix: string): string {
  return keyPrefix.startsWith('ptcl:') ? prefix + keyPrefix.slice(4) : `${prefix}:${keyPrefix}`
}

/**
 * Core's memory backend makes `BoundedMemoryLimiter`s, which extend rate-limiter-flexible's
 * `RateLimiterCompatibleAbstract`; rate-limiter-flexible checks that again when it is set.
 */
function insurer(limiter: RateLimiterLike): RateLimiterCompatibleAbstract {
  return limiter as unknown as RateLimiterCompatibleAbstract
}

export * from './broker.js'
export * from './cache.js'
export * from './audit-stream-sink.js'
