/**
 * A tiny, independent JWS signer for the JWT tests: node:crypto only, so that the verifier under
 * test is never checked against itself.
 */
import { constants, createHmac, generateKeyPairSync, sign, type KeyObject } from 'node:crypto'
import type { JwsAlgorithm } from '@portcullis/core'

/** A segment as the tests want to write it: an object (JSON), a JSON text, or raw bytes. */
export type Segment = Readonly<Record<string, unknown>> | string | Uint8Array

/** base64url without padding (RFC 7515 §2). */
export function b64url(data: string | Uint8Array): string {
  return Buffer.from(data).toString('base64url')
}

/** Encodes a header or payload segment: objects as JSON, strings as UTF-8 text, bytes as is. */
export function encodeSegment(part: Segment): string {
  if (typeof part === 'string' || part instanceof Uint8Array) return b64url(part)
  return b64url(JSON.stringify(part))
}

const HASH: Record<JwsAlgorithm, 'sha256' | 'sha384' | 'sha512' | null> = {
  HS256: 'sha256',
  HS384: 'sha384',
  HS512: 'sha512',
  RS256: 'sha256',
  RS384: 'sha384',
  RS512: 'sha512',
  PS256: 'sha256',
  PS384: 'sha384',
  PS512: 'sha512',
  ES256: 'sha256',
  ES384: 'sha384',
  ES512: 'sha512',
  EdDSA: null,
  Ed25519: null,
}

const HASH_BYTES = { sha256: 32, sha384: 48, sha512: 64 } as const

/** A signing key: a private KeyObject, or an HMAC secret (string = its UTF-8 bytes). */
export type SigningKey = KeyObject | Uint8Array | string

/** The raw JWS signature of `data` (the signing input) under `alg`. */
export function rawSignature(
  alg: JwsAlgorithm,
  key: SigningKey,
  data: string | Uint8Array,
  options: { readonly saltLength?: number; readonly dsaEncoding?: 'der' | 'ieee-p1363' } = {},
): Buffer {
  const hash = HASH[alg]
  const input = Buffer.from(data)
  if (alg.startsWith('HS'))
    return createHmac(hash as string, key)
      .update(input)
      .digest()
  if (typeof key === 'string' || key instanceof Uint8Array) {
    throw new TypeError(`${alg} signs with a private KeyObject`)
  }
  if (alg.startsWith('RS')) return sign(hash, input, key)
  if (alg.startsWith('PS')) {
    const saltLength = options.saltLength ?? HASH_BYTES[hash as keyof typeof HASH_BYTES]
    return sign(hash, input, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength })
  }
  if (alg.startsWith('ES')) {
    return sign(hash, input, { key, dsaEncoding: options.dsaEncoding ?? 'ieee-p1363' })
  }
  return sign(null, input, key)
}

/** Signs already-encoded segments verbatim (even non-canonical ones) and returns the token. */
export function signEncoded(
  alg: JwsAlgorithm,
  key: SigningKey,
  encodedHeader: string,
  encodedPayload: string,
): string {
  const input = `${encodedHeader}.${encodedPayload}`
  return `${input}.${b64url(rawSignature(alg, key, input))}`
}

/** Signs a compact JWS whose header and payload are given as objects, JSON texts or bytes. */
export function signJws(
  alg: JwsAlgorithm,
  key: SigningKey,
  header: Segment,
  payload: Segment,
): string {
  return signEncoded(alg, key, encodeSegment(header), encodeSegment(payload))
}

/** Signs a JWT with header `{ alg, typ: 'JWT', ...header }`. */
export function signJwt(
  alg: JwsAlgorithm,
  key: SigningKey,
  claims: Readonly<Record<string, unknown>>,
  header: Readonly<Record<string, unknown>> = {},
): string {
  return signJws(alg, key, { alg, typ: 'JWT', ...header }, claims)
}

/** The three segments of a compact token. */
export function splitToken(token: string): [string, string, string] {
  const parts = token.split('.')
  if (parts.length !== 3) throw new Error(`not three segments: ${parts.length}`)
  return parts as [string, string, string]
}

/** A controllable clock for `createJwtVerifier(options, { now })`: milliseconds since the epoch. */
export interface ManualClock {
  readonly now: () => number
  advance(ms: number): void
}

export function manualClock(startMs: number): ManualClock {
  let t = startMs
  return {
    now: () => t,
    advance(ms: number) {
      t += ms
    },
  }
}

/** Key pairs for every asymmetric algorithm under test, generated once per process. */
export interface TestKeys {
  readonly rsa: { readonly privateKey: KeyObject; readonly publicKey: KeyObject }
  readonly rsaAttacker: { readonly privateKey: KeyObject; readonly publicKey: KeyObject }
  readonly rsa1024: { readonly privateKey: KeyObject; readonly publicKey: KeyObject }
  readonly p256: { readonly privateKey: KeyObject; readonly publicKey: KeyObject }
  readonly p256Attacker: { readonly privateKey: KeyObject; readonly publicKey: KeyObject }
  readonly p384: { readonly privateKey: KeyObject; readonly publicKey: KeyObject }
  readonly ed25519: { readonly privateKey: KeyObject; readonly publicKey: KeyObject }
}

let cached: TestKeys | undefined

export function testKeys(): TestKeys {
  cached ??= {
    rsa: generateKeyPairSync('rsa', { modulusLength: 2048 }),
    rsaAttacker: generateKeyPairSync('rsa', { modulusLength: 2048 }),
    rsa1024: generateKeyPairSync('rsa', { modulusLength: 1024 }),
    p256: generateKeyPairSync('ec', { namedCurve: 'P-256' }),
    p256Attacker: generateKeyPairSync('ec', { namedCurve: 'P-256' }),
    p384: generateKeyPairSync('ec', { namedCurve: 'P-384' }),
    ed25519: generateKeyPairSync('ed25519'),
  }
  return cached
}
