/**
 * The one RFC 8785 (JSON Canonicalization Scheme) serializer: what the audit chain MACs, policy
 * versions hash and `canonicalize` returns. Numbers are written in ECMAScript shortest form
 * (RFC 8785 §3.2.2.3, which `JSON.stringify` implements), strings escaped as `JSON.stringify`
 * does (§3.2.2.2), members sorted by UTF-16 code units (§3.2.3, the default `sort`).
 * @packageDocumentation
 */

/** Deeper than any prepared audit event (the redactor cuts at `maxDepth`): a cycle. */
const MAX_TREE_DEPTH = 256

/**
 * Serializes `value` per RFC 8785. `undefined` members are omitted and `undefined` array items
 * written as `null`, as in JSON; an object with `toJSON` is serialized as what it returns.
 * @throws {TypeError} for what JSON cannot represent (non-finite numbers, bigint, functions,
 * symbols, `undefined` at the top) and for cycles, which must never be hashed silently.
 */
export function canonicalize(value: unknown): string {
  return write(value, 0, new Set())
}

/**
 * {@link canonicalize} for a freshly built tree (a prepared audit event): the same output, without
 * the per-object cycle bookkeeping; a cycle still throws, once it is {@link MAX_TREE_DEPTH} deep.
 */
export function canonicalizeTree(value: unknown): string {
  return write(value, 0, undefined)
}

function write(value: unknown, depth: number, seen: Set<object> | undefined): string {
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value)
    case 'boolean':
      return value ? 'true' : 'false'
    case 'number':
      if (!Number.isFinite(value)) throw new TypeError('canonicalize: non-finite number')
      return JSON.stringify(value)
    case 'object':
      break
    default:
      throw new TypeError(`canonicalize: cannot serialize ${typeof value}`)
  }
  if (value === null) return 'null'
  if (seen === undefined) {
    if (depth >= MAX_TREE_DEPTH) throw new TypeError('canonicalize: cyclic or too deep structure')
  } else {
    if (seen.has(value)) throw new TypeError('canonicalize: cyclic structure')
    seen.add(value)
  }
  let out: string
  if (Array.isArray(value)) {
    out = '['
    for (let i = 0; i < value.length; i++) {
      const item: unknown = value[i]
      if (i > 0) out += ','
      out += item === undefined ? 'null' : write(item, depth + 1, seen)
    }
    out += ']'
  } else if (typeof (value as { toJSON?: unknown }).toJSON === 'function') {
    out = write((value as { toJSON(): unknown }).toJSON(), depth + 1, seen)
  } else {
    const record = value as Record<string, unknown>
    const keys = Object.keys(record).sort()
    out = '{'
    for (const key of keys) {
      const member = record[key]
      if (member === undefined) continue
      if (out.length > 1) out += ','
      out += `${JSON.stringify(key)}:${write(member, depth + 1, seen)}`
    }
    out += '}'
  }
  seen?.delete(value)
  return out
}
