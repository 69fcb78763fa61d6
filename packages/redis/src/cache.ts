/**
 * The {@link CacheClient} on Redis: JSON values under namespaced keys, each with a `PX` TTL. The
 * shared tier of `createTieredCache`, or a cache on its own.
 *
 * Reachable from `@portcullis/redis`.
 * @packageDocumentation
 */
import {
  CACHE_NAMESPACE_PATTERN,
  DEFAULT_CACHE_TTL_MS,
  noopMetrics,
  silentLogger,
  TypeValidator,
  type CacheClient,
  type CacheEntryWithTtl,
  type CacheSetOptions,
  type Logger,
  type MetricsClient,
} from '@portcullis/core'
import type { Redis } from 'ioredis'
import { isIoredisClient } from './internal/ioredis.js'

/** Options of {@link createRedisCache}. */
export interface RedisCacheOptions {
  /** Your ioredis client (close it yourself); build it as for the rate-limit backend (fail fast). */
  readonly client: Redis
  /** Separates caches sharing one Redis: keys read `<prefix>:<namespace>:<key>`. */
  readonly namespace: string
  /** First segment of every key. @default 'ptcl:cache' */
  readonly prefix?: string
  /** Time to live of an entry set without its own `ttlMs`. @default 60000 */
  readonly ttlMs?: number
  /** Largest value stored, in bytes of JSON; larger ones are not cached (a warning). @default 1048576 */
  readonly maxValueBytes?: number
  /** Counts values that could not be read back (`storeFailures`, store `cache`). */
  readonly metrics?: MetricsClient
  /** Warns about unreadable or oversized values and unknown options. @default silent */
  readonly logger?: Logger
}

/** A Redis cache; `clear()` removes this namespace's keys only. */
export interface RedisCache<TValue = unknown> extends CacheClient<TValue> {
  /** The value (`GET`), or `undefined`. */
  get(key: string): Promise<TValue | undefined>
  /** Stores `value` as JSON with `PX` (`undefined` deletes). */
  set(key: string, value: TValue, options?: CacheSetOptions): Promise<void>
  /** Removes `key` (`DEL`). */
  delete(key: string): Promise<void>
  /** The value and its remaining TTL (`GET` and `PTTL` in one `MULTI`). */
  getWithTtl(key: string): Promise<CacheEntryWithTtl<TValue> | undefined>
  /** Removes this namespace's keys (`SCAN` + `UNLINK`). */
  clear(): Promise<void>
}

const OPTION_NAMES = [
  'client',
  'namespace',
  'prefix',
  'ttlMs',
  'maxValueBytes',
  'metrics',
  'logger',
]
const CACHE_FAILURE = Object.freeze({ store: 'cache' })

/**
 * Creates a cache on Redis. A Redis failure rejects (callers read a failed `get` as a miss); a
 * value that is not JSON (written by someone else) reads as a miss and is deleted.
 * @throws {ConfigError} for a bad option
 * @example
 * ```ts
 * const cache = createRedisCache<Profile>({ client, namespace: 'profiles', ttlMs: 5 * MINUTE })
 * await cache.set('u1', { name: 'Ada' })
 * await cache.get('u1') // { name: 'Ada' }
 * ```
 */
export function createRedisCache<TValue = unknown>(
  options: Readonly<RedisCacheOptions>,
): RedisCache<TValue> {
  const v = new TypeValidator('redisCache')
  if (v.object('options', options) === undefined) v.assert()
  v.knownKeys(options as unknown as Record<string, unknown>, OPTION_NAMES)
  if (!isIoredisClient(options.client))
    v.fail('client', 'must be an ioredis client (new Redis(...) from ioredis 5 or 6)')
  const namespace = v.string('namespace', options.namespace, { pattern: CACHE_NAMESPACE_PATTERN })
  const prefix =
    options.prefix === undefined
      ? 'ptcl:cache'
      : v.string('prefix', options.prefix, { pattern: /^[A-Za-z0-9_:.{}-]{1,64}$/ })
  const ttlMs = v.integerOr('ttlMs', options.ttlMs, DEFAULT_CACHE_TTL_MS, { min: 1 })
  const maxValueBytes = v.integerOr('maxValueBytes', options.maxValueBytes, 1_048_576, { min: 1 })
  const logger = options.logger ?? silentLogger
  v.assert((m) => logger.warn({}, m))
  const client = options.client
  const metrics = options.metrics ?? noopMetrics
  const base = `${prefix as string}:${namespace as string}:`
  const defaultTtl = ttlMs as number
  const limit = maxValueBytes as number
  const parse = async (key: string, raw: string | null): Promise<TValue | undefined> => {
    if (raw === null) return undefined
    try {
      return JSON.parse(raw) as TValue
    } catch {
      metrics.increment('storeFailures', CACHE_FAILURE)
      logger.warn({ namespace, key }, 'redis cache: dropped a value that is not JSON')
      await client.del(base + key).catch(() => {})
      return undefined
    }
  }
  return {
    async get(key: string): Promise<TValue | undefined> {
      return parse(key, await client.get(base + key))
    },
    async getWithTtl(key: string): Promise<CacheEntryWithTtl<TValue> | undefined> {
      const replies = await client
        .multi()
        .get(base + key)
        .pttl(base + key)
        .exec()
      const [[getError, raw] = [], [ttlError, ttl] = []] = replies ?? []
      if (getError) throw getError
      if (ttlError) throw ttlError
      const value = await parse(key, raw as string | null)
      if (value === undefined) return undefined
      // PTTL -1: no expiry (someone else's key); -2 cannot follow a GET hit inside MULTI.
      return { value, ttlMs: typeof ttl === 'number' && ttl >= 0 ? Math.max(1, ttl) : undefined }
    },
    async set(key: string, value: TValue, setOptions?: CacheSetOptions): Promise<void> {
      if (value === undefined) {
        await client.del(base + key)
        return
      }
      const json = JSON.stringify(value)
      if (json.length * 3 > limit && Buffer.byteLength(json) > limit) {
        logger.warn({ namespace, key }, 'redis cache: value too large; not cached')
        await client.del(base + key)
        return
      }
      const ttl = Math.max(1, Math.floor(setOptions?.ttlMs ?? defaultTtl))
      await client.set(base + key, json, 'PX', ttl)
    },
    async delete(key: string): Promise<void> {
      await client.del(base + key)
    },
    async clear(): Promise<void> {
      // SCAN, not KEYS: it does not block Redis. The namespace pattern holds no glob characters.
      let cursor = '0'
      do {
        const [next, keys] = await client.scan(cursor, 'MATCH', `${base}*`, 'COUNT', 500)
        cursor = next
        if (keys.length > 0) await client.unlink(...keys)
      } while (cursor !== '0')
    },
  }
}
