/**
 * The pool a store or sink works on (given by the caller, or created from a connection string and
 * owned), and the mapping of driver failures to core's errors.
 * @internal
 */
import {
  AuthError,
  describeValue,
  type AuthErrorCode,
  type Logger,
  type TypeValidator,
} from '@portcullis/core'
import pg from 'pg'
import {
  DEFAULT_POSTGRES_CONNECT_TIMEOUT_MS,
  DEFAULT_POSTGRES_IDLE_TIMEOUT_MS,
  DEFAULT_POSTGRES_POOL_MAX,
  DEFAULT_POSTGRES_QUERY_TIMEOUT_MS,
  MAX_POSTGRES_TABLE_NAME_LENGTH,
  POSTGRES_IDENTIFIER_PATTERN,
} from '../defaults.js'

/** What a store needs of a pool: `pg.Pool` satisfies it. */
export type Queryable = pg.Pool

/** The validated `pool` / `connectionString` pair. */
export type PoolSource =
  | { readonly pool: pg.Pool; readonly connectionString?: undefined }
  | { readonly pool?: undefined; readonly connectionString: string }

/** Checks that exactly one of `pool` and `connectionString` is given. */
export function resolvePoolSource(
  v: TypeValidator,
  pool: unknown,
  connectionString: unknown,
): PoolSource | undefined {
  if (pool !== undefined && connectionString !== undefined) {
    return v.fail('pool', 'give either "pool" or "connectionString", not both')
  }
  if (pool !== undefined) {
    const p = pool as Partial<pg.Pool> | null
    if (
      typeof p !== 'object' ||
      p === null ||
      typeof p.query !== 'function' ||
      typeof p.connect !== 'function' ||
      typeof p.on !== 'function'
    ) {
      return v.fail('pool', `must be a pg.Pool, received ${describeValue(pool)}`)
    }
    return { pool: pool as pg.Pool }
  }
  if (connectionString === undefined) {
    return v.fail('pool', 'required: a pg.Pool, or a "connectionString" (postgres://...)')
  }
  const url = v.string('connectionString', connectionString)
  if (url === undefined) return undefined
  if (!/^postgres(?:ql)?:\/\//.test(url)) {
    // Never echo the value: it may hold a password.
    return v.fail('connectionString', 'must be a postgres:// or postgresql:// URL')
  }
  return { connectionString: url }
}

/** Validates an identifier option (schema, table, prefix). */
export function resolveIdentifier(
  v: TypeValidator,
  field: string,
  value: unknown,
  fallback: string | undefined,
  maxLength: number = MAX_POSTGRES_TABLE_NAME_LENGTH,
): string | undefined {
  if (value === undefined) return fallback
  const name = v.string(field, value, { pattern: POSTGRES_IDENTIFIER_PATTERN, maxLength })
  // `pg_` names are reserved for the system catalogs.
  if (name?.startsWith('pg_') === true) {
    return v.fail(field, `must not start with "pg_" (reserved by PostgreSQL), received "${name}"`)
  }
  return name
}

/** A quoted, optionally schema-qualified name. */
export function qualified(schema: string | undefined, name: string): string {
  return schema === undefined ? `"${name}"` : `"${schema}"."${name}"`
}

/** Validates `logger`. */
export function resolveLogger(v: TypeValidator, value: unknown, fallback: Logger): Logger {
  if (value === undefined) return fallback
  const l = value as Partial<Logger> | null
  if (typeof l?.warn === 'function' && typeof l.error === 'function') return value as Logger
  v.fail('logger', `must have warn() and error() methods, received ${describeValue(value)}`)
  return fallback
}

const guarded = new WeakSet<pg.Pool>()

/** The pool to use and whether we own it (and must end it on close). */
export interface OpenedPool {
  readonly pool: pg.Pool
  readonly owned: boolean
}

/**
 * The caller's pool, or a new one for `connectionString`. Either way an `error` listener is added:
 * pg emits `error` on the pool when an idle connection drops (a database restart), and an
 * unhandled `error` event would crash the process. The next query simply gets a new connection.
 */
export function openPool(source: PoolSource, logger: Logger, what: string): OpenedPool {
  const pool =
    source.pool ??
    new pg.Pool({
      connectionString: source.connectionString,
      max: DEFAULT_POSTGRES_POOL_MAX,
      connectionTimeoutMillis: DEFAULT_POSTGRES_CONNECT_TIMEOUT_MS,
      query_timeout: DEFAULT_POSTGRES_QUERY_TIMEOUT_MS,
      idleTimeoutMillis: DEFAULT_POSTGRES_IDLE_TIMEOUT_MS,
    })
  // Once per pool: many stores and sinks may share one pool.
  if (!guarded.has(pool)) {
    guarded.add(pool)
    pool.on('error', (error: Error) => {
      logger.warn(
        { error: error.message },
        `${what}: an idle PostgreSQL connection failed; it will be replaced`,
      )
    })
  }
  return { pool, owned: source.pool === undefined }
}

/**
 * SQLSTATE classes of errors a caller cannot fix by changing its input: the database is down,
 * restarting, out of resources, or its schema was tampered with. PostgreSQL error codes appendix.
 */
const UNAVAILABLE_CLASSES = ['08', '53', '57', '58', 'XX', '42', '3D', '28', '40', '55']

/** Whether `error` says the server cannot serve us right now (rather than that our input is bad). */
export function isUnavailable(error: unknown): boolean {
  if (error instanceof AuthError) return false
  const code = (error as { code?: unknown } | null)?.code
  if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code)) {
    return UNAVAILABLE_CLASSES.includes(code.slice(0, 2))
  }
  // Node socket errors (ECONNREFUSED, ECONNRESET, ...), pg's own connection/timeout errors, and a
  // pool that was ended: all plain Errors with no SQLSTATE.
  return error instanceof Error && !(error instanceof TypeError) && !(error instanceof RangeError)
}

/** `error` as core's `<code>` error (503), unless it is a caller error, which passes unchanged. */
export function unavailable(code: AuthErrorCode, what: string, error: unknown): unknown {
  if (!isUnavailable(error)) return error
  const message = error instanceof Error ? error.message : String(error)
  return new AuthError(code, `${what} unavailable: ${message}`, {
    cause: error,
    reason: 'store unavailable',
  })
}
