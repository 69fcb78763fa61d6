/**
 * The key caches of the verifier and of `createCachedKeyStore`, in one place: the bounded
 * memory of unknown key ids (so guessing floods never reach the store), the cache of keys that
 * verified (one SHA-256 and a constant-time compare on the hot path), the metric labels of their
 * lookups, and the broker topics that drop a changed key's cached copies.
 * @packageDocumentation
 */
import { hash, timingSafeEqual } from 'node:crypto'
import { LRUCache } from 'lru-cache'
import type { MessageBroker } from '../integrations/message-broker.js'
import type { MetricsClient } from '../integrations/metrics.js'
import type { Principal } from '../types.js'
import type { ApiKeyRecord } from './key-store.js'
import type { CompiledUsagePolicy } from './usage-policy.js'

/** The labels of `keyCacheLookups` for one cache (`apikey`: the verifier; `keystore`: the store). */
export interface KeyCacheLabels {
  readonly hit: Readonly<Record<string, string>>
  readonly miss: Readonly<Record<string, string>>
  readonly negativeHit: Readonly<Record<string, string>>
}

/** The lookup labels of the cache named `cache`, frozen once. */
export function keyCacheLabels(cache: 'apikey' | 'keystore'): KeyCacheLabels {
  return Object.freeze({
    hit: Object.freeze({ cache, result: 'hit' }),
    miss: Object.freeze({ cache, result: 'miss' }),
    negativeHit: Object.freeze({ cache, result: 'negative_hit' }),
  })
}

/** The broker topics after which a key's cached copies must go. */
const KEY_CHANGED = ['key.revoked', 'key.rotated', 'key.updated', 'key.deleted'] as const

/** Calls `drop` with the id of every key the broker says changed; returns the unsubscribers. */
export function onKeyChanged(
  broker: MessageBroker,
  drop: (message: { readonly keyId: string }) => void,
): Array<() => void> {
  return KEY_CHANGED.map((topic) => broker.subscribe(topic, drop))
}

/** Unknown key ids (or hashes) remembered for `ttlMs`, at most `max` of them (least recent go). */
export class NegativeKeyCache {
  /** Id -> when it stops being remembered (on the caller's clock). */
  readonly #until: LRUCache<string, number>

  constructor(
    max: number,
    readonly ttlMs: number,
  ) {
    this.#until = new LRUCache<string, number>({ max })
  }

  /** Whether `id` is known not to exist at `now`. */
  has(id: string, now: number): boolean {
    const until = this.#until.get(id)
    return until !== undefined && until > now
  }

  /** Remembers, at `now`, that `id` does not exist. */
  add(id: string, now: number): void {
    this.#until.set(id, now + this.ttlMs)
  }

  delete(id: string): void {
    this.#until.delete(id)
  }

  clear(): void {
    this.#until.clear()
  }
}

/** A key that verified, as the verifier caches it. */
export interface VerifiedKey {
  /** SHA-256 of the whole key: a later key with the same digest is this very key. */
  readonly digest: Buffer
  readonly record: ApiKeyRecord
  readonly principal: Principal
  readonly until: number
  /** The allow result, built once and returned on every hit while the key is active. */
  readonly allowed: {
    readonly ok: true
    readonly principal: Principal
    readonly record: ApiKeyRecord
  }
  /** The record's usage policy, compiled once. */
  readonly policy: CompiledUsagePolicy
}

/** Sizes of the verifier's caches; 0 turns one off. */
export interface VerifiedKeyCacheOptions {
  readonly max: number
  readonly ttlMs: number
  readonly negativeMax: number
  readonly negativeTtlMs: number
  readonly metrics: MetricsClient
}

const LABELS = keyCacheLabels('apikey')

// The cached-key check hashes into this buffer: `hash(..., 'buffer')` costs about twice a hash to a
// string on Node 20, and the compare needs bytes. Single-threaded and used between two
// synchronous calls only, so one buffer serves every request.
const DIGEST_SCRATCH = Buffer.alloc(32)

/** SHA-256 of `key` written into `out` (32 bytes), which is returned. */
function sha256Into(out: Buffer, key: string): Buffer {
  out.write(hash('sha256', key, 'binary'), 0, 'latin1')
  return out
}

/**
 * The verifier's cache: keys that verified, by key id (imported keys by their digest), and key
 * ids known not to exist. Synchronous throughout: a cached key is answered without a promise.
 */
export class VerifiedKeyCache {
  readonly #keys: LRUCache<string, VerifiedKey> | undefined
  readonly #negative: NegativeKeyCache | undefined
  /** How long a verified key is trusted without a store read. */
  readonly ttlMs: number
  readonly #metrics: MetricsClient
  /** Key id -> digest cache id of imported keys, so that invalidate(id) reaches them too. */
  readonly #aliases = new Map<string, string>()

  constructor(options: VerifiedKeyCacheOptions) {
    this.#keys = options.max > 0 ? new LRUCache({ max: options.max }) : undefined
    this.#negative =
      options.negativeMax > 0
        ? new NegativeKeyCache(options.negativeMax, options.negativeTtlMs)
        : undefined
    this.ttlMs = options.ttlMs
    this.#metrics = options.metrics
  }

  /** Whether verified keys are cached (else no digest need be computed for it). */
  get enabled(): boolean {
    return this.#keys !== undefined
  }

  /**
   * The cached entry of `key` (whose id is `id`) if it is fresh and its digest equals the key's:
   * equal SHA-256 digests prove it is the very key that passed every check before. The hot path:
   * no allocation beyond the id, no promise.
   */
  verified(id: string, key: string, now: number): VerifiedKey | undefined {
    const hit = this.#keys?.get(id)
    if (
      hit === undefined ||
      !(hit.until > now) ||
      !timingSafeEqual(hit.digest, sha256Into(DIGEST_SCRATCH, key))
    )
      return undefined
    this.#metrics.increment('keyCacheLookups', LABELS.hit)
    return hit
  }

  /** The fresh entry cached under `cacheId` (an imported key's digest id, which proves the key). */
  fresh(cacheId: string, now: number): VerifiedKey | undefined {
    const hit = this.#keys?.get(cacheId)
    if (hit === undefined || !(hit.until > now)) return undefined
    this.#metrics.increment('keyCacheLookups', LABELS.hit)
    return hit
  }

  /** Whether `cacheId` is known not to exist (counted); else a miss is counted. */
  knownUnknown(cacheId: string, now: number): boolean {
    if (this.#negative?.has(cacheId, now) === true) {
      this.#metrics.increment('keyCacheLookups', LABELS.negativeHit)
      return true
    }
    if (this.#keys !== undefined) this.#metrics.increment('keyCacheLookups', LABELS.miss)
    return false
  }

  /** Remembers that `cacheId` does not exist. */
  unknown(cacheId: string, now: number): void {
    this.#negative?.add(cacheId, now)
  }

  /** Caches a key that verified under `cacheId` (its id, or an imported key's digest id). */
  add(cacheId: string, entry: VerifiedKey): void {
    const keys = this.#keys
    if (keys === undefined) return
    keys.set(cacheId, entry)
    const id = entry.record.id
    if (cacheId !== id) {
      // Bounded like the cache itself: an alias outliving its entry only costs a no-op delete.
      if (this.#aliases.size >= keys.max) this.#aliases.clear()
      this.#aliases.set(id, cacheId)
    }
  }

  /** Drops every cached copy of key `id` (and a remembered miss). */
  invalidate(id: string): void {
    this.#keys?.delete(id)
    this.#negative?.delete(id)
    const alias = this.#aliases.get(id)
    if (alias !== undefined) {
      this.#keys?.delete(alias)
      this.#aliases.delete(id)
    }
  }
}
