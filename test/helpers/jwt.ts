// Builds JWTs for tests, including deliberately broken ones, with node:crypto only.
import { createHmac, sign, type KeyObject } from 'node:crypto'

export const b64u = (value: string | Buffer): string =>
  (typeof value === 'string' ? Buffer.from(value) : value).toString('base64url')

export interface SignInput {
  readonly header?: Record<string, unknown>
  readonly claims: Record<string, unknown>
}

/** Signs with HS256/384/512 over an arbitrary secret (also used to forge key-confusion tokens). */
export function signHmac(input: SignInput, secret: string | Buffer, alg = 'HS256'): string {
  const head = `${b64u(JSON.stringify({ alg, typ: 'JWT', ...input.header }))}.${b64u(JSON.stringify(input.claims))}`
  const hash = { HS256: 'sha256', HS384: 'sha384', HS512: 'sha512' }[alg] ?? 'sha256'
  return `${head}.${createHmac(hash, secret).update(head).digest('base64url')}`
}

/** Signs with RS256 or ES256 (P-1363) using a private key. */
export function signAsymmetric(
  input: SignInput,
  key: KeyObject,
  alg: 'RS256' | 'ES256' | 'EdDSA',
): string {
  const head = `${b64u(JSON.stringify({ alg, typ: 'JWT', ...input.header }))}.${b64u(JSON.stringify(input.claims))}`
  const signature =
    alg === 'EdDSA'
      ? sign(null, Buffer.from(head), key)
      : sign(
          'sha256',
          Buffer.from(head),
          alg === 'ES256' ? { key, dsaEncoding: 'ieee-p1363' } : key,
        )
  return `${head}.${b64u(signature)}`
}

/** An unsigned `alg: none` token. */
export function unsigned(claims: Record<string, unknown>): string {
  return `${b64u(JSON.stringify({ alg: 'none', typ: 'JWT' }))}.${b64u(JSON.stringify(claims))}.`
}

/** Seconds since the epoch for `ms`. */
export const seconds = (ms: number): number => Math.floor(ms / 1000)
