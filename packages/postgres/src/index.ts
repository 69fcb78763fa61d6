/**
 * `@portcullis/postgres`: Portcullis's key store and audit sink on PostgreSQL through pg, for
 * deployments where several instances share keys and one audit trail. Implements core's
 * `KeyStore` and `AuditSink`; versioned schema migrations run on first use (or at deploy time
 * with {@link migratePostgres}).
 *
 * @example
 * ```ts
 * import { createGate, createAuditTrail } from '@portcullis/core'
 * import { createPostgresAuditSink, createPostgresKeyStore } from '@portcullis/postgres'
 * const store = createPostgresKeyStore({ connectionString: process.env.DATABASE_URL })
 * const audit = createAuditTrail({
 *   sinks: [createPostgresAuditSink({ connectionString: process.env.DATABASE_URL })],
 * })
 * const gate = createGate({ apiKeys: { store, pepper: process.env.PORTCULLIS_PEPPER as string } })
 * ```
 * @packageDocumentation
 */
export {
  createPostgresKeyStore,
  type PostgresKeyStore,
  type PostgresKeyStoreOptions,
} from './postgres-key-store.js'
export {
  POSTGRES_SCHEMA_VERSION,
  migratePostgres,
  type PostgresMigrationOptions,
  type PostgresMigrationResult,
} from './migrations.js'
export {
  POSTGRES_AUDIT_SCHEMA_VERSION,
  createPostgresAuditSink,
  readPostgresAuditEvents,
  readPostgresAuditRows,
  type PostgresAuditReadOptions,
  type PostgresAuditReaderOptions,
  type PostgresAuditRow,
  type PostgresAuditSink,
  type PostgresAuditSinkOptions,
} from './audit-sink.js'
export * from './defaults.js'
