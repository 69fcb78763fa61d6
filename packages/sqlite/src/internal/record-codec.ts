/**
 * Converts between core's `ApiKeyRecord` and a row of `<prefix>api_keys`. Both directions check
 * the shape: a record that could not be read back is refused on write, and a row that does not
 * decode to a valid record (hand-edited, truncated, written by a buggy tool) is refused on read,
 * so the gate fails closed on it instead of trusting garbage.
 * @internal
 */
import type {
  ApiKeyEnvironment,
  ApiKeyId,
  ApiKeyPatch,
  ApiKeyUsagePolicy,
  ApiKeyRecord,
  ApiKeySecretHash,
  ApiKeyStoredStatus,
  UserID,
} from '@gatehouse/core'

/** A row as SQLite returns it (columns are typed by the STRICT table). */
export interface ApiKeyRow {
  readonly id: string
  readonly prefix: string
  readonly name: string
  readonly owner_id: string
  readonly scopes: string
  readonly roles: string
  readonly status: string
  readonly hashes: string
  readonly created_at: number
  readonly expires_at: number | null
  readonly revoked_at: number | null
  readonly metadata: string
  readonly tags: string
  readonly purpose: string | null
  readonly environment: string
  readonly policy: string
  readonly rotated_at: number | null
  readonly last_used_at: number | null
  readonly usage_count: number
}

/** Column list in table order, for SELECT and INSERT. */
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

/** The columns `update` may change, matching the fields of core's `ApiKeyPatch`. */
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
// With the `u` flag a well-formed surrogate pair is one code point, so this finds only lone halves,
// which UTF-8 cannot hold: SQLite would store U+FFFD and the value would not read back.
const LONE_SURROGATE = /\p{Cs}/u

function text(path: string, value: unknown): string {
  if (typeof value !== 'string') {
    throw new RecordShapeError(path, `must be a string, received ${kind(value)}`)
  }
  if (LONE_SURROGATE.test(value)) {
    throw new RecordShapeError(path, 'contains a lone UTF-16 surrogate')
  }
  return value
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

function nullableText(path: string, value: unknown): string | null {
  return value === null ? null : text(path, value)
}

function count(path: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new RecordShapeError(path, `must be a non-negative integer, received ${kind(value)}`)
  }
  return value
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

function strings(path: string, value: unknown): readonly string[] {
  if (!Array.isArray(value)) {
    throw new RecordShapeError(path, `must be an array, received ${kind(value)}`)
  }
  return Object.freeze(value.map((item: unknown, i) => text(`${path}[${i}]`, item)))
}

function hashes(path: string, value: unknown): readonly ApiKeySecretHash[] {
  if (!Array.isArray(value)) {
    throw new RecordShapeError(path, `must be an array, received ${kind(value)}`)
  }
  return Object.freeze(
    value.map((item: unknown, i): ApiKeySecretHash => {
      const p = `${path}[${i}]`
      if (!isPlainObject(item)) {
        throw new RecordShapeError(p, `must be an object, received ${kind(item)}`)
      }
      const notAfter = item['notAfter']
      if (notAfter !== null && (typeof notAfter !== 'number' || !Number.isFinite(notAfter))) {
        throw new RecordShapeError(
          `${p}.notAfter`,
          `must be null or a number, received ${kind(notAfter)}`,
        )
      }
      const algorithm = item['algorithm']
      if (algorithm !== undefined && !ALGORITHMS.includes(algorithm as string)) {
        throw new RecordShapeError(
          `${p}.algorithm`,
          `must be "hmac-sha256" or "sha256", received ${kind(algorithm)}`,
        )
      }
      return Object.freeze({
        hash: text(`${p}.hash`, item['hash']) as ApiKeySecretHash['hash'],
        pepperId: text(`${p}.pepperId`, item['pepperId']),
        notAfter,
        ...(algorithm === undefined ? {} : { algorithm: algorithm as 'hmac-sha256' | 'sha256' }),
      })
    }),
  )
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false
  const proto: unknown = Object.getPrototypeOf(value)
  return proto === Object.prototype || proto === null
}

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

/**
 * Checks that `value` survives JSON unchanged: plain objects, arrays, strings, finite numbers,
 * booleans and null. Object members set to `undefined` are allowed and dropped (as an absent
 * option would be); anything else JSON would alter or refuse (a Date, a Map, NaN, a BigInt, a
 * cycle) is refused here with its path rather than silently changed.
 */
function checkJson(path: string, value: unknown, depth: number): void {
  if (depth > MAX_JSON_DEPTH) {
    throw new RecordShapeError(path, `nests deeper than ${MAX_JSON_DEPTH} levels`)
  }
  switch (typeof value) {
    case 'string':
      return
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
          if (item === undefined) {
            throw new RecordShapeError(`${path}[${i}]`, 'must not be undefined')
          }
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

/** Parses JSON without throwing a bare `SyntaxError` that would not say which column failed. */
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

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    for (const key of Object.keys(value)) deepFreeze((value as Record<string, unknown>)[key])
    Object.freeze(value)
  }
  return value
}

function plainObject(path: string, value: unknown): Record<string, unknown> {
  if (!isPlainObject(value)) {
    throw new RecordShapeError(path, `must be an object, received ${kind(value)}`)
  }
  return value
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
    scopes: strings('scopes', parse('scopes', row.scopes)),
    roles: strings('roles', parse('roles', row.roles)),
    status: status('status', row.status),
    hashes: hashes('hashes', parse('hashes', row.hashes)),
    createdAt: epochMs('created_at', row.created_at),
    expiresAt: nullableEpochMs('expires_at', row.expires_at),
    revokedAt: nullableEpochMs('revoked_at', row.revoked_at),
    metadata: deepFreeze(metadata),
    tags: strings('tags', parse('tags', row.tags)),
    purpose: nullableText('purpose', row.purpose),
    environment: environment('environment', row.environment),
    policy: policy('policy', parse('policy', row.policy)),
    rotatedAt: nullableEpochMs('rotated_at', row.rotated_at),
    lastUsedAt: nullableEpochMs('last_used_at', row.last_used_at),
    usageCount: count('usage_count', row.usage_count),
  })
}

/**
 * Checks a record given to `insert` or produced by `update`, and returns a frozen copy that shares
 * nothing with the caller's objects.
 * @throws {RecordShapeError} for a field of the wrong shape
 */
export function normalizeRecord(record: ApiKeyRecord): ApiKeyRecord {
  if (typeof record !== 'object' || record === null) {
    throw new RecordShapeError('record', `must be an object, received ${kind(record)}`)
  }
  const metadata = plainObject('metadata', record.metadata)
  checkJson('metadata', metadata, 0)
  return Object.freeze({
    id: text('id', record.id) as ApiKeyId,
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
    // Absent optional fields take their documented defaults, as rows of version 1 do.
    tags: strings('tags', record.tags ?? []),
    purpose: nullableText('purpose', record.purpose ?? null),
    environment: environment('environment', record.environment ?? 'live'),
    policy: policy('policy', record.policy ?? {}),
    rotatedAt: nullableEpochMs('rotatedAt', record.rotatedAt ?? null),
    lastUsedAt: nullableEpochMs('lastUsedAt', record.lastUsedAt ?? null),
    usageCount: count('usageCount', record.usageCount ?? 0),
  })
}

/** The row that stores a record already checked by {@link normalizeRecord}. */
export function recordToRow(record: ApiKeyRecord): ApiKeyRow {
  return {
    id: record.id,
    prefix: record.prefix,
    name: record.name,
    owner_id: record.ownerId,
    scopes: JSON.stringify(record.scopes),
    roles: JSON.stringify(record.roles),
    status: record.status,
    hashes: JSON.stringify(record.hashes),
    created_at: record.createdAt,
    expires_at: record.expiresAt,
    revoked_at: record.revokedAt,
    metadata: JSON.stringify(record.metadata),
    tags: JSON.stringify(record.tags ?? []),
    purpose: record.purpose ?? null,
    environment: record.environment ?? 'live',
    policy: JSON.stringify(record.policy ?? {}),
    rotated_at: record.rotatedAt ?? null,
    last_used_at: record.lastUsedAt ?? null,
    usage_count: record.usageCount ?? 0,
  }
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
