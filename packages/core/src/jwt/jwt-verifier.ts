/**
 * JWT verification: strict JWS, then registered-claim checks (RFC 7519 §4.1, RFC 8725), then the
 * claims → principal mapping, with a bounded cache of verified tokens.
 *
 * Reachable from `@portcullis/core`.
 * @packageDocumentation
 */
import { hash } from 'node:crypto'
import { LRUCache } from 'lru-cache'
import { AuthError, ConfigError } from '../errors.js'
import { parseRoleId, parseTokenId, parseUserId, type RoleID } from '../ids.js'
import type { Clock } from '../internal/clock.js'
import { noopMetrics, type MetricsClient } from '../integrations/metrics.js'
import { parseStrictJsonBytes } from '../internal/strict-json.js'
import type { Principal } from '../types.js'
import { describeValue, TypeValidator } from '../validation/type-validator.js'
import { isJwsAlgorithm, JWS_ALGORITHMS, type JwsAlgorithm } from './algorithms.js'
import { verifyCompactJwsNow, type JwsResult, type JwsVerifyOptions } from './jws.js'
import { isRevocationList, type RevocationList, type RevocationRule } from './revocation.js'
import {
  bindKey,
  CombinedKeySet,
  RemoteKeySet,
  StaticKeySet,
  type JwksOptions,
  type JwtKeyInput,
  type KeyResolver,
} from './key-set.js'
import {
  DEFAULT_CLOCK_TOLERANCE_SECONDS,
  DEFAULT_JWKS_CACHE_MAX_AGE_MS,
  DEFAULT_JWKS_COOLDOWN_MS,
  DEFAULT_JWKS_TIMEOUT_MS,
  DEFAULT_JWT_CACHE_MAX,
  DEFAULT_JWT_CACHE_TTL_MS,
  DEFAULT_JWT_TYPES,
  DEFAULT_MAX_EXPIRES_IN_SECONDS,
  DEFAULT_MAX_TOKEN_LENGTH,
  DEFAULT_MAX_TOKEN_LIFETIME_SECONDS,
  MAX_CLOCK_TOLERANCE_SECONDS,
} from '../defaults.js'

/** Verified JWT claims: a deeply frozen plain object; look attributes up with `Object.hasOwn`. */
export type JwtClaims = Readonly<Record<string, unknown>>

/** JWT authentication options. */
export interface JwtOptions {
  /** Static keys, each bound to one algorithm. */
  readonly keys?: readonly JwtKeyInput[]
  /** Shorthand for one HS256 key: `keys: [{ alg: 'HS256', secret }]`. */
  readonly secret?: string | Uint8Array
  /** A remote JWK Set (URL or options), consulted when no static key matches. */
  readonly jwks?: string | URL | JwksOptions
  /**
   * Algorithms accepted. `none` can never be listed.
   * @default the algorithms of the static keys; required when only `jwks` is given
   */
  readonly algorithms?: readonly JwsAlgorithm[]
  /**
   * Accepted `iss` values: tokens without a matching `iss` are refused. Required (RFC 8725 §3.8):
   * leaving it out is a {@link ConfigError}; write `issuer: false` to accept any issuer on purpose.
   */
  readonly issuer?: string | readonly string[] | false
  /**
   * Accepted `aud` values: a token must name at least one. Required (RFC 8725 §3.9): leaving it out
   * is a {@link ConfigError}; write `audience: false` to accept any audience on purpose.
   */
  readonly audience?: string | readonly string[] | false
  /** Allowed clock skew for `exp`, `nbf` and `iat`, in seconds (at most 300). @default 30 */
  readonly clockToleranceSeconds?: number
  /** Refuse tokens without `exp`. @default true */
  readonly requireExpiration?: boolean
  /** Refuse tokens whose `iat` is older than this (requires `iat`). */
  readonly maxTokenAgeSeconds?: number
  /**
   * Longest lifetime accepted, `exp − iat`, in seconds (no clock tolerance: both are the issuer's
   * times): longer tokens are refused with `ERR_JWT_LIFETIME_TOO_LONG`. When you set it, `iat` is
   * required (a token without it is refused, `ERR_JWT_INVALID`, reason `iat is required`); the
   * default bounds every token that carries `iat` and leaves one without it to
   * `maxExpiresInSeconds`, since `iat` is optional in RFC 7519 §4.1.6. `false` switches it off.
   * 24 h because access tokens are meant to be short-lived (identity providers commonly issue them
   * for 5 min to 1 h): a day admits every usual setting and refuses week- or year-long tokens that
   * turn a leak into a lasting credential.
   * @default 86400
   */
  readonly maxTokenLifetimeSeconds?: number | false
  /**
   * Farthest `exp` accepted, counted from now, in seconds (plus the clock tolerance): a token
   * expiring later is refused with `ERR_JWT_EXPIRY_TOO_FAR`. It catches an `exp` written in
   * milliseconds (about 50,000 years ahead) even where `maxTokenLifetimeSeconds` is off for
   * deliberately long-lived service tokens, which a year still admits. `false` switches it off.
   * @default 31536000 (365 days)
   */
  readonly maxExpiresInSeconds?: number | false
  /** Longest token accepted, in characters. @default 8192 */
  readonly maxTokenLength?: number
  /** Accepted `typ` header values (case-insensitive). @default ['JWT', 'at+jwt', 'application/jwt', 'application/at+jwt'] */
  readonly types?: readonly string[]
  /** Refuse tokens without a `typ` header. @default false */
  readonly requireType?: boolean
  /** Claim holding the roles. @default 'roles' */
  readonly rolesClaim?: string
  /** Builds the principal from verified claims; return `undefined` to refuse the token. */
  readonly toPrincipal?: (claims: JwtClaims) => Principal | undefined
  /** Cache of verified tokens; `false` disables it. @default { max: 10000, ttlMs: 300000 } */
  readonly cache?: false | { readonly max?: number; readonly ttlMs?: number }
  /**
   * Revoked tokens: after a token verifies (and on every token-cache hit) the list is consulted
   * once, and a token it names (by `jti`, or by `sub` with `iat` before a cut-off) is refused with
   * `ERR_JWT_REVOKED` (401). `createMemoryRevocationList()` for one process,
   * `createRedisRevocationList()` from `@portcullis/redis` for many. Its `maxTokenLifetimeSeconds`
   * must be at least this verifier's `maxTokenLifetimeSeconds` (or `maxExpiresInSeconds` when the
   * lifetime bound is off), so that no entry is forgotten while a token it matches is still
   * accepted; a smaller one is a {@link ConfigError}.
   * @default none (no revocation lookups)
   */
  readonly revocations?: RevocationList
}

/** The result of verifying a JWT: a value, never an exception. */
export type JwtVerifyResult =
  | { readonly ok: true; readonly principal: Principal; readonly claims: JwtClaims }
  | { readonly ok: false; readonly error: AuthError }

/** A configured JWT verifier. */
export interface JwtVerifier {
  /** Verifies a compact JWT. */
  verify(token: string): Promise<JwtVerifyResult>
  /**
   * {@link JwtVerifier.verify}, answered synchronously when the keys are at hand (static keys, a
   * JWKS already fetched, a cached token): a promise only when a key source must be waited for.
   * The gate uses it to spare a turn of the event loop per request.
   */
  verifyNow(token: string): JwtVerifyResult | Promise<JwtVerifyResult>
  /** Number of cached verified tokens. */
  readonly cacheSize: number
}

interface CacheEntry {
  readonly principal: Principal
  readonly claims: JwtClaims
  readonly expiresAtMs: number
}

const OPTION_NAMES = [
  'keys',
  'secret',
  'jwks',
  'algorithms',
  'issuer',
  'audience',
  'clockToleranceSeconds',
  'requireExpiration',
  'maxTokenAgeSeconds',
  'maxTokenLifetimeSeconds',
  'maxExpiresInSeconds',
  'maxTokenLength',
  'types',
  'requireType',
  'rolesClaim',
  'toPrincipal',
  'cache',
  'revocations',
]

const SCOPE_TOKEN = /^[\x21\x23-\x5b\x5d-\x7e]{1,256}$/

/** Splits `scope` (RFC 8693 §4.2, space-separated) or `scp` (string or array) into scope tokens. */
function scopesFrom(claims: JwtClaims): string[] {
  const raw = claims.scope ?? claims.scp
  const list = typeof raw === 'string' ? raw.split(' ') : Array.isArray(raw) ? raw : []
  const out: string[] = []
  // Type-confused entries (numbers, objects) never grant anything.
  for (const s of list) if (typeof s === 'string' && SCOPE_TOKEN.test(s)) out.push(s)
  return out
}

function rolesFrom(claims: JwtClaims, claim: string): RoleID[] {
  const raw = claims[claim]
  const out: RoleID[] = []
  if (!Array.isArray(raw)) return out
  for (const r of raw) {
    const role = parseRoleId(r)
    if (role !== undefined) out.push(role)
  }
  return out
}

/**
 * `issuer` / `audience`: a list, or `false` for "any" said explicitly. RFC 8725 §3.8 (issuer) and
 * §3.9 (audience): a verifier must check both, so leaving one out is refused at start-up rather
 * than silently accepting tokens minted for another issuer or another service.
 */
function requiredListOption(
  v: TypeValidator,
  field: 'issuer' | 'audience',
  value: unknown,
): ReadonlySet<string> | null {
  if (value === false) return null
  if (value === undefined) {
    const claim = field === 'issuer' ? 'iss' : 'aud'
    v.fail(
      field,
      `is required (RFC 8725 §${field === 'issuer' ? '3.8' : '3.9'}): set the accepted "${claim}" value(s), e.g. ${field}: '${field === 'issuer' ? 'https://id.example' : 'my-api'}', or ${field}: false to accept any ${field} on purpose`,
    )
    return null
  }
  return listOption(v, field, value)
}

/** A positive number of seconds, `false` (off), or the default when left out. */
function boundOption(
  v: TypeValidator,
  field: string,
  value: unknown,
  fallback: number,
): number | undefined {
  if (value === false) return undefined
  return v.integerOr(field, value, fallback, { min: 1 })
}

function listOption(v: TypeValidator, field: string, value: unknown): ReadonlySet<string> | null {
  if (value === undefined) return null
  const list = typeof value === 'string' ? [value] : value
  const items = v.array(field, list, (iv, i, item) => iv.string(i, item), { nonEmpty: true })
  return items === undefined ? null : new Set(items)
}

/**
 * Creates a JWT verifier. Validates every option and imports every static key now.
 * @throws {ConfigError} for a bad option or an unusable key
 * @example
 * ```ts
 * const jwt = createJwtVerifier({ secret: process.env.JWT_SECRET, issuer: 'https://id.example', audience: 'api' })
 * const result = await jwt.verify(token)
 * ```
 */
export function createJwtVerifier(
  options: Readonly<JwtOptions>,
  deps: {
    readonly now: Clock
    readonly warn?: (message: string) => void
    /** Counts cache hits and misses (`keyCacheLookups`, cache `jwt`). @default noopMetrics */
    readonly metrics?: MetricsClient
  },
): JwtVerifier {
  const v = new TypeValidator('jwt')
  v.knownKeys(options as Record<string, unknown>, OPTION_NAMES)

  const staticKeys = []
  if (options.secret !== undefined)
    staticKeys.push(bindKey({ alg: 'HS256', secret: options.secret }, 'jwt.secret'))
  if (options.keys !== undefined) {
    v.array('keys', options.keys, (kv, i, item) => {
      const key = kv.object(i, item)
      return key === undefined
        ? undefined
        : (staticKeys.push(bindKey(key as JwtKeyInput, kv.path(i))), true)
    })
  }
  let remote: RemoteKeySet | undefined
  if (options.jwks !== undefined) {
    const j =
      typeof options.jwks === 'string' || options.jwks instanceof URL
        ? { url: options.jwks }
        : options.jwks
    let url: URL | undefined
    try {
      url = new URL(j.url)
      if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new Error('not http(s)')
    } catch {
      v.fail('jwks.url', `must be an http(s) URL, received ${describeValue(j.url)}`)
    }
    const jv = v.child('jwks')
    const cacheMaxAgeMs = jv.integerOr(
      'cacheMaxAgeMs',
      j.cacheMaxAgeMs,
      DEFAULT_JWKS_CACHE_MAX_AGE_MS,
      { min: 0 },
    )
    const cooldownMs = jv.integerOr('cooldownMs', j.cooldownMs, DEFAULT_JWKS_COOLDOWN_MS, {
      min: 0,
    })
    const timeoutMs = jv.integerOr('timeoutMs', j.timeoutMs, DEFAULT_JWKS_TIMEOUT_MS, { min: 1 })
    if (
      url !== undefined &&
      cacheMaxAgeMs !== undefined &&
      cooldownMs !== undefined &&
      timeoutMs !== undefined
    ) {
      remote = new RemoteKeySet({ url, cacheMaxAgeMs, cooldownMs, timeoutMs })
    }
  }

  let algorithms: JwsAlgorithm[] | undefined
  if (options.algorithms !== undefined) {
    algorithms = v.array(
      'algorithms',
      options.algorithms,
      (av, i, item) =>
        isJwsAlgorithm(item)
          ? item
          : av.fail(
              i,
              item === 'none'
                ? 'algorithm "none" is never accepted'
                : `unknown algorithm ${describeValue(item)}; expected one of ${JWS_ALGORITHMS.join(', ')}`,
            ),
      { nonEmpty: true },
    )
  } else if (staticKeys.length > 0) {
    algorithms = [...new Set(staticKeys.map((k) => k.alg))]
  } else if (remote !== undefined) {
    v.fail('algorithms', 'required when keys come from a JWKS')
  }
  if (staticKeys.length === 0 && remote === undefined && options.jwks === undefined) {
    v.fail('keys', 'give at least one of "secret", "keys" or "jwks"')
  }
  for (const k of staticKeys) {
    if (algorithms !== undefined && !algorithms.includes(k.alg)) {
      v.warn(
        `jwt.keys: a key for ${k.alg} is configured but ${k.alg} is not in jwt.algorithms; it will never be used`,
      )
    }
  }

  const tolerance = v.integerOr(
    'clockToleranceSeconds',
    options.clockToleranceSeconds,
    DEFAULT_CLOCK_TOLERANCE_SECONDS,
    {
      min: 0,
      max: MAX_CLOCK_TOLERANCE_SECONDS,
    },
  )
  const requireExp =
    options.requireExpiration === undefined
      ? true
      : v.boolean('requireExpiration', options.requireExpiration)
  const maxAge = v.integerOr('maxTokenAgeSeconds', options.maxTokenAgeSeconds, undefined, {
    min: 1,
  })
  const maxLifetime = boundOption(
    v,
    'maxTokenLifetimeSeconds',
    options.maxTokenLifetimeSeconds,
    DEFAULT_MAX_TOKEN_LIFETIME_SECONDS,
  )
  const maxExpiresIn = boundOption(
    v,
    'maxExpiresInSeconds',
    options.maxExpiresInSeconds,
    DEFAULT_MAX_EXPIRES_IN_SECONDS,
  )
  const maxTokenLength = v.integerOr(
    'maxTokenLength',
    options.maxTokenLength,
    DEFAULT_MAX_TOKEN_LENGTH,
    { min: 64, max: 65536 },
  )
  const issuers = requiredListOption(v, 'issuer', options.issuer)
  const audiences = requiredListOption(v, 'audience', options.audience)
  const types = v.array(
    'types',
    options.types ?? DEFAULT_JWT_TYPES,
    (tv, i, t) => tv.string(i, t)?.toLowerCase(),
    { nonEmpty: true },
  )
  const requireType =
    options.requireType === undefined ? false : v.boolean('requireType', options.requireType)
  const rolesClaim =
    options.rolesClaim === undefined ? 'roles' : v.string('rolesClaim', options.rolesClaim)
  const toPrincipal =
    options.toPrincipal === undefined
      ? undefined
      : v.function<(c: JwtClaims) => Principal | undefined>('toPrincipal', options.toPrincipal)
  let cacheMax = DEFAULT_JWT_CACHE_MAX
  let cacheTtlMs = DEFAULT_JWT_CACHE_TTL_MS
  if (options.cache === false) cacheMax = 0
  else if (options.cache !== undefined) {
    const c = v.object('cache', options.cache)
    if (c !== undefined) {
      cacheMax =
        c.max === undefined ? cacheMax : (v.child('cache').integer('max', c.max, { min: 0 }) ?? 0)
      cacheTtlMs =
        c.ttlMs === undefined
          ? cacheTtlMs
          : (v.child('cache').integer('ttlMs', c.ttlMs, { min: 1 }) ?? 1)
    }
  }
  let revocations: RevocationList | undefined
  if (options.revocations !== undefined) {
    if (!isRevocationList(options.revocations)) {
      v.fail(
        'revocations',
        `must be a revocation list (createMemoryRevocationList(), createRedisRevocationList()), received ${describeValue(options.revocations)}`,
      )
    } else {
      revocations = options.revocations
      const bound = maxLifetime ?? maxExpiresIn
      const kept = revocations.maxTokenLifetimeSeconds
      if (bound === undefined)
        v.fail(
          'revocations',
          'needs a bound on token lifetime: set maxTokenLifetimeSeconds or maxExpiresInSeconds, so that entries can be forgotten',
        )
      else if (!(kept >= bound))
        v.fail(
          'revocations',
          `keeps entries for tokens living up to ${String(kept)} s but this verifier accepts tokens living up to ${bound} s (${maxLifetime === undefined ? 'maxExpiresInSeconds' : 'maxTokenLifetimeSeconds'}); give the list maxTokenLifetimeSeconds: ${bound}`,
        )
    }
  }
  v.assert(deps.warn)
  if (
    algorithms === undefined ||
    tolerance === undefined ||
    maxTokenLength === undefined ||
    types === undefined
  ) {
    throw new ConfigError('jwt: invalid options')
  }

  const local = new StaticKeySet(staticKeys)
  const keys: KeyResolver = remote === undefined ? local : new CombinedKeySet(local, remote)
  const jwsOptions: JwsVerifyOptions = {
    algorithms: new Set(algorithms),
    keys,
    maxTokenLength,
    types: new Set(types),
    requireTyp: requireType === true,
  }
  return new Verifier(jwsOptions, {
    now: deps.now,
    toleranceMs: tolerance * 1000,
    requireExp: requireExp !== false,
    maxAgeMs: maxAge === undefined ? undefined : maxAge * 1000,
    maxLifetimeMs: maxLifetime === undefined ? undefined : maxLifetime * 1000,
    // Only a bound the user set makes iat mandatory: the default must not refuse issuers that
    // omit the optional claim.
    requireIat: options.maxTokenLifetimeSeconds !== undefined && maxLifetime !== undefined,
    maxExpiresInMs: maxExpiresIn === undefined ? undefined : maxExpiresIn * 1000,
    issuers,
    audiences,
    rolesClaim: rolesClaim ?? 'roles',
    toPrincipal,
    cache: cacheMax > 0 ? new LRUCache<string, CacheEntry>({ max: cacheMax }) : undefined,
    cacheTtlMs,
    metrics: deps.metrics ?? noopMetrics,
    revocations,
  })
}

interface ClaimRules {
  readonly now: Clock
  readonly toleranceMs: number
  readonly requireExp: boolean
  readonly maxAgeMs: number | undefined
  readonly maxLifetimeMs: number | undefined
  readonly requireIat: boolean
  readonly maxExpiresInMs: number | undefined
  readonly issuers: ReadonlySet<string> | null
  readonly audiences: ReadonlySet<string> | null
  readonly rolesClaim: string
  readonly toPrincipal: ((claims: JwtClaims) => Principal | undefined) | undefined
  readonly cache: LRUCache<string, CacheEntry> | undefined
  readonly cacheTtlMs: number
  readonly metrics: MetricsClient
  readonly revocations: RevocationList | undefined
}

const CACHE_HIT = Object.freeze({ cache: 'jwt', result: 'hit' })
const CACHE_MISS = Object.freeze({ cache: 'jwt', result: 'miss' })

const invalid = (reason: string): JwtVerifyResult => ({
  ok: false,
  error: new AuthError('ERR_JWT_INVALID', 'The access token is invalid', { reason }),
})
const revoked = (rule: RevocationRule): JwtVerifyResult => ({
  ok: false,
  error: new AuthError('ERR_JWT_REVOKED', 'The access token was revoked', {
    reason: rule === 'jti' ? 'jti revoked' : 'subject revoked (iat before the cut-off)',
  }),
})
const malformed = (reason: string): JwtVerifyResult => ({
  ok: false,
  error: new AuthError('ERR_JWT_MALFORMED', 'The access token is malformed', { reason }),
})

function deepFreeze(value: object): object {
  Object.freeze(value)
  for (const v of Object.values(value))
    if (typeof v === 'object' && v !== null && !Object.isFrozen(v)) deepFreeze(v)
  return value
}

/** A NumericDate (RFC 7519 §2): a finite JSON number of seconds. */
function numericDate(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isFinite(value) ? value * 1000 : undefined
}

class Verifier implements JwtVerifier {
  constructor(
    private readonly jws: JwsVerifyOptions,
    private readonly rules: ClaimRules,
  ) {}

  get cacheSize(): number {
    return this.rules.cache?.size ?? 0
  }

  verify(token: string): Promise<JwtVerifyResult> {
    try {
      const result = this.verifyNow(token)
      return result instanceof Promise ? result : Promise.resolve(result)
    } catch (error) {
      return Promise.reject(error as Error)
    }
  }

  verifyNow(token: string): JwtVerifyResult | Promise<JwtVerifyResult> {
    const { cache } = this.rules
    // Keyed by a digest, so that no bearer token sits in memory as a map key.
    if (typeof token !== 'string') return malformed('token is not a string')
    const cacheKey =
      cache === undefined || token.length > this.jws.maxTokenLength
        ? undefined
        : hash('sha256', token, 'base64')
    if (cacheKey !== undefined) {
      const hit = cache?.get(cacheKey)
      if (hit !== undefined) {
        if (this.rules.now() < hit.expiresAtMs) {
          this.rules.metrics.increment('keyCacheLookups', CACHE_HIT)
          // A revocation after the token was cached: refused and evicted here.
          const rule = this.rules.revocations?.check(hit.claims)
          if (rule !== undefined) {
            cache?.delete(cacheKey)
            return revoked(rule)
          }
          return { ok: true, principal: hit.principal, claims: hit.claims }
        }
        cache?.delete(cacheKey)
      }
      this.rules.metrics.increment('keyCacheLookups', CACHE_MISS)
    }
    const pending = verifyCompactJwsNow(token, this.jws)
    // Static keys answer at once: no promise to wait for.
    return pending instanceof Promise
      ? pending.then((jws) => this.#verified(jws, cacheKey))
      : this.#verified(pending, cacheKey)
  }

  /** The claim checks of a token whose signature was checked. */
  #verified(jws: JwsResult, cacheKey: string | undefined): JwtVerifyResult {
    const { cache, now } = this.rules
    if (!jws.ok) {
      if (jws.kind === 'unavailable') {
        return {
          ok: false,
          error: new AuthError('ERR_JWKS_UNAVAILABLE', 'Key source unavailable', {
            reason: jws.reason,
          }),
        }
      }
      return jws.kind === 'malformed' ? malformed(jws.reason) : invalid(jws.reason)
    }
    let claims: unknown
    try {
      claims = parseStrictJsonBytes(jws.payload)
    } catch (e) {
      return malformed(`claims are not strict JSON (${(e as Error).message})`)
    }
    if (typeof claims !== 'object' || claims === null || Array.isArray(claims))
      return malformed('claims are not a JSON object')
    // Frozen all the way down: cached claims are shared by every request carrying the token.
    const c = deepFreeze(claims) as JwtClaims
    const checked = this.#checkClaims(c, now())
    if (checked !== undefined) return checked
    // One lookup, after every other check: a revoked token is never cached.
    const rule = this.rules.revocations?.check(c)
    if (rule !== undefined) return revoked(rule)
    const principal = this.#principal(c, jws.kid)
    if (principal === undefined) return invalid('no usable subject')
    if (cacheKey !== undefined && cache !== undefined) {
      // Never cached past the instant a fresh verification would refuse it (exp, or iat + max age).
      const exp = numericDate(c.exp)
      const iat = numericDate(c.iat)
      const maxAge = this.rules.maxAgeMs
      const expiresAtMs = Math.min(
        now() + this.rules.cacheTtlMs,
        exp === undefined ? Infinity : exp + this.rules.toleranceMs,
        maxAge === undefined || iat === undefined
          ? Infinity
          : iat + maxAge + this.rules.toleranceMs + 1,
      )
      cache.set(cacheKey, { principal, claims: c, expiresAtMs })
    }
    return { ok: true, principal, claims: c }
  }

  #checkClaims(c: JwtClaims, nowMs: number): JwtVerifyResult | undefined {
    const r = this.rules
    const exp = numericDate(c.exp)
    if (c.exp !== undefined && exp === undefined) return invalid('exp is not a NumericDate')
    if (exp === undefined && r.requireExp) return invalid('exp is required')
    // RFC 7519 §4.1.4: the current time must be before exp; skew is allowed by the tolerance.
    if (exp !== undefined && nowMs >= exp + r.toleranceMs) {
      return {
        ok: false,
        error: new AuthError('ERR_JWT_EXPIRED', 'The access token expired', {
          reason: 'exp passed',
        }),
      }
    }
    const nbf = numericDate(c.nbf)
    if (c.nbf !== undefined && nbf === undefined) return invalid('nbf is not a NumericDate')
    if (nbf !== undefined && nowMs + r.toleranceMs < nbf) return invalid('not yet valid (nbf)')
    const iat = numericDate(c.iat)
    if (c.iat !== undefined && iat === undefined) return invalid('iat is not a NumericDate')
    if (iat !== undefined && iat > nowMs + r.toleranceMs)
      return invalid('issued in the future (iat)')
    // A far-future exp first: an exp in milliseconds gets this code, not the lifetime one.
    if (r.maxExpiresInMs !== undefined && exp !== undefined) {
      if (exp - nowMs > r.maxExpiresInMs + r.toleranceMs) {
        return {
          ok: false,
          error: new AuthError('ERR_JWT_EXPIRY_TOO_FAR', 'The access token expires too far ahead', {
            reason: 'exp too far ahead',
          }),
        }
      }
    }
    if (r.maxLifetimeMs !== undefined) {
      if (iat === undefined && r.requireIat) return invalid('iat is required')
      if (exp !== undefined && iat !== undefined && exp - iat > r.maxLifetimeMs) {
        return {
          ok: false,
          error: new AuthError(
            'ERR_JWT_LIFETIME_TOO_LONG',
            'The access token lifetime is too long',
            { reason: 'exp - iat over maxTokenLifetimeSeconds' },
          ),
        }
      }
    }
    if (
      r.maxAgeMs !== undefined &&
      (iat === undefined || nowMs - iat > r.maxAgeMs + r.toleranceMs)
    ) {
      return invalid('too old (iat)')
    }
    if (r.issuers !== null && (typeof c.iss !== 'string' || !r.issuers.has(c.iss)))
      return invalid('issuer mismatch')
    if (r.audiences !== null) {
      const aud = c.aud
      const ok =
        typeof aud === 'string'
          ? r.audiences.has(aud)
          : Array.isArray(aud) &&
            aud.some((a) => typeof a === 'string' && r.audiences?.has(a) === true)
      if (!ok) return invalid('audience mismatch')
    }
    return undefined
  }

  #principal(c: JwtClaims, kid: string | undefined): Principal | undefined {
    if (this.rules.toPrincipal !== undefined) return this.rules.toPrincipal(c)
    const id = parseUserId(c.sub)
    if (id === undefined) return undefined
    const tokenId = parseTokenId(c.jti)
    const scopes = Object.freeze(scopesFrom(c))
    const roles = Object.freeze(rolesFrom(c, this.rules.rolesClaim))
    const attributes = Object.freeze({ claims: c, kid })
    // Two literals rather than a conditional spread (a slow path in V8).
    return Object.freeze(
      tokenId === undefined
        ? { id, method: 'jwt', scopes, roles, attributes }
        : { id, method: 'jwt', scopes, roles, tokenId, attributes },
    )
  }
}
