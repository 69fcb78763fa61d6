/**
 * Table and index names derived from the validated `tablePrefix`.
 * @internal
 */
import type { TypeValidator } from '@portcullis/core'
import {
  DEFAULT_SQLITE_TABLE_PREFIX,
  MAX_SQLITE_TABLE_PREFIX_LENGTH,
  SQLITE_TABLE_PREFIX_PATTERN,
} from '../defaults.js'

/** The quoted identifiers of every schema object the store owns. */
export interface TableNames {
  readonly migrations: string
  readonly apiKeys: string
  readonly apiKeysOwnerIndex: string
  readonly apiKeysStatusIndex: string
  /** One row per stored secret hash, for `findByHash` (imported keys carry no key id). */
  readonly apiKeyHashes: string
  readonly apiKeyHashesKeyIndex: string
}

/** Validates `tablePrefix` (recording an issue on `v`) and returns it, or the default. */
export function resolveTablePrefix(v: TypeValidator, value: unknown): string {
  if (value === undefined) return DEFAULT_SQLITE_TABLE_PREFIX
  const prefix = v.string('tablePrefix', value, {
    pattern: SQLITE_TABLE_PREFIX_PATTERN,
    maxLength: MAX_SQLITE_TABLE_PREFIX_LENGTH,
  })
  // SQLite refuses to create objects whose names start with `sqlite_` (reserved for itself).
  if (prefix?.startsWith('sqlite_') === true) {
    v.fail(
      'tablePrefix',
      `must not start with "sqlite_" (reserved by SQLite), received "${prefix}"`,
    )
  }
  return prefix ?? DEFAULT_SQLITE_TABLE_PREFIX
}

/**
 * The names for `prefix`. The prefix matched `^[a-z_][a-z0-9_]*$`, so quoting is belt and braces
 * rather than the only defence against injection.
 */
export function tableNames(prefix: string): TableNames {
  const quote = (name: string): string => `"${prefix}${name}"`
  return Object.freeze({
    migrations: quote('migrations'),
    apiKeys: quote('api_keys'),
    apiKeysOwnerIndex: quote('api_keys_owner_id'),
    apiKeysStatusIndex: quote('api_keys_status'),
    apiKeyHashes: quote('api_key_hashes'),
    apiKeyHashesKeyIndex: quote('api_key_hashes_key_id'),
  })
}
