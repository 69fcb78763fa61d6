/**
 * RFC 9457 problem details and RFC 6750 `WWW-Authenticate` challenges for denials.
 *
 * Reachable from `@portcullis/core`.
 * @packageDocumentation
 */
import {
  AuthError,
  ERROR_CODES,
  isAuthError,
  isRateLimitedError,
  type AuthErrorCode,
} from '../errors.js'
import { toQuotedHeaderText } from '../validation/type-converter.js'

/** An RFC 9457 problem document as Portcullis sends it. */
export interface ProblemDetails {
  /** URI naming the problem type, e.g. `urn:portcullis:problem:invalid-token`. */
  readonly type: string
  /** Short summary, stable per type. */
  readonly title: string
  /** The HTTP status. */
  readonly status: number
  /** Explanation for this occurrence (omitted for 5xx). */
  readonly detail?: string
  /** Stable Portcullis error code (extension member). */
  readonly code: AuthErrorCode
  /** The request id, for support (extension member). */
  readonly requestId: string
  /** The scopes that were required (extension member, `insufficient_scope` only). */
  readonly requiredScopes?: readonly string[]
  /** The violated limit or quota policy (extension member, 429 only). */
  readonly policy?: string
  /** Seconds until a retry may succeed (extension member, 429 only; also in `Retry-After`). */
  readonly retryAfter?: number
}

/** The media type of problem documents. */
export const PROBLEM_CONTENT_TYPE = 'application/problem+json'

/** Builds the problem document for an error. 5xx details are never exposed. */
export function toProblemDetails(
  error: AuthError,
  requestId: string,
  typeBase: string,
): ProblemDetails {
  const info = ERROR_CODES[error.code]
  return {
    type: typeBase + info.slug,
    title: info.title,
    status: error.status,
    ...(info.exposable ? { detail: error.message } : {}),
    code: error.code,
    requestId,
    ...(error.requiredScopes === undefined ? {} : { requiredScopes: error.requiredScopes }),
    ...(isRateLimitedError(error)
      ? { policy: error.policy, retryAfter: Math.ceil(error.retryAfterMs / 1000) }
      : {}),
  }
}

/**
 * Builds challenges once per realm and code; `scope=` varies per route and is appended.
 * RFC 6750 §3: no `error` attribute when the request carried no credentials.
 */
export class ChallengeBuilder {
  readonly #realm: string
  readonly #extra: string
  readonly #byCode = new Map<AuthErrorCode, string | null>()

  /** @param others - challenges of other schemes (e.g. `Basic realm="api"`), added to every 401. */
  constructor(realm: string, others: readonly string[] = []) {
    this.#realm = `Bearer realm="${toQuotedHeaderText(realm)}"`
    this.#extra = others.map((c) => `, ${c.replace(/[^\x20-\x7e]/g, '')}`).join('')
  }

  /** The challenge for `error`, or `null` when its status takes none (429, 5xx). */
  for(error: AuthError): string | null {
    let base = this.#byCode.get(error.code)
    if (base === undefined) {
      base = this.#build(error.code, error.message)
      this.#byCode.set(error.code, base)
    }
    if (base === null || error.requiredScopes === undefined || error.requiredScopes.length === 0)
      return base
    return `${base}, scope="${toQuotedHeaderText(error.requiredScopes.join(' '))}"`
  }

  #build(code: AuthErrorCode, message: string): string | null {
    const info = ERROR_CODES[code]
    if (info.status !== 401 && info.status !== 403 && info.bearerError === null) return null
    const extra = info.status === 401 ? this.#extra : ''
    if (info.bearerError === null) return this.#realm + extra
    return `${this.#realm}, error="${info.bearerError}", error_description="${toQuotedHeaderText(message)}"${extra}`
  }
}

/** A complete HTTP answer for an error: what adapters write. */
export interface ErrorResponse {
  readonly status: number
  /** Lower-case header names; `content-type` is always `application/problem+json`. */
  readonly headers: Readonly<Record<string, string>>
  readonly problem: ProblemDetails
}

/**
 * Maps any error to an answer. Portcullis errors keep their code; other errors that carry a 4xx
 * `status`/`statusCode` (a body parser's "invalid JSON", "payload too large") become
 * `ERR_REQUEST_MALFORMED` / `ERR_REQUEST_TOO_LARGE`; everything else is a 500 whose message is
 * never sent.
 */
export function toAuthError(error: unknown): AuthError {
  if (isAuthError(error)) return error
  const e = error as {
    status?: unknown
    statusCode?: unknown
    expose?: unknown
    message?: unknown
    type?: unknown
  } | null
  const status = e?.status ?? e?.statusCode
  if (status === 413)
    return new AuthError('ERR_REQUEST_TOO_LARGE', 'The request body is too large', { cause: error })
  if (typeof status !== 'number' || status < 400 || status >= 500) {
    return new AuthError('ERR_INTERNAL_ERROR', 'Internal server error', { cause: error })
  }
  // Body parsers (body-parser, co-body, Fastify) flag unparsable bodies with 400.
  if (status === 400)
    return new AuthError('ERR_REQUEST_MALFORMED', 'The request is malformed', { cause: error })
  // An application's own 4xx (`ctx.throw(404)`, http-errors): keep the status; show the message
  // only when the error marks it safe (`expose`, as http-errors does for 4xx).
  const message =
    e?.expose === true && typeof e.message === 'string' && e.message !== ''
      ? e.message.slice(0, 500)
      : 'The request was rejected'
  return new AuthError('ERR_REQUEST_REJECTED', message, { cause: error, status })
}

/**
 * The error for a request that no route matches. Adapters' not-found hooks (Express
 * `notFoundHandler`, Koa `problemHandler`, Fastify `problemErrors`) render it, so every framework
 * answers an unknown route with the same 404 `ERR_ROUTE_NOT_FOUND` problem.
 */
export function routeNotFoundError(): AuthError {
  return new AuthError('ERR_ROUTE_NOT_FOUND', 'No route matches the request')
}
