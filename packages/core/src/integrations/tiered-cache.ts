/**
 * The two-tier cache: a local in-memory tier (an LRU) in front of a shared remote tier (Redis),
 * kept coherent through the {@link MessageBroker}: every `set` and `delete` tells the other
 * instances, on the `cache.invalidated` topic, to drop their local copy.
 *
 * Reachable from `@portcullis/core`.
 * @packageDocumentation
 */
import { randomUUID } from 'node:crypto'
import { silentLogger, type Logger } from '../logger.js'
import { TypeValidator } from '../validation/type-validator.js'
import { CACHE_NAMESPACE_PATTERN } from './broker-message-guard.js'
import type { CacheClient, CacheSetOptions, MaybePromise } from './cache.js'
import type { BrokerMessages, MessageBroker } from './message-broker.js'
import { noopMetrics, type MetricsClient } from './metrics.js'

/** Options of {@link createTieredCache}. */
export interface TieredCacheOptions<TValue = unknown> {
  /** The local tier, usually `createLruCache()`; its own TTL bounds how long a local copy lives. */
  readonly local: CacheClient<TValue>
  /** The shared tier, e.g. `createRedisCache()` from `@portcullis/redis`. */
  readonly remote: CacheClient<TValue>
  /** Carries invalidations between instances. */
  readonly broker: MessageBroker
  /** Names this cache on the broker: only messages of the same namespace touch it. */
  readonly namespace: string
  /**
   * Longest a local copy is kept, whatever the entry's own TTL: the bound on staleness when an
   * invalidation message is lost (the broker's transport down). @default the entry's TTL
   */
  readonly localTtlMs?: number
  /** Counts remote-tier and broker failures (`storeFailures`, store `cache` / `broker`). */
  readonly metrics?: MetricsClient
  /** Warns about remote-tier and broker failures. @default silent */
  readonly logger?: Logger
}

/** A tiered cache; `close()` stops listening to the broker (it closes neither tier). */
export interface TieredCache<TValue = unknown> extends CacheClient<TValue> {
  /** This instance's id, carried as `origin` in its invalidation messages. */
  readonly instanceId: string
  /** Writes both tiers and tells the other instances to drop their local copy; rejects if Redis failed. */
  set(key: string, value: TValue, options?: CacheSetOptions): Promise<void>
  /** Deletes from both tiers and on every instance; rejects if the remote tier failed. */
  delete(key: string): Promise<void>
  /** Clears both tiers and every instance's local tier. */
  clear(): Promise<void>
  /** Stops listening to the broker. */
  close(): Promise<void>
}

const OPTION_NAMES = ['local', 'remote', 'broker', 'namespace', 'localTtlMs', 'metrics', 'logger']
const CACHE_FAILURE = Object.freeze({ store: 'cache' })
const BROKER_FAILURE = Object.freeze({ store: 'broker' })

function isCacheClient(value: unknown): boolean {
  const c = value as Partial<Record<'get' | 'set' | 'delete', unknown>> | null
  return (
    typeof c === 'object' &&
    c !== null &&
    typeof c.get === 'function' &&
    typeof c.set === 'function' &&
    typeof c.delete === 'function'
  )
}

function isThenable<TValue>(value: MaybePromise<TValue>): value is Promise<TValue> {
  return typeof (value as { then?: unknown } | null)?.then === 'function'
}

/**
 * Creates a two-tier cache. Reads try the local tier, then the remote one (filling the local
 * tier); a remote failure reads as a miss. Writes and deletes go to both tiers and publish
 * `cache.invalidated { namespace, key, origin }`; on receipt every other instance drops its local
 * copy and reads the remote tier next time. A lost message (broker down) leaves a stale local copy
 * for at most its TTL (`localTtlMs`).
 * @throws {ConfigError} for a bad option
 * @example
 * ```ts
 * const cache = createTieredCache({
 *   local: createLruCache({ max: 10_000, ttlMs: 10 * SECOND }),
 *   remote: createRedisCache({ client, namespace: 'profiles' }),
 *   broker: createRedisBroker({ publisher: client }),
 *   namespace: 'profiles',
 * })
 * ```
 */
export function createTieredCache<TValue = unknown>(
  options: Readonly<TieredCacheOptions<TValue>>,
): TieredCache<TValue> {
  const v = new TypeValidator('tieredCache')
  if (v.object('options', options) === undefined) v.assert()
  v.knownKeys(options as unknown as Record<string, unknown>, OPTION_NAMES)
  if (!isCacheClient(options.local)) v.fail('local', 'must be a CacheClient (get, set, delete)')
  if (!isCacheClient(options.remote)) v.fail('remote', 'must be a CacheClient (get, set, delete)')
  const broker = options.broker
  if (typeof broker?.publish !== 'function' || typeof broker.subscribe !== 'function')
    v.fail('broker', 'must be a MessageBroker (publish, subscribe)')
  const namespace = v.string('namespace', options.namespace, { pattern: CACHE_NAMESPACE_PATTERN })
  const localTtlMs = v.integerOr('localTtlMs', options.localTtlMs, undefined, { min: 1 })
  const logger = options.logger ?? silentLogger
  v.assert((m) => logger.warn({}, m))
  return new Tiered<TValue>(
    options.local,
    options.remote,
    broker,
    namespace as string,
    localTtlMs,
    options.metrics ?? noopMetrics,
    logger,
  )
}

class Tiered<TValue> implements TieredCache<TValue> {
  readonly instanceId: string = randomUUID()
  /** Bumped by every invalidation: a remote read that straddles one must not fill the local tier. */
  #epoch = 0
  readonly #unsubscribe: () => void

  constructor(
    private readonly local: CacheClient<TValue>,
    private readonly remote: CacheClient<TValue>,
    private readonly broker: MessageBroker,
    private readonly namespace: string,
    private readonly localTtlMs: number | undefined,
    private readonly metrics: MetricsClient,
    private readonly logger: Logger,
  ) {
    this.#unsubscribe = broker.subscribe('cache.invalidated', (m) => this.#onInvalidated(m))
  }

  get(key: string): MaybePromise<TValue | undefined> {
    const hit = this.local.get(key)
    // Synchronous local tiers (the LRU) answer a hit without a promise.
    if (!isThenable(hit)) return hit !== undefined ? hit : this.#remoteGet(key)
    return hit.then((value) => (value !== undefined ? value : this.#remoteGet(key)))
  }

  async #remoteGet(key: string): Promise<TValue | undefined> {
    const epoch = this.#epoch
    let value: TValue | undefined
    let ttlMs: number | undefined
    try {
      if (this.remote.getWithTtl === undefined) value = await this.remote.get(key)
      else {
        const entry = await this.remote.getWithTtl(key)
        value = entry?.value
        ttlMs = entry?.ttlMs
      }
    } catch (error) {
      this.#failed(CACHE_FAILURE, 'remote cache read failed; treated as a miss', key, error)
      return undefined
    }
    if (value !== undefined && epoch === this.#epoch) {
      // The local copy lives no longer than the remote entry has left (when the tier says).
      await this.local.set(
        key,
        value,
        this.#localOptions(ttlMs === undefined ? undefined : { ttlMs }),
      )
    }
    return value
  }

  async set(key: string, value: TValue, options?: CacheSetOptions): Promise<void> {
    this.#epoch++
    const remote = this.#settle(() => this.remote.set(key, value, options))
    await this.local.set(key, value, this.#localOptions(options))
    await this.#finish(remote, key, options?.fill !== true)
  }

  async delete(key: string): Promise<void> {
    this.#epoch++
    const remote = this.#settle(() => this.remote.delete(key))
    await this.local.delete(key)
    await this.#finish(remote, key)
  }

  async clear(): Promise<void> {
    this.#epoch++
    const remote = this.#settle(() => this.remote.clear?.())
    await this.local.clear?.()
    await this.#finish(remote, null)
  }

  async close(): Promise<void> {
    this.#unsubscribe()
  }

  /**
   * Tells the other instances (unless `tell` is false: a fill changes nothing they hold), then
   * rethrows a remote-tier failure for the caller.
   */
  async #finish(remote: Promise<unknown>, key: string | null, tell = true): Promise<void> {
    const [remoteResult] = await Promise.all([remote, tell ? this.#publish(key) : undefined])
    if (remoteResult instanceof Error) {
      this.#failed(CACHE_FAILURE, 'remote cache write failed', key, remoteResult)
      throw remoteResult
    }
  }

  /** The value, or the error it rejected with (so the broadcast still goes out). */
  async #settle(call: () => MaybePromise<void> | undefined): Promise<Error | undefined> {
    try {
      await call()
      return undefined
    } catch (error) {
      return error instanceof Error ? error : new Error(String(error))
    }
  }

  async #publish(key: string | null): Promise<void> {
    try {
      await this.broker.publish('cache.invalidated', {
        namespace: this.namespace,
        key,
        origin: this.instanceId,
      })
    } catch (error) {
      // Other instances keep their copy until its local TTL ends.
      this.#failed(BROKER_FAILURE, 'cache invalidation not published', key, error)
    }
  }

  #localOptions(options: CacheSetOptions | undefined): CacheSetOptions | undefined {
    const limit = this.localTtlMs
    if (limit === undefined) return options
    return { ttlMs: Math.min(options?.ttlMs ?? limit, limit) }
  }

  #onInvalidated(m: BrokerMessages['cache.invalidated']): void {
    if (m.namespace !== this.namespace || m.origin === this.instanceId) return
    this.#epoch++
    const done = m.key === null ? this.local.clear?.() : this.local.delete(m.key)
    if (isThenable(done)) {
      done.catch((error: unknown) =>
        this.#failed(CACHE_FAILURE, 'local cache invalidation failed', m.key, error),
      )
    }
  }

  #failed(
    labels: Readonly<Record<string, string>>,
    message: string,
    key: string | null,
    error: unknown,
  ): void {
    this.metrics.increment('storeFailures', labels)
    this.logger.warn(
      { key, error: error instanceof Error ? error.message : String(error) },
      `tiered cache ${this.namespace}: ${message}`,
    )
  }
}
