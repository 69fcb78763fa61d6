/**
 * Every default of `@portcullis/sqlite`, one named constant each. The TSDoc `@default` tags of the
 * options repeat these values.
 *
 * Reachable from `@portcullis/sqlite`.
 * @packageDocumentation
 */

/** `tablePrefix`: prefix of every table and index the store creates. */
export const DEFAULT_SQLITE_TABLE_PREFIX = 'portcullis_'

/** What `tablePrefix` must match: a lower-case SQL identifier, safe to splice into DDL. */
export const SQLITE_TABLE_PREFIX_PATTERN: RegExp = /^[a-z_][a-z0-9_]*$/

/** Longest `tablePrefix` accepted. */
export const MAX_SQLITE_TABLE_PREFIX_LENGTH = 48

/** `busy_timeout` (ms) set on a database file the store opens itself. */
export const DEFAULT_SQLITE_BUSY_TIMEOUT_MS = 5_000

/** Page size of `list()` when the query gives no `limit`. */
export const DEFAULT_SQLITE_LIST_LIMIT = 100

/** Largest page `list()` returns; larger limits are lowered to it. */
export const MAX_SQLITE_LIST_LIMIT = 1_000
