/**
 * Canonical JSON (RFC 8785, JSON Canonicalization Scheme) for everything Portcullis hashes or signs;
 * the serializer itself is `internal/canonical-json.ts`.
 *
 * Reachable from `@portcullis/core`.
 * @packageDocumentation
 */
import { createHash, createHmac } from 'node:crypto'
import { canonicalize } from '../internal/canonical-json.js'

export { canonicalize }

/** SHA-256 of the canonical form, hex. */
export function canonicalHash(value: unknown): string {
  return createHash('sha256').update(canonicalize(value)).digest('hex')
}

/** HMAC-SHA-256 of the canonical form under `key`, hex. */
export function canonicalHmac(key: string | Uint8Array, value: unknown): string {
  return createHmac('sha256', key).update(canonicalize(value)).digest('hex')
}

/** The serializers, grouped as in the original design. */
export const TypeSerializer: {
  readonly canonicalize: typeof canonicalize
  readonly canonicalHash: typeof canonicalHash
  readonly canonicalHmac: typeof canonicalHmac
} = Object.freeze({ canonicalize, canonicalHash, canonicalHmac })
