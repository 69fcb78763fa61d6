/**
 * SQLite's half of the key record codec: a row of `<prefix>api_keys` to and from core's column
 * values. Arrays and objects are JSON text; the checks of the values themselves are core's
 * (`createStoredApiKeyCodec`).
 * @internal
 */
import {
  createStoredApiKeyCodec,
  parseJsonColumn,
  type ApiKeyColumnName,
  type StoredApiKeyCodec,
  type StoredApiKeyColumns,
  type UncheckedApiKeyColumns,
} from '@portcullis/core'

/** A row as SQLite returns it: per column TEXT, INTEGER or NULL, as the STRICT table types it. */
export type ApiKeyRow = { readonly [TColumn in ApiKeyColumnName]: string | number | null }

/** The columns holding JSON text. */
const JSON_COLUMNS = ['scopes', 'roles', 'hashes', 'metadata', 'tags', 'policy'] as const

function decodeRow(row: ApiKeyRow): UncheckedApiKeyColumns {
  const columns: Record<string, unknown> = { ...row }
  for (const c of JSON_COLUMNS) columns[c] = parseJsonColumn(c, row[c])
  return columns as UncheckedApiKeyColumns
}

/** The codec of the key table `table`. */
export function keyRecordCodec(table: string): StoredApiKeyCodec<ApiKeyRow> {
  // SQLite stores U+0000 in TEXT; only lone surrogates (not UTF-8) cannot read back.
  return createStoredApiKeyCodec<ApiKeyRow>({ table, decodeRow })
}

/** The row that stores a record's column values. */
export function encodeRow(columns: StoredApiKeyColumns): ApiKeyRow {
  const row: Record<string, unknown> = { ...columns }
  for (const c of JSON_COLUMNS) row[c] = JSON.stringify(columns[c])
  return row as ApiKeyRow
}
