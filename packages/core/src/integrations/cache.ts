/**
 * The cache client interface: what the key store cache, the token cache and other lookups use to
 * remember answers. Implementations: an in-memory LRU (core), Redis (`@portcullis/redis`) and a
 * two-tier cache (LRU in front of Redis, invalidated through the {@link MessageBroker}).
 *
 * Reachable from `@portcullis/core`.
 * @packageDocumentation
 */

/** A value or a promise of one: in-memory caches answer synchronously so the hot path awaits nothing. */
export type MaybePromise<T> = T | Promise<T>

/** Options of {@link CacheClient.set}. */
export interface CacheSetOptions {
  /** Time to live in milliseconds; the cache's default when absent. */
  readonly ttlMs?: number
  /**
   * The value was just read from the source of truth (a read-through fill), not changed: a tiered
   * cache stores it in both tiers but tells no other instance to drop its copy, which is no older.
   * Without it, N instances filling the same entry would send N messages that evict N - 1 copies
   * each. @default false
   */
  readonly fill?: boolean
}

/** A cached value and its remaining time to live, from {@link CacheClient.getWithTtl}. */
export interface CacheEntryWithTtl<TValue> {
  readonly value: TValue
  /** Milliseconds left; `undefined` when the entry does not expire. */
  readonly ttlMs: number | undefined
}

/**
 * Get/set/delete with TTL. Values are JSON-serialisable (a remote tier stores them as JSON).
 * A remote cache that fails rejects; callers treat a failed read as a miss.
 */
export interface CacheClient<TValue = unknown> {
  /** The value, or `undefined` when absent or expired. */
  get(key: string): MaybePromise<TValue | undefined>
  /** Stores `value` under `key`. */
  set(key: string, value: TValue, options?: CacheSetOptions): MaybePromise<void>
  /** Removes `key` (here and, for a tiered cache, on every instance). */
  delete(key: string): MaybePromise<void>
  /**
   * The value with its remaining time to live (`undefined`: no expiry), or `undefined` when
   * absent. Remote tiers offer it so a tiered cache never keeps a local copy past the entry's TTL.
   */
  getWithTtl?(key: string): MaybePromise<CacheEntryWithTtl<TValue> | undefined>
  /** Removes everything. */
  clear?(): MaybePromise<void>
  /** Releases connections and subscriptions the cache owns. */
  close?(): Promise<void>
}
