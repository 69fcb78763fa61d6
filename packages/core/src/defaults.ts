/**
 * Every default of Portcullis, one named constant each. The TSDoc `@default` tags of the options
 * repeat these values, and a test checks that they agree.
 *
 * Reachable from `@portcullis/core`.
 * @packageDocumentation
 */

/** `jwt.clockToleranceSeconds`. */
export const DEFAULT_CLOCK_TOLERANCE_SECONDS = 30
/** Upper bound of `jwt.clockToleranceSeconds`. */
export const MAX_CLOCK_TOLERANCE_SECONDS = 300
/**
 * `jwt.maxTokenLifetimeSeconds`: 24 h. The longest `exp − iat` accepted. Access tokens are meant to
 * be short-lived (identity providers commonly issue them for 5 min to 1 h); a day leaves room for
 * every usual setting while refusing the week- or year-long "access" tokens that turn a stolen
 * token into a lasting credential. The default bounds tokens that carry `iat`; a value set by the
 * user also makes `iat` required.
 */
export const DEFAULT_MAX_TOKEN_LIFETIME_SECONDS = 86_400
/**
 * `jwt.maxExpiresInSeconds`: 365 days. The farthest `exp` accepted, counted from now. It catches an
 * `exp` written in milliseconds (about 50,000 years ahead) or any absurd value even where
 * `maxTokenLifetimeSeconds` is switched off for deliberately long-lived service tokens, which a
 * year still admits.
 */
export const DEFAULT_MAX_EXPIRES_IN_SECONDS = 31_536_000
/** `jwt.maxTokenLength`, characters. */
export const DEFAULT_MAX_TOKEN_LENGTH = 8192
/** `jwt.types`. */
export const DEFAULT_JWT_TYPES: readonly string[] = Object.freeze([
  'JWT',
  'at+jwt',
  'application/jwt',
  'application/at+jwt',
])
/** `jwt.cache.max`. */
export const DEFAULT_JWT_CACHE_MAX = 10_000
/** `jwt.cache.ttlMs`. */
export const DEFAULT_JWT_CACHE_TTL_MS = 300_000
/** `jwt.jwks.cacheMaxAgeMs`. */
export const DEFAULT_JWKS_CACHE_MAX_AGE_MS = 600_000
/** `jwt.jwks.cooldownMs`. */
export const DEFAULT_JWKS_COOLDOWN_MS = 30_000
/** `jwt.jwks.timeoutMs`. */
export const DEFAULT_JWKS_TIMEOUT_MS = 5_000

/** `apiKeys.prefix`. */
export const DEFAULT_API_KEY_PREFIX = 'ptcl'
/** `apiKeys.header`. */
export const DEFAULT_API_KEY_HEADER = 'x-api-key'
/** `apiKeys.cache.max`. */
export const DEFAULT_API_KEY_CACHE_MAX = 10_000
/** `apiKeys.cache.ttlMs`. */
export const DEFAULT_API_KEY_CACHE_TTL_MS = 60_000
/** `apiKeys.cache.negativeMax`. */
export const DEFAULT_API_KEY_NEGATIVE_CACHE_MAX = 10_000
/** `apiKeys.cache.negativeTtlMs`. */
export const DEFAULT_API_KEY_NEGATIVE_CACHE_TTL_MS = 10_000
/** `apiKeys.usage.flushIntervalMs`: how often batched key usage is written. */
export const DEFAULT_API_KEY_USAGE_FLUSH_INTERVAL_MS = 10_000
/** `apiKeys.usage.maxBatch`: distinct keys pending that trigger an early usage write. */
export const DEFAULT_API_KEY_USAGE_MAX_BATCH = 1_000

/** `realm` of the `WWW-Authenticate` challenge. */
export const DEFAULT_REALM = 'api'
/** `problemTypeBase`: prefix of RFC 9457 problem `type` URIs. */
export const DEFAULT_PROBLEM_TYPE_BASE = 'urn:portcullis:problem:'
/** `requestIdHeader`. */
export const DEFAULT_REQUEST_ID_HEADER = 'x-request-id'
/** `credentialsRequired`. */
export const DEFAULT_CREDENTIALS_REQUIRED = true
/** `rejectAmbiguousCredentials`. */
export const DEFAULT_REJECT_AMBIGUOUS = true
/** Query parameters refused as credentials (`rejectQueryCredentials`). */
export const DEFAULT_QUERY_CREDENTIAL_PARAMS: readonly string[] = Object.freeze([
  'access_token',
  'api_key',
  'apikey',
  'token',
])

/** `audit.batchSize`: events written per sink call. */
export const DEFAULT_AUDIT_BATCH_SIZE = 256
/** `audit.flushIntervalMs`: longest an event waits in memory before being written. */
export const DEFAULT_AUDIT_FLUSH_INTERVAL_MS = 50
/** `audit.maxQueue`: events held in memory before `emit` reports backpressure. */
export const DEFAULT_AUDIT_MAX_QUEUE = 100_000
/** `audit.clockJumpThresholdMs`: a forward step of the wall clock beyond this is an audit event. */
export const DEFAULT_AUDIT_CLOCK_JUMP_THRESHOLD_MS = 300_000

/** `ratelimit.maxKeys` of the memory backend: windows kept per limiter. */
export const DEFAULT_RATE_LIMIT_MAX_KEYS = 100_000
/** `ratelimit.ipv6Subnet`: IPv6 clients are grouped by this prefix length (express-rate-limit 8). */
export const DEFAULT_IPV6_SUBNET = 56
/** `ratelimit.headers`. */
export const DEFAULT_RATE_LIMIT_HEADERS = 'draft-8'

/** `max` of `createLruCache`: entries kept before the least recently used is evicted. */
export const DEFAULT_CACHE_MAX = 10_000
/** `ttlMs` of `createLruCache` and `createRedisCache`: default time to live of an entry. */
export const DEFAULT_CACHE_TTL_MS = 60_000
