/**
 * The failed-authentication throttle on Redis: counters shared by every instance, one atomic Lua
 * call per failure with Redis `TIME` as the clock, and a mirror of the locks in process memory so
 * that `check` costs no round trip for clients this instance has not seen fail.
 *
 * Reachable from `@portcullis/redis`.
 * @packageDocumentation
 */
import {
  AuthFailureTable,
  authFailureKeys,
  countsOnAddress,
  noopMetrics,
  resolveAuthFailureThrottleOptions,
  startedAuthFailureLockout,
  TypeValidator,
  type AuthFailureCount,
  type AuthFailureLockout,
  type AuthFailureSubject,
  type AuthFailureThrottle,
  type AuthFailureThrottleOptions,
  type MetricsClient,
} from '@portcullis/core'
import type { Redis } from 'ioredis'
import { errorMessage, isIoredisClient } from './internal/ioredis.js'

/** Options of {@link createRedisAuthFailureThrottle}: the memory throttle's, plus these. */
export interface RedisAuthFailureThrottleOptions extends AuthFailureThrottleOptions {
  /**
   * An ioredis client you built and own (build it as for `createRedisBackend`:
   * `enableOfflineQueue: false`, `maxRetriesPerRequest: 1`, a `commandTimeout`).
   */
  readonly client: Redis
  /** First segment of every key: `<prefix>:af:<counter>`. @default 'ptcl' */
  readonly prefix?: string
  /**
   * Deadline of each Redis call, in ms. Past it (or when Redis fails) the call is given up:
   * `check` answers from process memory alone and `failed` counts the failure in process memory;
   * the late reply is ignored. @default 200
   */
  readonly timeoutMs?: number
  /**
   * For a client this instance has seen fail within the window and that is not locked here, how
   * often `check` asks Redis whether another instance locked it, in ms. Clients with no failure
   * seen here never cost a round trip. @default 1000
   */
  readonly refreshMs?: number
  /** Counts Redis failures (`storeFailures`, store `auththrottle`). @default none */
  readonly metrics?: MetricsClient
}

/** Default of {@link RedisAuthFailureThrottleOptions.timeoutMs}. */
export const DEFAULT_AUTH_FAILURE_REDIS_TIMEOUT_MS = 200
/** Default of {@link RedisAuthFailureThrottleOptions.refreshMs}. */
export const DEFAULT_AUTH_FAILURE_REDIS_REFRESH_MS = 1000
const EXTRA_OPTIONS = ['client', 'prefix', 'timeoutMs', 'refreshMs', 'metrics']
/** The `store` label of this throttle's metrics. */
const STORE = 'auththrottle'

/**
 * One failure on KEYS[1] (a hash: f failures, l locks so far, u lock end in Redis ms). ARGV:
 * threshold, windowMs, baseLockMs, maxLockMs. The same rule as core's memory table: from the
 * threshold on, every failure locks for base·2^locks (capped), and the hash expires windowMs after
 * the later of now and the lock's end. Returns {before, failures, lockedForMs, locked}.
 */
const RECORD_FAILURE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local v = redis.call('HMGET', KEYS[1], 'f', 'l', 'u')
local f = tonumber(v[1]) or 0
local l = tonumber(v[2]) or 0
local u = tonumber(v[3]) or 0
local before = f
f = f + 1
local locked = 0
if f >= tonumber(ARGV[1]) then
  local d = math.min(tonumber(ARGV[3]) * (2 ^ math.min(l, 40)), tonumber(ARGV[4]))
  if now + d > u then u = now + d end
  l = l + 1
  locked = 1
end
redis.call('HSET', KEYS[1], 'f', f, 'l', l, 'u', string.format('%d', u))
redis.call('PEXPIRE', KEYS[1], math.max(u, now) - now + tonumber(ARGV[2]))
local left = 0
if u > now then left = u - now end
return {before, f, left, locked}
`

/** The state of KEYS[1]: {failures, lockedForMs}. */
const READ_LOCK = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local v = redis.call('HMGET', KEYS[1], 'f', 'u')
local u = tonumber(v[2]) or 0
local left = 0
if u > now then left = u - now end
return {tonumber(v[1]) or 0, left}
`

type RecordFailure = (key: string, ...args: number[]) => Promise<unknown>
type ReadLock = (key: string) => Promise<unknown>

class DeadlineError extends Error {
  constructor(ms: number) {
    super(`Redis did not answer within ${ms} ms`)
    this.name = 'DeadlineError'
  }
}

/**
 * Creates the throttle on Redis.
 *
 * - `check` answers from the in-memory mirror: a lock this instance counted or learned. Only for a
 *   key that this instance saw fail within its window, and at most every `refreshMs`, it asks
 *   Redis whether another instance locked it (then it returns a promise).
 * - `failed` counts in Redis (one Lua call per counter, atomic across instances, Redis `TIME` as
 *   the clock) and mirrors the answer.
 * - `succeeded` deletes the credential counter in Redis only if this instance saw it fail.
 *
 * Every Redis call has a deadline (`timeoutMs`). On a timeout or an error the throttle fails
 * open: nothing is refused because Redis failed; `failed` counts the failure in process memory
 * instead (per instance, until Redis answers again), and each failure is counted in `metrics` and
 * the outage logged once at its start and once at its end.
 * @throws {ConfigError} for a bad option
 * @example
 * ```ts
 * const throttle = createRedisAuthFailureThrottle({ client, credentialThreshold: 5 })
 * ```
 */
export function createRedisAuthFailureThrottle(
  options: Readonly<RedisAuthFailureThrottleOptions>,
): AuthFailureThrottle {
  const config = resolveAuthFailureThrottleOptions(options, EXTRA_OPTIONS)
  const v = new TypeValidator('authFailureThrottle')
  const client = isIoredisClient(options.client)
    ? options.client
    : v.fail('client', 'must be an ioredis client (new Redis(...) from ioredis 5 or 6)')
  const prefix =
    options.prefix === undefined
      ? 'ptcl'
      : v.string('prefix', options.prefix, { pattern: /^[A-Za-z0-9_:.-]{1,32}$/ })
  const timeoutMs =
    v.integerOr('timeoutMs', options.timeoutMs, DEFAULT_AUTH_FAILURE_REDIS_TIMEOUT_MS, {
      min: 1,
      max: 60_000,
    }) ?? DEFAULT_AUTH_FAILURE_REDIS_TIMEOUT_MS
  const refreshMs =
    v.integerOr('refreshMs', options.refreshMs, DEFAULT_AUTH_FAILURE_REDIS_REFRESH_MS, {
      min: 0,
      max: 3_600_000,
    }) ?? DEFAULT_AUTH_FAILURE_REDIS_REFRESH_MS
  const metrics = options.metrics ?? noopMetrics
  v.assert()
  const redis = client as Redis
  const c = redis as Redis & { ptclAuthFailure?: RecordFailure; ptclAuthFailureRead?: ReadLock }
  if (typeof c.ptclAuthFailure !== 'function')
    redis.defineCommand('ptclAuthFailure', { numberOfKeys: 1, lua: RECORD_FAILURE })
  if (typeof c.ptclAuthFailureRead !== 'function')
    redis.defineCommand('ptclAuthFailureRead', { numberOfKeys: 1, lua: READ_LOCK })
  const recordFailure = (c.ptclAuthFailure as RecordFailure).bind(redis)
  const readLock = (c.ptclAuthFailureRead as ReadLock).bind(redis)
  const table = new AuthFailureTable(config)
  const redisKey = (key: string): string => `${prefix as string}:af:${key}`
  const lockMs = (ms: number): number => ms * 1000
  let outage = false

  /** `call()` within the deadline; a late settlement is ignored. */
  const within = <T>(call: () => Promise<T>): Promise<T> => {
    if (redis.status !== 'ready')
      return Promise.reject(new Error(`Redis connection is ${redis.status}`))
    let timer: NodeJS.Timeout | undefined
    const pending = call()
    pending.catch(() => {})
    return Promise.race([
      pending,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new DeadlineError(timeoutMs)), timeoutMs)
        timer.unref()
      }),
    ]).finally(() => clearTimeout(timer))
  }

  const failedCall = (error: unknown, what: string): void => {
    metrics.increment('storeFailures', { store: STORE })
    metrics.increment('failureModeActivations', { store: STORE, mode: 'insurance' })
    if (!outage) {
      outage = true
      config.logger.warn(
        { store: STORE, error: errorMessage(error), timeoutMs },
        `auth failure throttle: Redis failed (${what}); counting failures in process memory, ` +
          'refusing nothing because of it',
      )
    }
  }
  const answered = (): void => {
    if (outage) {
      outage = false
      config.logger.warn({ store: STORE }, 'auth failure throttle: Redis answers again')
    }
  }

  const count = async (key: string, threshold: number): Promise<AuthFailureCount> => {
    try {
      const reply = await within(() =>
        recordFailure(
          redisKey(key),
          threshold,
          config.windowMs,
          lockMs(config.baseLockSeconds),
          lockMs(config.maxLockSeconds),
        ),
      )
      answered()
      const [before, failures, lockedForMs, locked] = (reply as unknown[]).map(Number) as [
        number,
        number,
        number,
        number,
      ]
      table.mirror(key, failures, lockedForMs)
      return { before, failures, lockedForMs, locked: locked === 1 }
    } catch (e) {
      failedCall(e, 'recording a failure')
      return table.count(key, threshold)
    }
  }

  const refresh = async (keys: readonly string[]): Promise<void> => {
    await Promise.all(
      keys.map(async (key) => {
        try {
          const reply = await within(() => readLock(redisKey(key)))
          answered()
          const [failures, lockedForMs] = (reply as unknown[]).map(Number) as [number, number]
          table.mirror(key, failures, lockedForMs)
        } catch (e) {
          failedCall(e, 'reading a lock')
        }
      }),
    )
  }

  return Object.freeze({
    name: 'redis',
    check(
      subject: AuthFailureSubject,
    ): AuthFailureLockout | undefined | Promise<AuthFailureLockout | undefined> {
      const local = table.check(subject)
      // Nothing seen failing here: no round trip (the common case for every good client).
      if (local !== undefined || table.size === 0) return local
      const keys = authFailureKeys(subject, config)
      const stale: string[] = []
      if (keys.ip !== undefined && table.claimSync(keys.ip, refreshMs)) stale.push(keys.ip)
      if (keys.credential !== undefined && table.claimSync(keys.credential, refreshMs))
        stale.push(keys.credential)
      if (stale.length === 0) return undefined
      return refresh(stale).then(() => table.check(subject))
    },
    async failed(subject: AuthFailureSubject): Promise<AuthFailureLockout | undefined> {
      const keys = authFailureKeys(subject, config)
      const credential =
        keys.credential === undefined
          ? undefined
          : await count(keys.credential, config.credentialThreshold as number)
      const ip =
        keys.ip !== undefined && countsOnAddress(credential, config)
          ? await count(keys.ip, config.addressThreshold as number)
          : undefined
      return startedAuthFailureLockout(ip, credential)
    },
    succeeded(subject: AuthFailureSubject): void {
      if (table.size === 0 || subject.credentialId === undefined) return
      const key = authFailureKeys(subject, config).credential
      if (key === undefined || !table.has(key)) return
      table.delete(key)
      within(() => redis.del(redisKey(key))).then(answered, (e: unknown) =>
        failedCall(e, 'resetting a counter'),
      )
    },
  })
}
