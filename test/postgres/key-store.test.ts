import { expect } from 'chai'
import pg from 'pg'
import {
  AuthError,
  createApiKeyManager,
  createGate,
  isConfigError,
  type ApiKeyRecord,
  type Decision,
  type Gate,
  type Logger,
} from '@portcullis/core'
import { fakeRequest } from '@portcullis/core/testing'
import {
  POSTGRES_SCHEMA_VERSION,
  createPostgresKeyStore,
  migratePostgres,
  type PostgresKeyStore,
} from '@portcullis/postgres'
import {
  buildKeyRecord,
  describeKeyStoreConformance,
  rejection,
  thrown,
} from '../helpers/key-store-conformance.js'
import {
  describeWithPostgres,
  skipWithoutPostgres,
  startPostgres,
  type PostgresServer,
} from '../helpers/postgres-server.js'

const T0 = Date.UTC(2026, 0, 1)

function denial(decision: Decision): { status: number; error: AuthError } {
  if (decision.allowed) throw new Error('expected the request to be denied, but it was allowed')
  return { status: decision.status, error: decision.error }
}

let prefixes = 0
/** A table prefix no other test of this process uses, so each test starts on empty tables. */
function freshPrefix(): string {
  return `t${++prefixes}_`
}

describeWithPostgres('@portcullis/postgres key store', function (postgres) {
  this.timeout(30_000)
  let url: string
  let pool: pg.Pool

  before(async function () {
    url = await postgres().createDatabase()
    pool = new pg.Pool({ connectionString: url, max: 20 })
    pool.on('error', () => undefined)
  })

  after(async function () {
    await pool?.end()
  })

  /** Hooks giving each test a ready store on tables of its own, closed after the test. */
  function useFreshStore(use: (store: PostgresKeyStore, tablePrefix: string) => void): void {
    let store: PostgresKeyStore | undefined
    beforeEach(async function () {
      const tablePrefix = freshPrefix()
      store = createPostgresKeyStore({ pool, tablePrefix })
      await store.ready()
      use(store, tablePrefix)
    })
    afterEach(async function () {
      await store?.close()
    })
  }

  describeKeyStoreConformance('createPostgresKeyStore', async () => {
    const store = createPostgresKeyStore({ pool, tablePrefix: freshPrefix() })
    await store.ready()
    return { store, cleanup: () => store.close() }
  })

  describe('options', function () {
    it('throws ERR_CONFIG_INVALID naming the option for a missing or doubled connection', function () {
      const none = thrown(() => createPostgresKeyStore({}))
      expect(isConfigError(none)).to.equal(true)
      expect(none.message).to.match(/^pool: required/)
      const both = thrown(() => createPostgresKeyStore({ pool, connectionString: url }))
      expect(both.message).to.match(/^pool: give either/)
      const notAPool = thrown(() => createPostgresKeyStore({ pool: {} as pg.Pool }))
      expect(notAPool.message).to.match(/^pool: must be a pg\.Pool/)
    })

    it('refuses a bad URL without echoing it (it may hold a password)', function () {
      const error = thrown(() =>
        createPostgresKeyStore({ connectionString: 'mysql://u:s3cret@h/db' }),
      )
      expect(error.code).to.equal('ERR_CONFIG_INVALID')
      expect(error.message).to.match(/^connectionString: must be a postgres:\/\//)
      expect(error.message).to.not.include('s3cret')
    })

    it('refuses identifiers that are not plain lower-case SQL names', function () {
      for (const tablePrefix of ['Gate', 'x"; DROP TABLE y; --', 'pg_x', '1abc', 'a'.repeat(41)]) {
        const error = thrown(() => createPostgresKeyStore({ pool, tablePrefix }))
        expect(error.code, tablePrefix).to.equal('ERR_CONFIG_INVALID')
        expect(error.message).to.match(/^tablePrefix: /)
      }
      expect(thrown(() => createPostgresKeyStore({ pool, schema: 'Bad-Name' })).message).to.match(
        /^schema: /,
      )
      expect(
        thrown(() => createPostgresKeyStore({ pool, migrate: 'yes' as never })).message,
      ).to.match(/^migrate: must be a boolean/)
    })

    it('warns once about an unknown option, suggesting the right name', function () {
      const warnings: string[] = []
      const logger: Logger = { warn: (_f, m) => warnings.push(m), error: () => undefined }
      const store = createPostgresKeyStore({ pool, logger, tablePrefx: 'x_' } as never)
      expect(warnings).to.deep.equal([
        'tablePrefx: unknown option "tablePrefx"; did you mean "tablePrefix"?',
      ])
      void store.close()
    })
  })

  describe('migrations', function () {
    it('creates the schema on first use, applies nothing the second time, and keeps data', async function () {
      const tablePrefix = freshPrefix()
      expect(await migratePostgres({ pool, tablePrefix })).to.deep.equal({
        applied: [1],
        version: POSTGRES_SCHEMA_VERSION,
      })
      const first = createPostgresKeyStore({ pool, tablePrefix })
      const record = buildKeyRecord()
      await first.insert(record)
      expect(await migratePostgres({ pool, tablePrefix })).to.deep.equal({
        applied: [],
        version: POSTGRES_SCHEMA_VERSION,
      })
      const second = createPostgresKeyStore({ pool, tablePrefix })
      expect(await second.get(record.id)).to.deep.equal(record)
      const rows = await pool.query(
        `SELECT component, version, name FROM ${tablePrefix}migrations ORDER BY version`,
      )
      expect(rows.rows).to.deep.equal([{ component: 'keys', version: 1, name: 'create api_keys' }])
    })

    it('applies each migration once when several processes start at the same moment', async function () {
      const tablePrefix = freshPrefix()
      const pools = Array.from({ length: 4 }, () => new pg.Pool({ connectionString: url, max: 1 }))
      try {
        const results = await Promise.all(
          pools.map((p) => migratePostgres({ pool: p, tablePrefix })),
        )
        expect(results.map((r) => r.applied.length).sort()).to.deep.equal([0, 0, 0, 1])
      } finally {
        await Promise.all(pools.map((p) => p.end()))
      }
    })

    it('creates the indexes the queries rely on (owner, status, tags GIN, hashes GIN)', async function () {
      const tablePrefix = freshPrefix()
      await migratePostgres({ pool, tablePrefix })
      const r = await pool.query<{ indexname: string; indexdef: string }>(
        'SELECT indexname, indexdef FROM pg_indexes WHERE tablename = $1 ORDER BY indexname',
        [`${tablePrefix}api_keys`],
      )
      const defs = Object.fromEntries(r.rows.map((x) => [x.indexname, x.indexdef]))
      expect(defs[`${tablePrefix}api_keys_pkey`]).to.match(/btree \(id\)/)
      expect(defs[`${tablePrefix}api_keys_owner_id`]).to.match(/btree \(owner_id, id\)/)
      expect(defs[`${tablePrefix}api_keys_status`]).to.match(/btree \(status, id\)/)
      expect(defs[`${tablePrefix}api_keys_tags`]).to.match(/gin \(tags\)/)
      expect(defs[`${tablePrefix}api_keys_hash_values`]).to.match(/gin \(hash_values\)/)
    })

    it('puts the tables in the given schema, creating it', async function () {
      const store = createPostgresKeyStore({ pool, schema: 'keys_schema', tablePrefix: 'ptcl_' })
      const record = buildKeyRecord()
      await store.insert(record)
      const r = await pool.query('SELECT id FROM keys_schema.ptcl_api_keys')
      expect(r.rows).to.deep.equal([{ id: record.id }])
    })

    it('with migrate: false, refuses an unmigrated database with ERR_CONFIG_INVALID, then works once migrated', async function () {
      const tablePrefix = freshPrefix()
      const store = createPostgresKeyStore({ pool, tablePrefix, migrate: false })
      const error = await rejection(store.get(buildKeyRecord().id))
      expect(error.code).to.equal('ERR_CONFIG_INVALID')
      expect(error.message).to.match(/schema version 0 is older than 1, and migrate is false/)
      const tables = await pool.query('SELECT 1 FROM pg_tables WHERE tablename = $1', [
        `${tablePrefix}api_keys`,
      ])
      expect(tables.rowCount).to.equal(0)
      await migratePostgres({ pool, tablePrefix })
      expect(await store.get(buildKeyRecord().id)).to.equal(undefined)
    })

    it('refuses a database migrated by a newer release (a downgrade)', async function () {
      const tablePrefix = freshPrefix()
      await migratePostgres({ pool, tablePrefix })
      await pool.query(
        `INSERT INTO ${tablePrefix}migrations (component, version, name) VALUES ('keys', 99, 'future')`,
      )
      const error = await rejection(migratePostgres({ pool, tablePrefix }))
      expect(error.code).to.equal('ERR_CONFIG_INVALID')
      expect(error.message).to.match(/schema version 99 is newer/)
      const store = createPostgresKeyStore({ pool, tablePrefix })
      expect((await rejection(store.ready())).code).to.equal('ERR_CONFIG_INVALID')
    })
  })

  describe('transactions and batching', function () {
    let store: PostgresKeyStore
    let tablePrefix: string
    useFreshStore((s, p) => {
      store = s
      tablePrefix = p
    })

    it('makes an update wait for a row lock held by another transaction, then apply on top', async function () {
      const record = buildKeyRecord()
      await store.insert(record)
      const other = await pool.connect()
      try {
        await other.query('BEGIN')
        await other.query(`SELECT 1 FROM ${tablePrefix}api_keys WHERE id = $1 FOR UPDATE`, [
          record.id,
        ])
        await other.query(`UPDATE ${tablePrefix}api_keys SET name = 'locked' WHERE id = $1`, [
          record.id,
        ])
        let settled = false
        const pending = store.update(record.id, { scopes: ['after:lock'] }).finally(() => {
          settled = true
        })
        await new Promise((r) => setTimeout(r, 300))
        expect(settled, 'update returned while the row was locked').to.equal(false)
        await other.query('COMMIT')
        const updated = await pending
        expect(updated).to.include({ name: 'locked' })
        expect(updated?.scopes).to.deep.equal(['after:lock'])
      } finally {
        other.release()
      }
    })

    it('serializes concurrent rotations from two instances: every patch lands, none is lost', async function () {
      const record = buildKeyRecord()
      await store.insert(record)
      const pool2 = new pg.Pool({ connectionString: url, max: 5 })
      const second = createPostgresKeyStore({ pool: pool2, tablePrefix })
      try {
        await Promise.all(
          Array.from({ length: 20 }, (_, i) =>
            (i % 2 === 0 ? store : second).update(record.id, {
              metadata: { [`k${i}`]: i },
              ...(i === 7 ? { name: 'seven' } : {}),
              ...(i === 12 ? { tags: ['twelve'] } : {}),
            }),
          ),
        )
        const final = (await store.get(record.id)) as ApiKeyRecord
        expect(final.name).to.equal('seven')
        expect(final.tags).to.deep.equal(['twelve'])
        expect(Object.keys(final.metadata)).to.have.length(1)
      } finally {
        await second.close()
        await pool2.end()
      }
    })

    it('sums concurrent usage batches from several instances exactly, without deadlock', async function () {
      const records = Array.from({ length: 6 }, () => buildKeyRecord())
      for (const r of records) await store.insert(r)
      const pools = Array.from({ length: 3 }, () => new pg.Pool({ connectionString: url, max: 2 }))
      const stores = pools.map((p) => createPostgresKeyStore({ pool: p, tablePrefix }))
      try {
        await Promise.all(
          stores.flatMap((s, si) =>
            Array.from({ length: 10 }, (_, b) => {
              // Overlapping batches in opposite orders: the shape that deadlocks without ordered locks.
              const batch = records.map((r, i) => ({
                id: r.id,
                lastUsedAt: T0 + si * 100 + b + i,
                count: 1,
              }))
              return s.recordUsage(b % 2 === 0 ? batch : batch.reverse())
            }),
          ),
        )
        for (const [i, r] of records.entries()) {
          expect(await store.get(r.id)).to.include({ usageCount: 30, lastUsedAt: T0 + 200 + 9 + i })
        }
      } finally {
        await Promise.all(pools.map((p) => p.end()))
      }
    })

    it('records a batch in one statement', async function () {
      const a = buildKeyRecord()
      await store.insert(a)
      const seen: string[] = []
      const spy = new pg.Pool({ connectionString: url, max: 1 })
      const query = spy.query.bind(spy)
      spy.query = ((text: unknown, values: unknown) => {
        seen.push(typeof text === 'string' ? text : 'config')
        return query(text as string, values as unknown[])
      }) as typeof spy.query
      const counted = createPostgresKeyStore({ pool: spy, tablePrefix })
      try {
        await counted.ready()
        seen.length = 0
        await counted.recordUsage(
          Array.from({ length: 50 }, (_, i) => ({ id: a.id, lastUsedAt: T0 + i, count: 2 })),
        )
        expect(seen).to.have.length(1)
        expect(await store.get(a.id)).to.include({ usageCount: 100, lastUsedAt: T0 + 49 })
      } finally {
        await spy.end()
      }
    })

    it('refuses a malformed usage entry before any write', async function () {
      const a = buildKeyRecord()
      await store.insert(a)
      const error = await rejection(
        store.recordUsage([
          { id: a.id, lastUsedAt: T0, count: 1 },
          { id: a.id, lastUsedAt: T0, count: -1 },
        ]),
      )
      expect(error).to.be.instanceOf(TypeError)
      expect(error.message).to.match(/usage\[1\]/)
      expect(await store.get(a.id)).to.include({ usageCount: 0 })
    })

    it('refuses text PostgreSQL cannot hold (U+0000, lone surrogates) with a TypeError naming the field', async function () {
      const nul = await rejection(store.insert(buildKeyRecord({ name: 'a\u0000b' })))
      expect(nul).to.be.instanceOf(TypeError)
      expect(nul.message).to.match(/^insert: invalid key record: name: /)
      const lone = await rejection(store.insert(buildKeyRecord({ tags: ['ok', '\ud800'] })))
      expect(lone.message).to.match(/tags\[1\]/)
      expect((await store.list()).items).to.deep.equal([])
    })

    it('rejects a duplicate insert with the driver error (unique violation), not as an outage', async function () {
      const record = buildKeyRecord()
      await store.insert(record)
      const error = await rejection(store.insert(record))
      expect(error.code).to.equal('23505')
      expect(error).to.not.be.instanceOf(AuthError)
    })
  })

  describe('corrupt rows', function () {
    let store: PostgresKeyStore
    let tablePrefix: string
    useFreshStore((s, p) => {
      store = s
      tablePrefix = p
    })

    const corruptions: [string, string][] = [
      ['metadata', `metadata = 'not json'`],
      ['hashes', `hashes = '{"not":"an array"}'`],
      ['scopes', `scopes = ARRAY['ok', NULL]`],
      ['policy', `policy = '{"allowedCidrs": 5}'`],
      ['created_at', `created_at = 9007199254740993`],
    ]
    for (const [field, set] of corruptions) {
      it(`rejects get, list, findByHash and update with ERR_KEYSTORE_UNAVAILABLE for a bad ${field}`, async function () {
        const record = buildKeyRecord()
        await store.insert(record)
        await pool.query(`UPDATE ${tablePrefix}api_keys SET ${set} WHERE id = $1`, [record.id])
        for (const call of [
          () => store.get(record.id),
          () => store.list(),
          () => store.findByHash(record.hashes[0]?.hash as never),
          () => store.update(record.id, { name: 'x' }),
        ]) {
          const error = await rejection(call())
          expect(error).to.be.instanceOf(AuthError)
          expect(error.code).to.equal('ERR_KEYSTORE_UNAVAILABLE')
          expect(error.message).to.include(field)
        }
      })
    }

    it('answers 503 ERR_KEYSTORE_UNAVAILABLE at the gate for a key whose row is corrupt', async function () {
      const pepper = 'e2e-pepper-0123456789abcdef0123456789'
      const { key, record } = await createApiKeyManager({ store, pepper }).create({
        name: 'corrupt',
        ownerId: 'svc-ci',
      })
      await pool.query(`UPDATE ${tablePrefix}api_keys SET metadata = '[' WHERE id = $1`, [
        record.id,
      ])
      const gate = createGate({ apiKeys: { store, pepper }, audit: false })
      try {
        const refused = denial(
          await gate.evaluate(fakeRequest({ headers: { 'x-api-key': key } }), gate.compile({})),
        )
        expect(refused.status).to.equal(503)
        expect(refused.error.code).to.equal('ERR_KEYSTORE_UNAVAILABLE')
      } finally {
        await gate.close()
      }
    })
  })
})

describe('@portcullis/postgres key store: database outage', function () {
  this.timeout(60_000)
  const pepper = 'outage-pepper-0123456789abcdef0123456789'
  let server: PostgresServer | undefined
  let store: PostgresKeyStore | undefined
  let gate: Gate | undefined

  before(async function () {
    skipWithoutPostgres(this, this.test?.parent?.title ?? 'PostgreSQL suite')
    server = await startPostgres()
  })

  after(async function () {
    try {
      await gate?.close()
      await store?.close()
    } finally {
      await server?.stop()
    }
  })

  function request(key: string): ReturnType<typeof fakeRequest> {
    return fakeRequest({ headers: { authorization: `Bearer ${key}` } })
  }

  it('fails closed with 503 while the server is down, and serves again after restart with the same store', async function () {
    const s = server as PostgresServer
    store = createPostgresKeyStore({ connectionString: s.url })
    const keys = createApiKeyManager({ store, pepper })
    const { key, record } = await keys.create({ name: 'outage', ownerId: 'svc' })
    gate = createGate({ apiKeys: { store, pepper, cache: false }, audit: false })
    const route = gate.compile({})
    expect((await gate.evaluate(request(key), route)).allowed).to.equal(true)

    await s.pause()
    const down = await rejection(store.get(record.id))
    expect(down).to.be.instanceOf(AuthError)
    expect(down.code).to.equal('ERR_KEYSTORE_UNAVAILABLE')
    expect(down.message).to.match(/^PostgreSQL key store unavailable: /)
    expect((await rejection(store.update(record.id, { name: 'x' }))).code).to.equal(
      'ERR_KEYSTORE_UNAVAILABLE',
    )
    expect(
      (await rejection(store.recordUsage([{ id: record.id, lastUsedAt: T0, count: 1 }]))).code,
    ).to.equal('ERR_KEYSTORE_UNAVAILABLE')
    const refused = denial(await gate.evaluate(request(key), route))
    expect(refused.status).to.equal(503)
    expect(refused.error.code).to.equal('ERR_KEYSTORE_UNAVAILABLE')

    await s.resume()
    expect((await store.get(record.id))?.name).to.equal('outage')
    expect((await gate.evaluate(request(key), route)).allowed).to.equal(true)
  })

  it('keeps cached keys working through an outage while uncached keys get 503, then resumes', async function () {
    const s = server as PostgresServer
    const own = createPostgresKeyStore({ connectionString: s.url, tablePrefix: 'cached_' })
    const keys = createApiKeyManager({ store: own, pepper })
    const warm = await keys.create({ name: 'warm', ownerId: 'svc' })
    const cold = await keys.create({ name: 'cold', ownerId: 'svc' })
    const cachedGate = createGate({ apiKeys: { store: own, pepper }, audit: false })
    try {
      const route = cachedGate.compile({})
      expect((await cachedGate.evaluate(request(warm.key), route)).allowed).to.equal(true)
      await s.pause()
      expect((await cachedGate.evaluate(request(warm.key), route)).allowed).to.equal(true)
      const refused = denial(await cachedGate.evaluate(request(cold.key), route))
      expect(refused.status).to.equal(503)
      expect(refused.error.code).to.equal('ERR_KEYSTORE_UNAVAILABLE')
      await s.resume()
      expect((await cachedGate.evaluate(request(cold.key), route)).allowed).to.equal(true)
    } finally {
      await cachedGate.close()
      await own.close()
    }
  })

  it('fails within the pool timeouts when the server hangs (network partition), then recovers', async function () {
    const s = server as PostgresServer
    const own = new pg.Pool({
      connectionString: s.url,
      max: 2,
      connectionTimeoutMillis: 300,
      query_timeout: 300,
    })
    const hung = createPostgresKeyStore({ pool: own })
    try {
      const record = buildKeyRecord()
      await hung.insert(record)
      await s.freeze()
      const started = Date.now()
      const error = await rejection(hung.get(record.id))
      expect(error.code).to.equal('ERR_KEYSTORE_UNAVAILABLE')
      expect(Date.now() - started).to.be.below(2_000)
      await s.thaw()
      let back: ApiKeyRecord | undefined
      for (let i = 0; i < 20 && back === undefined; i++) {
        back = await hung.get(record.id).catch(() => undefined)
        if (back === undefined) await new Promise((r) => setTimeout(r, 100))
      }
      expect(back).to.deep.equal(record)
    } finally {
      await s.thaw()
      await hung.close()
      await own.end()
    }
  })

  it('survives a crash (SIGKILL) of the server: 503 while down, then the pool reconnects', async function () {
    const s = server as PostgresServer
    const st = createPostgresKeyStore({ connectionString: s.url, tablePrefix: 'crash_' })
    try {
      const record = buildKeyRecord()
      await st.insert(record)
      await s.kill()
      expect((await rejection(st.get(record.id))).code).to.equal('ERR_KEYSTORE_UNAVAILABLE')
      await s.resume()
      expect(await st.get(record.id)).to.deep.equal(record)
    } finally {
      await st.close()
    }
  })

  it('starts while the database is down and migrates on the first call after it is up', async function () {
    const s = server as PostgresServer
    await s.pause()
    const late = createPostgresKeyStore({ connectionString: s.url, tablePrefix: 'late_' })
    try {
      expect((await rejection(late.ready())).code).to.equal('ERR_KEYSTORE_UNAVAILABLE')
      await s.resume()
      const record = buildKeyRecord()
      await late.insert(record)
      expect(await late.get(record.id)).to.deep.equal(record)
    } finally {
      await late.close()
    }
  })

  it('rejects every call with ERR_KEYSTORE_UNAVAILABLE once closed', async function () {
    const s = server as PostgresServer
    const closing = createPostgresKeyStore({ connectionString: s.url })
    await closing.close()
    await closing.close()
    expect((await rejection(closing.get(buildKeyRecord().id))).code).to.equal(
      'ERR_KEYSTORE_UNAVAILABLE',
    )
    expect((await rejection(closing.ready())).code).to.equal('ERR_KEYSTORE_UNAVAILABLE')
  })
})
