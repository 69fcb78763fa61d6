/**
 * The PostgreSQL audit sink: an append-only table (a trigger refuses UPDATE, DELETE and TRUNCATE)
 * holding each event once per id (a retried batch is ignored row by row, `ON CONFLICT (id) DO
 * NOTHING`), in arrival order (`seq`), as the RFC 8785 canonical JSON text of the event, so the
 * bytes the hash chain covers are the bytes stored.
 *
 * Reachable from `@portcullis/postgres`.
 * @packageDocumentation
 */
import {
  ConfigError,
  TypeValidator,
  canonicalize,
  describeValue,
  silentLogger,
  type AuditEvent,
  type AuditSink,
  type Logger,
} from '@portcullis/core'
import type pg from 'pg'
import { DEFAULT_POSTGRES_AUDIT_TABLE, POSTGRES_AUDIT_READ_PAGE } from './defaults.js'
import {
  openPool,
  qualified,
  resolveIdentifier,
  resolveLogger,
  resolvePoolSource,
  unavailable,
  type PoolSource,
} from './internal/connection.js'
import {
  checkMigrated,
  migrate,
  type Migration,
  type MigrationTarget,
} from './internal/migrator.js'

/** Options of {@link createPostgresAuditSink}. */
export interface PostgresAuditSinkOptions {
  /** A pg `Pool` you own (never ended by the sink). Give this or `connectionString`. */
  readonly pool?: pg.Pool
  /** A `postgres://` URL; the sink opens a pool, owns it, and ends it in `close()`. */
  readonly connectionString?: string
  /** Schema of the table (created when missing); absent: the connection's `search_path`. */
  readonly schema?: string
  /**
   * The events table; its migrations are recorded in `<table>_migrations`.
   * @default 'portcullis_audit_events'
   */
  readonly table?: string
  /**
   * Apply pending migrations on first write; with `false` only check the schema is current.
   * @default true
   */
  readonly migrate?: boolean
  /**
   * Sink name, for logs and metrics.
   * @default 'postgres'
   */
  readonly name?: string
  /**
   * Receives unknown-option warnings and pool errors.
   * @default a silent logger
   */
  readonly logger?: Logger
}

/** An {@link AuditSink} on PostgreSQL. */
export interface PostgresAuditSink extends AuditSink {
  /** Resolves once the table exists (or was checked, with `migrate: false`). */
  ready(): Promise<void>
  /** Stored events with their `seq`, in `seq` order (see {@link readPostgresAuditRows}). */
  read(options?: PostgresAuditReadOptions): Promise<PostgresAuditRow[]>
  /** Ends the pool if the sink opened it. Idempotent. */
  close(): Promise<void>
}

/** One stored event and its position in the table. */
export interface PostgresAuditRow {
  /** Arrival order in the table (gaps are possible: a duplicate insert consumes a value). */
  readonly seq: number
  readonly event: AuditEvent
}

/** Paging of {@link readPostgresAuditRows}. */
export interface PostgresAuditReadOptions {
  /** Only rows with a larger `seq`. @default 0 */
  readonly afterSeq?: number
  /** At most this many rows; absent: all of them. */
  readonly limit?: number
}

/** Options of {@link readPostgresAuditEvents} and {@link readPostgresAuditRows}. */
export interface PostgresAuditReaderOptions extends PostgresAuditReadOptions {
  /** A pg `Pool` you own (left open). Give this or `connectionString`. */
  readonly pool?: pg.Pool
  /** A `postgres://` URL; a pool is opened for the read and closed after it. */
  readonly connectionString?: string
  /** Schema of the table; absent: the `search_path`. */
  readonly schema?: string
  /** @default 'portcullis_audit_events' */
  readonly table?: string
}

interface AuditNames {
  readonly schema: string | undefined
  readonly table: string
  readonly migrations: string
  readonly timeIndex: string
  readonly chainIndex: string
  readonly guard: string
  readonly rowTrigger: string
  readonly truncateTrigger: string
}

function auditNames(schema: string | undefined, table: string): AuditNames {
  return {
    schema,
    table: qualified(schema, table),
    migrations: qualified(schema, `${table}_migrations`),
    timeIndex: `"${table}_time"`,
    chainIndex: `"${table}_chain"`,
    guard: qualified(schema, `${table}_append_only`),
    rowTrigger: `"${table}_no_update_delete"`,
    truncateTrigger: `"${table}_no_truncate"`,
  }
}

const MIGRATIONS: readonly Migration<AuditNames>[] = [
  {
    version: 1,
    name: 'create append-only audit events',
    // body is TEXT, not jsonb: jsonb reorders keys and normalizes numbers, and the chain's MACs
    // cover the canonical text. The triggers make the table append-only for every role that does
    // not own it enough to drop them; the hash chain detects what they cannot prevent.
    up: (t) => `
      CREATE TABLE ${t.table} (
        seq BIGSERIAL PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        time TEXT NOT NULL,
        type TEXT NOT NULL,
        chain_id TEXT,
        chain_seq BIGINT,
        body TEXT NOT NULL,
        stored_at TIMESTAMPTZ NOT NULL DEFAULT now()
      );
      CREATE INDEX ${t.timeIndex} ON ${t.table} (time);
      CREATE INDEX ${t.chainIndex} ON ${t.table} (chain_id, chain_seq);
      CREATE FUNCTION ${t.guard}() RETURNS trigger LANGUAGE plpgsql AS $guard$
      BEGIN
        RAISE EXCEPTION 'portcullis audit events are append-only: % refused on %', TG_OP, TG_TABLE_NAME;
      END
      $guard$;
      CREATE TRIGGER ${t.rowTrigger} BEFORE UPDATE OR DELETE ON ${t.table}
        FOR EACH ROW EXECUTE FUNCTION ${t.guard}();
      CREATE TRIGGER ${t.truncateTrigger} BEFORE TRUNCATE ON ${t.table}
        FOR EACH STATEMENT EXECUTE FUNCTION ${t.guard}();
    `,
  },
]

/** The audit-table schema version this release creates and expects. */
export const POSTGRES_AUDIT_SCHEMA_VERSION: number = MIGRATIONS.length

function auditMigrations(names: AuditNames): MigrationTarget<AuditNames> {
  return {
    schema: names.schema,
    table: names.migrations,
    component: 'audit',
    what: '@portcullis/postgres audit sink',
    migrations: MIGRATIONS,
    names,
  }
}

const WHAT = 'PostgreSQL audit sink'

/**
 * Creates the PostgreSQL audit sink. Options are checked at once; the table is created (migrated)
 * on first write or {@link PostgresAuditSink.ready}.
 *
 * `write` stores a batch in one statement, in batch order; an event whose id is already stored
 * is skipped, so the trail can retry a batch whose acknowledgement was lost and each event is
 * stored exactly once. A failure rejects with `ERR_AUDIT_UNAVAILABLE`; the trail spools and
 * retries.
 * @throws {ConfigError} for a bad option
 * @example
 * ```ts
 * import { createAuditTrail } from '@portcullis/core'
 * import { createPostgresAuditSink } from '@portcullis/postgres'
 * const sink = createPostgresAuditSink({ connectionString: process.env.DATABASE_URL })
 * const audit = createAuditTrail({ sinks: [sink] })
 * ```
 */
export function createPostgresAuditSink(
  options: Readonly<PostgresAuditSinkOptions>,
): PostgresAuditSink {
  if (typeof options !== 'object' || options === null) {
    throw new ConfigError(
      `options: must be an object with a "pool" or a "connectionString", received ${describeValue(options)}`,
    )
  }
  const v = new TypeValidator()
  v.knownKeys(options as unknown as Record<string, unknown>, [
    'pool',
    'connectionString',
    'schema',
    'table',
    'migrate',
    'name',
    'logger',
  ])
  const source = resolvePoolSource(v, options.pool, options.connectionString)
  const schema = resolveIdentifier(v, 'schema', options.schema, undefined)
  const table = resolveIdentifier(v, 'table', options.table, DEFAULT_POSTGRES_AUDIT_TABLE)
  const runMigrations =
    options.migrate === undefined ? true : (v.boolean('migrate', options.migrate) ?? true)
  const name = options.name === undefined ? 'postgres' : v.string('name', options.name)
  const logger = resolveLogger(v, options.logger, silentLogger)
  v.assert((message) => logger.warn({}, message))

  const names = auditNames(schema, table as string)
  const { pool, owned } = openPool(source as PoolSource, logger, WHAT)
  // unnest keeps the batch order (WITH ORDINALITY), so seq follows it.
  const insert = `
    INSERT INTO ${names.table} (id, time, type, chain_id, chain_seq, body)
    SELECT id, time, type, chain_id, chain_seq, body
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[])
      WITH ORDINALITY AS x(id, time, type, chain_id, chain_seq, body, n)
    ORDER BY n
    ON CONFLICT (id) DO NOTHING`
  let readyPromise: Promise<void> | undefined
  let isReady = false
  let closed = false

  const ready = (): Promise<void> => {
    if (closed) return Promise.reject(unavailable('ERR_AUDIT_UNAVAILABLE', WHAT, closedError()))
    readyPromise ??= (async () => {
      const target = auditMigrations(names)
      try {
        if (runMigrations) await migrate(pool, target)
        else await checkMigrated(pool, target)
        isReady = true
      } catch (error) {
        readyPromise = undefined
        throw unavailable('ERR_AUDIT_UNAVAILABLE', WHAT, error)
      }
    })()
    return readyPromise
  }

  return {
    name: name ?? 'postgres',
    ready,
    async write(events: readonly AuditEvent[]): Promise<void> {
      if (closed) throw unavailable('ERR_AUDIT_UNAVAILABLE', WHAT, closedError())
      if (!Array.isArray(events)) {
        throw new TypeError(`write: events must be an array, received ${describeValue(events)}`)
      }
      if (events.length === 0) return
      const columns = toColumns(events)
      if (!isReady) await ready()
      try {
        await pool.query(insert, columns)
      } catch (error) {
        throw unavailable('ERR_AUDIT_UNAVAILABLE', WHAT, error)
      }
    },
    async read(readOptions: PostgresAuditReadOptions = {}): Promise<PostgresAuditRow[]> {
      if (closed) throw unavailable('ERR_AUDIT_UNAVAILABLE', WHAT, closedError())
      if (!isReady) await ready()
      return readRows(pool, names.table, readOptions)
    },
    async close(): Promise<void> {
      if (closed) return
      closed = true
      if (owned) await pool.end()
    },
  }
}

function closedError(): Error {
  return new Error('the PostgreSQL audit sink is closed')
}

/** The six column arrays of one batch, each event checked enough to be stored. */
function toColumns(events: readonly AuditEvent[]): unknown[][] {
  const ids: string[] = []
  const times: string[] = []
  const types: string[] = []
  const chainIds: (string | null)[] = []
  const chainSeqs: (number | null)[] = []
  const bodies: string[] = []
  for (const [i, e] of events.entries()) {
    if (
      typeof e?.id !== 'string' ||
      e.id === '' ||
      typeof e.time !== 'string' ||
      typeof e.type !== 'string'
    ) {
      throw new TypeError(`write: events[${i}] must have string id, time and type`)
    }
    ids.push(e.id)
    times.push(e.time)
    types.push(e.type)
    chainIds.push(e.chain?.id ?? null)
    chainSeqs.push(e.chain?.seq ?? null)
    // Canonical JSON escapes U+0000 and lone surrogates, which PostgreSQL text could not hold.
    bodies.push(canonicalize(e))
  }
  return [ids, times, types, chainIds, chainSeqs, bodies]
}

function resolveRead(
  v: TypeValidator,
  o: PostgresAuditReadOptions,
): { after: number; limit: number | undefined } {
  const after = v.integerOr('afterSeq', o.afterSeq, 0, { min: 0 })
  const limit = v.integerOr('limit', o.limit, undefined, { min: 1 })
  return { after: after ?? 0, limit }
}

async function readRows(
  pool: pg.Pool,
  table: string,
  options: PostgresAuditReadOptions,
): Promise<PostgresAuditRow[]> {
  const v = new TypeValidator()
  const { after, limit } = resolveRead(v, options)
  v.assert()
  const out: PostgresAuditRow[] = []
  let cursor = after
  try {
    // Pages of a bounded size, so a long trail is not one huge result in the driver.
    for (;;) {
      const want =
        limit === undefined
          ? POSTGRES_AUDIT_READ_PAGE
          : Math.min(POSTGRES_AUDIT_READ_PAGE, limit - out.length)
      if (want <= 0) break
      const r = await pool.query<{ seq: string; body: string }>(
        `SELECT seq, body FROM ${table} WHERE seq > $1 ORDER BY seq LIMIT $2`,
        [cursor, want],
      )
      for (const row of r.rows) {
        const seq = Number(row.seq)
        out.push(Object.freeze({ seq, event: parseBody(seq, row.body) }))
        cursor = seq
      }
      if (r.rows.length < want) break
    }
  } catch (error) {
    throw unavailable('ERR_AUDIT_UNAVAILABLE', WHAT, error)
  }
  return out
}

/**
 * A stored body as an event. A body that is not JSON is returned as an event that cannot verify
 * (rather than stopping the read), so `verify` names the broken link instead of failing outright.
 */
function parseBody(seq: number, body: string): AuditEvent {
  try {
    return JSON.parse(body) as AuditEvent
  } catch {
    return {
      id: `corrupt-seq-${seq}`,
      time: '',
      type: 'custom',
      outcome: 'failure',
      actor: { id: null },
      action: 'corrupt',
      data: { seq, body },
    }
  }
}

/**
 * Reads stored audit events with their `seq`, in `seq` order (for `portcullis audit verify` and
 * export). Does not create or migrate anything.
 * @throws {ConfigError} (rejects) for a bad option
 * @throws {AuthError} (rejects) `ERR_AUDIT_UNAVAILABLE` when the database or table cannot be read
 */
export async function readPostgresAuditRows(
  options: Readonly<PostgresAuditReaderOptions>,
): Promise<PostgresAuditRow[]> {
  const v = new TypeValidator()
  v.object('options', options)
  const o = options ?? {}
  v.knownKeys(o as Record<string, unknown>, [
    'pool',
    'connectionString',
    'schema',
    'table',
    'afterSeq',
    'limit',
  ])
  const source = resolvePoolSource(v, o.pool, o.connectionString)
  const schema = resolveIdentifier(v, 'schema', o.schema, undefined)
  const table = resolveIdentifier(v, 'table', o.table, DEFAULT_POSTGRES_AUDIT_TABLE)
  resolveRead(v, o)
  v.assert()
  const { pool, owned } = openPool(source as PoolSource, silentLogger, WHAT)
  try {
    return await readRows(pool, qualified(schema, table as string), o)
  } finally {
    if (owned) await pool.end()
  }
}

/**
 * Reads stored audit events in `seq` order (arrival order), for `portcullis audit verify` and
 * export: {@link readPostgresAuditRows} without the positions.
 * @throws {ConfigError} (rejects) for a bad option
 * @throws {AuthError} (rejects) `ERR_AUDIT_UNAVAILABLE` when the database or table cannot be read
 * @example
 * ```ts
 * import { verifyAuditChain } from '@portcullis/core'
 * import { readPostgresAuditEvents } from '@portcullis/postgres'
 * const events = await readPostgresAuditEvents({ connectionString: process.env.DATABASE_URL })
 * ```
 */
export async function readPostgresAuditEvents(
  options: Readonly<PostgresAuditReaderOptions>,
): Promise<AuditEvent[]> {
  return (await readPostgresAuditRows(options)).map((r) => r.event)
}
