/**
 * PostgreSQL's half of the key record codec: a row of `<prefix>api_keys` to and from core's column
 * values. The checks of the values themselves are core's (`createStoredApiKeyCodec`).
 * @internal
 */
import {
  RecordShapeError,
  createStoredApiKeyCodec,
  parseJsonColumn,
  type StoredApiKeyCodec,
  type StoredApiKeyColumns,
  type UncheckedApiKeyColumns,
} from '@portcullis/core'

/**
 * A row as pg returns it. `bigint` columns arrive as strings (pg's default) or numbers (when the
 * application installed a type parser); `jsonb` as parsed values (or text, without the parser);
 * `text[]` as arrays; `metadata` is JSON text.
 */
export type ApiKeyRow = UncheckedApiKeyColumns

/** A `bigint` column value as a number: pg gives text unless a type parser is installed. */
function int8(column: string, value: unknown): number {
  if (typeof value === 'string' && /^-?\d{1,16}$/.test(value)) return Number(value)
  if (typeof value === 'bigint') return Number(value)
  if (typeof value === 'number') return value
  throw RecordShapeError.mustBe(column, 'a bigint', value)
}

function nullableInt8(column: string, value: unknown): number | null {
  return value === null ? null : int8(column, value)
}

/** A `jsonb` value: parsed by pg, or text when the application turned pg's JSON parser off. */
function jsonb(column: string, value: unknown): unknown {
  return typeof value === 'string' ? parseJsonColumn(column, value) : value
}

function decodeRow(row: ApiKeyRow): UncheckedApiKeyColumns {
  return {
    ...row,
    hashes: jsonb('hashes', row.hashes),
    metadata: parseJsonColumn('metadata', row.metadata),
    policy: jsonb('policy', row.policy),
    created_at: int8('created_at', row.created_at),
    expires_at: nullableInt8('expires_at', row.expires_at),
    revoked_at: nullableInt8('revoked_at', row.revoked_at),
    rotated_at: nullableInt8('rotated_at', row.rotated_at),
    last_used_at: nullableInt8('last_used_at', row.last_used_at),
    usage_count: int8('usage_count', row.usage_count),
  }
}

/** The codec of the key table `table`. */
export function keyRecordCodec(table: string): StoredApiKeyCodec<ApiKeyRow> {
  // PostgreSQL text cannot hold U+0000: refuse it on write rather than fail inside the server.
  return createStoredApiKeyCodec<ApiKeyRow>({ table, decodeRow, refuseNul: true })
}

/** The hashes alone, for the GIN-indexed `hash_values` column. */
function hashValues(c: StoredApiKeyColumns): string[] {
  return c.hashes.map((h) => h.hash)
}

/**
 * The 20 parameters of the INSERT: the columns in `API_KEY_COLUMNS` order (`hashes`, `metadata`
 * and `policy` as JSON text), then `hash_values`.
 */
export function insertParams(c: StoredApiKeyColumns): unknown[] {
  return [
    c.id,
    c.prefix,
    c.name,
    c.owner_id,
    c.scopes,
    c.roles,
    c.status,
    JSON.stringify(c.hashes),
    c.created_at,
    c.expires_at,
    c.revoked_at,
    JSON.stringify(c.metadata),
    c.tags,
    c.purpose,
    c.environment,
    JSON.stringify(c.policy),
    c.rotated_at,
    c.last_used_at,
    c.usage_count,
    hashValues(c),
  ]
}

/** The 14 parameters of the UPDATE, in the order of its `SET` list (id first, for `WHERE`). */
export function updateParams(c: StoredApiKeyColumns): unknown[] {
  return [
    c.id,
    c.name,
    c.scopes,
    c.roles,
    c.status,
    JSON.stringify(c.hashes),
    hashValues(c),
    c.expires_at,
    c.revoked_at,
    JSON.stringify(c.metadata),
    c.tags,
    c.purpose,
    JSON.stringify(c.policy),
    c.rotated_at,
  ]
}
