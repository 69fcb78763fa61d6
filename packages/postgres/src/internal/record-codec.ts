/**
 * Converts between core's `ApiKeyRecord` and a row of `<prefix>api_keys`. Both directions check
 * the shape: a record that could not be read back is refused on write, and a row that does not
 * decode to a valid record (hand-edited, written by a buggy tool) is refused on read, so the gate
 * fails closed on it instead of trusting garbage.
 * @internal
 */
import type {
  ApiKeyEnvironment,
  ApiKeyId,
  ApiKeyPatch,
  ApiKeyRecord,
  ApiKeySecretHash,
  ApiKeyStoredStatus,
  ApiKeyUsagePolicy,
  UserID,
} from '@gatehouse/core'

/**
 * A row as pg returns it. `bigint` columns arrive as strings (pg's default) or numbers (when the
 * application installed a type parser); `jsonb` as parsed values (or text, without the parser).
 */
export interface ApiKeyRow {
  readonly id: unknown
  readonly prefix: unknown
  readonly name: unknown
  readonly owner_id: unknown
  readonly scopes: unknown
  readonly roles: unknown
  readonly status: unknown
  readonly hashes: unknown
  readonly created_at: unknown
  readonly expires_at: unknown
  readonly revoked_at: unknown
  readonly metadata: unknown
  readonly tags: unknown
  readonly purpose: unknown
  readonly environment: unknown
  readonly policy: unknown
  readonly rotated_at: unknown
  readonly last_used_at: unknown
  readonly usage_count: unknown
}

/** Column list in table order, for SELECT. */
export const COLUMNS: readonly (keyof ApiKeyRow)[] = [
  'id',
  'prefix',
  'name',
  'owner_id',
  'scopes',
  'roles',
  'status',
  'hashes',
  'created_at',
  'expires_at',
  'revoked_at',
  'metadata',
  'tags',
  'purpose',
  'environment',
  'policy',
  'rotated_at',
  'last_used_at',
  'usage_count',
]

/** The fields `update` may change, matching core's `ApiKeyPatch`. */
export const PATCHABLE: readonly (keyof ApiKeyPatch)[] = [
  'name',
  'scopes',
  'roles',
  'status',
  'hashes',
  'expiresAt',
  'revokedAt',
  'metadata',
  'tags',
  'purpose',
  'policy',
  'rotatedAt',
]

/** A record that does not have the shape of `ApiKeyRecord`; `path` names the bad field. */
export class RecordShapeError extends Error {
  override readonly name = 'RecordShapeError'
  readonly path: string
  constructor(path: string, problem: string) {
    super(`${path}: ${problem}`)
    this.path = path
  }
}

const STATUSES: readonly ApiKeyStoredStatus[] = ['active', 'revoked']
const ENVIRONMENTS: readonly ApiKeyEnvironment[] = ['live', 'test']
const ALGORITHMS: readonly string[] = ['hmac-sha256', 'sha256']
const MAX_JSON_DEPTH = 64
// PostgreSQL text cannot hold U+0000, and UTF-8 cannot hold a lone surrogate: refuse both on
// write rather than fail inside the server or read back something else.
// eslint-disable-next-line no-control-regex -- U+0000 is exactly what must be found
const UNSTORABLE = /[\u0000\p{Cs}]/u

function kind(value: unknown): string {
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'an array'
  if (typeof value === 'string') {
    return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)
  }
  if (typeof value === 'number' || typeof value === 'boolean') return String(value)
  if (typeof value === 'object') return 'an object'
  return `a ${typeof value}`
}

function text(path: string, value: unknown): string {
  if (typeof value !== 'string') {
    throw new RecordShapeError(path, `must be a string, received ${kind(value)}`)
  }
  if (UNSTORABLE.test(value)) {
    throw new RecordShapeError(path, 'contains U+0000 or a lone UTF-16 surrogate')
  }
  return value
}

function nullableText(path: string, value: unknown): string | null {
  return value === null ? null : text(path, value)
}

function epochMs(path: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value)) {
    throw new RecordShapeError(path, `must be an integer (epoch ms), received ${kind(value)}`)
  }
  return value
}

function nullableEpochMs(path: string, value: unknown): number | null {
  return value === null ? null : epochMs(path, value)
}

function count(path: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new RecordShapeError(path, `must be a non-negative integer, received ${kind(value)}`)
  }
  return value
}

/** A `bigint` column value as a number: pg gives text unless a type parser is installed. */
function int8(path: string, value: unknown): number {
  if (typeof value === 'string' && /^-?\d{1,16}$/.test(value)) return Number(value)
  if (typeof value === 'bigint') return Number(value)
  if (typeof value === 'number') return value
  throw new RecordShapeError(path, `must be a bigint, received ${kind(value)}`)
}

function nullableInt8(path: string, value: unknown): number | null {
  return value === null ? null : int8(path, value)
}

function status(path: string, value: unknown): ApiKeyStoredStatus {
  if (!STATUSES.includes(value as ApiKeyStoredStatus)) {
    throw new RecordShapeError(path, `must be "active" or "revoked", received ${kind(value)}`)
  }
  return value as ApiKeyStoredStatus
}

function environment(path: string, value: unknown): ApiKeyEnvironment {
  if (!ENVIRONMENTS.includes(value as ApiKeyEnvironment)) {
    throw new RecordShapeError(path, `must be "live" or "test", received ${kind(value)}`)
  }
  return value as ApiKeyEnvironment
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false
  const proto: unknown = Object.getPrototypeOf(value)
  return proto === Object.prototype || proto === null
}

function plainObject(path: string, value: unknown): Record<string, unknown> {
  if (!isPlainObject(value)) {
    throw new RecordShapeError(path, `must be an object, received ${kind(value)}`)
  }
  return value
}

function strings(path: string, value: unknown): readonly string[] {
  if (!Array.isArray(value)) {
    throw new RecordShapeError(path, `must be an array, received ${kind(value)}`)
  }
  return Object.freeze(value.map((item: unknown, i) => text(`${path}[${i}]`, item)))
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    for (const key of Object.keys(value)) deepFreeze((value as Record<string, unknown>)[key])
    Object.freeze(value)
  }
  return value
}

/**
 * Checks that `value` survives JSON unchanged: plain objects, arrays, strings, finite numbers,
 * booleans and null. Object members set to `undefined` are dropped (as an absent option would
 * be); anything JSON would alter or refuse (a Date, a Map, NaN, a BigInt) is refused with its path.
 */
function checkJson(path: string, value: unknown, depth: number): void {
  if (depth > MAX_JSON_DEPTH) {
    throw new RecordShapeError(path, `nests deeper than ${MAX_JSON_DEPTH} levels`)
  }
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return
    case 'number':
      if (!Number.isFinite(value)) {
        throw new RecordShapeError(path, `must be a finite number, received ${value}`)
      }
      return
    case 'object':
      if (value === null) return
      if (Array.isArray(value)) {
        value.forEach((item: unknown, i) => {
          if (item === undefined)
            throw new RecordShapeError(`${path}[${i}]`, 'must not be undefined')
          checkJson(`${path}[${i}]`, item, depth + 1)
        })
        return
      }
      if (!isPlainObject(value)) {
        const name = (value as { constructor?: { name?: unknown } }).constructor?.name
        throw new RecordShapeError(
          path,
          `must be JSON data, received a ${String(name ?? 'non-plain object')}`,
        )
      }
      for (const key of Object.keys(value)) {
        const member = value[key]
        if (member !== undefined) checkJson(`${path}.${key}`, member, depth + 1)
      }
      return
    default:
      throw new RecordShapeError(path, `must be JSON data, received ${kind(value)}`)
  }
}

/** A `jsonb` value: parsed by pg, or text when the application turned pg's JSON parser off. */
function jsonb(path: string, value: unknown): unknown {
  return typeof value === 'string' ? parse(path, value) : value
}

/** Parses JSON text without a bare `SyntaxError` that would not say which column failed. */
function parse(path: string, json: unknown): unknown {
  if (typeof json !== 'string') {
    throw new RecordShapeError(path, `must be JSON text, received ${kind(json)}`)
  }
  try {
    return JSON.parse(json)
  } catch {
    throw new RecordShapeError(path, 'is not valid JSON')
  }
}

function hashes(path: string, value: unknown): readonly ApiKeySecretHash[] {
  if (!Array.isArray(value)) {
    throw new RecordShapeError(path, `must be an array, received ${kind(value)}`)
  }
  return Object.freeze(
    value.map((item: unknown, i): ApiKeySecretHash => {
      const p = `${path}[${i}]`
      const h = plainObject(p, item)
      const notAfter = h['notAfter']
      if (notAfter !== null && (typeof notAfter !== 'number' || !Number.isFinite(notAfter))) {
        throw new RecordShapeError(
          `${p}.notAfter`,
          `must be null or a number, received ${kind(notAfter)}`,
        )
      }
      const algorithm = h['algorithm']
      if (algorithm !== undefined && !ALGORITHMS.includes(algorithm as string)) {
        throw new RecordShapeError(
          `${p}.algorithm`,
          `must be "hmac-sha256" or "sha256", received ${kind(algorithm)}`,
        )
      }
      return Object.freeze({
        hash: text(`${p}.hash`, h['hash']) as ApiKeySecretHash['hash'],
        pepperId: text(`${p}.pepperId`, h['pepperId']),
        notAfter,
        ...(algorithm === undefined ? {} : { algorithm: algorithm as 'hmac-sha256' | 'sha256' }),
      })
    }),
  )
}

/** A usage policy: a JSON object with only the known members, each of its documented shape. */
function policy(path: string, value: unknown): ApiKeyUsagePolicy {
  const p = plainObject(path, value)
  checkJson(path, p, 0)
  for (const key of Object.keys(p)) {
    const member = p[key]
    if (member === undefined) continue
    if (key === 'allowedCidrs' || key === 'allowedOrigins') strings(`${path}.${key}`, member)
    else if (key === 'rateLimits') {
      if (!Array.isArray(member))
        throw new RecordShapeError(`${path}.${key}`, `must be an array, received ${kind(member)}`)
      member.forEach((rule: unknown, i) => {
        const r = plainObject(`${path}.${key}[${i}]`, rule)
        count(`${path}.${key}[${i}].limit`, r['limit'])
        count(`${path}.${key}[${i}].windowMs`, r['windowMs'])
      })
    } else if (key === 'quota') {
      const q = plainObject(`${path}.quota`, member)
      count(`${path}.quota.limit`, q['limit'])
      if (q['period'] !== 'day' && q['period'] !== 'month')
        throw new RecordShapeError(
          `${path}.quota.period`,
          `must be "day" or "month", received ${kind(q['period'])}`,
        )
    } else throw new RecordShapeError(`${path}.${key}`, 'is not a usage policy field')
  }
  return deepFreeze(JSON.parse(JSON.stringify(p)) as ApiKeyUsagePolicy)
}

/**
 * Builds the frozen record a row stores.
 * @throws {RecordShapeError} when a column does not decode
 */
export function rowToRecord(row: ApiKeyRow): ApiKeyRecord {
  // JSON.parse defines `__proto__` as an own data property, so metadata cannot pollute prototypes.
  const metadata = plainObject('metadata', parse('metadata', row.metadata))
  return Object.freeze({
    id: text('id', row.id) as ApiKeyId,
    prefix: text('prefix', row.prefix),
    name: text('name', row.name),
    ownerId: text('owner_id', row.owner_id) as UserID,
    scopes: strings('scopes', row.scopes),
    roles: strings('roles', row.roles),
    status: status('status', row.status),
    hashes: hashes('hashes', jsonb('hashes', row.hashes)),
    createdAt: epochMs('created_at', int8('created_at', row.created_at)),
    expiresAt: nullableEpochMs('expires_at', nullableInt8('expires_at', row.expires_at)),
    revokedAt: nullableEpochMs('revoked_at', nullableInt8('revoked_at', row.revoked_at)),
    metadata: deepFreeze(metadata),
    tags: strings('tags', row.tags),
    purpose: nullableText('purpose', row.purpose),
    environment: environment('environment', row.environment),
    policy: policy('policy', jsonb('policy', row.policy)),
    rotatedAt: nullableEpochMs('rotated_at', nullableInt8('rotated_at', row.rotated_at)),
    lastUsedAt: nullableEpochMs('last_used_at', nullableInt8('last_used_at', row.last_used_at)),
    usageCount: count('usage_count', int8('usage_count', row.usage_count)),
  })
}

/**
 * Checks a record given to `insert` or produced by `update`, and returns a frozen copy that shares
 * nothing with the caller's objects; absent optional fields take their documented defaults.
 * @throws {RecordShapeError} for a field of the wrong shape
 */
export function normalizeRecord(record: ApiKeyRecord): ApiKeyRecord {
  if (typeof record !== 'object' || record === null) {
    throw new RecordShapeError('record', `must be an object, received ${kind(record)}`)
  }
  const metadata = plainObject('metadata', record.metadata)
  checkJson('metadata', metadata, 0)
  const id = text('id', record.id)
  if (id === '') throw new RecordShapeError('id', 'must not be empty')
  return Object.freeze({
    id: id as ApiKeyId,
    prefix: text('prefix', record.prefix),
    name: text('name', record.name),
    ownerId: text('ownerId', record.ownerId) as UserID,
    scopes: strings('scopes', record.scopes),
    roles: strings('roles', record.roles),
    status: status('status', record.status),
    hashes: hashes('hashes', record.hashes),
    createdAt: epochMs('createdAt', record.createdAt),
    expiresAt: nullableEpochMs('expiresAt', record.expiresAt),
    revokedAt: nullableEpochMs('revokedAt', record.revokedAt),
    // A JSON round trip is the deep copy whose result `get` would return anyway.
    metadata: deepFreeze(JSON.parse(JSON.stringify(metadata)) as Record<string, unknown>),
    tags: strings('tags', record.tags ?? []),
    purpose: nullableText('purpose', record.purpose ?? null),
    environment: environment('environment', record.environment ?? 'live'),
    policy: policy('policy', record.policy ?? {}),
    rotatedAt: nullableEpochMs('rotatedAt', record.rotatedAt ?? null),
    lastUsedAt: nullableEpochMs('lastUsedAt', record.lastUsedAt ?? null),
    usageCount: count('usageCount', record.usageCount ?? 0),
  })
}

/**
 * The 20 parameters of an INSERT of a record already checked by {@link normalizeRecord}: the
 * columns in {@link COLUMNS} order, then `hash_values` (the hashes alone, for the GIN index).
 */
export function recordToParams(r: ApiKeyRecord): unknown[] {
  return [
    r.id,
    r.prefix,
    r.name,
    r.ownerId,
    r.scopes,
    r.roles,
    r.status,
    JSON.stringify(r.hashes),
    r.createdAt,
    r.expiresAt,
    r.revokedAt,
    JSON.stringify(r.metadata),
    r.tags ?? [],
    r.purpose ?? null,
    r.environment ?? 'live',
    JSON.stringify(r.policy ?? {}),
    r.rotatedAt ?? null,
    r.lastUsedAt ?? null,
    r.usageCount ?? 0,
    r.hashes.map((h) => h.hash),
  ]
}

/** `current` with the defined fields of `patch`; fields outside {@link PATCHABLE} are ignored. */
export function applyPatch(current: ApiKeyRecord, patch: ApiKeyPatch): ApiKeyRecord {
  if (typeof patch !== 'object' || patch === null) {
    throw new RecordShapeError('patch', `must be an object, received ${kind(patch)}`)
  }
  const next: Record<string, unknown> = { ...current }
  for (const field of PATCHABLE) {
    const value = patch[field]
    if (value !== undefined) next[field] = value
  }
  return normalizeRecord(next as unknown as ApiKeyRecord)
}
