/**
 * Finds the credentials a request carries, once, and refuses ambiguous or misplaced ones.
 * @internal
 */
import { AuthError } from '../errors.js'
import { countRawHeader } from '../validation/type-converter.js'
import type { GateRequest } from '../pipeline/gate-request.js'

/** What a request presented. */
export type PresentedCredential =
  | { readonly kind: 'none' }
  | { readonly kind: 'bearer'; readonly token: string }
  | { readonly kind: 'apikey-header'; readonly token: string }
  | {
      readonly kind: 'other-scheme'
      /** The scheme's registered name, lower-cased; `null` when it is not a known scheme. */
      readonly scheme: string | null
      /** Why the gate cannot use it: built from {@link KNOWN_SCHEMES} only, never the header. */
      readonly reason: string
    }
  | { readonly kind: 'error'; readonly error: AuthError }

/** @internal */
export interface CredentialRules {
  readonly apiKeyHeader: string | null
  readonly rejectAmbiguous: boolean
  readonly queryParams: readonly string[]
  readonly queryPattern: RegExp | null
}

const NONE: PresentedCredential = Object.freeze({ kind: 'none' })

const ambiguous = (reason: string): PresentedCredential => ({
  kind: 'error',
  error: new AuthError('ERR_AUTH_AMBIGUOUS', 'The request carries more than one credential', {
    reason,
  }),
})
const malformed = (reason: string): PresentedCredential => ({
  kind: 'error',
  error: new AuthError('ERR_AUTH_MALFORMED', 'The Authorization header is malformed', { reason }),
})

/**
 * The only Authorization schemes whose name may be repeated in a reason, trace, event or log line:
 * the IANA HTTP Authentication Scheme Registry plus common unregistered ones. Anything else is
 * reported as `unknown scheme`, so that a value without a space (`Bearerabc.def.ghi`) never
 * leaves the request.
 */
export const KNOWN_SCHEMES: ReadonlySet<string> = new Set([
  // IANA registry
  'basic',
  'bearer',
  'concealed',
  'digest',
  'dpop',
  'gnap',
  'hoba',
  'mutual',
  'negotiate',
  'oauth',
  'privatetoken',
  'scram-sha-1',
  'scram-sha-256',
  'vapid',
  // common, unregistered
  'apikey',
  'aws4-hmac-sha256',
  'hawk',
  'ntlm',
  'token',
])

/** An unusable scheme, named only when it is a known one. */
function otherScheme(scheme: string): PresentedCredential {
  const name = scheme.toLowerCase()
  return KNOWN_SCHEMES.has(name)
    ? { kind: 'other-scheme', scheme: name, reason: `unsupported scheme ${name}` }
    : { kind: 'other-scheme', scheme: null, reason: 'unknown scheme' }
}

/** Builds the query-credential detector for the given parameter names. */
export function queryCredentialPattern(names: readonly string[]): RegExp | null {
  if (names.length === 0) return null
  const escaped = names.map((n) => n.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
  return new RegExp(`(?:^|&)(?:${escaped.join('|')})(?:=|&|$)`, 'i')
}

/** Extracts the one credential of a request. */
export function extractCredential(req: GateRequest, rules: CredentialRules): PresentedCredential {
  if (rules.queryPattern !== null && req.query.length > 0) {
    // Decode only when a candidate name could be present, percent-encoded or not.
    const q = req.query.includes('%') ? safeDecode(req.query) : req.query
    if (rules.queryPattern.test(q)) {
      return {
        kind: 'error',
        error: new AuthError(
          'ERR_AUTH_QUERY_CREDENTIALS',
          'Send credentials in the Authorization header, not in the URL',
          {
            reason: 'credential parameter in query string',
          },
        ),
      }
    }
  }
  const authorization = req.header('authorization')
  const apiKey = rules.apiKeyHeader === null ? undefined : req.header(rules.apiKeyHeader)
  if (authorization === undefined && apiKey === undefined) return NONE
  if (rules.rejectAmbiguous) {
    // Node keeps only the first of repeated Authorization headers; count them in rawHeaders.
    if (
      authorization !== undefined &&
      req.rawHeaders !== undefined &&
      countRawHeader(req.rawHeaders, 'authorization') > 1
    ) {
      return ambiguous('repeated Authorization header')
    }
    if (authorization !== undefined && apiKey !== undefined)
      return ambiguous('Authorization and API-key header both present')
  }
  if (apiKey !== undefined && (authorization === undefined || !rules.rejectAmbiguous)) {
    const key = apiKey.trim()
    if (key.length === 0) return malformed('empty API-key header')
    // Node joins repeated unknown headers with ", "; a key never contains a comma.
    if (key.includes(','))
      return rules.rejectAmbiguous
        ? ambiguous('repeated API-key header')
        : malformed('comma in API key')
    if (authorization === undefined) return { kind: 'apikey-header', token: key }
  }
  const value = (authorization as string).trim()
  const space = value.indexOf(' ')
  const scheme = space === -1 ? value : value.slice(0, space)
  if (scheme.length !== 6 || scheme.toLowerCase() !== 'bearer') {
    return scheme.length === 0 ? malformed('empty Authorization header') : otherScheme(scheme)
  }
  const token = space === -1 ? '' : value.slice(space + 1).trim()
  if (token.length === 0) return malformed('Bearer without a token')
  return { kind: 'bearer', token }
}

function safeDecode(q: string): string {
  try {
    return decodeURIComponent(q.replace(/\+/g, ' '))
  } catch {
    return q
  }
}
