/**
 * Strict verification of compact JWS (RFC 7515 §7.1) with the RFC 8725 checks in front of the
 * signature: canonical base64url, strict JSON, an algorithm allow-list, no `crit`, no header keys.
 *
 * Reachable from `@portcullis/core`.
 * @packageDocumentation
 */
import { parseStrictJsonBytes, StrictJsonError } from '../internal/strict-json.js'
import { isJwsAlgorithm, verifySignature, type JwsAlgorithm } from './algorithms.js'
import { decodeBase64urlStrict } from './base64url.js'
import { KeySourceUnavailableError, type KeyResolver } from './key-set.js'

/** A JOSE header that passed the checks. */
export interface JoseHeader {
  readonly alg: JwsAlgorithm
  readonly kid?: string
  readonly typ?: string
  readonly [name: string]: unknown
}

/** Why a JWS was refused. `malformed`: not a well-formed JWS; `unavailable`: key source down. */
export type JwsFailureKind = 'malformed' | 'invalid' | 'unavailable'

/** The result of {@link verifyCompactJws}: a value, never an exception. */
export type JwsResult =
  | {
      readonly ok: true
      readonly header: JoseHeader
      readonly payload: Buffer
      readonly kid: string | undefined
    }
  | { readonly ok: false; readonly kind: JwsFailureKind; readonly reason: string }

/** What {@link verifyCompactJws} needs. */
export interface JwsVerifyOptions {
  /** Algorithms accepted; anything else (including `none`) is refused before any key lookup. */
  readonly algorithms: ReadonlySet<JwsAlgorithm>
  /** Where keys come from. */
  readonly keys: KeyResolver
  /** Longest token accepted, in characters. */
  readonly maxTokenLength: number
  /** Accepted `typ` values, lower case; compared case-insensitively (RFC 7515 §4.1.9). */
  readonly types: ReadonlySet<string>
  /** Refuse tokens without `typ` (explicit typing, RFC 8725 §3.11). */
  readonly requireTyp: boolean
}

// RFC 7515 §4.1.11: we implement no extension, so any `crit` makes the token unusable. Header
// parameters that carry or point at keys are never trusted (RFC 8725 §3.10); `zip` and `enc`
// belong to JWE.
const FORBIDDEN_HEADER_PARAMS = ['crit', 'zip', 'enc', 'b64'] as const

const fail = (kind: JwsFailureKind, reason: string): JwsResult => ({ ok: false, kind, reason })

const MAX_HEADER_CACHE = 64

/** Parsed-and-checked headers by their encoded form: tokens from one issuer share a header. */
const headerCache = new Map<string, JoseHeader>()

type HeaderCheck =
  { readonly ok: true; readonly header: JoseHeader } | Extract<JwsResult, { ok: false }>

function checkHeader(encoded: string): HeaderCheck {
  const bytes = decodeBase64urlStrict(encoded)
  if (bytes === undefined)
    return { ok: false, kind: 'malformed', reason: 'header is not canonical base64url' }
  let header: unknown
  try {
    header = parseStrictJsonBytes(bytes)
  } catch (e) {
    return {
      ok: false,
      kind: 'malformed',
      reason: `header is not strict JSON (${(e as StrictJsonError).message})`,
    }
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) {
    return { ok: false, kind: 'malformed', reason: 'header is not an object' }
  }
  const h = header as Record<string, unknown>
  for (const name of FORBIDDEN_HEADER_PARAMS) {
    if (Object.hasOwn(h, name))
      return { ok: false, kind: 'invalid', reason: `header parameter "${name}" is not supported` }
  }
  // Well-formed but refused: `none` and unknown algorithms are invalid, not malformed.
  if (!isJwsAlgorithm(h.alg))
    return {
      ok: false,
      kind: 'invalid',
      reason: `algorithm ${JSON.stringify(h.alg)} is not supported`,
    }
  if (
    h.kid !== undefined &&
    (typeof h.kid !== 'string' || h.kid.length === 0 || h.kid.length > 256)
  ) {
    return { ok: false, kind: 'malformed', reason: 'kid must be a non-empty string' }
  }
  if (h.typ !== undefined && typeof h.typ !== 'string')
    return { ok: false, kind: 'malformed', reason: 'typ must be a string' }
  // Frozen: the object is cached and shared by every token with the same encoded header.
  return { ok: true, header: Object.freeze(h) as JoseHeader }
}

/**
 * Verifies a compact JWS and returns its header and payload bytes. The payload is not parsed:
 * JWT claim checks sit on top ({@link verifyJwt}).
 */
export async function verifyCompactJws(
  token: string,
  options: JwsVerifyOptions,
): Promise<JwsResult> {
  return verifyCompactJwsNow(token, options)
}

/**
 * {@link verifyCompactJws}, answered synchronously when the keys are at hand (static keys, a
 * JWKS already fetched): a promise only when a key source must be waited for.
 * @internal
 */
export function verifyCompactJwsNow(
  token: string,
  options: JwsVerifyOptions,
): JwsResult | Promise<JwsResult> {
  if (typeof token !== 'string') return fail('malformed', 'token is not a string')
  if (token.length > options.maxTokenLength) return fail('malformed', 'token too long')
  const dot1 = token.indexOf('.')
  const dot2 = dot1 < 0 ? -1 : token.indexOf('.', dot1 + 1)
  if (dot1 <= 0 || dot2 < 0 || token.indexOf('.', dot2 + 1) !== -1) {
    return fail('malformed', 'not a compact JWS of three parts')
  }
  const encodedHeader = token.slice(0, dot1)
  let header = headerCache.get(encodedHeader)
  if (header === undefined) {
    const checked = checkHeader(encodedHeader)
    if (!checked.ok) return checked
    header = checked.header
    if (headerCache.size < MAX_HEADER_CACHE) headerCache.set(encodedHeader, header)
  }
  const alg = header.alg
  if (!options.algorithms.has(alg)) return fail('invalid', `algorithm ${alg} is not allowed`)
  if (
    header.typ === undefined ? options.requireTyp : !options.types.has(header.typ.toLowerCase())
  ) {
    return fail('invalid', 'unexpected typ')
  }
  // An empty payload is a valid JWS (RFC 7515 §7.1); the JWT layer refuses it as non-JSON.
  const signature = decodeBase64urlStrict(token.slice(dot2 + 1))
  if (signature === undefined || signature.length === 0)
    return fail('malformed', 'signature is not canonical base64url')
  const payload = decodeBase64urlStrict(token.slice(dot1 + 1, dot2))
  if (payload === undefined) return fail('malformed', 'payload is not canonical base64url')

  const signed: Signed = { header, payload, signature, signingInput: token.slice(0, dot2) }
  let resolved: ReturnType<KeyResolver['resolve']>
  try {
    resolved = options.keys.resolve(alg, header.kid)
  } catch (e) {
    return keyFailure(e)
  }
  if (resolved instanceof Promise)
    return resolved.then((candidates) => checkSignature(signed, candidates), keyFailure)
  return checkSignature(signed, resolved)
}

/** A token whose form passed, waiting for its signature check. */
interface Signed {
  readonly header: JoseHeader
  readonly payload: Buffer
  readonly signature: Buffer
  readonly signingInput: string
}

function keyFailure(e: unknown): JwsResult {
  if (e instanceof KeySourceUnavailableError) return fail('unavailable', 'key source unavailable')
  throw e
}

function checkSignature(
  { header, payload, signature, signingInput }: Signed,
  candidates: Awaited<ReturnType<KeyResolver['resolve']>>,
): JwsResult {
  if (candidates.length === 0)
    return fail('invalid', header.kid === undefined ? 'no key for algorithm' : 'unknown kid')
  for (const candidate of candidates) {
    if (verifySignature(header.alg, candidate.key, signingInput, signature)) {
      return { ok: true, header, payload, kid: candidate.kid }
    }
  }
  return fail('invalid', 'signature mismatch')
}
