/**
 * API-key verification: format and checksum first (no store read for garbage), then a bounded
 * cache of verified keys (one SHA-256 and a constant-time compare on the hot path), then the store
 * and an HMAC under the pepper. Unknown, revoked and expired keys get the same answer.
 *
 * Reachable from `@gatehouse/core`.
 * @packageDocumentation
 */
import { hash, timingSafeEqual } from 'node:crypto'
import { LRUCache } from 'lru-cache'
import {
  DEFAULT_API_KEY_CACHE_MAX,
  DEFAULT_API_KEY_CACHE_TTL_MS,
  DEFAULT_API_KEY_NEGATIVE_CACHE_MAX,
  DEFAULT_API_KEY_NEGATIVE_CACHE_TTL_MS,
  DEFAULT_API_KEY_PREFIX,
} from '../defaults.js'
import { AuthError } from '../errors.js'
import { parseRoleId } from '../ids.js'
import type { Clock } from '../internal/clock.js'
import type { MessageBroker } from '../integrations/message-broker.js'
import type { Principal } from '../types.js'
import { TypeValidator } from '../validation/type-validator.js'
import {
  API_KEY_BODY_LENGTH,
  API_KEY_ID_LENGTH,
  API_KEY_PREFIX_PATTERN,
  MAX_API_KEY_LENGTH,
  hashApiKey,
  parseApiKey,
  type ApiKeyId,
  type Pepper,
} from './format.js'
import type { ApiKeyRecord, KeyStore } from './key-store.js'

/** API-key authentication options. */
export interface ApiKeyOptions {
  /** Where keys live. */
  readonly store: KeyStore
  /**
   * The server secret(s) keying the stored hashes: one secret, or a list whose first entry is
   * current and whose others still verify older hashes (pepper rotation).
   */
  readonly pepper: string | Uint8Array | readonly Pepper[]
  /** Key prefixes accepted. @default ['gh'] */
  readonly prefixes?: readonly string[]
  /** Cache of verified keys; `false` disables it. */
  readonly cache?:
    | false
    | {
        /** @default 10000 */
        readonly max?: number
        /** How long a verified key is trusted without a store read. @default 60000 */
        readonly ttlMs?: number
        /** Unknown key ids remembered, so that guessing floods never reach the store. @default 10000 */
        readonly negativeMax?: number
        /** @default 10000 */
        readonly negativeTtlMs?: number
      }
  /** Builds the principal from a verified key record. */
  readonly toPrincipal?: (record: ApiKeyRecord) => Principal
  /** Revocations and updates arriving here drop cached copies. */
  readonly broker?: MessageBroker
}

/** The result of verifying a key: a value, never an exception. */
export type ApiKeyVerifyResult =
  | { readonly ok: true; readonly principal: Principal; readonly record: ApiKeyRecord }
  | { readonly ok: false; readonly error: AuthError }

/** A configured API-key verifier. */
export interface ApiKeyVerifier {
  /** The prefixes it accepts. */
  readonly prefixes: ReadonlySet<string>
  /** Whether `token` starts like one of our keys (used to tell keys from JWTs). */
  looksLikeKey(token: string): boolean
  /** Verifies a presented key. */
  verify(key: string): Promise<ApiKeyVerifyResult>
  /** Drops any cached copy of a key (also done on broker messages). */
  invalidate(id: ApiKeyId): void
  /** Stops listening to the broker. */
  close(): void
}

interface CacheEntry {
  readonly digest: Buffer
  readonly record: ApiKeyRecord
  readonly principal: Principal
  readonly until: number
  /** The allow result, built once and returned on every hit while the key is active. */
  readonly allowed: ApiKeyVerifyResult
}

const OPTION_NAMES = ['store', 'pepper', 'prefixes', 'cache', 'toPrincipal', 'broker']
const MIN_PEPPER_BYTES = 32

/** The principal of a key: its owner, with the key's scopes and roles. */
export function principalFromKeyRecord(record: ApiKeyRecord): Principal {
  return Object.freeze({
    id: record.ownerId,
    method: 'apikey',
    scopes: record.scopes,
    roles: Object.freeze(record.roles.map(parseRoleId).filter((r) => r !== undefined)),
    tokenId: record.id as string as Principal['tokenId'] & string,
    attributes: Object.freeze({
      keyId: record.id,
      keyName: record.name,
      metadata: record.metadata,
    }),
  }) as Principal
}

/** Resolves the pepper option into a non-empty list, current first. */
export function resolvePeppers(v: TypeValidator, value: unknown): Pepper[] | undefined {
  const list: unknown[] =
    typeof value === 'string' || value instanceof Uint8Array
      ? [{ id: 'p1', secret: value }]
      : Array.isArray(value)
        ? value
        : []
  if (list.length === 0)
    return v.fail('pepper', 'required: a secret of at least 32 bytes, or a list of { id, secret }')
  return v.array('pepper', list, (pv, i, item) => {
    const p = pv.object(i, item) as Partial<Pepper> | undefined
    if (p === undefined) return undefined
    const id = pv.child(i).string('id', p.id, { pattern: /^[A-Za-z0-9_.-]{1,32}$/ })
    const bytes =
      typeof p.secret === 'string'
        ? Buffer.byteLength(p.secret)
        : p.secret instanceof Uint8Array
          ? p.secret.length
          : -1
    if (bytes < MIN_PEPPER_BYTES)
      return pv.child(i).fail('secret', `must be at least ${MIN_PEPPER_BYTES} bytes`)
    return id === undefined ? undefined : { id, secret: p.secret as string | Uint8Array }
  })
}

const refuse = (reason: string): ApiKeyVerifyResult => ({
  ok: false,
  error: new AuthError('ERR_APIKEY_INVALID', 'The API key is invalid', { reason }),
})

/**
 * Creates an API-key verifier.
 * @throws {ConfigError} for a bad option
 */
export function createApiKeyVerifier(
  options: Readonly<ApiKeyOptions>,
  deps: { readonly now: Clock; readonly warn?: (message: string) => void },
): ApiKeyVerifier {
  const v = new TypeValidator('apiKeys')
  v.knownKeys(options as Record<string, unknown>, OPTION_NAMES)
  const store = v.object('store', options.store) as KeyStore | undefined
  if (store !== undefined && typeof store.get !== 'function')
    v.fail('store', 'must implement KeyStore (get, insert, update, delete, list)')
  const peppers = resolvePeppers(v, options.pepper)
  const prefixes = v.array(
    'prefixes',
    options.prefixes ?? [DEFAULT_API_KEY_PREFIX],
    (pv, i, p) => pv.string(i, p, { pattern: API_KEY_PREFIX_PATTERN }),
    {
      nonEmpty: true,
    },
  )
  const c = options.cache === false ? { max: 0, negativeMax: 0 } : (options.cache ?? {})
  const cv = v.child('cache')
  const max = c.max === undefined ? DEFAULT_API_KEY_CACHE_MAX : cv.integer('max', c.max, { min: 0 })
  const ttlMs =
    'ttlMs' in c && c.ttlMs !== undefined
      ? cv.integer('ttlMs', c.ttlMs, { min: 1 })
      : DEFAULT_API_KEY_CACHE_TTL_MS
  const negativeMax =
    c.negativeMax === undefined
      ? DEFAULT_API_KEY_NEGATIVE_CACHE_MAX
      : cv.integer('negativeMax', c.negativeMax, { min: 0 })
  const negativeTtlMs =
    'negativeTtlMs' in c && c.negativeTtlMs !== undefined
      ? cv.integer('negativeTtlMs', c.negativeTtlMs, { min: 1 })
      : DEFAULT_API_KEY_NEGATIVE_CACHE_TTL_MS
  const toPrincipal =
    options.toPrincipal === undefined
      ? principalFromKeyRecord
      : v.function<(r: ApiKeyRecord) => Principal>('toPrincipal', options.toPrincipal)
  v.assert(deps.warn)
  return new Verifier({
    store: store as KeyStore,
    peppers: peppers as Pepper[],
    prefixes: new Set(prefixes),
    cache: (max ?? 0) > 0 ? new LRUCache<string, CacheEntry>({ max: max as number }) : undefined,
    ttlMs: ttlMs as number,
    negative:
      (negativeMax ?? 0) > 0
        ? new LRUCache<string, number>({ max: negativeMax as number })
        : undefined,
    negativeTtlMs: negativeTtlMs as number,
    toPrincipal: toPrincipal as (r: ApiKeyRecord) => Principal,
    now: deps.now,
    broker: options.broker,
  })
}

interface VerifierConfig {
  readonly store: KeyStore
  readonly peppers: readonly Pepper[]
  readonly prefixes: ReadonlySet<string>
  readonly cache: LRUCache<string, CacheEntry> | undefined
  readonly ttlMs: number
  readonly negative: LRUCache<string, number> | undefined
  readonly negativeTtlMs: number
  readonly toPrincipal: (record: ApiKeyRecord) => Principal
  readonly now: Clock
  readonly broker: MessageBroker | undefined
}

const DUMMY_HASH = Buffer.alloc(32)

class Verifier implements ApiKeyVerifier {
  readonly prefixes: ReadonlySet<string>
  readonly #c: VerifierConfig
  readonly #unsubscribe: Array<() => void> = []

  constructor(config: VerifierConfig) {
    this.#c = config
    this.prefixes = config.prefixes
    const broker = config.broker
    if (broker !== undefined) {
      const drop = (m: { readonly keyId: string }): void => this.invalidate(m.keyId as ApiKeyId)
      for (const topic of ['key.revoked', 'key.rotated', 'key.updated', 'key.deleted'] as const) {
        this.#unsubscribe.push(broker.subscribe(topic, drop))
      }
    }
  }

  looksLikeKey(token: string): boolean {
    const sep = token.lastIndexOf('_')
    return sep > 0 && this.prefixes.has(token.slice(0, sep))
  }

  invalidate(id: ApiKeyId): void {
    this.#c.cache?.delete(id)
    this.#c.negative?.delete(id)
  }

  close(): void {
    for (const u of this.#unsubscribe.splice(0)) u()
  }

  async verify(key: string): Promise<ApiKeyVerifyResult> {
    const c = this.#c
    const now = c.now()
    // Hot path: a key verified before. Its id sits at a fixed offset from the end, and equal
    // SHA-256 digests prove it is the very key that passed the format, checksum and HMAC checks,
    // so none of those runs again.
    const idStart = key.length - API_KEY_BODY_LENGTH
    if (c.cache !== undefined && idStart > 1 && key.length <= MAX_API_KEY_LENGTH) {
      const hit = c.cache.get(key.slice(idStart, idStart + API_KEY_ID_LENGTH))
      if (
        hit !== undefined &&
        hit.until > now &&
        timingSafeEqual(hit.digest, hash('sha256', key, 'buffer'))
      ) {
        return this.#status(hit.record, hit.allowed, now)
      }
    }
    const parsed = parseApiKey(key, this.prefixes)
    if (typeof parsed === 'string') {
      return {
        ok: false,
        error: new AuthError('ERR_APIKEY_MALFORMED', 'The API key is malformed', {
          reason: `format: ${parsed}`,
        }),
      }
    }
    const digest = c.cache === undefined ? undefined : hash('sha256', key, 'buffer')
    const negativeUntil = c.negative?.get(parsed.id)
    if (negativeUntil !== undefined && negativeUntil > now) return refuse('unknown key (cached)')

    let record: ApiKeyRecord | undefined
    try {
      record = await c.store.get(parsed.id)
    } catch (cause) {
      return {
        ok: false,
        error: new AuthError('ERR_KEYSTORE_UNAVAILABLE', 'Key store unavailable', {
          cause,
          reason: 'store error',
        }),
      }
    }
    if (record === undefined) {
      // Spend the same HMAC an existing key would cost, so timing does not tell unknown from known.
      timingSafeEqual(Buffer.from(hashApiKey(key, c.peppers[0] as Pepper), 'base64url'), DUMMY_HASH)
      c.negative?.set(parsed.id, now + c.negativeTtlMs)
      return refuse('unknown key')
    }
    const validUntil = this.#matchingHashEnd(key, record, now)
    if (validUntil === undefined) return refuse('secret mismatch')
    const principal = c.toPrincipal(record)
    const allowed: ApiKeyVerifyResult = Object.freeze({ ok: true, principal, record })
    if (c.cache !== undefined && digest !== undefined) {
      // A secret in its rotation grace period is cached no longer than the grace lasts.
      c.cache.set(parsed.id, {
        digest,
        record,
        principal,
        until: Math.min(now + c.ttlMs, validUntil),
        allowed,
      })
    }
    return this.#status(record, allowed, now)
  }

  /** When the hash matching `key` stops verifying (Infinity: never), or `undefined` if none matches. */
  #matchingHashEnd(key: string, record: ApiKeyRecord, now: number): number | undefined {
    let matched: number | undefined
    // Every hash is computed and compared, so timing does not reveal which one matched.
    for (const h of record.hashes) {
      const pepper = this.#c.peppers.find((p) => p.id === h.pepperId)
      const expected = Buffer.from(h.hash, 'base64url')
      const actual = Buffer.from(
        hashApiKey(key, pepper ?? (this.#c.peppers[0] as Pepper)),
        'base64url',
      )
      const equal = expected.length === actual.length && timingSafeEqual(expected, actual)
      if (equal && pepper !== undefined && (h.notAfter === null || now < h.notAfter))
        matched = h.notAfter ?? Infinity
    }
    return matched
  }

  #status(record: ApiKeyRecord, allowed: ApiKeyVerifyResult, now: number): ApiKeyVerifyResult {
    if (record.status === 'revoked') return refuse('revoked')
    if (record.expiresAt !== null && now >= record.expiresAt) return refuse('expired')
    return allowed
  }
}
