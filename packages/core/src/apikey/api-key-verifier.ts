/**
 * API-key verification: format and checksum first (no store read for garbage), then a bounded
 * cache of verified keys (one SHA-256 and a constant-time compare on the hot path), then the store
 * and an HMAC under the pepper. Unknown, revoked and expired keys get the same answer; the precise
 * reason goes to the trace and the audit event only. Then the key's usage policy (environment,
 * client IP, origin). Usage (`lastUsedAt`, `usageCount`) is counted in memory and written in
 * batches off the request path; keys under an older pepper, or imported as a bare SHA-256, are
 * re-hashed under the current pepper after their first successful use.
 *
 * Reachable from `@portcullis/core`.
 * @packageDocumentation
 */
import { hash, timingSafeEqual } from 'node:crypto'
import { AuthError } from '../errors.js'
import { parseRoleId } from '../ids.js'
import type { Clock } from '../internal/clock.js'
import { silentLogger, type Logger } from '../logger.js'
import type { MessageBroker } from '../integrations/message-broker.js'
import { noopMetrics, type MetricsClient } from '../integrations/metrics.js'
import type { Principal, PrincipalLimits } from '../types.js'
import { resolveApiKeyOptions, type ApiKeyOptions } from './api-key-options.js'
import {
  API_KEY_BODY_LENGTH,
  API_KEY_ID_LENGTH,
  MAX_API_KEY_LENGTH,
  hashApiKey,
  parseApiKey,
  type ApiKeyId,
  type Pepper,
} from './format.js'
import { findImportedKey, importedCacheId, isImportedKeyCandidate } from './imported-keys.js'
import { KeyRehasher, needsRehash } from './key-rehash.js'
import type { ApiKeyEnvironment, ApiKeyRecord, ApiKeySecretHash, KeyStore } from './key-store.js'
import { UsageRecorder } from './usage-recorder.js'
import { compileUsagePolicy, ipAllowed, type CompiledUsagePolicy } from './usage-policy.js'
import { onKeyChanged, VerifiedKeyCache } from './verified-key-cache.js'

export type { ApiKeyOptions } from './api-key-options.js'
export { resolvePeppers } from './api-key-options.js'

/** What the verifier reads of the request for usage policies. */
export interface ApiKeyRequestContext {
  /** Client IP as the framework's trust-proxy setting resolves it. */
  readonly ip: string | undefined
  /** A header's value by lower-case name (`origin`). */
  header(name: string): string | undefined
}

/**
 * Why a key was refused, as recorded in the trace and the audit event (`reason`). Clients see only
 * the code: `ERR_APIKEY_MALFORMED` for `malformed*` and `bad_checksum`; one identical
 * `ERR_APIKEY_INVALID` answer for `unknown`, `revoked`, `expired` and `wrong_secret`;
 * `ERR_POLICY_DENIED` (403) for the usage-policy refusals, which are decided only after the secret
 * verified.
 */
export type ApiKeyRefusalReason =
  | `malformed: ${'length' | 'prefix' | 'charset'}`
  | 'bad_checksum'
  | 'unknown'
  | 'revoked'
  | 'expired'
  | 'wrong_secret'
  | 'environment_not_allowed'
  | 'ip_not_allowed'
  | 'origin_not_allowed'

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
  /**
   * Verifies a presented key; with `request`, also its usage policy (client IP, `Origin`). Without
   * `request`, a key restricted to IPs or origins is refused (fail closed).
   */
  verify(key: string, request?: ApiKeyRequestContext): Promise<ApiKeyVerifyResult>
  /**
   * {@link ApiKeyVerifier.verify}, answered synchronously when no store must be read (a cached
   * key, a malformed one): a promise only otherwise. The gate uses it to spare a turn of the
   * event loop per request.
   */
  verifyNow(
    key: string,
    request?: ApiKeyRequestContext,
  ): ApiKeyVerifyResult | Promise<ApiKeyVerifyResult>
  /** Drops any cached copy of a key (also done on broker messages). */
  invalidate(id: ApiKeyId): void
  /** Writes pending usage now; a failing write is logged, never thrown. */
  flush(): Promise<void>
  /** Stops listening to the broker and the flush timer, then writes pending usage. */
  close(): Promise<void>
}

/** The per-key limits of a record, for {@link Principal.limits}; `undefined` when it has none. */
function limitsOf(record: ApiKeyRecord): PrincipalLimits | undefined {
  const p = record.policy
  if (p === undefined || (p.rateLimits === undefined && p.quota === undefined)) return undefined
  return Object.freeze({
    ...(p.rateLimits === undefined ? {} : { rateLimits: p.rateLimits }),
    ...(p.quota === undefined ? {} : { quota: p.quota }),
  })
}

/**
 * The principal of a key: its owner, with the key's scopes and roles, and its per-key rate limits
 * and quota as `limits` (for the limits and quota stages).
 */
export function principalFromKeyRecord(record: ApiKeyRecord): Principal {
  const limits = limitsOf(record)
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
      environment: record.environment ?? 'live',
      tags: record.tags ?? [],
    }),
    ...(limits === undefined ? {} : { limits }),
  }) as Principal
}

// Unknown, revoked, expired and wrong-secret keys share one client-facing message (no oracle).
const refuse = (reason: ApiKeyRefusalReason): ApiKeyVerifyResult => ({
  ok: false,
  error: new AuthError('ERR_APIKEY_INVALID', 'The API key is invalid', { reason }),
})

const deny = (reason: ApiKeyRefusalReason): ApiKeyVerifyResult => ({
  ok: false,
  error: new AuthError('ERR_POLICY_DENIED', 'The API key may not be used for this request', {
    reason,
  }),
})

/**
 * Creates an API-key verifier.
 * @throws {ConfigError} for a bad option
 */
export function createApiKeyVerifier(
  options: Readonly<ApiKeyOptions>,
  deps: {
    readonly now: Clock
    readonly warn?: (message: string) => void
    /** Where failed usage writes and re-hashes are reported. @default a silent logger */
    readonly logger?: Logger
    /** Counts cache hits and misses (`keyCacheLookups`, cache `apikey`). @default noopMetrics */
    readonly metrics?: MetricsClient
  },
): ApiKeyVerifier {
  const o = resolveApiKeyOptions(options, deps.warn)
  return new Verifier({
    ...o,
    cache: new VerifiedKeyCache({ ...o.cache, metrics: deps.metrics ?? noopMetrics }),
    toPrincipal: o.toPrincipal ?? principalFromKeyRecord,
    now: deps.now,
    logger: deps.logger ?? silentLogger,
  })
}

interface VerifierConfig {
  readonly store: KeyStore
  readonly peppers: readonly Pepper[]
  readonly prefixes: ReadonlySet<string>
  readonly cache: VerifiedKeyCache
  readonly toPrincipal: (record: ApiKeyRecord) => Principal
  readonly now: Clock
  readonly broker: MessageBroker | undefined
  readonly environments: ReadonlySet<ApiKeyEnvironment>
  readonly importedKeys: boolean
  readonly usage: { readonly flushIntervalMs: number; readonly maxBatch: number } | undefined
  readonly logger: Logger
}

const DUMMY_HASH = Buffer.alloc(32)

/** A secret hash that verified, and when it stops verifying (Infinity: never). */
interface HashMatch {
  readonly hash: ApiKeySecretHash
  readonly until: number
}

class Verifier implements ApiKeyVerifier {
  readonly prefixes: ReadonlySet<string>
  readonly #c: VerifierConfig
  readonly #current: Pepper
  readonly #unsubscribe: Array<() => void> = []
  readonly #usage: UsageRecorder | undefined
  readonly #rehasher: KeyRehasher

  constructor(config: VerifierConfig) {
    this.#c = config
    this.#current = config.peppers[0] as Pepper
    this.prefixes = config.prefixes
    const broker = config.broker
    if (broker !== undefined)
      this.#unsubscribe.push(...onKeyChanged(broker, (m) => this.invalidate(m.keyId as ApiKeyId)))
    this.#usage =
      config.usage === undefined
        ? undefined
        : new UsageRecorder(config.store, config.usage, config.logger)
    this.#rehasher = new KeyRehasher(config.store, this.#current, config.logger)
  }

  looksLikeKey(token: string): boolean {
    const sep = token.lastIndexOf('_')
    if (sep <= 0) return false
    // Compared in place: slicing a JWT's first part to look it up would hash a long string.
    for (const prefix of this.prefixes)
      if (prefix.length === sep && token.startsWith(prefix)) return true
    return false
  }

  invalidate(id: ApiKeyId): void {
    this.#c.cache.invalidate(id)
  }

  async flush(): Promise<void> {
    await this.#usage?.flush()
    await this.#rehasher.settled()
  }

  async close(): Promise<void> {
    for (const u of this.#unsubscribe.splice(0)) u()
    this.#usage?.stop()
    await this.flush()
  }

  verify(key: string, request?: ApiKeyRequestContext): Promise<ApiKeyVerifyResult> {
    try {
      const result = this.verifyNow(key, request)
      return result instanceof Promise ? result : Promise.resolve(result)
    } catch (error) {
      return Promise.reject(error as Error)
    }
  }

  verifyNow(
    key: string,
    request?: ApiKeyRequestContext,
  ): ApiKeyVerifyResult | Promise<ApiKeyVerifyResult> {
    const c = this.#c
    const now = c.now()
    // Hot path: a key verified before. Its id sits at a fixed offset from the end, and equal
    // SHA-256 digests prove it is the very key that passed the format, checksum and HMAC checks,
    // so none of those runs again.
    const idStart = key.length - API_KEY_BODY_LENGTH
    if (c.cache.enabled && idStart > 1 && key.length <= MAX_API_KEY_LENGTH) {
      const hit = c.cache.verified(key.slice(idStart, idStart + API_KEY_ID_LENGTH), key, now)
      if (hit !== undefined) return this.#status(hit.record, hit.allowed, hit.policy, now, request)
    }
    return this.#verifyStored(key, now, request)
  }

  /** A key not in the cache: format and checksum, then the store. */
  async #verifyStored(
    key: string,
    now: number,
    request: ApiKeyRequestContext | undefined,
  ): Promise<ApiKeyVerifyResult> {
    const c = this.#c
    const parsed = parseApiKey(key, this.prefixes)
    if (typeof parsed === 'string') {
      if (c.importedKeys && isImportedKeyCandidate(key, this.looksLikeKey(key)))
        return this.#verifyImported(key, now, request)
      return {
        ok: false,
        error: new AuthError('ERR_APIKEY_MALFORMED', 'The API key is malformed', {
          reason: parsed === 'checksum' ? 'bad_checksum' : `malformed: ${parsed}`,
        }),
      }
    }
    const digest = c.cache.enabled ? hash('sha256', key, 'buffer') : undefined
    if (c.cache.knownUnknown(parsed.id, now)) return refuse('unknown')

    let record: ApiKeyRecord | undefined
    try {
      record = await c.store.get(parsed.id)
    } catch (cause) {
      return storeFailure(cause)
    }
    if (record === undefined) {
      // Spend the same HMAC and compare an existing key would cost, so timing does not tell
      // unknown from known.
      timingSafeEqual(Buffer.from(hashApiKey(key, this.#current), 'base64url'), DUMMY_HASH)
      c.cache.unknown(parsed.id, now)
      return refuse('unknown')
    }
    return this.#accept(key, parsed.id, record, digest, now, request)
  }

  /** The slow path of a key whose record was found: match the secret, cache, check status and policy. */
  #accept(
    key: string,
    cacheId: string,
    record: ApiKeyRecord,
    digest: Buffer | undefined,
    now: number,
    request: ApiKeyRequestContext | undefined,
  ): ApiKeyVerifyResult {
    const c = this.#c
    const match = this.#matchingHash(key, record, now)
    if (match === undefined) return refuse('wrong_secret')
    const principal = c.toPrincipal(record)
    const allowed = Object.freeze({ ok: true as const, principal, record })
    const policy = compileUsagePolicy(record.policy)
    if (c.cache.enabled && digest !== undefined) {
      // A secret in its rotation grace period is cached no longer than the grace lasts.
      c.cache.add(cacheId, {
        digest,
        record,
        principal,
        until: Math.min(now + c.cache.ttlMs, match.until),
        allowed,
        policy,
      })
    }
    const result = this.#status(record, allowed, policy, now, request)
    if (result.ok && needsRehash(match.hash, this.#current))
      this.#rehasher.rehash(key, record.id, match.hash)
    return result
  }

  /** A token in a foreign format: found by its hash under each pepper, then by its bare SHA-256. */
  async #verifyImported(
    key: string,
    now: number,
    request: ApiKeyRequestContext | undefined,
  ): Promise<ApiKeyVerifyResult> {
    const c = this.#c
    const digest = hash('sha256', key, 'buffer')
    // Foreign keys have no id at a fixed offset: both caches are keyed by the key's digest.
    const cacheId = importedCacheId(digest)
    const hit = c.cache.fresh(cacheId, now)
    if (hit !== undefined) return this.#status(hit.record, hit.allowed, hit.policy, now, request)
    if (c.cache.knownUnknown(cacheId, now)) return refuse('unknown')
    let record: ApiKeyRecord | undefined
    try {
      record = await findImportedKey(c.store, c.peppers, key, digest)
    } catch (cause) {
      return storeFailure(cause)
    }
    if (record === undefined) {
      c.cache.unknown(cacheId, now)
      return refuse('unknown')
    }
    return this.#accept(key, cacheId, record, digest, now, request)
  }

  /** The hash matching `key`, or `undefined` if none matches. */
  #matchingHash(key: string, record: ApiKeyRecord, now: number): HashMatch | undefined {
    let matched: HashMatch | undefined
    let sha256: Buffer | undefined
    // Every hash is computed and compared, so timing does not reveal which one matched.
    for (const h of record.hashes) {
      let equal: boolean
      let known: boolean
      if (h.algorithm === 'sha256') {
        sha256 ??= hash('sha256', key, 'buffer')
        const expected = Buffer.from(h.hash, 'hex')
        equal = expected.length === sha256.length && timingSafeEqual(expected, sha256)
        known = true
      } else {
        const pepper = this.#c.peppers.find((p) => p.id === h.pepperId)
        const expected = Buffer.from(h.hash, 'base64url')
        const actual = Buffer.from(hashApiKey(key, pepper ?? this.#current), 'base64url')
        equal = expected.length === actual.length && timingSafeEqual(expected, actual)
        known = pepper !== undefined
      }
      if (equal && known && (h.notAfter === null || now < h.notAfter))
        matched = { hash: h, until: h.notAfter ?? Infinity }
    }
    return matched
  }

  #status(
    record: ApiKeyRecord,
    allowed: ApiKeyVerifyResult,
    policy: CompiledUsagePolicy,
    now: number,
    request: ApiKeyRequestContext | undefined,
  ): ApiKeyVerifyResult {
    if (record.status === 'revoked') return refuse('revoked')
    if (record.expiresAt !== null && now >= record.expiresAt) return refuse('expired')
    if (!this.#c.environments.has(record.environment ?? 'live'))
      return deny('environment_not_allowed')
    if (policy.ips !== undefined && !ipAllowed(policy.ips, request?.ip))
      return deny('ip_not_allowed')
    if (policy.origins !== undefined && !policy.origins(request?.header('origin')))
      return deny('origin_not_allowed')
    this.#usage?.count(record.id, now)
    return allowed
  }
}

function storeFailure(cause: unknown): ApiKeyVerifyResult {
  return {
    ok: false,
    error: new AuthError('ERR_KEYSTORE_UNAVAILABLE', 'Key store unavailable', {
      cause,
      reason: 'store error',
    }),
  }
}
