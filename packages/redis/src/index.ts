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
  markInsured,
  silentLogger,
  TypeValidator,
  type Clock,
  type LimiterSpec,
  type Logger,
  type RateLimitBackend,
  type RateLimiterLike,
} from '@portcullis/core'
import type { Redis } from 'ioredis'
import { RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible'

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
   * limiter), which counts while Redis fails: the `insurance` failure mode. Its answers are
   * marked (`markInsured`) so the limits stage reports the outage. Counts are then per process until Redis returns. It applies to every limiter of this
   * backend, whatever the limit's `onStoreError`: give `closed`/`open` limits and quotas a
   * backend without it. @default false
   */
  readonly insurance?: boolean
  /**
   * Remember keys already over their limit in process memory until their window ends, so refused
   * floods never reach Redis (rate-limiter-flexible's `inMemoryBlockOnConsumed`, set to
   * `points + 1`). Not applied to limits with a `blockDurationMs` ban. A reset or refund reaches
   * the other processes' memory only when the window ends. Quota counters (which refuse a request
   * costing more than what is left without spending it) always ask Redis. @default true
   */
  readonly inMemoryBlock?: boolean
  /**
   * How often the quota stage's clock reads Redis `TIME`, in ms. Calendar quotas on shared
   * counters take "now" from Redis, not from each node, so nodes with skewed clocks count into the
   * same period and roll over at the same moment. The offset between Redis `TIME` and this
   * process's monotonic clock is measured (at the round trip's midpoint) on the first quota
   * request, which waits for it, and refreshed in the background once it is older than this; a
   * failed refresh keeps the last offset. Between refreshes no request pays a round trip.
   * @default 10000
   */
  readonly clockRefreshMs?: number
  /** Clock of the insurance limiters. @default Date.now */
  readonly now?: Clock
  /**
   * Monotonic clock (ms) that the Redis `TIME` offset is added to; for tests. @default
   * performance.now
   */
  readonly monotonicNow?: () => number
  /** Receives warnings about unknown options and a client not set up to fail fast. @default silent */
  readonly logger?: Logger
}

const DEFAULT_PREFIX = 'ptcl'
/** Default of {@link RedisBackendOptions.clockRefreshMs}. */
export const DEFAULT_REDIS_CLOCK_REFRESH_MS = 10_000
const OPTION_NAMES = [
  'client',
  'prefix',
  'insurance',
  'inMemoryBlock',
  'clockRefreshMs',
  'now',
  'monotonicNow',
  'logger',
]

interface ResolvedRedisBackendOptions {
  readonly client: Redis
  readonly prefix: string
  readonly insurance: boolean
  readonly inMemoryBlock: boolean
  readonly clockRefreshMs: number
  readonly now: Clock | undefined
  readonly monotonicNow: () => number
  readonly logger: Logger
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
  const clockRefreshMs =
    options.clockRefreshMs === undefined
      ? DEFAULT_REDIS_CLOCK_REFRESH_MS
      : v.integer('clockRefreshMs', options.clockRefreshMs, { min: 0 })
  const now = options.now === undefined ? undefined : v.function<Clock>('now', options.now)
  const monotonicNow =
    options.monotonicNow === undefined
      ? undefined
      : v.function<() => number>('monotonicNow', options.monotonicNow)
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
    clockRefreshMs: clockRefreshMs as number,
    now,
    monotonicNow: monotonicNow ?? (() => performance.now()),
    logger,
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
  const client = config.client
  return {
    name: 'redis',
    now: redisClock(config),
    claim: async (key, ttlMs) =>
      (await client.set(prefixed(config.prefix, key), '1', 'PX', ttlMs, 'NX')) === 'OK',
    release: async (key) => {
      await client.del(prefixed(config.prefix, key))
    },
    create(spec: LimiterSpec): RateLimiterLike {
      assertWholeSeconds(spec)
      const limiter = new RateLimiterRedis({
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
        spec.allOrNothing !== true &&
        spec.blockDurationMs === 0 &&
        spec.points < Number.MAX_SAFE_INTEGER
          ? { inMemoryBlockOnConsumed: spec.points + 1 }
          : {}),
      })
      // The insurance limiter is ours rather than rate-limiter-flexible's `insuranceLimiter`,
      // which hides the store's error: each of its answers is marked (`markInsured`) with it.
      const insurance = local?.create(spec)
      if (spec.allOrNothing === true)
        return new AllOrNothingLimiter(client, limiter, spec.points, insurance)
      return insurance === undefined ? limiter : new InsuredLimiter(limiter, insurance)
    },
  }
}

/**
 * Adds the points only when they fit (one Lua call: the check and the add are atomic across
 * processes), on rate-limiter-flexible's key and value format, so its `get`, `reward` and `delete`
 * read and change the same counter. Refused: `[consumed, pttl, 0]`, nothing written.
 */
const CONSUME_IF_FITS = `
local consumed = tonumber(redis.call('get', KEYS[1]) or '0')
local points = tonumber(ARGV[1])
if consumed + points > tonumber(ARGV[2]) then
  return {consumed, redis.call('pttl', KEYS[1]), 0}
end
consumed = redis.call('incrby', KEYS[1], points)
local ttl = redis.call('pttl', KEYS[1])
if ttl < 0 then
  redis.call('pexpire', KEYS[1], ARGV[3])
  ttl = tonumber(ARGV[3])
end
return {consumed, ttl, 1}
`

type ConsumeIfFits = (key: string, points: number, limit: number, ttlMs: number) => Promise<unknown>

/** A quota counter: a request costing more than what is left is refused without spending it. */
class AllOrNothingLimiter implements RateLimiterLike {
  readonly #consume: ConsumeIfFits

  constructor(
    private readonly client: Redis,
    private readonly inner: RateLimiterRedis,
    private readonly points: number,
    private readonly insurance: RateLimiterLike | undefined,
  ) {
    const c = client as Redis & { ptclConsumeIfFits?: ConsumeIfFits }
    if (typeof c.ptclConsumeIfFits !== 'function')
      client.defineCommand('ptclConsumeIfFits', { numberOfKeys: 1, lua: CONSUME_IF_FITS })
    this.#consume = (c.ptclConsumeIfFits as ConsumeIfFits).bind(client)
  }

  async consume(
    key: string,
    points = 1,
    options: { customDuration?: number } = {},
  ): Promise<RateLimiterRes> {
    const ttlMs = (options.customDuration ?? this.inner.duration) * 1000
    let reply: unknown
    try {
      if (this.client.status !== 'ready') throw new Error('Redis connection is not ready')
      reply = await this.#consume(this.inner.getKey(key), points, this.points, ttlMs)
    } catch (e) {
      // The insurance limiter (per process, counting as before) takes over while Redis fails.
      if (this.insurance !== undefined)
        return insuredConsume(this.insurance, key, points, options, e)
      throw e
    }
    const [consumed, ttl, added] = (reply as [number, number, number]).map(Number) as [
      number,
      number,
      number,
    ]
    const res = new RateLimiterRes(
      Math.max(0, this.points - consumed),
      Math.max(0, ttl),
      consumed,
      added === 1 && consumed === points,
    )
    if (added !== 1) throw res
    return res
  }

  get(key: string): Promise<RateLimiterRes | null> {
    return this.#fallback(this.inner.get(key), (l) => l.get(key))
  }

  reward(key: string, points?: number): Promise<RateLimiterRes> {
    return this.#fallback(this.inner.reward(key, points), (l) => l.reward(key, points))
  }

  delete(key: string): Promise<boolean> {
    return this.#fallback(this.inner.delete(key), (l) => l.delete(key))
  }

  /** The store's answer, or the insurance limiter's while the store fails. */
  #fallback<T>(pending: Promise<T>, local: (l: RateLimiterLike) => Promise<T>): Promise<T> {
    const insurance = this.insurance
    if (insurance === undefined) return pending
    return pending.catch((e: unknown) => {
      if (e instanceof RateLimiterRes) throw e
      return local(insurance)
    })
  }
}

/**
 * Redis `TIME` as a clock: an offset to the local monotonic clock, measured at the round trip's
 * midpoint, refreshed in the background every `clockRefreshMs`. Only the first read waits.
 */
function redisClock(config: ResolvedRedisBackendOptions): () => number | Promise<number> {
  const local = config.monotonicNow
  let offset: number | undefined
  let measuredAt = 0
  let reading: Promise<number> | undefined
  const read = (): Promise<number> => {
    reading ??= (async () => {
      try {
        const before = local()
        const [seconds, micros] = await config.client.time()
        const after = local()
        offset = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000) - (before + after) / 2
        measuredAt = after
        return offset
      } finally {
        reading = undefined
      }
    })()
    return reading
  }
  return () => {
    const t = local()
    if (offset === undefined) return read().then((o) => Math.round(local() + o))
    if (t - measuredAt >= config.clockRefreshMs && reading === undefined) {
      read().catch((e: unknown) => {
        config.logger.warn(
          { error: String(e) },
          'redis: TIME failed; the quota clock keeps its last offset',
        )
      })
    }
    return Math.round(t + offset)
  }
}

/**
 * Core names its limiters `ptcl:rl:...` and `ptcl:q:...`; `prefix` takes the place of that `ptcl`, so
 * default keys read `ptcl:rl:...` (not `ptcl:ptcl:rl:...`) and `prefix: 'api'` gives `api:rl:...`.
 */
function prefixed(prefix: string, keyPrefix: string): string {
  return keyPrefix.startsWith('ptcl:') ? prefix + keyPrefix.slice(4) : `${prefix}:${keyPrefix}`
}

/** Counts in the insurance limiter after the store failed with `error`; marks its answer. */
async function insuredConsume(
  insurance: RateLimiterLike,
  key: string,
  points: number,
  options: { customDuration?: number },
  error: unknown,
): Promise<RateLimiterRes> {
  let res: RateLimiterRes
  try {
    res = await insurance.consume(key, points, options)
  } catch (r) {
    if (r instanceof RateLimiterRes) throw markInsured(r, error)
    throw r
  }
  return markInsured(res, error)
}

/** A Redis limiter whose failures fall back to a per-process insurance limiter. */
class InsuredLimiter implements RateLimiterLike {
  constructor(
    private readonly store: RateLimiterLike,
    private readonly insurance: RateLimiterLike,
  ) {}

  async consume(
    key: string,
    points = 1,
    options: { customDuration?: number } = {},
  ): Promise<RateLimiterRes> {
    try {
      return await this.store.consume(key, points, options)
    } catch (e) {
      if (e instanceof RateLimiterRes) throw e
      return insuredConsume(this.insurance, key, points, options, e)
    }
  }

  async get(key: string): Promise<RateLimiterRes | null> {
    try {
      return await this.store.get(key)
    } catch {
      return this.insurance.get(key)
    }
  }

  async reward(key: string, points?: number): Promise<RateLimiterRes> {
    try {
      return await this.store.reward(key, points)
    } catch {
      return this.insurance.reward(key, points)
    }
  }

  async delete(key: string): Promise<boolean> {
    try {
      return await this.store.delete(key)
    } catch {
      return this.insurance.delete(key)
    }
  }
}

export * from './broker.js'
export * from './cache.js'
export * from './audit-stream-sink.js'
export * from './jwt-revocation.js'
export * from './auth-failure-throttle.js'
