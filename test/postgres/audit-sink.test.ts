import { expect } from 'chai'
import { randomUUID } from 'node:crypto'
import pg from 'pg'
import {
  AuthError,
  canonicalize,
  createAuditTrail,
  verifyAuditChain,
  type AuditEvent,
} from '@portcullis/core'
import {
  POSTGRES_AUDIT_SCHEMA_VERSION,
  createPostgresAuditSink,
  readPostgresAuditEvents,
  readPostgresAuditRows,
  type PostgresAuditSink,
} from '@portcullis/postgres'
import {
  describeWithPostgres,
  skipWithoutPostgres,
  startPostgres,
  type PostgresServer,
} from '../helpers/postgres-server.js'

async function rejection(promise: Promise<unknown>): Promise<Error & { code?: string }> {
  try {
    await promise
  } catch (error) {
    return error as Error & { code?: string }
  }
  throw new Error('expected the promise to reject, but it resolved')
}

let n = 0
function event(overrides: Partial<AuditEvent> = {}): AuditEvent {
  n++
  return {
    id: randomUUID(),
    time: new Date(Date.UTC(2026, 0, 1, 0, 0, n)).toISOString(),
    type: 'authz.deny',
    outcome: 'failure',
    actor: { id: `user-${n}`, method: 'apikey' },
    action: 'GET /docs/:id',
    reason: { code: 'ERR_POLICY_DENIED', detail: 'no rule allowed it' },
    request: { id: `req-${n}`, method: 'GET', path: `/docs/${n}`, ip: '192.0.2.1' },
    tags: ['SOC2:CC7.2'],
    ...overrides,
  }
}

let tables = 0
function freshTable(): string {
  return `audit_${++tables}`
}

describeWithPostgres('@portcullis/postgres audit sink', function (postgres) {
  this.timeout(30_000)
  let url: string
  let pool: pg.Pool
  let sink: PostgresAuditSink
  let table: string

  before(async function () {
    url = await postgres().createDatabase()
    pool = new pg.Pool({ connectionString: url, max: 10 })
  })

  after(async function () {
    await pool?.end()
  })

  beforeEach(function () {
    table = freshTable()
    sink = createPostgresAuditSink({ pool, table })
  })

  afterEach(async function () {
    await sink.close()
  })

  it('stores a batch in order and reads it back deep-equal, with increasing seq', async function () {
    const batch = [event(), event({ type: 'key.created', outcome: 'success' }), event()]
    await sink.write(batch)
    const rows = await sink.read()
    expect(rows.map((r) => r.event)).to.deep.equal(batch)
    expect(rows.map((r) => r.seq)).to.deep.equal([1, 2, 3])
    expect(await readPostgresAuditEvents({ pool, table })).to.deep.equal(batch)
  })

  it('stores the RFC 8785 canonical text of each event, with id, time and type columns', async function () {
    const e = event({ data: { z: 1, a: { y: [3, 1], b: 'é' }, m: 1e21 } })
    await sink.write([e])
    const r = await pool.query(`SELECT id, time, type, body FROM ${table}`)
    expect(r.rows).to.deep.equal([{ id: e.id, time: e.time, type: e.type, body: canonicalize(e) }])
    const body = r.rows[0].body as string
    expect(body.indexOf('"a":')).to.be.lessThan(body.indexOf('"z":'))
  })

  it('refuses UPDATE, DELETE and TRUNCATE on the table (append-only trigger)', async function () {
    const e = event()
    await sink.write([e])
    for (const sql of [
      `UPDATE ${table} SET type = 'custom'`,
      `UPDATE ${table} SET body = '{}' WHERE id = '${e.id}'`,
      `DELETE FROM ${table}`,
      `TRUNCATE ${table}`,
    ]) {
      const error = await rejection(pool.query(sql))
      expect(error.message, sql).to.match(
        /portcullis audit events are append-only: (UPDATE|DELETE|TRUNCATE) refused/,
      )
    }
    expect(await readPostgresAuditEvents({ pool, table })).to.deep.equal([e])
  })

  it('keeps hostile content intact: NUL, control characters, lone surrogates, __proto__, large fields', async function () {
    const hostile = event({
      action: 'line1\nline2\r\u0000\u001b[31m',
      data: JSON.parse(
        `{"__proto__":{"polluted":true},"big":"${'x'.repeat(200_000)}","lone":"\\ud800","nul":"\\u0000"}`,
      ) as Record<string, unknown>,
    })
    await sink.write([hostile])
    const [back] = await readPostgresAuditEvents({ pool, table })
    expect(back).to.deep.equal(hostile)
    expect(Object.hasOwn((back as AuditEvent).data ?? {}, '__proto__')).to.equal(true)
    expect(({} as { polluted?: unknown }).polluted).to.equal(undefined)
  })

  it('pages with afterSeq and limit', async function () {
    const batch = Array.from({ length: 7 }, () => event())
    await sink.write(batch)
    const first = await readPostgresAuditRows({ pool, table, limit: 3 })
    expect(first.map((r) => r.event.id)).to.deep.equal(batch.slice(0, 3).map((e) => e.id))
    const rest = await readPostgresAuditRows({ pool, table, afterSeq: first.at(-1)?.seq as number })
    expect(rest.map((r) => r.event.id)).to.deep.equal(batch.slice(3).map((e) => e.id))
    const bad = await rejection(readPostgresAuditRows({ pool, table, limit: 0 }))
    expect(bad.code).to.equal('ERR_CONFIG_INVALID')
  })

  it('keeps a hash chain verifiable through the table (trail with integrity, then verify)', async function () {
    const key = 'audit-chain-key-0123456789abcdef0123456789'
    const trail = createAuditTrail({ sinks: [sink], integrity: { key }, flushIntervalMs: 5 })
    for (let i = 0; i < 25; i++) {
      trail.emit({
        type: 'authn.failure',
        outcome: 'failure',
        actor: { id: null },
        action: `try ${i}`,
      })
    }
    await trail.flush(10_000)
    const events = await readPostgresAuditEvents({ pool, table })
    expect(events.length).to.be.at.least(25)
    expect(verifyAuditChain(events, { keys: key }).ok).to.equal(true)
    // The chain notices an edit made behind the trigger's back (by a role able to disable it).
    await pool.query(`ALTER TABLE ${table} DISABLE TRIGGER USER`)
    await pool.query(
      `UPDATE ${table} SET body = replace(body, '"try 3"', '"try 33"') WHERE body LIKE '%"try 3"%'`,
    )
    const tampered = verifyAuditChain(await readPostgresAuditEvents({ pool, table }), { keys: key })
    expect(tampered.ok).to.equal(false)
    await trail.close()
  })

  it('reads a body that is not JSON as a marked event, so verify names it instead of aborting', async function () {
    const batch = [event(), event(), event()]
    await sink.write(batch)
    await pool.query(`ALTER TABLE ${table} DISABLE TRIGGER USER`)
    await pool.query(`UPDATE ${table} SET body = '{"truncated' WHERE seq = 2`)
    const events = await readPostgresAuditEvents({ pool, table })
    expect(events.map((e) => e.id)).to.deep.equal([batch[0]?.id, 'corrupt-seq-2', batch[2]?.id])
    expect(events[1]).to.deep.include({ action: 'corrupt', data: { seq: 2, body: '{"truncated' } })
  })

  it('migrates once (idempotent), and with migrate: false checks instead of creating', async function () {
    await sink.ready()
    await sink.ready()
    const versions = await pool.query(`SELECT component, version FROM ${table}_migrations`)
    expect(versions.rows).to.deep.equal([
      { component: 'audit', version: POSTGRES_AUDIT_SCHEMA_VERSION },
    ])
    const other = freshTable()
    const checking = createPostgresAuditSink({ pool, table: other, migrate: false })
    const error = await rejection(checking.write([event()]))
    expect(error.code).to.equal('ERR_CONFIG_INVALID')
    expect(
      (await pool.query('SELECT 1 FROM pg_tables WHERE tablename = $1', [other])).rowCount,
    ).to.equal(0)
    const checked = createPostgresAuditSink({ pool, table, migrate: false })
    await checked.write([event()])
  })

  it('validates options with ERR_CONFIG_INVALID naming the option', function () {
    for (const [options, pattern] of [
      [{}, /^pool: required/],
      [{ pool, table: 'Audit' }, /^table: must match/],
      [{ pool, table: 'pg_audit' }, /^table: must not start with "pg_"/],
      [{ pool, name: 5 }, /^name: must be a string/],
    ] as const) {
      let error: (Error & { code?: string }) | undefined
      try {
        createPostgresAuditSink(options as never)
      } catch (e) {
        error = e as Error & { code?: string }
      }
      expect(error?.code).to.equal('ERR_CONFIG_INVALID')
      expect(error?.message).to.match(pattern)
    }
  })
})

describe('@portcullis/postgres audit sink: database outage', function () {
  this.timeout(60_000)
  let server: PostgresServer | undefined
  let sink: PostgresAuditSink | undefined

  before(async function () {
    skipWithoutPostgres(this, this.test?.parent?.title ?? 'PostgreSQL suite')
    server = await startPostgres()
  })

  after(async function () {
    try {
      await sink?.close()
    } finally {
      await server?.stop()
    }
  })

  it('rejects with ERR_AUDIT_UNAVAILABLE while stopped; the retried batch lands once after restart', async function () {
    const s = server as PostgresServer
    sink = createPostgresAuditSink({ connectionString: s.url })
    const first = [event(), event()]
    await sink.write(first)
    await s.pause()
    const batch = [first[1] as AuditEvent, event(), event()]
    const down = await rejection(sink.write(batch))
    expect(down).to.be.instanceOf(AuthError)
    expect(down.code).to.equal('ERR_AUDIT_UNAVAILABLE')
    await s.resume()
    await sink.write(batch)
    await s.kill()
    expect((await rejection(sink.write(batch))).code).to.equal('ERR_AUDIT_UNAVAILABLE')
    await s.resume()
    await sink.write(batch)
    const events = await readPostgresAuditEvents({ connectionString: s.url })
    expect(events.map((e) => e.id)).to.deep.equal([...first, ...batch.slice(1)].map((e) => e.id))
  })

  it('loses nothing the trail acknowledged across a stop of the server under load', async function () {
    const s = server as PostgresServer
    const table = 'under_load'
    const loaded = createPostgresAuditSink({ connectionString: s.url, table })
    const key = 'audit-chain-key-0123456789abcdef0123456789'
    const trail = createAuditTrail({ sinks: [loaded], integrity: { key }, flushIntervalMs: 5 })
    await loaded.ready()
    const emitted: string[] = []
    const emit = (i: number): void => {
      trail.emit({ type: 'authz.deny', outcome: 'failure', actor: { id: 'u' }, action: `a${i}` })
      emitted.push(`a${i}`)
    }
    for (let i = 0; i < 50; i++) emit(i)
    await trail.flush(10_000)
    await s.pause()
    for (let i = 50; i < 100; i++) emit(i)
    await new Promise((r) => setTimeout(r, 300))
    await s.resume()
    for (let i = 100; i < 150; i++) emit(i)
    await trail.flush(20_000)
    const events = await readPostgresAuditEvents({ connectionString: s.url, table })
    const actions = events.filter((e) => e.type === 'authz.deny').map((e) => e.action)
    expect(actions).to.deep.equal(emitted)
    expect(new Set(events.map((e) => e.id)).size).to.equal(events.length)
    expect(verifyAuditChain(events, { keys: key }).ok).to.equal(true)
    await trail.close()
  })
})
