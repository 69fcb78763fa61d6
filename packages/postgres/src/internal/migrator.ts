/**
 * The migration runner shared by the key store and the audit sink: versioned migrations recorded
 * in a table, applied in one transaction under an advisory lock, so several processes starting at
 * once apply each migration exactly once and a failure leaves the old schema intact.
 * @internal
 */
import { ConfigError } from '@portcullis/core'
import type pg from 'pg'

/** One schema change. */
export interface Migration<TNames> {
  readonly version: number
  readonly name: string
  readonly up: (names: TNames) => string
}

/** Where a component records its migrations. */
export interface MigrationTarget<TNames> {
  /** Schema to create when missing, or `undefined` for the search path. */
  readonly schema: string | undefined
  /** Quoted, qualified name of the migrations table. */
  readonly table: string
  /** What is migrated (`keys`, `audit`): one table may record several components. */
  readonly component: string
  /** Shown in errors: `@portcullis/postgres key store`. */
  readonly what: string
  readonly migrations: readonly Migration<TNames>[]
  readonly names: TNames
}

/** What a migration run did. */
export interface MigrationOutcome {
  readonly applied: readonly number[]
  readonly version: number
}

function newest<TNames>(t: MigrationTarget<TNames>): number {
  return t.migrations.length
}

function tooNew<TNames>(t: MigrationTarget<TNames>, found: number): ConfigError {
  return new ConfigError(
    `${t.what}: schema version ${found} is newer than this @portcullis/postgres supports ` +
      `(${newest(t)}); upgrade @portcullis/postgres`,
  )
}

/** Applies the pending migrations of `t`. */
export async function migrate<TNames>(
  pool: pg.Pool,
  t: MigrationTarget<TNames>,
): Promise<MigrationOutcome> {
  const client = await pool.connect()
  let failed: unknown
  try {
    await client.query('BEGIN')
    // Serializes concurrent start-ups: the second waits here, then finds nothing pending.
    await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [t.table])
    if (t.schema !== undefined) {
      const found = await client.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [t.schema])
      if (found.rowCount === 0) await client.query(`CREATE SCHEMA "${t.schema}"`)
    }
    await client.query(`
      CREATE TABLE IF NOT EXISTS ${t.table} (
        component TEXT NOT NULL,
        version INTEGER NOT NULL,
        name TEXT NOT NULL,
        applied_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        PRIMARY KEY (component, version)
      )`)
    const done = await client.query<{ version: number }>(
      `SELECT version FROM ${t.table} WHERE component = $1`,
      [t.component],
    )
    const versions = new Set(done.rows.map((r) => Number(r.version)))
    const top = Math.max(0, ...versions)
    if (top > newest(t)) throw tooNew(t, top)
    const applied: number[] = []
    for (const m of t.migrations) {
      if (versions.has(m.version)) continue
      await client.query(m.up(t.names))
      await client.query(`INSERT INTO ${t.table} (component, version, name) VALUES ($1, $2, $3)`, [
        t.component,
        m.version,
        m.name,
      ])
      applied.push(m.version)
    }
    await client.query('COMMIT')
    return Object.freeze({ applied: Object.freeze(applied), version: newest(t) })
  } catch (error) {
    failed = error
    await client.query('ROLLBACK').catch(() => undefined)
    throw error
  } finally {
    // A connection that failed mid-transaction is discarded rather than reused.
    client.release(failed instanceof Error && !(failed instanceof ConfigError) ? failed : undefined)
  }
}

/** Checks, without changing anything, that the schema of `t` is current (for `migrate: false`). */
export async function checkMigrated<TNames>(
  pool: pg.Pool,
  t: MigrationTarget<TNames>,
): Promise<void> {
  let found: number
  try {
    const r = await pool.query<{ version: number | null }>(
      `SELECT max(version) AS version FROM ${t.table} WHERE component = $1`,
      [t.component],
    )
    found = Number(r.rows[0]?.version ?? 0)
  } catch (error) {
    // 42P01 undefined_table: never migrated.
    if ((error as { code?: unknown }).code !== '42P01') throw error
    found = 0
  }
  if (found > newest(t)) throw tooNew(t, found)
  if (found < newest(t)) {
    throw new ConfigError(
      `${t.what}: schema version ${found} is older than ${newest(t)}, and migrate is false; ` +
        'run the migrations first (or set migrate: true)',
    )
  }
}
