/**
 * What the failed-authentication throttle counts a request under: its client address and the
 * presented credential's id, read without trusting it. The id is worked out only when the
 * throttle asks for it (a lock is live, or the credential failed), so a request from a client
 * with no recent failures pays for none of it.
 * @internal
 * @packageDocumentation
 */
import { API_KEY_ID_LENGTH } from '../apikey/format.js'
import type { AuthFailureSubject } from '../authn/failure-throttle.js'
import { decodeBase64urlStrict } from '../jwt/base64url.js'

/** Failure codes of a presented credential that did not verify: what the throttle counts. */
export const COUNTED_FAILURES: ReadonlySet<string> = new Set([
  'ERR_AUTH_INVALID',
  'ERR_AUTH_MALFORMED',
  'ERR_APIKEY_INVALID',
  'ERR_APIKEY_MALFORMED',
  'ERR_JWT_INVALID',
  'ERR_JWT_MALFORMED',
  'ERR_JWT_EXPIRED',
  'ERR_JWT_REVOKED',
  'ERR_JWT_LIFETIME_TOO_LONG',
  'ERR_JWT_EXPIRY_TOO_FAR',
])

/** A request as the throttle sees it; `credentialId` is computed on first read. */
export class ThrottleSubject implements AuthFailureSubject {
  readonly ip: string | undefined
  readonly #token: string
  readonly #kind: 'apikey' | 'jwt' | 'other'
  #id: string | undefined | null = null

  constructor(ip: string | undefined, token: string, kind: 'apikey' | 'jwt' | 'other') {
    this.ip = ip
    this.#token = token
    this.#kind = kind
  }

  get credentialId(): string | undefined {
    if (this.#id === null) this.#id = credentialIdOf(this.#token, this.#kind)
    return this.#id
  }
}

/**
 * An API key's public id part, or a JWT's unverified `sub` (its signature when it has none): the
 * same credential presented again counts against the same id. Never the secret itself.
 */
function credentialIdOf(token: string, kind: 'apikey' | 'jwt' | 'other'): string | undefined {
  if (kind === 'apikey') {
    const sep = token.lastIndexOf('_')
    return sep === -1 ? undefined : `key:${token.slice(sep + 1, sep + 1 + API_KEY_ID_LENGTH)}`
  }
  if (kind !== 'jwt') return undefined
  const first = token.indexOf('.')
  const last = token.lastIndexOf('.')
  if (first === -1 || last === first) return undefined
  const payload = decodeBase64urlStrict(token.slice(first + 1, last))
  try {
    const sub = (JSON.parse(payload?.toString('utf8') ?? 'null') as { sub?: unknown } | null)?.sub
    if (typeof sub === 'string' && sub !== '' && sub.length <= 256) return `sub:${sub}`
  } catch {
    // Not JSON: counted under its signature.
  }
  return `sig:${token.slice(last + 1, last + 33)}`
}
