/**
 * A read-through cache in front of any {@link KeyStore}: a verified key costs no store round trip,
 * unknown key ids are remembered (bounded) so key-guessing floods never reach the database, and
 * broker messages about changed keys drop the cached copies on every instance.
 *
 * Reachable from `@portcullis/core`.
 * @packageDocumentation
 */
import { LRUCache } from 'lru-cache'
import {
  DEFAULT_API_KEY_CACHE_MAX,
  DEFAULT_API_KEY_CACHE_TTL_MS,
  DEFAULT_API_KEY_NEGATIVE_CACHE_MAX,
  DEFAULT_API_KEY_NEGATIVE_CACHE_TTL_MS,
} from '../defaults.js'
import { monotonicMicros, type Clock } from '../internal/clock.js'
import { optionNames } from '../internal/option-names.js'
import type { CacheClient } from '../integrations/cache.js'
import { createLruCache } from '../integrations/lru-cache.js'
import type { MessageBroker } from '../integrations/message-broker.js'
import { noopMetrics, type MetricsClient } from '../integrations/metrics.js'
import { silentLogger, type Logger } from '../logger.js'
import { TypeValidator } from '../validation/type-validator.js'
import type { ApiKeyHash, ApiKeyId } from './format.js'
import type {
  ApiKeyListQuery,
  ApiKeyPage,
  ApiKeyPatch,
  ApiKeyRecord,
  ApiKeyUsage,
  KeyStore,
} from './key-store.js'
import { keyCacheLabels, NegativeKeyCache, onKeyChanged } from './verified-key-cache.js'

/** Options of {@link createCachedKeyStore}. */
export interface CachedKeyStoreOptions {
  /** The store being cached (SQLite, PostgreSQL, ...). */
  readonly store: KeyStore
  /**
   * Where records are cached, by key id: an LRU by default; a `createTieredCache()` (LRU in front
   * of Redis) shares the cache between instances. @default createLruCache({ max: 10000, ttlMs })
   */
  readonly cache?: CacheClient<ApiKeyRecord>
  /** `key.*` messages arriving here drop cached copies (and cached misses) on this instance. */
  readonly broker?: MessageBroker
  /** How long a record is served from the cache; during a store outage, how long it keeps working. @default 60000 */
  readonly ttlMs?: number
  /** How long an unknown key id (or hash) is answered from memory. @default 10000 */
  readonly negativeTtlMs?: number
  /** Unknown key ids (and, separately, hashes) remembered; 0 turns negative caching off. @default 10000 */
  readonly maxNegative?: number
  /** Counts `keyCacheLookups` (cache `keystore`) and `storeFailures` (store `keystore`, `cache`). */
  readonly metrics?: MetricsClient
  /** Warns about cache failures and unknown options. @default silent */
  readonly logger?: Logger
  /** Clock of the in-memory caches. @default performance.now */
  readonly now?: Clock
}

/** A {@link KeyStore} with a cache in front. */
export interface CachedKeyStore extends KeyStore {
  /** Drops the cached record and any cached miss of `id` (both tiers of a tiered cache). */
  invalidate(id: ApiKeyId): Promise<void>
  /** Stops listening to the broker and closes the wrapped store. */
  close(): Promise<void>
}

const OPTION_NAMES = optionNames<CachedKeyStoreOptions>()([
  'store',
  'cache',
  'broker',
  'ttlMs',
  'negativeTtlMs',
  'maxNegative',
  'metrics',
  'logger',
  'now',
])
const LOOKUP = keyCacheLabels('keystore')
const KEYSTORE_FAILURE = Object.freeze({ store: 'keystore' })
const CACHE_FAILURE = Object.freeze({ store: 'cache' })

/**
 * Wraps `store` in a read-through cache. Reads of `get` and `findByHash` are served from the
 * cache; writes go to the store, then drop the cached copy. While the store fails, cached keys
 * keep working until their TTL ends and every other lookup rejects, which the gate answers with
 * 503 `ERR_KEYSTORE_UNAVAILABLE` (fail closed). A failing cache reads as a miss.
 * @throws {ConfigError} for a bad option
 * @example
 * ```ts
 * const store = createCachedKeyStore({ store: createSqliteKeyStore({ path }), broker })
 * const gate = createGate({ apiKeys: { store, pepper, broker } })
 * ```
 */
export function createCachedKeyStore(options: Readonly<CachedKeyStoreOptions>): CachedKeyStore {
  const v = new TypeValidator('cachedKeyStore')
  if (v.object('options', options) === undefined) v.assert()
  v.knownKeys(options as unknown as Record<string, unknown>, OPTION_NAMES)
  const store = options.store
  if (typeof store?.get !== 'function' || typeof store.update !== 'function')
    v.fail('store', 'must implement KeyStore (get, insert, update, delete, list)')
  const cache = options.cache
  if (
    cache !== undefined &&
    (typeof cache?.get !== 'function' ||
      typeof cache.set !== 'function' ||
      typeof cache.delete !== 'function')
  )
    v.fail('cache', 'must be a CacheClient (get, set, delete)')
  const broker = options.broker
  if (broker !== undefined && typeof broker?.subscribe !== 'function')
    v.fail('broker', 'must be a MessageBroker (publish, subscribe)')
  const ttlMs = v.integerOr('ttlMs', options.ttlMs, DEFAULT_API_KEY_CACHE_TTL_MS, { min: 1 })
  const negativeTtlMs = v.integerOr(
    'negativeTtlMs',
    options.negativeTtlMs,
    DEFAULT_API_KEY_NEGATIVE_CACHE_TTL_MS,
    { min: 1 },
  )
  const maxNegative = v.integerOr(
    'maxNegative',
    options.maxNegative,
    DEFAULT_API_KEY_NEGATIVE_CACHE_MAX,
    { min: 0 },
  )
  const now = options.now === undefined ? undefined : v.function<Clock>('now', options.now)
  const logger = options.logger ?? silentLogger
  v.assert((m) => logger.warn({}, m))
  const negative = (): NegativeKeyCache | undefined =>
    (maxNegative as number) > 0
      ? new NegativeKeyCache(maxNegative as number, negativeTtlMs as number)
      : undefined
  return new CachedStore({
    store,
    cache:
      cache ??
      createLruCache<ApiKeyRecord>({
        max: DEFAULT_API_KEY_CACHE_MAX,
        ttlMs: ttlMs as number,
        ...(now === undefined ? {} : { now }),
      }),
    setOptions: Object.freeze({ ttlMs: ttlMs as number, fill: true }),
    negativeIds: negative(),
    negativeHashes: negative(),
    // Hash -> key id: a hash belongs to one key for good, so this index is only ever a hint.
    hashIndex: new LRUCache<string, ApiKeyId>({ max: DEFAULT_API_KEY_CACHE_MAX }),
    broker,
    metrics: options.metrics ?? noopMetrics,
    logger,
    now: now ?? monotonicMs,
  })
}

interface CachedStoreConfig {
  readonly store: KeyStore
  readonly cache: CacheClient<ApiKeyRecord>
  /** Every write is a fill of what the store answered: other instances need not hear of it. */
  readonly setOptions: { readonly ttlMs: number; readonly fill: true }
  readonly negativeIds: NegativeKeyCache | undefined
  readonly negativeHashes: NegativeKeyCache | undefined
  readonly hashIndex: LRUCache<string, ApiKeyId>
  readonly broker: MessageBroker | undefined
  readonly metrics: MetricsClient
  readonly logger: Logger
  /** The clock of the remembered misses. */
  readonly now: Clock
}

const monotonicMs: Clock = () => monotonicMicros() / 1000

/** A cached value is used only if it is a record of the id asked for: a shared tier may hold anything. */
function isRecordOf(value: unknown, id: string): value is ApiKeyRecord {
  const r = value as Partial<ApiKeyRecord> | null
  return (
    typeof r === 'object' &&
    r !== null &&
    r.id === id &&
    Array.isArray(r.hashes) &&
    typeof r.status === 'string' &&
    Array.isArray(r.scopes) &&
    Array.isArray(r.roles)
  )
}

class CachedStore implements CachedKeyStore {
  readonly #c: CachedStoreConfig
  /** Bumped by every invalidation: a store read that straddles one must not fill the cache. */
  #epoch = 0
  readonly #unsubscribe: Array<() => void> = []
  readonly findByHash?: (hash: ApiKeyHash) => Promise<ApiKeyRecord | undefined>
  readonly recordUsage?: (usage: readonly ApiKeyUsage[]) => Promise<void>

  constructor(config: CachedStoreConfig) {
    this.#c = config
    const { store, broker } = config
    if (typeof store.findByHash === 'function') this.findByHash = (h) => this.#findByHash(h)
    if (typeof store.recordUsage === 'function') {
      // Usage counts in cached records may trail by one TTL; dropping entries here would undo the cache.
      this.recordUsage = (usage) =>
        (store.recordUsage as NonNullable<KeyStore['recordUsage']>)(usage)
    }
    if (broker !== undefined) {
      const drop = (m: { readonly keyId: string }): void => {
        this.#c.negativeHashes?.clear()
        this.#drop(m.keyId as ApiKeyId).catch(() => {})
      }
      this.#unsubscribe.push(...onKeyChanged(broker, drop))
      this.#unsubscribe.push(
        broker.subscribe('key.created', (m) => {
          this.#epoch++
          this.#c.negativeIds?.delete(m.keyId)
          this.#c.negativeHashes?.clear()
        }),
      )
    }
  }

  async get(id: ApiKeyId): Promise<ApiKeyRecord | undefined> {
    const c = this.#c
    if (c.negativeIds?.has(id, c.now()) === true) {
      c.metrics.increment('keyCacheLookups', LOOKUP.negativeHit)
      return undefined
    }
    const cached = await this.#cached(id)
    if (cached !== undefined) {
      c.metrics.increment('keyCacheLookups', LOOKUP.hit)
      return cached
    }
    c.metrics.increment('keyCacheLookups', LOOKUP.miss)
    const epoch = this.#epoch
    const record = await this.#read(() => c.store.get(id))
    if (epoch === this.#epoch) {
      if (record === undefined) c.negativeIds?.add(id, c.now())
      else await this.#fill(record)
    }
    return record
  }

  async #findByHash(hash: ApiKeyHash): Promise<ApiKeyRecord | undefined> {
    const c = this.#c
    if (c.negativeHashes?.has(hash, c.now()) === true) {
      c.metrics.increment('keyCacheLookups', LOOKUP.negativeHit)
      return undefined
    }
    const id = c.hashIndex.get(hash)
    if (id !== undefined) {
      const cached = await this.#cached(id)
      if (cached?.hashes.some((h) => h.hash === hash) === true) {
        c.metrics.increment('keyCacheLookups', LOOKUP.hit)
        return cached
      }
    }
    c.metrics.increment('keyCacheLookups', LOOKUP.miss)
    const epoch = this.#epoch
    const record = await this.#read(() =>
      (c.store.findByHash as NonNullable<KeyStore['findByHash']>)(hash),
    )
    if (epoch === this.#epoch) {
      if (record === undefined) c.negativeHashes?.add(hash, c.now())
      else {
        c.hashIndex.set(hash, record.id)
        await this.#fill(record)
      }
    }
    return record
  }

  async insert(record: ApiKeyRecord): Promise<void> {
    this.#epoch++
    await this.#c.store.insert(record)
    this.#c.negativeHashes?.clear()
    await this.#drop(record.id)
  }

  async update(id: ApiKeyId, patch: ApiKeyPatch): Promise<ApiKeyRecord | undefined> {
    this.#epoch++
    const record = await this.#c.store.update(id, patch)
    if (patch.hashes !== undefined) this.#c.negativeHashes?.clear()
    await this.#drop(id)
    return record
  }

  async delete(id: ApiKeyId): Promise<boolean> {
    this.#epoch++
    const existed = await this.#c.store.delete(id)
    await this.#drop(id)
    return existed
  }

  list(query?: ApiKeyListQuery): Promise<ApiKeyPage> {
    return this.#c.store.list(query)
  }

  invalidate(id: ApiKeyId): Promise<void> {
    return this.#drop(id)
  }

  async close(): Promise<void> {
    for (const u of this.#unsubscribe.splice(0)) u()
    await this.#c.store.close?.()
  }

  /** The cached record of `id`; a failing or poisoned cache reads as a miss. */
  async #cached(id: ApiKeyId): Promise<ApiKeyRecord | undefined> {
    let value: unknown
    try {
      value = await this.#c.cache.get(id)
    } catch (error) {
      this.#cacheFailed('read failed; reading the store', id, error)
      return undefined
    }
    if (value === undefined) return undefined
    if (isRecordOf(value, id)) return value
    this.#cacheFailed('held something that is not this key; dropped', id, undefined)
    await this.#drop(id)
    return undefined
  }

  async #read<TValue>(call: () => Promise<TValue>): Promise<TValue> {
    try {
      return await call()
    } catch (error) {
      // The caller (the gate) answers 503 ERR_KEYSTORE_UNAVAILABLE.
      this.#c.metrics.increment('storeFailures', KEYSTORE_FAILURE)
      throw error
    }
  }

  async #fill(record: ApiKeyRecord): Promise<void> {
    try {
      await this.#c.cache.set(record.id, record, this.#c.setOptions)
    } catch (error) {
      this.#cacheFailed('write failed', record.id, error)
    }
  }

  async #drop(id: ApiKeyId): Promise<void> {
    this.#epoch++
    this.#c.negativeIds?.delete(id)
    try {
      await this.#c.cache.delete(id)
    } catch (error) {
      // The store holds the truth; a stale copy in the shared tier lives until its TTL.
      this.#cacheFailed('delete failed; a stale copy may be served until its TTL ends', id, error)
    }
  }

  #cacheFailed(message: string, id: string, error: unknown): void {
    this.#c.metrics.increment('storeFailures', CACHE_FAILURE)
    this.#c.logger.warn(
      {
        keyId: id,
        ...(error === undefined
          ? {}
          : { error: error instanceof Error ? error.message : String(error) }),
      },
      `cached key store: cache ${message}`,
    )
  }
}
