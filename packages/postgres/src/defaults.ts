/**
 * Every default of `@portcullis/postgres`, one named constant each. The TSDoc `@default` tags of
 * the options repeat these values.
 *
 * Reachable from `@portcullis/postgres`.
 * @packageDocumentation
 */

/** `tablePrefix` of the key store: prefix of every table, index and trigger it creates. */
export const DEFAULT_POSTGRES_TABLE_PREFIX = 'portcullis_'

/** `table` of the audit sink. */
export const DEFAULT_POSTGRES_AUDIT_TABLE = 'portcullis_audit_events'

/**
 * What `schema`, `tablePrefix` and `table` must match: a lower-case SQL identifier, safe to splice
 * into DDL (it is quoted as well).
 */
export const POSTGRES_IDENTIFIER_PATTERN: RegExp = /^[a-z_][a-z0-9_]*$/

/** Longest `tablePrefix`: PostgreSQL truncates identifiers at 63 bytes, and names add a suffix. */
export const MAX_POSTGRES_TABLE_PREFIX_LENGTH = 40

/** Longest `table` or `schema` name (the audit sink derives names with suffixes from `table`). */
export const MAX_POSTGRES_TABLE_NAME_LENGTH = 48

/** `max` of the pool the store or sink creates from a `connectionString`. */
export const DEFAULT_POSTGRES_POOL_MAX = 10

/** `connectionTimeoutMillis` of a pool created from a `connectionString`. */
export const DEFAULT_POSTGRES_CONNECT_TIMEOUT_MS = 5_000

/**
 * `query_timeout` of a pool created from a `connectionString`: a hung server (network partition)
 * fails the call instead of holding the request forever.
 */
export const DEFAULT_POSTGRES_QUERY_TIMEOUT_MS = 10_000

/** `idleTimeoutMillis` of a pool created from a `connectionString`. */
export const DEFAULT_POSTGRES_IDLE_TIMEOUT_MS = 30_000

/** Page size of `list()` when the query gives no `limit`. */
export const DEFAULT_POSTGRES_LIST_LIMIT = 100

/** Largest page `list()` returns; larger limits are lowered to it. */
export const MAX_POSTGRES_LIST_LIMIT = 1_000

/** Largest page `readPostgresAuditEvents()` returns per query when it pages internally. */
export const POSTGRES_AUDIT_READ_PAGE = 1_000
