/**
 * Schema migrations of the SQLite key store. Each migration runs once, in order, recorded as a row
 * of `<prefix>migrations`; all pending ones run in one write transaction, so a crash leaves either
 * the old schema or the new one, and several processes opening the same file at once apply each
 * migration exactly once.
 *
 * Reachable from `@portcullis/sqlite`.
 * @packageDocumentation
 */
import { ConfigError, TypeValidator } from '@portcullis/core'
import type BetterSqlite3 from 'better-sqlite3'
import { resolveTablePrefix, tableNames, type TableNames } from './internal/table-names.js'

/** Options of {@link migrateSqlite}. */
export interface SqliteMigrationOptions {
  /**
   * Prefix of every table and index name; lower-case letters, digits and `_`, not starting with a
   * digit or with `sqlite_`.
   * @default 'portcullis_'
   */
  readonly tablePrefix?: string
}

/** What {@link migrateSqlite} did. */
export interface SqliteMigrationResult {
  /** Versions applied by this call, in order; empty when the schema was already current. */
  readonly applied: readonly number[]
  /** The schema version now in the database. */
  readonly version: number
}

interface Migration {
  readonly version: number
  readonly name: string
  readonly up: (t: TableNames) => string
}

const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'create api_keys',
    // STRICT: SQLite otherwise stores a string in an INTEGER column without complaint.
    up: (t) => `
      CREATE TABLE ${t.apiKeys} (
        id TEXT NOT NULL PRIMARY KEY,
        prefix TEXT NOT NULL,
        name TEXT NOT NULL,
        owner_id TEXT NOT NULL,
        scopes TEXT NOT NULL,
        roles TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('active', 'revoked')),
        hashes TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER,
        revoked_at INTEGER,
        metadata TEXT NOT NULL
      ) STRICT;
      CREATE INDEX ${t.apiKeysOwnerIndex} ON ${t.apiKeys} (owner_id, id);
      CREATE INDEX ${t.apiKeysStatusIndex} ON ${t.apiKeys} (status, id);
    `,
  },
  {
    version: 2,
    name: 'key lifecycle fields and hash index',
    // New columns carry their documented defaults, so rows written by version 1 read back as
    // complete records. The hash table is filled from the existing rows' JSON.
    up: (t) => `
      ALTER TABLE ${t.apiKeys} ADD COLUMN tags TEXT NOT NULL DEFAULT '[]';
      ALTER TABLE ${t.apiKeys} ADD COLUMN purpose TEXT;
      ALTER TABLE ${t.apiKeys} ADD COLUMN environment TEXT NOT NULL DEFAULT 'live'
        CHECK (environment IN ('live', 'test'));
      ALTER TABLE ${t.apiKeys} ADD COLUMN policy TEXT NOT NULL DEFAULT '{}';
      ALTER TABLE ${t.apiKeys} ADD COLUMN rotated_at INTEGER;
      ALTER TABLE ${t.apiKeys} ADD COLUMN last_used_at INTEGER;
      ALTER TABLE ${t.apiKeys} ADD COLUMN usage_count INTEGER NOT NULL DEFAULT 0;
      CREATE TABLE ${t.apiKeyHashes} (
        hash TEXT NOT NULL,
        key_id TEXT NOT NULL,
        PRIMARY KEY (hash, key_id)
      ) STRICT, WITHOUT ROWID;
      CREATE INDEX ${t.apiKeyHashesKeyIndex} ON ${t.apiKeyHashes} (key_id);
      INSERT OR IGNORE INTO ${t.apiKeyHashes} (hash, key_id)
        SELECT hash, id FROM (
          SELECT k.id AS id,
            CASE WHEN h.type = 'object' THEN json_extract(h.value, '$.hash') END AS hash
          FROM ${t.apiKeys} AS k,
            json_each(CASE WHEN json_valid(k.hashes) THEN k.hashes ELSE '[]' END) AS h
        ) WHERE typeof(hash) = 'text';
    `,
  },
]

/** The schema version this release of `@portcullis/sqlite` creates and expects. */
export const SQLITE_SCHEMA_VERSION: number = MIGRATIONS.length

/**
 * Brings the key-store schema of `db` to {@link SQLITE_SCHEMA_VERSION}. Idempotent: a current
 * schema is left alone. {@link createSqliteKeyStore} calls it; call it yourself to migrate at deploy
 * time rather than at start-up.
 * @throws {ConfigError} for a bad `tablePrefix`, or when the database holds a newer schema than this
 *   release knows (a downgrade)
 * @throws the driver's `SqliteError` when the database cannot be written
 * @example
 * ```ts
 * import Database from 'better-sqlite3'
 * import { migrateSqlite } from '@portcullis/sqlite'
 * const { applied } = migrateSqlite(new Database('keys.db'))
 * ```
 */
export function migrateSqlite(
  db: BetterSqlite3.Database,
  options: Readonly<SqliteMigrationOptions> = {},
): SqliteMigrationResult {
  const v = new TypeValidator()
  const prefix = resolveTablePrefix(v, options.tablePrefix)
  v.assert()
  return applyMigrations(db, tableNames(prefix))
}

/** Applies pending migrations for already-resolved table names. @internal */
export function applyMigrations(db: BetterSqlite3.Database, t: TableNames): SqliteMigrationResult {
  const run = db.transaction((): SqliteMigrationResult => {
    db.exec(`
      CREATE TABLE IF NOT EXISTS ${t.migrations} (
        version INTEGER NOT NULL PRIMARY KEY,
        name TEXT NOT NULL,
        applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
      ) STRICT
    `)
    const done = new Set(
      db
        .prepare<[], number>(`SELECT version FROM ${t.migrations}`)
        .pluck()
        .safeIntegers(false)
        .all(),
    )
    const newest = Math.max(0, ...done)
    if (newest > SQLITE_SCHEMA_VERSION) {
      throw new ConfigError(
        `database: key-store schema version ${newest} is newer than this @portcullis/sqlite supports ` +
          `(${SQLITE_SCHEMA_VERSION}); upgrade @portcullis/sqlite`,
      )
    }
    const record = db.prepare<[number, string]>(
      `INSERT INTO ${t.migrations} (version, name) VALUES (?, ?)`,
    )
    const applied: number[] = []
    for (const m of MIGRATIONS) {
      if (done.has(m.version)) continue
      db.exec(m.up(t))
      record.run(m.version, m.name)
      applied.push(m.version)
    }
    return Object.freeze({ applied: Object.freeze(applied), version: SQLITE_SCHEMA_VERSION })
  })
  // IMMEDIATE takes the write lock before reading the version table, so two processes migrating
  // the same file serialize (the second waits for busy_timeout) instead of both applying v1.
  return run.immediate()
}
