/**
 * The JWS algorithms Portcullis verifies (RFC 7518, RFC 8037) and what each demands of its key.
 *
 * Reachable from `@portcullis/core`.
 * @packageDocumentation
 */
import { constants, createHmac, timingSafeEqual, verify, type KeyObject } from 'node:crypto'

/** A JWS algorithm Portcullis can verify. `none` is deliberately absent. */
export type JwsAlgorithm =
  | 'HS256'
  | 'HS384'
  | 'HS512'
  | 'RS256'
  | 'RS384'
  | 'RS512'
  | 'PS256'
  | 'PS384'
  | 'PS512'
  | 'ES256'
  | 'ES384'
  | 'ES512'
  | 'EdDSA'
  | 'Ed25519'

/** Every supported algorithm. */
export const JWS_ALGORITHMS: readonly JwsAlgorithm[] = Object.freeze([
  'HS256',
  'HS384',
  'HS512',
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
  'Ed25519',
])

/** Whether `value` names a supported algorithm. */
export function isJwsAlgorithm(value: unknown): value is JwsAlgorithm {
  return typeof value === 'string' && (JWS_ALGORITHMS as readonly string[]).includes(value)
}

/** @internal How an algorithm verifies, and which keys it accepts. */
export interface AlgorithmSpec {
  readonly family: 'HMAC' | 'RSA' | 'RSA-PSS' | 'EC' | 'OKP'
  readonly hash: 'sha256' | 'sha384' | 'sha512' | null
  /** HMAC: minimum key bytes (RFC 7518 §3.2); EC: exact signature bytes. */
  readonly size: number
  /** EC: required named curve (Node's name); OKP: allowed curves. */
  readonly curves: readonly string[]
  /** JWK `kty` of keys for this algorithm. */
  readonly kty: 'oct' | 'RSA' | 'EC' | 'OKP'
}

const spec = (
  family: AlgorithmSpec['family'],
  hash: AlgorithmSpec['hash'],
  size: number,
  kty: AlgorithmSpec['kty'],
  curves: readonly string[] = [],
): AlgorithmSpec => Object.freeze({ family, hash, size, kty, curves })

/** @internal */
export const ALGORITHM_SPECS: Readonly<Record<JwsAlgorithm, AlgorithmSpec>> = Object.freeze({
  HS256: spec('HMAC', 'sha256', 32, 'oct'),
  HS384: spec('HMAC', 'sha384', 48, 'oct'),
  HS512: spec('HMAC', 'sha512', 64, 'oct'),
  RS256: spec('RSA', 'sha256', 0, 'RSA'),
  RS384: spec('RSA', 'sha384', 0, 'RSA'),
  RS512: spec('RSA', 'sha512', 0, 'RSA'),
  PS256: spec('RSA-PSS', 'sha256', 32, 'RSA'),
  PS384: spec('RSA-PSS', 'sha384', 48, 'RSA'),
  PS512: spec('RSA-PSS', 'sha512', 64, 'RSA'),
  ES256: spec('EC', 'sha256', 64, 'EC', ['prime256v1']),
  ES384: spec('EC', 'sha384', 96, 'EC', ['secp384r1']),
  ES512: spec('EC', 'sha512', 132, 'EC', ['secp521r1']),
  EdDSA: spec('OKP', null, 0, 'OKP', ['ed25519', 'ed448']),
  Ed25519: spec('OKP', null, 0, 'OKP', ['ed25519']),
})

/** Smallest RSA modulus accepted, in bits (RFC 7518 §3.3 requires 2048). */
export const MIN_RSA_BITS = 2048

/**
 * Why `key` cannot serve `alg`, or `undefined` when it can. Binds each key to one algorithm
 * family so that, e.g., an RSA public key can never be used as an HMAC secret.
 */
export function keyMismatch(alg: JwsAlgorithm, key: KeyObject): string | undefined {
  const s = ALGORITHM_SPECS[alg]
  if (s.family === 'HMAC') {
    if (key.type !== 'secret') return `${alg} needs a secret key, got a ${key.type} key`
    const bytes = key.symmetricKeySize ?? 0
    if (bytes < s.size) return `${alg} needs a secret of at least ${s.size} bytes, got ${bytes}`
    return undefined
  }
  if (key.type !== 'public') return `${alg} needs a public key, got a ${key.type} key`
  const type = key.asymmetricKeyType
  const details = key.asymmetricKeyDetails ?? {}
  switch (s.family) {
    case 'RSA':
    case 'RSA-PSS':
      if (type !== 'rsa' && !(s.family === 'RSA-PSS' && type === 'rsa-pss')) {
        return `${alg} needs an RSA key, got ${type}`
      }
      if ((details.modulusLength ?? 0) < MIN_RSA_BITS) {
        return `${alg} needs an RSA key of at least ${MIN_RSA_BITS} bits, got ${details.modulusLength}`
      }
      return undefined
    case 'EC':
      if (type !== 'ec' || !s.curves.includes(details.namedCurve ?? '')) {
        return `${alg} needs an EC key on ${s.curves[0]}, got ${type} ${details.namedCurve ?? ''}`.trim()
      }
      return undefined
    case 'OKP':
      if (!s.curves.includes(type ?? ''))
        return `${alg} needs an ${s.curves.join('/')} key, got ${type}`
      return undefined
  }
}

/**
 * Verifies `signature` over `data` with a key already checked by {@link keyMismatch}.
 * Constant time for HMAC. Never throws: malformed signatures are simply invalid.
 */
export function verifySignature(
  alg: JwsAlgorithm,
  key: KeyObject,
  data: string | Uint8Array,
  signature: Uint8Array,
): boolean {
  const s = ALGORITHM_SPECS[alg]
  try {
    switch (s.family) {
      case 'HMAC': {
        const mac = createHmac(s.hash as string, key)
          .update(data)
          .digest()
        return mac.length === signature.length && timingSafeEqual(mac, signature)
      }
      case 'RSA':
        return verify(s.hash, toBytes(data), key, signature)
      case 'RSA-PSS':
        // RFC 7518 §3.5: the salt is as long as the hash output.
        return verify(
          s.hash,
          toBytes(data),
          { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: s.size },
          signature,
        )
      case 'EC':
        // RFC 7518 §3.4: R || S, fixed length; DER is not JWS.
        if (signature.length !== s.size) return false
        return verify(s.hash, toBytes(data), { key, dsaEncoding: 'ieee-p1363' }, signature)
      case 'OKP':
        return verify(null, toBytes(data), key, signature)
    }
  } catch {
    return false
  }
}

function toBytes(data: string | Uint8Array): Uint8Array {
  return typeof data === 'string' ? Buffer.from(data) : data
}
