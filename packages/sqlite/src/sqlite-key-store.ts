/**
 * The SQLite key store: core's `KeyStore` on a better-sqlite3 database, for single-machine
 * deployments that want keys to survive restarts without running a database server.
 *
 * Reachable from `@portcullis/sqlite`.
 * @packageDocumentation
 */
import {
  API_KEY_COLUMNS,
  API_KEY_LIST_FILTERS,
  AuthError,
  ConfigError,
  TypeValidator,
  assertApiKeyUsage,
  describeValue,
  resolveApiKeyListQuery,
  silentLogger,
  type ApiKeyHash,
  type ApiKeyId,
  type ApiKeyListQuery,
  type ApiKeyPage,
  type ApiKeyPatch,
  type ApiKeyRecord,
  type ApiKeyUsage,
  type KeyStore,
  type Logger,
  type StoredApiKeyCodec,
} from '@portcullis/core'
import Database from 'better-sqlite3'
import {
  DEFAULT_SQLITE_BUSY_TIMEOUT_MS,
  DEFAULT_SQLITE_LIST_LIMIT,
  MAX_SQLITE_LIST_LIMIT,
} from './defaults.js'
import { encodeRow, keyRecordCodec, type ApiKeyRow } from './internal/record-codec.js'
import { resolveTablePrefix, tableNames, type TableNames } from './internal/table-names.js'
import { applyMigrations } from './migrations.js'

/** Options of {@link createSqliteKeyStore}. */
export interface SqliteKeyStoreOptions {
  /**
   * Where keys live: a better-sqlite3 `Database` you opened (you configure it and close it; the
   * store never changes its pragmas), or a file path (or `':memory:'`) that the store opens with
   * `journal_mode = WAL` and a `busy_timeout` of 5 s, owns, and closes in `close()`.
   */
  readonly database: Database.Database | string
  /**
   * Prefix of every table and index name: lower-case letters, digits and `_`, matching
   * `/^[a-z_][a-z0-9_]*$/` and not starting with `sqlite_`.
   * @default 'portcullis_'
   */
  readonly tablePrefix?: string
  /**
   * Receives one warning per unknown option name.
   * @default a silent logger
   */
  readonly logger?: Logger
}

/** A {@link KeyStore} on SQLite. `close()` is always present. */
export interface SqliteKeyStore extends KeyStore {
  /**
   * Closes the database if the store opened it (from a path); a database you passed in is left
   * open. Afterwards every method rejects with `ERR_KEYSTORE_UNAVAILABLE`. Idempotent.
   */
  close(): Promise<void>
}

const OPTION_NAMES = ['database', 'tablePrefix', 'logger']
const LIST_LIMITS = { defaultLimit: DEFAULT_SQLITE_LIST_LIMIT, maxLimit: MAX_SQLITE_LIST_LIMIT }

/**
 * Creates a key store on SQLite. Validates the options, opens the file when given a path, and
 * applies pending schema migrations (see {@link migrateSqlite}) before returning, so a bad
 * configuration fails at start-up rather than on the first request.
 *
 * Every method returns a promise, as the `KeyStore` contract asks, though better-sqlite3 does the
 * work synchronously. Records come back frozen, with arrays and `metadata` parsed from JSON; a row
 * that does not decode (hand-edited, truncated) makes the method reject with an `AuthError` coded
 * `ERR_KEYSTORE_UNAVAILABLE`, which the gate answers with 503 (fail closed).
 * @throws {ConfigError} for a bad option, a database file that cannot be opened, or a schema newer
 *   than this release knows
 * @throws the driver's `SqliteError` when the migrations cannot be written
 * @example
 * ```ts
 * import { createApiKeyManager, createGate } from '@portcullis/core'
 * import { createSqliteKeyStore } from '@portcullis/sqlite'
 *
 * const store = createSqliteKeyStore({ database: './data/keys.db' })
 * const pepper = process.env.PORTCULLIS_PEPPER as string
 * const keys = createApiKeyManager({ store, pepper })
 * const gate = createGate({ apiKeys: { store, pepper } })
 * const { key } = await keys.create({ name: 'ci', ownerId: 'svc-ci', scopes: ['documents:read'] })
 * // ... on shutdown:
 * await store.close()
 * ```
 */
export function createSqliteKeyStore(options: Readonly<SqliteKeyStoreOptions>): SqliteKeyStore {
  if (typeof options !== 'object' || options === null) {
    throw new ConfigError(
      `options: must be an object with a "database", received ${describeValue(options)}`,
    )
  }
  const v = new TypeValidator()
  v.knownKeys(options as unknown as Record<string, unknown>, OPTION_NAMES)
  const database = resolveDatabase(v, options.database)
  const prefix = resolveTablePrefix(v, options.tablePrefix)
  const logger = resolveLogger(v, options.logger)
  v.assert((message) => logger.warn({}, message))

  const names = tableNames(prefix)
  const owned = typeof database === 'string'
  const db = owned ? openDatabase(database) : (database as Database.Database)
  try {
    // WAL lets the gate's reads proceed while a manager process writes; only for a file we own,
    // because journal mode is a property of the caller's database otherwise.
    if (owned) db.pragma('journal_mode = WAL')
    applyMigrations(db, names)
    return new SqliteStore(db, owned, names)
  } catch (error) {
    if (owned) db.close()
    throw error
  }
}

function resolveDatabase(v: TypeValidator, value: unknown): Database.Database | string | undefined {
  if (value === undefined) {
    return v.fail('database', 'required: a better-sqlite3 Database or a file path')
  }
  if (typeof value === 'string') return v.string('database', value)
  const db = value as Partial<Database.Database> | null
  if (
    typeof db !== 'object' ||
    db === null ||
    typeof db.prepare !== 'function' ||
    typeof db.transaction !== 'function' ||
    typeof db.exec !== 'function'
  ) {
    return v.fail(
      'database',
      `must be a better-sqlite3 Database or a file path, received ${describeValue(value)}`,
    )
  }
  if (db.open === false) return v.fail('database', 'is closed; pass an open Database')
  if (db.readonly === true) return v.fail('database', 'is read-only; the key store writes to it')
  return db as Database.Database
}

function resolveLogger(v: TypeValidator, value: unknown): Logger {
  if (value === undefined) return silentLogger
  if (typeof (value as Partial<Logger> | null)?.warn === 'function') return value as Logger
  v.fail('logger', `must have a warn() method, received ${describeValue(value)}`)
  return silentLogger
}

function openDatabase(path: string): Database.Database {
  try {
    // `timeout` is better-sqlite3's name for SQLite's busy_timeout: wait for another process's
    // write lock instead of failing at once with SQLITE_BUSY.
    return new Database(path, { timeout: DEFAULT_SQLITE_BUSY_TIMEOUT_MS })
  } catch (cause) {
    throw new ConfigError(
      `database: cannot open ${JSON.stringify(path)}: ${(cause as Error).message}`,
      { cause },
    )
  }
}

interface Statements {
  readonly get: Database.Statement<[string], ApiKeyRow>
  readonly insert: Database.Statement<[ApiKeyRow]>
  readonly update: Database.Statement<[ApiKeyRow]>
  readonly delete: Database.Statement<[string]>
  /** By filter combination (`o` owner, `s` status, `t` tag): parameters in that order, then cursor and limit. */
  readonly list: ReadonlyMap<string, Database.Statement<unknown[], ApiKeyRow>>
  readonly findByHash: Database.Statement<[string], ApiKeyRow>
  readonly insertHash: Database.Statement<[string, string]>
  readonly deleteHashes: Database.Statement<[string]>
  readonly recordUsage: Database.Statement<[number, number, number, string]>
}

function prepareStatements(db: Database.Database, t: TableNames): Statements {
  const columns = API_KEY_COLUMNS.join(', ')
  const select = `SELECT ${columns} FROM ${t.apiKeys}`
  const page = 'id > ? ORDER BY id LIMIT ?'
  // Reads ignore the caller's defaultSafeIntegers(): timestamps must come back as numbers.
  const read = <TParams extends unknown[]>(sql: string): Database.Statement<TParams, ApiKeyRow> =>
    db.prepare<TParams, ApiKeyRow>(sql).safeIntegers(false)
  // Usage columns change only through recordUsage, so an update never writes back a stale count.
  const mutable = API_KEY_COLUMNS.filter(
    (c) =>
      c !== 'id' &&
      c !== 'prefix' &&
      c !== 'owner_id' &&
      c !== 'environment' &&
      c !== 'last_used_at' &&
      c !== 'usage_count',
  )
  const list = new Map<string, Database.Statement<unknown[], ApiKeyRow>>()
  for (const combo of API_KEY_LIST_FILTERS) {
    const where = [
      ...(combo.includes('o') ? ['owner_id = ?'] : []),
      ...(combo.includes('s') ? ['status = ?'] : []),
      // Tags are a short JSON array per key: json_each scans it without a side table.
      ...(combo.includes('t')
        ? ['EXISTS (SELECT 1 FROM json_each(tags) WHERE json_each.value = ?)']
        : []),
      page,
    ].join(' AND ')
    list.set(combo, read(`${select} WHERE ${where}`))
  }
  return {
    list,
    findByHash: read(
      `${select} WHERE id = (SELECT key_id FROM ${t.apiKeyHashes} WHERE hash = ? LIMIT 1)`,
    ),
    insertHash: db.prepare<[string, string]>(
      `INSERT OR IGNORE INTO ${t.apiKeyHashes} (hash, key_id) VALUES (?, ?)`,
    ),
    deleteHashes: db.prepare<[string]>(`DELETE FROM ${t.apiKeyHashes} WHERE key_id = ?`),
    recordUsage: db.prepare<[number, number, number, string]>(
      `UPDATE ${t.apiKeys} SET usage_count = usage_count + ?,
         last_used_at = CASE WHEN last_used_at IS NULL OR last_used_at < ? THEN ? ELSE last_used_at END
       WHERE id = ?`,
    ),
    get: read(`${select} WHERE id = ?`),
    insert: db.prepare<[ApiKeyRow]>(
      `INSERT INTO ${t.apiKeys} (${columns}) VALUES (${API_KEY_COLUMNS.map((c) => `@${c}`).join(', ')})`,
    ),
    update: db.prepare<[ApiKeyRow]>(
      `UPDATE ${t.apiKeys} SET ${mutable.map((c) => `${c} = @${c}`).join(', ')} WHERE id = @id`,
    ),
    delete: db.prepare<[string]>(`DELETE FROM ${t.apiKeys} WHERE id = ?`),
  }
}

class SqliteStore implements SqliteKeyStore {
  readonly #db: Database.Database
  readonly #owned: boolean
  readonly #codec: StoredApiKeyCodec<ApiKeyRow>
  readonly #s: Statements
  readonly #update: Database.Transaction<
    (id: string, patch: ApiKeyPatch) => ApiKeyRecord | undefined
  >
  readonly #insert: Database.Transaction<(record: ApiKeyRecord) => void>
  readonly #delete: Database.Transaction<(id: string) => boolean>
  readonly #recordUsage: Database.Transaction<(usage: readonly ApiKeyUsage[]) => void>
  #closed = false

  constructor(db: Database.Database, owned: boolean, names: TableNames) {
    this.#db = db
    this.#owned = owned
    const codec = keyRecordCodec(names.apiKeys)
    this.#codec = codec
    const s = prepareStatements(db, names)
    this.#s = s
    this.#update = db.transaction((id: string, patch: ApiKeyPatch) => {
      const row = s.get.get(id)
      if (row === undefined) return undefined
      const next = codec.checkUpdate(codec.read(row), patch)
      s.update.run(encodeRow(codec.columns(next)))
      if (patch.hashes !== undefined) {
        s.deleteHashes.run(id)
        for (const h of next.hashes) s.insertHash.run(h.hash, id)
      }
      return next
    })
    this.#insert = db.transaction((record: ApiKeyRecord) => {
      s.insert.run(encodeRow(codec.columns(record)))
      for (const h of record.hashes) s.insertHash.run(h.hash, record.id)
    })
    this.#delete = db.transaction((id: string) => {
      s.deleteHashes.run(id)
      return s.delete.run(id).changes > 0
    })
    this.#recordUsage = db.transaction((usage: readonly ApiKeyUsage[]) => {
      for (const u of usage) s.recordUsage.run(u.count, u.lastUsedAt, u.lastUsedAt, u.id)
    })
  }

  async get(id: ApiKeyId): Promise<ApiKeyRecord | undefined> {
    this.#open()
    const row = this.#s.get.get(id)
    return row === undefined ? undefined : this.#codec.read(row)
  }

  async insert(record: ApiKeyRecord): Promise<void> {
    this.#open()
    const checked = this.#codec.checkInsert(record)
    // A duplicate id fails the PRIMARY KEY: the driver's SqliteError, code SQLITE_CONSTRAINT_PRIMARYKEY.
    this.#insert.immediate(checked)
  }

  async update(id: ApiKeyId, patch: ApiKeyPatch): Promise<ApiKeyRecord | undefined> {
    this.#open()
    // IMMEDIATE takes the write lock before the read, so another process cannot change the row
    // between our read and our write (and a deferred read-to-write upgrade cannot hit SQLITE_BUSY
    // mid-transaction, which busy_timeout does not retry).
    return this.#update.immediate(id, patch)
  }

  async delete(id: ApiKeyId): Promise<boolean> {
    this.#open()
    return this.#delete.immediate(id)
  }

  async findByHash(hash: ApiKeyHash): Promise<ApiKeyRecord | undefined> {
    this.#open()
    if (typeof hash !== 'string') return undefined
    const row = this.#s.findByHash.get(hash)
    return row === undefined ? undefined : this.#codec.read(row)
  }

  async recordUsage(usage: readonly ApiKeyUsage[]): Promise<void> {
    this.#open()
    assertApiKeyUsage(usage)
    // One transaction per batch: one fsync for the whole flush.
    this.#recordUsage.immediate(usage)
  }

  async list(query: ApiKeyListQuery = {}): Promise<ApiKeyPage> {
    this.#open()
    const q = resolveApiKeyListQuery(query, LIST_LIMITS)
    // One row beyond the page tells whether a next page exists without a second query.
    const rows = (this.#s.list.get(q.filters) as Database.Statement<unknown[], ApiKeyRow>).all(
      ...q.values,
      q.cursor,
      q.limit + 1,
    )
    const more = rows.length > q.limit
    const items = Object.freeze(rows.slice(0, q.limit).map((row) => this.#codec.read(row)))
    return Object.freeze({ items, nextCursor: more ? (items.at(-1)?.id ?? null) : null })
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    if (this.#owned) this.#db.close()
  }

  #open(): void {
    if (this.#closed) {
      throw new AuthError('ERR_KEYSTORE_UNAVAILABLE', 'The SQLite key store is closed', {
        reason: 'store closed',
      })
    }
  }
}
