/**
 * The PostgreSQL key store: core's `KeyStore` on a pg pool, for deployments where several
 * instances share their keys.
 *
 * Reachable from `@portcullis/postgres`.
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
import type pg from 'pg'
import {
  DEFAULT_POSTGRES_LIST_LIMIT,
  DEFAULT_POSTGRES_TABLE_PREFIX,
  MAX_POSTGRES_LIST_LIMIT,
  MAX_POSTGRES_TABLE_PREFIX_LENGTH,
} from './defaults.js'
import {
  openPool,
  resolveIdentifier,
  resolveLogger,
  resolvePoolSource,
  unavailable,
  type PoolSource,
} from './internal/connection.js'
import { checkMigrated, migrate } from './internal/migrator.js'
import {
  insertParams,
  keyRecordCodec,
  updateParams,
  type ApiKeyRow,
} from './internal/record-codec.js'
import { keyStoreNames, type KeyStoreNames } from './internal/table-names.js'
import { keyStoreMigrations } from './migrations.js'

/** Options of {@link createPostgresKeyStore}. */
export interface PostgresKeyStoreOptions {
  /**
   * A pg `Pool` you built and own: the store never ends it. Give this or `connectionString`.
   * The store adds an `error` listener that logs through `logger`, because pg emits `error` on the
   * pool when an idle connection drops (a database restart) and an unhandled one ends the process.
   */
  readonly pool?: pg.Pool
  /**
   * A `postgres://` URL; the store opens a pool (max 10 connections, 5 s connect timeout, 10 s
   * query timeout), owns it, and ends it in `close()`.
   */
  readonly connectionString?: string
  /**
   * Schema holding the tables (created by the migrations when missing); absent: the connection's
   * `search_path` (usually `public`).
   */
  readonly schema?: string
  /**
   * Prefix of every table and index name: lower-case letters, digits and `_`, at most 40
   * characters, not starting with `pg_`.
   * @default 'portcullis_'
   */
  readonly tablePrefix?: string
  /**
   * Apply pending schema migrations on first use. With `false` the store only checks that the
   * schema is current (see {@link migratePostgres}) and fails with `ERR_CONFIG_INVALID` if not.
   * @default true
   */
  readonly migrate?: boolean
  /**
   * Receives one warning per unknown option name, and pool errors.
   * @default a silent logger
   */
  readonly logger?: Logger
}

/** A {@link KeyStore} on PostgreSQL; every optional method of the contract is present. */
export interface PostgresKeyStore extends KeyStore {
  /**
   * Resolves once the schema is migrated (or checked, with `migrate: false`). Every method waits
   * for it, so calling it is optional: await it at start-up to fail fast on a bad database. A
   * failure is not remembered; the next call tries again.
   */
  ready(): Promise<void>
  findByHash(hash: ApiKeyHash): Promise<ApiKeyRecord | undefined>
  recordUsage(usage: readonly ApiKeyUsage[]): Promise<void>
  /**
   * Ends the pool if the store opened it (from `connectionString`); a pool you passed in is left
   * open. Afterwards every method rejects with `ERR_KEYSTORE_UNAVAILABLE`. Idempotent.
   */
  close(): Promise<void>
}

const OPTION_NAMES = ['pool', 'connectionString', 'schema', 'tablePrefix', 'migrate', 'logger']
const LIST_LIMITS = {
  defaultLimit: DEFAULT_POSTGRES_LIST_LIMIT,
  maxLimit: MAX_POSTGRES_LIST_LIMIT,
}
const WHAT = 'PostgreSQL key store'

/**
 * Creates a key store on PostgreSQL. Validates the options at once (a bad option throws here);
 * the connection is made, and pending migrations applied, on first use or {@link
 * PostgresKeyStore.ready}, so an application can start while the database is still coming up.
 *
 * Records come back frozen. A rotation is one transaction (`SELECT … FOR UPDATE`, then `UPDATE`),
 * so concurrent updates of one key serialize and lose no field. When the database is down,
 * restarting or unreachable, or a row does not decode (hand-edited), methods reject with an
 * `AuthError` coded `ERR_KEYSTORE_UNAVAILABLE`, which the gate answers with 503 (fail closed);
 * the pool reconnects by itself once the database is back, without recreating the store.
 * @throws {ConfigError} for a bad option
 * @example
 * ```ts
 * import { createApiKeyManager, createGate } from '@portcullis/core'
 * import { createPostgresKeyStore } from '@portcullis/postgres'
 *
 * const store = createPostgresKeyStore({ connectionString: process.env.DATABASE_URL })
 * await store.ready() // optional: fail fast at start-up
 * const pepper = process.env.PORTCULLIS_PEPPER as string
 * const keys = createApiKeyManager({ store, pepper })
 * const gate = createGate({ apiKeys: { store, pepper } })
 * const { key } = await keys.create({ name: 'ci', ownerId: 'svc-ci', scopes: ['documents:read'] })
 * // ... on shutdown:
 * await store.close()
 * ```
 */
export function createPostgresKeyStore(
  options: Readonly<PostgresKeyStoreOptions>,
): PostgresKeyStore {
  if (typeof options !== 'object' || options === null) {
    throw new ConfigError(
      `options: must be an object with a "pool" or a "connectionString", received ${describeValue(options)}`,
    )
  }
  const v = new TypeValidator()
  v.knownKeys(options as unknown as Record<string, unknown>, OPTION_NAMES)
  const source = resolvePoolSource(v, options.pool, options.connectionString)
  const schema = resolveIdentifier(v, 'schema', options.schema, undefined)
  const prefix = resolveIdentifier(
    v,
    'tablePrefix',
    options.tablePrefix,
    DEFAULT_POSTGRES_TABLE_PREFIX,
    MAX_POSTGRES_TABLE_PREFIX_LENGTH,
  )
  const runMigrations =
    options.migrate === undefined ? true : (v.boolean('migrate', options.migrate) ?? true)
  const logger = resolveLogger(v, options.logger, silentLogger)
  v.assert((message) => logger.warn({}, message))
  const { pool, owned } = openPool(source as PoolSource, logger, WHAT)
  return new PostgresStore(pool, owned, keyStoreNames(schema, prefix as string), runMigrations)
}

interface Statements {
  readonly get: string
  readonly getForUpdate: string
  readonly insert: string
  readonly update: string
  readonly delete: string
  readonly findByHash: string
  readonly recordUsage: string
  /** By filter combination (`o` owner, `s` status, `t` tag). */
  readonly list: ReadonlyMap<string, string>
}

function statements(t: KeyStoreNames): Statements {
  const columns = API_KEY_COLUMNS.join(', ')
  const select = `SELECT ${columns} FROM ${t.apiKeys}`
  const list = new Map<string, string>()
  for (const combo of API_KEY_LIST_FILTERS) {
    let n = 0
    const where = [
      ...(combo.includes('o') ? [`owner_id = $${++n}`] : []),
      ...(combo.includes('s') ? [`status = $${++n}`] : []),
      // `tags @> ARRAY[$n]` is the operator form the GIN index on tags serves.
      ...(combo.includes('t') ? [`tags @> ARRAY[$${++n}::text]`] : []),
      `id > $${n + 1}`,
    ].join(' AND ')
    list.set(combo, `${select} WHERE ${where} ORDER BY id LIMIT $${n + 2}`)
  }
  return {
    list,
    get: `${select} WHERE id = $1`,
    getForUpdate: `${select} WHERE id = $1 FOR UPDATE`,
    insert:
      `INSERT INTO ${t.apiKeys} (${columns}, hash_values) VALUES ($1, $2, $3, $4, $5, $6, $7, ` +
      '$8::jsonb, $9, $10, $11, $12, $13, $14, $15, $16::jsonb, $17, $18, $19, $20)',
    // Usage columns change only through recordUsage, so an update never writes back a stale count.
    update: `UPDATE ${t.apiKeys} SET name = $2, scopes = $3, roles = $4, status = $5,
        hashes = $6::jsonb, hash_values = $7, expires_at = $8, revoked_at = $9, metadata = $10,
        tags = $11, purpose = $12, policy = $13::jsonb, rotated_at = $14
      WHERE id = $1 RETURNING ${columns}`,
    delete: `DELETE FROM ${t.apiKeys} WHERE id = $1`,
    findByHash: `${select} WHERE hash_values @> ARRAY[$1::text] ORDER BY id LIMIT 1`,
    // One statement per batch. Rows are locked in id order first, so two instances flushing
    // overlapping batches at once wait for each other instead of deadlocking.
    recordUsage: `
      WITH u AS (
        SELECT id, max(last_used_at) AS last_used_at, sum(count)::bigint AS count
        FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS x(id, last_used_at, count)
        GROUP BY id
      ), locked AS (
        SELECT k.id FROM ${t.apiKeys} AS k JOIN u ON u.id = k.id ORDER BY k.id FOR UPDATE OF k
      )
      UPDATE ${t.apiKeys} AS k
      SET usage_count = k.usage_count + u.count,
        last_used_at = GREATEST(k.last_used_at, u.last_used_at)
      FROM u
      WHERE k.id = u.id AND k.id IN (SELECT id FROM locked)`,
  }
}

class PostgresStore implements PostgresKeyStore {
  readonly #pool: pg.Pool
  readonly #owned: boolean
  readonly #names: KeyStoreNames
  readonly #migrate: boolean
  readonly #s: Statements
  readonly #codec: StoredApiKeyCodec<ApiKeyRow>
  #ready: Promise<void> | undefined
  #isReady = false
  #closed = false

  constructor(pool: pg.Pool, owned: boolean, names: KeyStoreNames, runMigrations: boolean) {
    this.#pool = pool
    this.#owned = owned
    this.#names = names
    this.#migrate = runMigrations
    this.#s = statements(names)
    this.#codec = keyRecordCodec(names.apiKeys)
  }

  ready(): Promise<void> {
    if (this.#closed) return Promise.reject(this.#closedError())
    this.#ready ??= (async () => {
      const target = keyStoreMigrations(this.#names)
      try {
        if (this.#migrate) await migrate(this.#pool, target)
        else await checkMigrated(this.#pool, target)
        this.#isReady = true
      } catch (error) {
        this.#ready = undefined
        throw unavailable('ERR_KEYSTORE_UNAVAILABLE', WHAT, error)
      }
    })()
    return this.#ready
  }

  async get(id: ApiKeyId): Promise<ApiKeyRecord | undefined> {
    const rows = await this.#query(this.#s.get, [id])
    return rows[0] === undefined ? undefined : this.#codec.read(rows[0])
  }

  async insert(record: ApiKeyRecord): Promise<void> {
    const checked = this.#codec.checkInsert(record)
    // A duplicate id fails the PRIMARY KEY: pg's DatabaseError with code 23505, passed unchanged.
    await this.#query(this.#s.insert, insertParams(this.#codec.columns(checked)))
  }

  async update(id: ApiKeyId, patch: ApiKeyPatch): Promise<ApiKeyRecord | undefined> {
    this.#open()
    if (!this.#isReady) await this.ready()
    let client: pg.PoolClient
    try {
      client = await this.#pool.connect()
    } catch (error) {
      throw unavailable('ERR_KEYSTORE_UNAVAILABLE', WHAT, error)
    }
    let broken: Error | undefined
    try {
      await client.query('BEGIN')
      // FOR UPDATE holds the row until COMMIT: a concurrent update (another instance rotating the
      // same key) waits and then reads our result, so no patch is lost.
      const found = await client.query<ApiKeyRow>(this.#s.getForUpdate, [id])
      const row = found.rows[0]
      if (row === undefined) {
        await client.query('COMMIT')
        return undefined
      }
      const codec = this.#codec
      const next = codec.checkUpdate(codec.read(row), patch)
      const updated = await client.query<ApiKeyRow>(
        this.#s.update,
        updateParams(codec.columns(next)),
      )
      await client.query('COMMIT')
      return codec.read(updated.rows[0] as ApiKeyRow)
    } catch (error) {
      await client.query('ROLLBACK').catch((e: Error) => (broken = e))
      throw unavailable('ERR_KEYSTORE_UNAVAILABLE', WHAT, error)
    } finally {
      // A connection whose ROLLBACK failed is in an unknown state: destroy it, never reuse it.
      client.release(broken)
    }
  }

  async delete(id: ApiKeyId): Promise<boolean> {
    this.#open()
    if (!this.#isReady) await this.ready()
    try {
      const result = await this.#pool.query(this.#s.delete, [id])
      return (result.rowCount ?? 0) > 0
    } catch (error) {
      throw unavailable('ERR_KEYSTORE_UNAVAILABLE', WHAT, error)
    }
  }

  async findByHash(hash: ApiKeyHash): Promise<ApiKeyRecord | undefined> {
    if (typeof hash !== 'string') return undefined
    const rows = await this.#query(this.#s.findByHash, [hash])
    return rows[0] === undefined ? undefined : this.#codec.read(rows[0])
  }

  async recordUsage(usage: readonly ApiKeyUsage[]): Promise<void> {
    assertApiKeyUsage(usage)
    const ids: string[] = []
    const lastUsed: number[] = []
    const counts: number[] = []
    for (const u of usage) {
      ids.push(u.id)
      lastUsed.push(u.lastUsedAt)
      counts.push(u.count)
    }
    if (ids.length === 0) {
      this.#open()
      return
    }
    await this.#query(this.#s.recordUsage, [ids, lastUsed, counts])
  }

  async list(query: ApiKeyListQuery = {}): Promise<ApiKeyPage> {
    const q = resolveApiKeyListQuery(query, LIST_LIMITS)
    // One row beyond the page tells whether a next page exists without a second query.
    const rows = await this.#query(this.#s.list.get(q.filters) as string, [
      ...q.values,
      q.cursor,
      q.limit + 1,
    ])
    const more = rows.length > q.limit
    const items = Object.freeze(rows.slice(0, q.limit).map((row) => this.#codec.read(row)))
    return Object.freeze({ items, nextCursor: more ? (items.at(-1)?.id ?? null) : null })
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    if (this.#owned) await this.#pool.end()
  }

  /** One statement on the pool, once the schema is ready; driver failures mapped to 503. */
  async #query(text: string, values: unknown[]): Promise<ApiKeyRow[]> {
    this.#open()
    if (!this.#isReady) await this.ready()
    try {
      return (await this.#pool.query<ApiKeyRow>(text, values)).rows
    } catch (error) {
      throw unavailable('ERR_KEYSTORE_UNAVAILABLE', WHAT, error)
    }
  }

  #open(): void {
    if (this.#closed) throw this.#closedError()
  }

  #closedError(): AuthError {
    return new AuthError('ERR_KEYSTORE_UNAVAILABLE', `The ${WHAT} is closed`, {
      reason: 'store closed',
    })
  }
}
