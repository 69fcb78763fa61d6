/**
 * For key store implementers: the driver-independent half of storing an {@link ApiKeyRecord} in
 * a table with one column per field (the layout of `@portcullis/sqlite` and `@portcullis/postgres`).
 * A store turns its driver's row into plain column values (parses JSON text, converts 64-bit
 * integers); the codec checks those values and builds the frozen record, or fails closed on a row
 * that does not decode. On the way in it checks what `insert` and `update` are given, so a record
 * that could not be read back is never written.
 *
 * Reachable from `@portcullis/core`.
 * @packageDocumentation
 */
import { AuthError, ConfigError } from '../errors.js'
import type { UserID } from '../ids.js'
import { describeValue, TypeValidator } from '../validation/type-validator.js'
import type { ApiKeyId } from './format.js'
import {
  API_KEY_PATCH_FIELDS,
  type ApiKeyEnvironment,
  type ApiKeyListQuery,
  type ApiKeyPatch,
  type ApiKeyRecord,
  type ApiKeySecretHash,
  type ApiKeyStoredStatus,
  type ApiKeyUsage,
  type ApiKeyUsagePolicy,
} from './key-store.js'

/**
 * A stored value that does not have the shape of its `ApiKeyRecord` field; `path` names the column
 * or field (`scopes[2]`, `policy.quota.limit`). Never reaches a client: the codec turns it into a
 * `TypeError` (bad input) or an `AuthError` coded `ERR_KEYSTORE_UNAVAILABLE` (corrupt row).
 */
export class RecordShapeError extends Error {
  override readonly name = 'RecordShapeError'
  /** The column or field at fault. */
  readonly path: string

  constructor(path: string, problem: string) {
    super(`${path}: ${problem}`)
    this.path = path
  }

  /**
   * `<path>: must be <expected>, received <value>`: the error a row decoder throws for a column
   * value of the wrong type, described as the codec describes its own findings.
   */
  static mustBe(path: string, expected: string, value: unknown): RecordShapeError {
    return new RecordShapeError(path, `must be ${expected}, received ${kind(value)}`)
  }
}

/** One key as the values of its columns, as {@link StoredApiKeyCodec.columns} gives them. */
export interface StoredApiKeyColumns {
  readonly id: string
  readonly prefix: string
  readonly name: string
  readonly owner_id: string
  readonly scopes: readonly string[]
  readonly roles: readonly string[]
  readonly status: ApiKeyStoredStatus
  readonly hashes: readonly ApiKeySecretHash[]
  readonly created_at: number
  readonly expires_at: number | null
  readonly revoked_at: number | null
  readonly metadata: Readonly<Record<string, unknown>>
  readonly tags: readonly string[]
  readonly purpose: string | null
  readonly environment: ApiKeyEnvironment
  readonly policy: ApiKeyUsagePolicy
  readonly rotated_at: number | null
  readonly last_used_at: number | null
  readonly usage_count: number
}

/** A column of the key table. */
export type ApiKeyColumnName = keyof StoredApiKeyColumns

/**
 * Column values as a driver decoded them, not yet checked: JSON already parsed into arrays and
 * objects, integers as numbers. Anything else is reported by the codec with the column's name.
 */
export type UncheckedApiKeyColumns = { readonly [TColumn in ApiKeyColumnName]: unknown }

/** The columns of the key table in table order, for `SELECT` and `INSERT` lists. */
export const API_KEY_COLUMNS: readonly ApiKeyColumnName[] = Object.freeze([
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
] as const)

/** Options of {@link createStoredApiKeyCodec}. */
export interface StoredApiKeyCodecOptions<TRow> {
  /** The table's name, quoted into the message of a corrupt-row error. */
  readonly table: string
  /**
   * Turns a row as the driver returns it into column values: parses JSON text, converts 64-bit
   * integers. For a value that does not decode it throws a {@link RecordShapeError} naming the
   * column (see {@link parseJsonColumn} and {@link RecordShapeError.mustBe}).
   */
  readonly decodeRow: (row: TRow) => UncheckedApiKeyColumns
  /**
   * Also refuse U+0000 in text (PostgreSQL `text` cannot hold it). Lone UTF-16 surrogates are
   * always refused: UTF-8 cannot hold them, so they would not read back as written.
   * @default false
   */
  readonly refuseNul?: boolean
}

/** Reads rows into records and checks records on their way in: {@link createStoredApiKeyCodec}. */
export interface StoredApiKeyCodec<TRow> {
  /**
   * The deeply frozen record a row stores, every optional field present.
   * @throws {AuthError} coded `ERR_KEYSTORE_UNAVAILABLE` (reason `corrupt row`) for a row that does
   *   not decode, naming the key, the table and the column, so the gate fails closed (503)
   */
  read(row: TRow): ApiKeyRecord
  /**
   * A frozen copy of a record given to `insert`, sharing nothing with the caller's objects; absent
   * optional fields take their documented defaults.
   * @throws {TypeError} `insert: invalid key record: <field>: <problem>`
   */
  checkInsert(record: ApiKeyRecord): ApiKeyRecord
  /**
   * `current` with the defined fields of `patch` (those of {@link API_KEY_PATCH_FIELDS}; others
   * are ignored), checked and frozen.
   * @throws {TypeError} `update: invalid key record: <field>: <problem>`
   */
  checkUpdate(current: ApiKeyRecord, patch: ApiKeyPatch): ApiKeyRecord
  /** The column values of a record that `checkInsert` or `checkUpdate` returned. */
  columns(record: ApiKeyRecord): StoredApiKeyColumns
}

const STATUSES: readonly ApiKeyStoredStatus[] = ['active', 'revoked']
const ENVIRONMENTS: readonly ApiKeyEnvironment[] = ['live', 'test']
const ALGORITHMS: readonly string[] = ['hmac-sha256', 'sha256']
const MAX_JSON_DEPTH = 64
// With the `u` flag a well-formed surrogate pair is one code point, so \p{Cs} finds only lone
// halves, which UTF-8 cannot hold: the database would store U+FFFD (or refuse the value).
const LONE_SURROGATE = /\p{Cs}/u
// eslint-disable-next-line no-control-regex -- U+0000 is exactly what must be found
const NUL_OR_LONE_SURROGATE = /[\u0000\p{Cs}]/u

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
 * Parses a column holding JSON text, reporting a failure as a {@link RecordShapeError} that names
 * the column rather than a bare `SyntaxError`. `JSON.parse` defines `__proto__` as an own data
 * property, so a stored object cannot pollute prototypes.
 * @throws {RecordShapeError} when `value` is not a string or not valid JSON
 */
export function parseJsonColumn(column: string, value: unknown): unknown {
  if (typeof value !== 'string') throw RecordShapeError.mustBe(column, 'JSON text', value)
  try {
    return JSON.parse(value)
  } catch {
    throw new RecordShapeError(column, 'is not valid JSON')
  }
}

function epochMs(path: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value)) {
    throw RecordShapeError.mustBe(path, 'an integer (epoch ms)', value)
  }
  return value
}

function nullableEpochMs(path: string, value: unknown): number | null {
  return value === null ? null : epochMs(path, value)
}

function count(path: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw RecordShapeError.mustBe(path, 'a non-negative integer', value)
  }
  return value
}

function status(path: string, value: unknown): ApiKeyStoredStatus {
  if (!STATUSES.includes(value as ApiKeyStoredStatus)) {
    throw RecordShapeError.mustBe(path, '"active" or "revoked"', value)
  }
  return value as ApiKeyStoredStatus
}

function environment(path: string, value: unknown): ApiKeyEnvironment {
  if (!ENVIRONMENTS.includes(value as ApiKeyEnvironment)) {
    throw RecordShapeError.mustBe(path, '"live" or "test"', value)
  }
  return value as ApiKeyEnvironment
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false
  const proto: unknown = Object.getPrototypeOf(value)
  return proto === Object.prototype || proto === null
}

function plainObject(path: string, value: unknown): Record<string, unknown> {
  if (!isPlainObject(value)) throw RecordShapeError.mustBe(path, 'an object', value)
  return value
}

function array(path: string, value: unknown): readonly unknown[] {
  if (!Array.isArray(value)) throw RecordShapeError.mustBe(path, 'an array', value)
  return value
}

function deepFreeze<TValue>(value: TValue): TValue {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    for (const key of Object.keys(value)) deepFreeze((value as Record<string, unknown>)[key])
    Object.freeze(value)
  }
  return value
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
      throw RecordShapeError.mustBe(path, 'JSON data', value)
  }
}

/** The field checks that depend on which characters the database can store. */
class RecordChecker {
  readonly #unstorable: RegExp
  readonly #problem: string

  constructor(refuseNul: boolean) {
    this.#unstorable = refuseNul ? NUL_OR_LONE_SURROGATE : LONE_SURROGATE
    this.#problem = refuseNul
      ? 'contains U+0000 or a lone UTF-16 surrogate'
      : 'contains a lone UTF-16 surrogate'
  }

  text(path: string, value: unknown): string {
    if (typeof value !== 'string') throw RecordShapeError.mustBe(path, 'a string', value)
    if (this.#unstorable.test(value)) throw new RecordShapeError(path, this.#problem)
    return value
  }

  nullableText(path: string, value: unknown): string | null {
    return value === null ? null : this.text(path, value)
  }

  strings(path: string, value: unknown): readonly string[] {
    return Object.freeze(array(path, value).map((item, i) => this.text(`${path}[${i}]`, item)))
  }

  hashes(path: string, value: unknown): readonly ApiKeySecretHash[] {
    return Object.freeze(
      array(path, value).map((item, i): ApiKeySecretHash => {
        const p = `${path}[${i}]`
        const h = plainObject(p, item)
        const notAfter = h['notAfter']
        if (notAfter !== null && (typeof notAfter !== 'number' || !Number.isFinite(notAfter))) {
          throw RecordShapeError.mustBe(`${p}.notAfter`, 'null or a number', notAfter)
        }
        const algorithm = h['algorithm']
        if (algorithm !== undefined && !ALGORITHMS.includes(algorithm as string)) {
          throw RecordShapeError.mustBe(`${p}.algorithm`, '"hmac-sha256" or "sha256"', algorithm)
        }
        return Object.freeze({
          hash: this.text(`${p}.hash`, h['hash']) as ApiKeySecretHash['hash'],
          pepperId: this.text(`${p}.pepperId`, h['pepperId']),
          notAfter,
          ...(algorithm === undefined ? {} : { algorithm: algorithm as 'hmac-sha256' | 'sha256' }),
        })
      }),
    )
  }

  /** A usage policy: a JSON object with only the known members, each of its documented shape. */
  policy(path: string, value: unknown): ApiKeyUsagePolicy {
    const p = plainObject(path, value)
    checkJson(path, p, 0)
    for (const key of Object.keys(p)) {
      const member = p[key]
      if (member === undefined) continue
      if (key === 'allowedCidrs' || key === 'allowedOrigins') this.strings(`${path}.${key}`, member)
      else if (key === 'rateLimits') {
        array(`${path}.${key}`, member).forEach((rule, i) => {
          const r = plainObject(`${path}.${key}[${i}]`, rule)
          count(`${path}.${key}[${i}].limit`, r['limit'])
          count(`${path}.${key}[${i}].windowMs`, r['windowMs'])
        })
      } else if (key === 'quota') {
        const q = plainObject(`${path}.quota`, member)
        count(`${path}.quota.limit`, q['limit'])
        if (q['period'] !== 'day' && q['period'] !== 'month') {
          throw RecordShapeError.mustBe(`${path}.quota.period`, '"day" or "month"', q['period'])
        }
      } else throw new RecordShapeError(`${path}.${key}`, 'is not a usage policy field')
    }
    return deepFreeze(JSON.parse(JSON.stringify(p)) as ApiKeyUsagePolicy)
  }

  /** The frozen record that decoded column values hold. */
  decode(c: UncheckedApiKeyColumns): ApiKeyRecord {
    return Object.freeze({
      id: this.text('id', c.id) as ApiKeyId,
      prefix: this.text('prefix', c.prefix),
      name: this.text('name', c.name),
      ownerId: this.text('owner_id', c.owner_id) as UserID,
      scopes: this.strings('scopes', c.scopes),
      roles: this.strings('roles', c.roles),
      status: status('status', c.status),
      hashes: this.hashes('hashes', c.hashes),
      createdAt: epochMs('created_at', c.created_at),
      expiresAt: nullableEpochMs('expires_at', c.expires_at),
      revokedAt: nullableEpochMs('revoked_at', c.revoked_at),
      // Parsed from JSON by the driver, so JSON data already: only its shape needs checking.
      metadata: deepFreeze(plainObject('metadata', c.metadata)),
      tags: this.strings('tags', c.tags),
      purpose: this.nullableText('purpose', c.purpose),
      environment: environment('environment', c.environment),
      policy: this.policy('policy', c.policy),
      rotatedAt: nullableEpochMs('rotated_at', c.rotated_at),
      lastUsedAt: nullableEpochMs('last_used_at', c.last_used_at),
      usageCount: count('usage_count', c.usage_count),
    })
  }

  /** A checked, frozen copy of `record`; absent optional fields take their documented defaults. */
  normalize(record: ApiKeyRecord): ApiKeyRecord {
    if (typeof record !== 'object' || record === null) {
      throw RecordShapeError.mustBe('record', 'an object', record)
    }
    const metadata = plainObject('metadata', record.metadata)
    checkJson('metadata', metadata, 0)
    const id = this.text('id', record.id)
    if (id === '') throw new RecordShapeError('id', 'must not be empty')
    return Object.freeze({
      id: id as ApiKeyId,
      prefix: this.text('prefix', record.prefix),
      name: this.text('name', record.name),
      ownerId: this.text('ownerId', record.ownerId) as UserID,
      scopes: this.strings('scopes', record.scopes),
      roles: this.strings('roles', record.roles),
      status: status('status', record.status),
      hashes: this.hashes('hashes', record.hashes),
      createdAt: epochMs('createdAt', record.createdAt),
      expiresAt: nullableEpochMs('expiresAt', record.expiresAt),
      revokedAt: nullableEpochMs('revokedAt', record.revokedAt),
      // A JSON round trip is the deep copy whose result `read` would return anyway.
      metadata: deepFreeze(JSON.parse(JSON.stringify(metadata)) as Record<string, unknown>),
      tags: this.strings('tags', record.tags ?? []),
      purpose: this.nullableText('purpose', record.purpose ?? null),
      environment: environment('environment', record.environment ?? 'live'),
      policy: this.policy('policy', record.policy ?? {}),
      rotatedAt: nullableEpochMs('rotatedAt', record.rotatedAt ?? null),
      lastUsedAt: nullableEpochMs('lastUsedAt', record.lastUsedAt ?? null),
      usageCount: count('usageCount', record.usageCount ?? 0),
    })
  }

  patch(current: ApiKeyRecord, patch: ApiKeyPatch): ApiKeyRecord {
    if (typeof patch !== 'object' || patch === null) {
      throw RecordShapeError.mustBe('patch', 'an object', patch)
    }
    const next: Record<string, unknown> = { ...current }
    for (const field of API_KEY_PATCH_FIELDS) {
      const value = patch[field]
      if (value !== undefined) next[field] = value
    }
    return this.normalize(next as unknown as ApiKeyRecord)
  }
}

/** `build()`, with a malformed input record reported as a `TypeError` naming the field. */
function checkedInput(what: string, build: () => ApiKeyRecord): ApiKeyRecord {
  try {
    return build()
  } catch (error) {
    if (error instanceof RecordShapeError) {
      throw new TypeError(`${what}: invalid key record: ${error.message}`, { cause: error })
    }
    throw error
  }
}

function columnsOf(r: ApiKeyRecord): StoredApiKeyColumns {
  return {
    id: r.id,
    prefix: r.prefix,
    name: r.name,
    owner_id: r.ownerId,
    scopes: r.scopes,
    roles: r.roles,
    status: r.status,
    hashes: r.hashes,
    created_at: r.createdAt,
    expires_at: r.expiresAt,
    revoked_at: r.revokedAt,
    metadata: r.metadata,
    tags: r.tags ?? [],
    purpose: r.purpose ?? null,
    environment: r.environment ?? 'live',
    policy: r.policy ?? {},
    rotated_at: r.rotatedAt ?? null,
    last_used_at: r.lastUsedAt ?? null,
    usage_count: r.usageCount ?? 0,
  }
}

/**
 * Creates the record codec of one key table. Both directions check the shape: a record that could
 * not be read back is refused on write (`TypeError`), and a row that does not decode (hand-edited,
 * truncated, written by a buggy tool) is refused on read with `ERR_KEYSTORE_UNAVAILABLE`, so the
 * gate fails closed on it instead of trusting garbage.
 * @throws {ConfigError} for a bad or unknown option (there is no logger to warn through)
 * @example
 * ```ts
 * import { createStoredApiKeyCodec, parseJsonColumn } from '@portcullis/core'
 *
 * const codec = createStoredApiKeyCodec<Row>({
 *   table: 'portcullis_api_keys',
 *   decodeRow: (row) => ({ ...row, scopes: parseJsonColumn('scopes', row.scopes), ... }),
 * })
 * const record = codec.read(row) // throws ERR_KEYSTORE_UNAVAILABLE for a corrupt row
 * ```
 */
export function createStoredApiKeyCodec<TRow>(
  options: Readonly<StoredApiKeyCodecOptions<TRow>>,
): StoredApiKeyCodec<TRow> {
  const v = new TypeValidator()
  const given = v.object('options', options) ?? {}
  v.knownKeys(given, ['table', 'decodeRow', 'refuseNul'])
  const table = v.string('table', given['table'])
  const decodeRow = v.function<(row: TRow) => UncheckedApiKeyColumns>(
    'decodeRow',
    given['decodeRow'],
  )
  const refuseNul =
    given['refuseNul'] === undefined ? false : v.boolean('refuseNul', given['refuseNul'])
  // No logger to warn through, and a misspelt `refuseNul` would silently store what it must refuse.
  v.assert((message) => {
    throw new ConfigError(message)
  })
  const decode = decodeRow as (row: TRow) => UncheckedApiKeyColumns
  const checker = new RecordChecker(refuseNul === true)
  return {
    read(row: TRow): ApiKeyRecord {
      try {
        return checker.decode(decode(row))
      } catch (cause) {
        if (!(cause instanceof RecordShapeError)) throw cause
        const id = (row as { readonly id?: unknown } | null)?.id
        throw new AuthError(
          'ERR_KEYSTORE_UNAVAILABLE',
          `Corrupt row for key ${JSON.stringify(id)} in ${table as string}: ${cause.message}`,
          { cause, reason: 'corrupt row' },
        )
      }
    },
    checkInsert: (record) => checkedInput('insert', () => checker.normalize(record)),
    checkUpdate: (current, patch) => checkedInput('update', () => checker.patch(current, patch)),
    columns: columnsOf,
  }
}

/** A checked {@link ApiKeyListQuery}, from {@link resolveApiKeyListQuery}. */
export interface ResolvedApiKeyListQuery {
  /**
   * Which filters are set, as letters in a fixed order (`o` owner, `s` status, `t` tag): one of
   * {@link API_KEY_LIST_FILTERS}, a key for a prepared statement per combination.
   */
  readonly filters: string
  /** The values of the filters set, in the order of `filters`. */
  readonly values: readonly string[]
  /** Page size, lowered to the store's maximum. */
  readonly limit: number
  /** Ids after which the page starts; `''` for the first page (ids are never empty). */
  readonly cursor: string
}

/** Every value {@link ResolvedApiKeyListQuery.filters} can take. */
export const API_KEY_LIST_FILTERS: readonly string[] = Object.freeze([
  '',
  'o',
  's',
  't',
  'os',
  'ot',
  'st',
  'ost',
])

/** Page sizes of a store, for {@link resolveApiKeyListQuery}. */
export interface ApiKeyListLimits {
  /** Page size when the query gives none. */
  readonly defaultLimit: number
  /** Largest page size; a larger `limit` is lowered to it. */
  readonly maxLimit: number
}

/**
 * Checks the query of {@link KeyStore.list} as every built-in SQL store does: an unknown `status`
 * (a typo such as `'revoke'` would otherwise match nothing) or a filter of the wrong type is
 * refused rather than ignored.
 * @throws {TypeError} for a filter or cursor of the wrong type, naming it
 * @throws {RangeError} for a `limit` that is not a positive integer
 */
export function resolveApiKeyListQuery(
  query: ApiKeyListQuery,
  limits: ApiKeyListLimits,
): ResolvedApiKeyListQuery {
  if (typeof query !== 'object' || query === null) {
    throw new TypeError(`list: query must be an object, received ${describeValue(query)}`)
  }
  const { ownerId, status, tag, limit = limits.defaultLimit, cursor } = query
  const values: string[] = []
  let filters = ''
  if (ownerId !== undefined) {
    if (typeof ownerId !== 'string') {
      throw new TypeError(`list: ownerId must be a string, received ${describeValue(ownerId)}`)
    }
    filters += 'o'
    values.push(ownerId)
  }
  if (status !== undefined) {
    if (!STATUSES.includes(status)) {
      throw new TypeError(
        `list: status must be "active" or "revoked", received ${describeValue(status)}`,
      )
    }
    filters += 's'
    values.push(status)
  }
  if (tag !== undefined) {
    if (typeof tag !== 'string') {
      throw new TypeError(`list: tag must be a string, received ${describeValue(tag)}`)
    }
    filters += 't'
    values.push(tag)
  }
  if (!Number.isSafeInteger(limit) || limit < 1) {
    throw new RangeError(`list: limit must be a positive integer, received ${describeValue(limit)}`)
  }
  if (cursor !== undefined && typeof cursor !== 'string') {
    throw new TypeError(`list: cursor must be a string, received ${describeValue(cursor)}`)
  }
  return { filters, values, limit: Math.min(limit, limits.maxLimit), cursor: cursor ?? '' }
}

/**
 * Checks a batch of {@link KeyStore.recordUsage} before anything is written, so a bad entry never
 * leaves half a batch applied.
 * @throws {TypeError} naming the first malformed entry (`usage[1]`)
 */
export function assertApiKeyUsage(usage: unknown): asserts usage is readonly ApiKeyUsage[] {
  if (!Array.isArray(usage)) {
    throw new TypeError(`recordUsage: usage must be an array, received ${describeValue(usage)}`)
  }
  for (const [i, u] of (usage as readonly (Partial<ApiKeyUsage> | null)[]).entries()) {
    if (
      typeof u?.id !== 'string' ||
      !Number.isSafeInteger(u.lastUsedAt) ||
      !Number.isSafeInteger(u.count) ||
      (u.count as number) < 0
    ) {
      throw new TypeError(
        `recordUsage: usage[${i}] must be { id, lastUsedAt, count: integer >= 0 }`,
      )
    }
  }
}
