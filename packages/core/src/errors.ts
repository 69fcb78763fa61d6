/**
 * Errors and the single table that maps error codes to HTTP answers.
 *
 * Reachable from `@portcullis/core`.
 * @packageDocumentation
 */

/**
 * Every stable error code Portcullis produces. Codes follow `ERR_<AREA>_<REASON>` and never change
 * once published: switch on `code`, never parse the message.
 */
export type AuthErrorCode =
  | 'ERR_AUTH_REQUIRED'
  | 'ERR_AUTH_INVALID'
  | 'ERR_AUTH_AMBIGUOUS'
  | 'ERR_AUTH_MALFORMED'
  | 'ERR_AUTH_QUERY_CREDENTIALS'
  | 'ERR_REQUEST_MALFORMED'
  | 'ERR_REQUEST_TOO_LARGE'
  | 'ERR_REQUEST_REJECTED'
  | 'ERR_ROUTE_NOT_FOUND'
  | 'ERR_APIKEY_MALFORMED'
  | 'ERR_APIKEY_INVALID'
  | 'ERR_APIKEY_NONCOMPLIANT'
  | 'ERR_JWT_MALFORMED'
  | 'ERR_JWT_INVALID'
  | 'ERR_JWT_EXPIRED'
  | 'ERR_JWT_LIFETIME_TOO_LONG'
  | 'ERR_JWT_EXPIRY_TOO_FAR'
  | 'ERR_JWT_REVOKED'
  | 'ERR_SCOPE_INSUFFICIENT'
  | 'ERR_POLICY_DENIED'
  | 'ERR_AUTHZ_STEP_UP_REQUIRED'
  | 'ERR_RATE_LIMITED'
  | 'ERR_QUOTA_EXCEEDED'
  | 'ERR_CONFIG_INVALID'
  | 'ERR_KEYSTORE_UNAVAILABLE'
  | 'ERR_JWKS_UNAVAILABLE'
  | 'ERR_STORE_UNAVAILABLE'
  | 'ERR_RATELIMIT_UNAVAILABLE'
  | 'ERR_QUOTA_UNAVAILABLE'
  | 'ERR_AUDIT_UNAVAILABLE'
  | 'ERR_DEPENDENCY_TIMEOUT'
  | 'ERR_INTERNAL_ERROR'
  | 'ERR_AUTH_THROTTLED'

/** The RFC 6750 §3.1 error value a code maps to in a `WWW-Authenticate: Bearer` challenge. */
export type BearerErrorValue =
  | 'invalid_request'
  | 'invalid_token'
  | 'insufficient_scope'
  // RFC 9470 §3: the step-up authentication challenge.
  | 'insufficient_user_authentication'

/** One row of the code table: how a code is answered over HTTP. */
export interface ErrorCodeInfo {
  /** HTTP status code. */
  readonly status: number
  /** Short, stable human title; the RFC 9457 `title`. */
  readonly title: string
  /** Slug appended to the problem type base URI (RFC 9457 `type`). */
  readonly slug: string
  /** RFC 6750 error value for the challenge, or `null` when the challenge carries no error. */
  readonly bearerError: BearerErrorValue | null
  /** Whether the error's message may be sent to clients (never for 5xx). */
  readonly exposable: boolean
}

const row = (
  status: number,
  slug: string,
  title: string,
  bearerError: BearerErrorValue | null,
): ErrorCodeInfo => Object.freeze({ status, slug, title, bearerError, exposable: status < 500 })

/**
 * THE table from error code to HTTP answer. Adapters read it through {@link httpStatusFor} and
 * {@link errorCodeInfo}; none picks a status on its own, so every framework answers alike.
 */
export const ERROR_CODES: Readonly<Record<AuthErrorCode, ErrorCodeInfo>> = Object.freeze({
  ERR_AUTH_REQUIRED: row(401, 'authentication-required', 'Authentication required', null),
  // Credentials of a custom authenticator (a passport strategy, Basic...) that did not verify.
  ERR_AUTH_INVALID: row(401, 'invalid-credentials', 'Invalid credentials', null),
  ERR_AUTH_AMBIGUOUS: row(400, 'ambiguous-credentials', 'Ambiguous credentials', 'invalid_request'),
  ERR_AUTH_MALFORMED: row(400, 'malformed-credentials', 'Malformed credentials', 'invalid_request'),
  ERR_AUTH_QUERY_CREDENTIALS: row(
    400,
    'credentials-in-query',
    'Credentials in the query string are not accepted',
    'invalid_request',
  ),
  ERR_REQUEST_MALFORMED: row(400, 'malformed-request', 'Malformed request', null),
  ERR_REQUEST_TOO_LARGE: row(413, 'request-too-large', 'Request too large', null),
  // Another 4xx raised by the application (404, 409, 422...): its status is kept (see `status`).
  ERR_REQUEST_REJECTED: row(400, 'request-rejected', 'Request rejected', null),
  // No route matches the request: a framework's own 404, rendered by an adapter's not-found hook.
  ERR_ROUTE_NOT_FOUND: row(404, 'route-not-found', 'Not found', null),
  ERR_APIKEY_MALFORMED: row(401, 'invalid-token', 'Invalid API key', 'invalid_token'),
  ERR_APIKEY_INVALID: row(401, 'invalid-token', 'Invalid API key', 'invalid_token'),
  // A key-management action (create, update, import) broke a compliance rule of the manager.
  ERR_APIKEY_NONCOMPLIANT: row(422, 'key-noncompliant', 'API key not compliant', null),
  ERR_JWT_MALFORMED: row(401, 'invalid-token', 'Invalid token', 'invalid_token'),
  ERR_JWT_INVALID: row(401, 'invalid-token', 'Invalid token', 'invalid_token'),
  ERR_JWT_EXPIRED: row(401, 'token-expired', 'Token expired', 'invalid_token'),
  // exp − iat over `jwt.maxTokenLifetimeSeconds`.
  ERR_JWT_LIFETIME_TOO_LONG: row(
    401,
    'token-lifetime-too-long',
    'Token lifetime too long',
    'invalid_token',
  ),
  // exp − now over `jwt.maxExpiresInSeconds` (e.g. an exp written in milliseconds).
  ERR_JWT_EXPIRY_TOO_FAR: row(
    401,
    'token-expiry-too-far',
    'Token expiry too far ahead',
    'invalid_token',
  ),
  // The token's jti, or its subject before a cut-off, is on `jwt.revocations`.
  ERR_JWT_REVOKED: row(401, 'token-revoked', 'Token revoked', 'invalid_token'),
  ERR_SCOPE_INSUFFICIENT: row(
    403,
    'insufficient-scope',
    'Insufficient scope',
    'insufficient_scope',
  ),
  ERR_POLICY_DENIED: row(403, 'forbidden', 'Forbidden', 'insufficient_scope'),
  // RFC 9470: the request needs a stronger authentication (MFA) before policy allows it.
  ERR_AUTHZ_STEP_UP_REQUIRED: row(
    401,
    'step-up-required',
    'Stronger authentication required',
    'insufficient_user_authentication',
  ),
  ERR_RATE_LIMITED: row(429, 'rate-limited', 'Too many requests', null),
  ERR_QUOTA_EXCEEDED: row(429, 'quota-exceeded', 'Quota exceeded', null),
  ERR_CONFIG_INVALID: row(500, 'internal', 'Internal server error', null),
  ERR_KEYSTORE_UNAVAILABLE: row(503, 'unavailable', 'Service unavailable', null),
  ERR_JWKS_UNAVAILABLE: row(503, 'unavailable', 'Service unavailable', null),
  ERR_STORE_UNAVAILABLE: row(503, 'unavailable', 'Service unavailable', null),
  ERR_RATELIMIT_UNAVAILABLE: row(503, 'unavailable', 'Service unavailable', null),
  ERR_QUOTA_UNAVAILABLE: row(503, 'unavailable', 'Service unavailable', null),
  ERR_AUDIT_UNAVAILABLE: row(503, 'unavailable', 'Service unavailable', null),
  ERR_DEPENDENCY_TIMEOUT: row(503, 'unavailable', 'Service unavailable', null),
  ERR_INTERNAL_ERROR: row(500, 'internal', 'Internal server error', null),
  // Too many failed authentications from this address or for this credential id: refused
  // before any verification until the lock-out ends (`Retry-After`), see the failure throttle.
  ERR_AUTH_THROTTLED: row(
    429,
    'authentication-throttled',
    'Too many failed authentication attempts',
    null,
  ),
})

/** Every known error code, in table order. */
export const ERROR_CODE_LIST: readonly AuthErrorCode[] = Object.freeze(
  Object.keys(ERROR_CODES) as AuthErrorCode[],
)

/** Whether `code` is one of Portcullis's error codes. */
export function isAuthErrorCode(code: unknown): code is AuthErrorCode {
  return typeof code === 'string' && Object.hasOwn(ERROR_CODES, code)
}

/** The table row for a code. */
export function errorCodeInfo(code: AuthErrorCode): ErrorCodeInfo {
  return ERROR_CODES[code]
}

/** The HTTP status for an error code, from the one table in core. */
export function httpStatusFor(code: AuthErrorCode): number {
  return ERROR_CODES[code].status
}

/** Whether an error's message may be shown to clients (false for every 5xx). */
export function isExposable(code: AuthErrorCode): boolean {
  return ERROR_CODES[code].exposable
}

const ERROR_BRAND: unique symbol = Symbol.for('@portcullis/core/error') as never

/** Options accepted by {@link AuthError}'s constructor. */
export interface AuthErrorOptions {
  /** The underlying error. */
  readonly cause?: unknown
  /**
   * Internal reason, recorded in traces and audit events but never sent to clients, e.g.
   * `revoked` for a revoked key answered as plain `ERR_APIKEY_INVALID`.
   */
  readonly reason?: string
  /** For `ERR_SCOPE_INSUFFICIENT`: the scopes the route needs (the challenge's `scope=`). */
  readonly requiredScopes?: readonly string[]
  /** For `ERR_REQUEST_REJECTED` only: the application's own 4xx status, kept as is. */
  readonly status?: number
}

/** The one error base of Portcullis. Every error it throws or returns carries a stable `code`. */
export class AuthError extends Error {
  /** Stable machine-readable code. */
  readonly code: AuthErrorCode
  /** Internal reason for traces and audit (never sent to clients). */
  readonly reason: string | undefined
  /** Scopes the request lacked, for `insufficient_scope` challenges. */
  readonly requiredScopes: readonly string[] | undefined
  readonly #status: number

  constructor(code: AuthErrorCode, message: string, options: AuthErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = new.target.name
    this.code = code
    this.reason = options.reason
    this.requiredScopes = options.requiredScopes
    const own = options.status
    this.#status =
      code === 'ERR_REQUEST_REJECTED' &&
      own !== undefined &&
      Number.isInteger(own) &&
      own >= 400 &&
      own < 500
        ? own
        : ERROR_CODES[code].status
  }

  /** HTTP status of this error, from the code table (an application's 4xx for `ERR_REQUEST_REJECTED`). */
  get status(): number {
    return this.#status
  }
}
Object.defineProperty(AuthError.prototype, ERROR_BRAND, { value: true })

/** A bad option given to a `create*()` factory. Thrown at creation, never on a request. */
export class ConfigError extends AuthError {
  /** Every problem found, each as `path: message`. */
  readonly issues: readonly string[]

  constructor(issues: readonly string[] | string, options: AuthErrorOptions = {}) {
    const list = typeof issues === 'string' ? [issues] : issues
    super(
      'ERR_CONFIG_INVALID',
      list.length === 1 ? String(list[0]) : `invalid options:\n- ${list.join('\n- ')}`,
      options,
    )
    this.issues = Object.freeze([...list])
  }
}

/**
 * Whether `value` is a Portcullis error. Checks a `Symbol.for` brand rather than `instanceof`, so it
 * holds across duplicate installs and mixed ESM/CJS loading.
 */
export function isAuthError(value: unknown): value is AuthError {
  return (
    typeof value === 'object' &&
    value !== null &&
    (value as Record<symbol, unknown>)[ERROR_BRAND] === true
  )
}

/** What a limit or quota denial carries besides its code. */
export interface RateLimitedDetails {
  /** Name of the violated policy (`RateLimit-Policy` item). */
  readonly policy: string
  /** Its limit in the window. */
  readonly limit: number
  /** Units left (0 when denied). */
  readonly remaining: number
  /** Until the client may retry, in milliseconds. */
  readonly retryAfterMs: number
}

/** A request over a rate limit (`ERR_RATE_LIMITED`) or a quota (`ERR_QUOTA_EXCEEDED`). */
export class RateLimitedError extends AuthError implements RateLimitedDetails {
  readonly policy: string
  readonly limit: number
  readonly remaining: number
  readonly retryAfterMs: number

  constructor(
    code: 'ERR_RATE_LIMITED' | 'ERR_QUOTA_EXCEEDED',
    details: RateLimitedDetails,
    options: AuthErrorOptions = {},
  ) {
    super(
      code,
      code === 'ERR_QUOTA_EXCEEDED'
        ? `Quota "${details.policy}" exhausted; retry in ${Math.ceil(details.retryAfterMs / 1000)} s`
        : `Rate limit "${details.policy}" exceeded; retry in ${Math.ceil(details.retryAfterMs / 1000)} s`,
      options,
    )
    this.policy = details.policy
    this.limit = details.limit
    this.remaining = details.remaining
    this.retryAfterMs = details.retryAfterMs
  }
}

/** Whether `value` is a {@link RateLimitedError} (by brand and code, across installs). */
export function isRateLimitedError(value: unknown): value is RateLimitedError {
  return (
    isAuthError(value) &&
    (value.code === 'ERR_RATE_LIMITED' || value.code === 'ERR_QUOTA_EXCEEDED') &&
    typeof (value as Partial<RateLimitedError>).retryAfterMs === 'number'
  )
}

/** Whether `value` is a {@link ConfigError}. */
export function isConfigError(value: unknown): value is ConfigError {
  return isAuthError(value) && value.code === 'ERR_CONFIG_INVALID'
}
