/**
 * Canonical JSON (RFC 8785, JSON Canonicalization Scheme) for everything Portcullis hashes or signs.
 *
 * Reachable from `@portcullis/core`.
 * @packageDocumentation
 */
import { createHash, createHmac } from 'node:crypto'

/**
 * Serializes `value` per RFC 8785: object keys sorted by UTF-16 code units, no whitespace, numbers
 * in ECMAScript shortest form, strings escaped as `JSON.stringify` does. `undefined` members are
 * omitted as in JSON. Throws `TypeError` for values JSON cannot represent (non-finite numbers,
 * bigint, functions, symbols, cycles), which must never be hashed silently.
 */
export function canonicalize(value: unknown): string {
  return serialize(value, new Set())
}

function serialize(value: unknown, seen: Set<object>): string {
  if (value === null) return 'null'
  switch (typeof value) {
    case 'boolean':
      return value ? 'true' : 'false'
    case 'number':
      if (!Number.isFinite(value)) throw new TypeError('canonicalize: non-finite number')
      // RFC 8785 §3.2.2.3: ECMAScript Number serialization, which JSON.stringify implements.
      return JSON.stringify(value)
    case 'string':
      return JSON.stringify(value)
    case 'object':
      break
    default:
      throw new TypeError(`canonicalize: cannot serialize ${typeof value}`)
  }
  const obj = value as object
  if (seen.has(obj)) throw new TypeError('canonicalize: cyclic structure')
  seen.add(obj)
  let out: string
  if (Array.isArray(obj)) {
    out = `[${obj.map((item) => (item === undefined ? 'null' : serialize(item, seen))).join(',')}]`
  } else if (typeof (obj as { toJSON?: unknown }).toJSON === 'function') {
    out = serialize((obj as { toJSON(): unknown }).toJSON(), seen)
  } else {
    const record = obj as Record<string, unknown>
    // RFC 8785 §3.2.3: sort by UTF-16 code units, which is what the default sort compares.
    const keys = Object.keys(record).sort()
    const parts: string[] = []
    for (const key of keys) {
      const member = record[key]
      if (member === undefined) continue
      parts.push(`${JSON.stringify(key)}:${serialize(member, seen)}`)
    }
    out = `{${parts.join(',')}}`
  }
  seen.delete(obj)
  return out
}

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
