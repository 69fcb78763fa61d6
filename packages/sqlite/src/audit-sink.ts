/**
 * The SQLite audit sink: an append-only table (UPDATE and DELETE are refused by triggers) holding
 * each event's JSON exactly as the trail chained it, once per event id (a replayed batch is
 * ignored row by row), in arrival order. Also a persistent {@link PseudonymStore} for GDPR erasure.
 *
 * Reachable from `@portcullis/sqlite`.
 * @packageDocumentation
 */
import {
  TypeValidator,
  type AuditEvent,
  type AuditSink,
  type PseudonymRecord,
  type PseudonymStore,
} from '@portcullis/core'
import Database from 'better-sqlite3'
import { DEFAULT_SQLITE_BUSY_TIMEOUT_MS } from './defaults.js'

/** Options of {@link createSqliteAuditSink}. */
export interface SqliteAuditSinkOptions {
  /** A better-sqlite3 `Database` you own, or a file path the sink opens (WAL) and closes. */
  readonly database: Database.Database | string
  /** Table name prefix (`/^[a-z_][a-z0-9_]*$/`). @default 'portcullis_' */
  readonly tablePrefix?: string
  /** Sink name. @default 'sqlite' */
  readonly name?: string
}

/** An {@link AuditSink} on SQLite that can also read its events back. */
export interface SqliteAuditSink extends AuditSink {
  /** Events in stored order, after row `afterRow` (for paging), at most `limit`. */
  read(options?: { readonly afterRow?: number; readonly limit?: number }): AuditEvent[]
  /** A pseudonym mapping table in the same database. */
  pseudonymStore(): PseudonymStore
  close(): Promise<void>
}

const PREFIX = /^[a-z_][a-z0-9_]*$/

function openDatabase(database: Database.Database | string): {
  db: Database.Database
  owned: boolean
} {
  if (typeof database !== 'string') return { db: database, owned: false }
  const db = new Database(database)
  db.pragma('journal_mode = WAL')
  db.pragma(`busy_timeout = ${DEFAULT_SQLITE_BUSY_TIMEOUT_MS}`)
  return { db, owned: true }
}

function createTables(db: Database.Database, prefix: string): string {
  const table = `${prefix}audit_events`
  db.exec(`
    CREATE TABLE IF NOT EXISTS ${table} (
      row INTEGER PRIMARY KEY AUTOINCREMENT,
      id TEXT NOT NULL UNIQUE,
      time TEXT NOT NULL,
      type TEXT NOT NULL,
      chain_id TEXT,
      chain_seq INTEGER,
      body TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS ${table}_time ON ${table} (time);
    CREATE TRIGGER IF NOT EXISTS ${table}_no_update BEFORE UPDATE ON ${table}
      BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;
    CREATE TRIGGER IF NOT EXISTS ${table}_no_delete BEFORE DELETE ON ${table}
      BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;
    CREATE TABLE IF NOT EXISTS ${prefix}audit_pseudonyms (
      subject_id TEXT PRIMARY KEY,
      pseudonym TEXT NOT NULL UNIQUE,
      salt TEXT NOT NULL
    );
  `)
  return table
}

/**
 * Creates the SQLite audit sink; its tables are created if missing.
 * @throws {ConfigError} for a bad option
 * @example
 * ```ts
 * import { createAuditTrail } from '@portcullis/core'
 * import { createSqliteAuditSink } from '@portcullis/sqlite'
 * const audit = createAuditTrail({ sinks: [createSqliteAuditSink({ database: 'data/audit.db' })] })
 * ```
 */
export function createSqliteAuditSink(options: Readonly<SqliteAuditSinkOptions>): SqliteAuditSink {
  const v = new TypeValidator('sqliteAudit')
  v.knownKeys(options as Record<string, unknown>, ['database', 'tablePrefix', 'name'])
  const prefix =
    options.tablePrefix === undefined
      ? 'portcullis_'
      : v.string('tablePrefix', options.tablePrefix, { pattern: PREFIX })
  if (typeof options.database !== 'string' && typeof options.database?.prepare !== 'function')
    v.fail('database', 'must be a file path or a better-sqlite3 Database')
  v.assert()
  const { db, owned } = openDatabase(options.database)
  const table = createTables(db, prefix as string)
  const insert = db.prepare(
    `INSERT OR IGNORE INTO ${table} (id, time, type, chain_id, chain_seq, body) VALUES (?, ?, ?, ?, ?, ?)`,
  )
  const insertAll = db.transaction((events: readonly AuditEvent[]) => {
    for (const e of events)
      insert.run(e.id, e.time, e.type, e.chain?.id ?? null, e.chain?.seq ?? null, JSON.stringify(e))
  })
  const select = db.prepare(`SELECT row, body FROM ${table} WHERE row > ? ORDER BY row LIMIT ?`)
  let closed = false
  return {
    name: options.name ?? 'sqlite',
    async write(events: readonly AuditEvent[]): Promise<void> {
      if (closed) throw new Error('sqlite audit sink is closed')
      insertAll(events)
    },
    read(readOptions = {}): AuditEvent[] {
      const rows = select.all(readOptions.afterRow ?? 0, readOptions.limit ?? -1) as {
        body: string
      }[]
      return rows.map((r) => JSON.parse(r.body) as AuditEvent)
    },
    pseudonymStore(): PseudonymStore {
      const t = `${prefix as string}audit_pseudonyms`
      const get = db.prepare(`SELECT subject_id, pseudonym, salt FROM ${t} WHERE subject_id = ?`)
      const byP = db.prepare(`SELECT subject_id, pseudonym, salt FROM ${t} WHERE pseudonym = ?`)
      const put = db.prepare(
        `INSERT OR REPLACE INTO ${t} (subject_id, pseudonym, salt) VALUES (?, ?, ?)`,
      )
      const del = db.prepare(`DELETE FROM ${t} WHERE subject_id = ?`)
      const toRecord = (
        r: { subject_id: string; pseudonym: string; salt: string } | undefined,
      ): PseudonymRecord | undefined =>
        r === undefined
          ? undefined
          : { subjectId: r.subject_id, pseudonym: r.pseudonym, salt: r.salt }
      return {
        get: (id) => toRecord(get.get(id) as never),
        findByPseudonym: (p) => toRecord(byP.get(p) as never),
        set: (r) => void put.run(r.subjectId, r.pseudonym, r.salt),
        delete: (id) => del.run(id).changes > 0,
      }
    },
    async close(): Promise<void> {
      if (closed) return
      closed = true
      if (owned) db.close()
    },
  }
}

/** Reads every audit event of a SQLite file, in stored order (for `portcullis audit verify`). */
export function readSqliteAuditEvents(
  database: Database.Database | string,
  options: { readonly tablePrefix?: string } = {},
): AuditEvent[] {
  const prefix = options.tablePrefix ?? 'portcullis_'
  if (!PREFIX.test(prefix)) throw new TypeError(`tablePrefix must match ${PREFIX}`)
  const { db, owned } =
    typeof database === 'string'
      ? { db: new Database(database, { readonly: true, fileMustExist: true }), owned: true }
      : { db: database, owned: false }
  try {
    const rows = db.prepare(`SELECT body FROM ${prefix}audit_events ORDER BY row`).all() as {
      body: string
    }[]
    return rows.map((r) => JSON.parse(r.body) as AuditEvent)
  } finally {
    if (owned) db.close()
  }
}
