/**
 * The PostgreSQL key store: core's `KeyStore` on a pg pool, for deployments where several
 * instances share their keys.
 *
 * Reachable from `@gatehouse/postgres`.
 * @packageDocumentation
 */
import {
  AuthError,
  ConfigError,
  TypeValidator,
  describeValue,
  silentLogger,
  type ApiKeyHash,
  type ApiKeyId,
  type ApiKeyListQuery,
  type ApiKeyPage,
  type ApiKeyPatch,
  type ApiKeyRecord,
  type ApiKeyStoredStatus,
  type ApiKeyUsage,
  type KeyStore,
  type Logger,
} from '@gatehouse/core'
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
  COLUMNS,
  RecordShapeError,
  applyPatch,
  normalizeRecord,
  recordToParams,
  rowToRecord,
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
   * @default 'gatehouse_'
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
const STATUSES: readonly ApiKeyStoredStatus[] = ['active', 'revoked']
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
 * import { createApiKeyManager, createGate } from '@gatehouse/core'
 * import { createPostgresKeyStore } from '@gatehouse/postgres'
 *
 * const store = createPostgresKeyStore({ connectionString: process.env.DATABASE_URL })
 * await store.ready() // optional: fail fast at start-up
 * const pepper = process.env.GATEHOUSE_PEPPER as string
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
  v.assert((message) => logger.warn(message))
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
  const columns = COLUMNS.join(', ')
  const select = `SELECT ${columns} FROM ${t.apiKeys}`
  const list = new Map<string, string>()
  for (const combo of ['', 'o', 's', 't', 'os', 'ot', 'st', 'ost']) {
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

interface ResolvedListQuery {
  readonly params: unknown[]
  readonly combo: string
  readonly limit: number
}

function resolveListQuery(query: ApiKeyListQuery): ResolvedListQuery {
  if (typeof query !== 'object' || query === null) {
    throw new TypeError(`list: query must be an object, received ${describeValue(query)}`)
  }
  const { ownerId, status, tag, limit = DEFAULT_POSTGRES_LIST_LIMIT, cursor } = query
  const params: unknown[] = []
  let combo = ''
  if (ownerId !== undefined) {
    if (typeof ownerId !== 'string')
      throw new TypeError(`list: ownerId must be a string, received ${describeValue(ownerId)}`)
    combo += 'o'
    params.push(ownerId)
  }
  if (status !== undefined) {
    // An unknown status would silently match nothing; a typo such as 'revoke' should be loud.
    if (!STATUSES.includes(status))
      throw new TypeError(
        `list: status must be "active" or "revoked", received ${describeValue(status)}`,
      )
    combo += 's'
    params.push(status)
  }
  if (tag !== undefined) {
    if (typeof tag !== 'string')
      throw new TypeError(`list: tag must be a string, received ${describeValue(tag)}`)
    combo += 't'
    params.push(tag)
  }
  if (!Number.isSafeInteger(limit) || limit < 1) {
    throw new RangeError(`list: limit must be a positive integer, received ${describeValue(limit)}`)
  }
  if (cursor !== undefined && typeof cursor !== 'string') {
    throw new TypeError(`list: cursor must be a string, received ${describeValue(cursor)}`)
  }
  const capped = Math.min(limit, MAX_POSTGRES_LIST_LIMIT)
  // Ids are non-empty, so every id sorts after ''. One row beyond the page tells whether a next
  // page exists without a second query.
  params.push(cursor ?? '', capped + 1)
  return { params, combo, limit: capped }
}

/** `build()`, with a malformed input record reported as a `TypeError` naming the field. */
function checkedRecord<TResult>(what: string, build: () => TResult): TResult {
  try {
    return build()
  } catch (error) {
    if (error instanceof RecordShapeError) {
      throw new TypeError(`${what}: invalid key record: ${error.message}`, { cause: error })
    }
    throw error
  }
}

function isUsage(u: ApiKeyUsage | undefined): boolean {
  return (
    typeof u?.id === 'string' &&
    Number.isSafeInteger(u.lastUsedAt) &&
    Number.isSafeInteger(u.count) &&
    u.count >= 0
  )
}

class PostgresStore implements PostgresKeyStore {
  readonly #pool: pg.Pool
  readonly #owned: boolean
  readonly #names: KeyStoreNames
  readonly #migrate: boolean
  readonly #s: Statements
  #ready: Promise<void> | undefined
  #isReady = false
  #closed = false

  constructor(pool: pg.Pool, owned: boolean, names: KeyStoreNames, runMigrations: boolean) {
    this.#pool = pool
    this.#owned = owned
    this.#names = names
    this.#migrate = runMigrations
    this.#s = statements(names)
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
    return rows[0] === undefined ? undefined : this.#decode(rows[0])
  }

  async insert(record: ApiKeyRecord): Promise<void> {
    const checked = checkedRecord('insert', () => normalizeRecord(record))
    // A duplicate id fails the PRIMARY KEY: pg's DatabaseError with code 23505, passed unchanged.
    await this.#query(this.#s.insert, recordToParams(checked))
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
      const next = checkedRecord('update', () => applyPatch(this.#decode(row), patch))
      const p = recordToParams(next)
      const updated = await client.query<ApiKeyRow>(this.#s.update, [
        next.id,
        next.name,
        next.scopes,
        next.roles,
        next.status,
        p[7],
        p[19],
        next.expiresAt,
        next.revokedAt,
        p[11],
        p[12],
        p[13],
        p[15],
        p[16],
      ])
      await client.query('COMMIT')
      return this.#decode(updated.rows[0] as ApiKeyRow)
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
    return rows[0] === undefined ? undefined : this.#decode(rows[0])
  }

  async recordUsage(usage: readonly ApiKeyUsage[]): Promise<void> {
    if (!Array.isArray(usage)) {
      throw new TypeError(`recordUsage: usage must be an array, received ${describeValue(usage)}`)
    }
    const ids: string[] = []
    const lastUsed: number[] = []
    const counts: number[] = []
    for (const [i, u] of usage.entries()) {
      if (!isUsage(u))
        throw new TypeError(
          `recordUsage: usage[${i}] must be { id, lastUsedAt, count: integer >= 0 }`,
        )
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
    const q = resolveListQuery(query)
    const rows = await this.#query(this.#s.list.get(q.combo) as string, q.params)
    const more = rows.length > q.limit
    const items = Object.freeze(rows.slice(0, q.limit).map((row) => this.#decode(row)))
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

  #decode(row: ApiKeyRow): ApiKeyRecord {
    try {
      return rowToRecord(row)
    } catch (cause) {
      if (!(cause instanceof RecordShapeError)) throw cause
      throw new AuthError(
        'ERR_KEYSTORE_UNAVAILABLE',
        `Corrupt row for key ${JSON.stringify(row.id)} in ${this.#names.apiKeys}: ${cause.message}`,
        { cause, reason: 'corrupt row' },
      )
    }
  }
}
