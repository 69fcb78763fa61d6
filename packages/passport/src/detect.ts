/**
 * Cheap, synchronous credential detectors for {@link passportAuthenticator}'s `detect` option.
 *
 * Reachable from `@portcullis/passport`.
 * @packageDocumentation
 */
import { ConfigError, describeValue, type GateRequest } from '@portcullis/core'

/** Says whether a request carries the kind of credential an authenticator verifies. */
export type DetectCredential = (request: GateRequest) => boolean

// RFC 9110 §5.6.2 token: what an auth-scheme may be made of.
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/
const HEADER_NAME = /^[A-Za-z0-9-]+$/

/**
 * Detects `Authorization: <scheme> <credentials>`, matching the scheme case-insensitively
 * (RFC 9110 §11.1).
 * @throws {ConfigError} when `scheme` is not an auth-scheme token
 * @example
 * ```ts
 * passportAuthenticator(new BasicStrategy(verify), {
 *   detect: detectAuthorizationScheme('basic'),
 *   toPrincipal: (user) => ({ id: user.username }),
 * })
 * ```
 */
export function detectAuthorizationScheme(scheme: string): DetectCredential {
  if (typeof scheme !== 'string' || !TOKEN.test(scheme)) {
    throw new ConfigError(
      `scheme must be an HTTP auth-scheme token such as "basic", received ${describeValue(scheme)}`,
    )
  }
  const wanted = scheme.toLowerCase()
  return function detectAuthorizationSchemeOf(request: GateRequest): boolean {
    const value = request.header('authorization')?.trimStart()
    return (
      value !== undefined &&
      value.length > wanted.length + 1 &&
      value.charCodeAt(wanted.length) === 0x20 &&
      value.slice(0, wanted.length).toLowerCase() === wanted
    )
  }
}

/**
 * Detects a non-empty header, e.g. `detectHeader('x-legacy-token')`.
 * @throws {ConfigError} when `name` is not a header name
 */
export function detectHeader(name: string): DetectCredential {
  if (typeof name !== 'string' || !HEADER_NAME.test(name)) {
    throw new ConfigError(
      `name must be a header name such as "x-api-key", received ${describeValue(name)}`,
    )
  }
  const lower = name.toLowerCase()
  return function detectHeaderOf(request: GateRequest): boolean {
    const value = request.header(lower)
    return value !== undefined && value.trim().length > 0
  }
}
