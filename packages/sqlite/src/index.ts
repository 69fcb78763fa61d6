/**
 * `@portcullis/sqlite`: the embedded default key store of Portcullis, on SQLite through
 * better-sqlite3. Implements core's `KeyStore`; versioned schema migrations run at creation.
 *
 * @example
 * ```ts
 * import { createGate } from '@portcullis/core'
 * import { createSqliteKeyStore } from '@portcullis/sqlite'
 * const store = createSqliteKeyStore({ database: './data/keys.db' })
 * const gate = createGate({ apiKeys: { store, pepper: process.env.PORTCULLIS_PEPPER as string } })
 * ```
 * @packageDocumentation
 */
export {
  createSqliteKeyStore,
  type SqliteKeyStore,
  type SqliteKeyStoreOptions,
} from './sqlite-key-store.js'
export {
  SQLITE_SCHEMA_VERSION,
  migrateSqlite,
  type SqliteMigrationOptions,
  type SqliteMigrationResult,
} from './migrations.js'
export * from './defaults.js'
export * from './audit-sink.js'
