/**
 * Schema migrations of the PostgreSQL key store. Each migration runs once, in order, recorded as a
 * row of `<prefix>migrations`; all pending ones run in one transaction under an advisory lock, so
 * a failure leaves the old schema and several processes starting at once apply each migration
 * exactly once.
 *
 * Reachable from `@portcullis/postgres`.
 * @packageDocumentation
 */
import { TypeValidator } from '@portcullis/core'
import type pg from 'pg'
import { DEFAULT_POSTGRES_TABLE_PREFIX, MAX_POSTGRES_TABLE_PREFIX_LENGTH } from './defaults.js'
import {
  openPool,
  resolveIdentifier,
  resolvePoolSource,
  unavailable,
  type PoolSource,
} from './internal/connection.js'
import { migrate, type Migration, type MigrationTarget } from './internal/migrator.js'
import { keyStoreNames, type KeyStoreNames } from './internal/table-names.js'
import { silentLogger } from '@portcullis/core'

/** Options of {@link migratePostgres}. */
export interface PostgresMigrationOptions {
  /** A pg `Pool` you own (left open). Give this or `connectionString`. */
  readonly pool?: pg.Pool
  /** A `postgres://` URL; a pool is opened for the run and closed after it. */
  readonly connectionString?: string
  /**
   * Schema holding the tables (created when missing); absent: the connection's `search_path`
   * (usually `public`).
   */
  readonly schema?: string
  /**
   * Prefix of every table and index name: lower-case letters, digits and `_`, at most 40.
   * @default 'portcullis_'
   */
  readonly tablePrefix?: string
}

/** What {@link migratePostgres} did. */
export interface PostgresMigrationResult {
  /** Versions applied by this call, in order; empty when the schema was already current. */
  readonly applied: readonly number[]
  /** The schema version now in the database. */
  readonly version: number
}

const MIGRATIONS: readonly Migration<KeyStoreNames>[] = [
  {
    version: 1,
    name: 'create api_keys',
    // id sorts with COLLATE "C" (byte order), so list() pages in the same order on every
    // database, whatever its default collation. hash_values repeats the hashes of `hashes` as a
    // GIN-indexed array for findByHash; every write sets both.
    up: (t) => `
      CREATE TABLE ${t.apiKeys} (
        id TEXT COLLATE "C" NOT NULL PRIMARY KEY,
        prefix TEXT NOT NULL,
        name TEXT NOT NULL,
        owner_id TEXT NOT NULL,
        scopes TEXT[] NOT NULL,
        roles TEXT[] NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('active', 'revoked')),
        hashes JSONB NOT NULL,
        hash_values TEXT[] NOT NULL,
        created_at BIGINT NOT NULL,
        expires_at BIGINT,
        revoked_at BIGINT,
        metadata TEXT NOT NULL,
        tags TEXT[] NOT NULL DEFAULT '{}',
        purpose TEXT,
        environment TEXT NOT NULL DEFAULT 'live' CHECK (environment IN ('live', 'test')),
        policy JSONB NOT NULL DEFAULT '{}',
        rotated_at BIGINT,
        last_used_at BIGINT,
        usage_count BIGINT NOT NULL DEFAULT 0
      );
      CREATE INDEX ${t.ownerIndex} ON ${t.apiKeys} (owner_id, id);
      CREATE INDEX ${t.statusIndex} ON ${t.apiKeys} (status, id);
      CREATE INDEX ${t.tagsIndex} ON ${t.apiKeys} USING GIN (tags);
      CREATE INDEX ${t.hashIndex} ON ${t.apiKeys} USING GIN (hash_values);
    `,
  },
]

/** The key-store schema version this release of `@portcullis/postgres` creates and expects. */
export const POSTGRES_SCHEMA_VERSION: number = MIGRATIONS.length

/** The migration target of the key store for already-resolved names. @internal */
export function keyStoreMigrations(names: KeyStoreNames): MigrationTarget<KeyStoreNames> {
  return {
    schema: names.schema,
    table: names.migrations,
    component: 'keys',
    what: '@portcullis/postgres key store',
    migrations: MIGRATIONS,
    names,
  }
}

/**
 * Brings the key-store schema to {@link POSTGRES_SCHEMA_VERSION}. Idempotent: a current schema is
 * left alone. {@link createPostgresKeyStore} calls it on first use (unless `migrate: false`); call
 * it yourself to migrate at deploy time, with a role allowed to create tables, and run the
 * application with `migrate: false` under a role that may only read and write rows.
 * @throws {ConfigError} (rejects) for a bad option, or when the database holds a newer schema than
 *   this release knows (a downgrade)
 * @throws {AuthError} (rejects) `ERR_KEYSTORE_UNAVAILABLE` when the database cannot be reached or
 *   the role may not create the tables
 * @example
 * ```ts
 * import { migratePostgres } from '@portcullis/postgres'
 * const { applied } = await migratePostgres({ connectionString: process.env.DATABASE_URL })
 * ```
 */
export async function migratePostgres(
  options: Readonly<PostgresMigrationOptions>,
): Promise<PostgresMigrationResult> {
  const v = new TypeValidator()
  v.object('options', options)
  const o = options ?? {}
  v.knownKeys(o as Record<string, unknown>, ['pool', 'connectionString', 'schema', 'tablePrefix'])
  const source = resolvePoolSource(v, o.pool, o.connectionString)
  const schema = resolveIdentifier(v, 'schema', o.schema, undefined)
  const prefix = resolveIdentifier(
    v,
    'tablePrefix',
    o.tablePrefix,
    DEFAULT_POSTGRES_TABLE_PREFIX,
    MAX_POSTGRES_TABLE_PREFIX_LENGTH,
  )
  v.assert()
  const { pool, owned } = openPool(source as PoolSource, silentLogger, 'migratePostgres')
  try {
    return await migrate(pool, keyStoreMigrations(keyStoreNames(schema, prefix as string)))
  } catch (error) {
    throw unavailable('ERR_KEYSTORE_UNAVAILABLE', 'PostgreSQL key store', error)
  } finally {
    if (owned) await pool.end()
  }
}
