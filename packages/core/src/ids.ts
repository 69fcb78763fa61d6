/**
 * Branded identifier types, made only by checking parsers.
 *
 * Reachable from `@portcullis/core`.
 * @packageDocumentation
 */
import { ConfigError } from './errors.js'

declare const brand: unique symbol

/** A `TBase` value that the type system will not mix with values of another brand `TName`. */
export type Brand<TBase, TName extends string> = TBase & { readonly [brand]: TName }

/** Identifies a user (a principal that is a person or a service account). */
export type UserID = Brand<string, 'UserID'>
/** Identifies a role. */
export type RoleID = Brand<string, 'RoleID'>
/** Identifies a protected resource (a document, a project, ...). */
export type ResourceID = Brand<string, 'ResourceID'>
/** Identifies a token (a JWT `jti` or an API key id). */
export type TokenID = Brand<string, 'TokenID'>
/** Identifies a session. */
export type SessionID = Brand<string, 'SessionID'>
/** Identifies one request through the gate. */
export type RequestID = Brand<string, 'RequestID'>

/** Longest identifier accepted by the parsers. */
export const MAX_ID_LENGTH = 256

// Printable ASCII without space, quote, backslash or control characters: safe in headers, logs,
// JSON and SQL parameters, and impossible to confuse with look-alike Unicode.
const ID_PATTERN = /^[\x21\x23-\x5b\x5d-\x7e]+$/
const ROLE_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.:\-/]*$/
const REQUEST_ID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/

function checked<T>(value: unknown, pattern: RegExp, max: number): T | undefined {
  if (typeof value !== 'string' || value.length === 0 || value.length > max) return undefined
  return pattern.test(value) ? (value as T) : undefined
}

/** Parses a user id: 1-256 printable ASCII characters. Returns `undefined` when invalid. */
export function parseUserId(value: unknown): UserID | undefined {
  return checked<UserID>(value, ID_PATTERN, MAX_ID_LENGTH)
}
/** Parses a role id: letters, digits and `_ . : - /`, starting with a letter or digit. */
export function parseRoleId(value: unknown): RoleID | undefined {
  return checked<RoleID>(value, ROLE_PATTERN, 128)
}
/** Parses a resource id: 1-256 printable ASCII characters. */
export function parseResourceId(value: unknown): ResourceID | undefined {
  return checked<ResourceID>(value, ID_PATTERN, MAX_ID_LENGTH)
}
/** Parses a token id: 1-256 printable ASCII characters. */
export function parseTokenId(value: unknown): TokenID | undefined {
  return checked<TokenID>(value, ID_PATTERN, MAX_ID_LENGTH)
}
/** Parses a session id: 1-256 printable ASCII characters. */
export function parseSessionId(value: unknown): SessionID | undefined {
  return checked<SessionID>(value, ID_PATTERN, MAX_ID_LENGTH)
}
/**
 * Parses a request id as accepted from an `X-Request-Id` header: 1-128 characters of
 * `A-Z a-z 0-9 . _ : -`. Anything else is replaced by a generated id, never echoed.
 */
export function parseRequestId(value: unknown): RequestID | undefined {
  return checked<RequestID>(value, REQUEST_ID_PATTERN, 128)
}

/**
 * Like the `parse*` functions but throws {@link ConfigError} naming `what` when invalid; for
 * configuration values.
 * @throws {ConfigError}
 */
export function requireId<T>(
  what: string,
  value: unknown,
  parse: (v: unknown) => T | undefined,
): T {
  const parsed = parse(value)
  if (parsed === undefined)
    throw new ConfigError(`${what}: invalid identifier ${JSON.stringify(value)}`)
  return parsed
}
