/**
 * The in-memory {@link CacheClient}: a bounded LRU with per-entry TTL on lru-cache. It answers
 * synchronously, so the hot path awaits nothing.
 *
 * Reachable from `@portcullis/core`.
 * @packageDocumentation
 */
import { LRUCache } from 'lru-cache'
import { DEFAULT_CACHE_MAX, DEFAULT_CACHE_TTL_MS } from '../defaults.js'
import type { Clock } from '../internal/clock.js'
import { TypeValidator } from '../validation/type-validator.js'
import type { CacheClient, CacheSetOptions } from './cache.js'

/** Options of {@link createLruCache}. */
export interface LruCacheOptions {
  /** Entries kept; beyond it the least recently used is evicted. @default 10000 */
  readonly max?: number
  /** Time to live of an entry set without its own `ttlMs`. @default 60000 */
  readonly ttlMs?: number
  /** Clock the TTLs are measured on (tests inject a fake one). @default performance.now */
  readonly now?: Clock
}

/** A {@link CacheClient} whose every method answers synchronously. */
export interface LruCacheClient<TValue = unknown> extends CacheClient<TValue> {
  /** The value, or `undefined` when absent or expired. */
  get(key: string): TValue | undefined
  /** Stores `value` (`undefined` deletes), for `ttlMs` or the cache's default TTL. */
  set(key: string, value: TValue, options?: CacheSetOptions): void
  /** Removes `key`. */
  delete(key: string): void
  /** Removes everything. */
  clear(): void
  /** Entries held (expired ones may count until they are next touched or evicted). */
  readonly size: number
}

const OPTION_NAMES = ['max', 'ttlMs', 'now']
/** lru-cache refuses `null` values; JSON has them, so they are stored as this marker. */
const NULL: unique symbol = Symbol('null')
/** Any value but `null` and `undefined`: what lru-cache stores. */
type Stored = NonNullable<unknown>

/**
 * Creates a bounded in-memory LRU cache with TTLs.
 * @throws {ConfigError} for a bad option
 * @example
 * ```ts
 * const cache = createLruCache<string>({ max: 1000, ttlMs: 30 * SECOND })
 * cache.set('a', 'b')
 * cache.get('a') // 'b', synchronously
 * ```
 */
export function createLruCache<TValue = unknown>(
  options: Readonly<LruCacheOptions> = {},
): LruCacheClient<TValue> {
  const v = new TypeValidator('cache')
  if (v.object('options', options) === undefined) v.assert()
  v.knownKeys(options as Record<string, unknown>, OPTION_NAMES)
  const max = v.integerOr('max', options.max, DEFAULT_CACHE_MAX, { min: 1 })
  const ttlMs = v.integerOr('ttlMs', options.ttlMs, DEFAULT_CACHE_TTL_MS, { min: 1 })
  const now = options.now === undefined ? undefined : v.function<Clock>('now', options.now)
  v.assert()
  const lru = new LRUCache<string, Stored>({
    max: max as number,
    ttl: ttlMs as number,
    // With an injected clock, read it on every check: lru-cache otherwise reuses one reading
    // for `ttlResolution` ms of real time, which a fake clock would advance past.
    ...(now === undefined ? {} : { perf: { now }, ttlResolution: 0 }),
  })
  return {
    get(key: string): TValue | undefined {
      const value = lru.get(key)
      return (value === NULL ? null : value) as TValue | undefined
    },
    set(key: string, value: TValue, setOptions?: CacheSetOptions): void {
      if (value === undefined) {
        lru.delete(key)
        return
      }
      const stored = value === null ? NULL : (value as Stored)
      if (setOptions?.ttlMs === undefined) lru.set(key, stored)
      else lru.set(key, stored, { ttl: Math.max(1, Math.floor(setOptions.ttlMs)) })
    },
    delete(key: string): void {
      lru.delete(key)
    },
    clear(): void {
      lru.clear()
    },
    get size(): number {
      return lru.size
    },
  }
}
