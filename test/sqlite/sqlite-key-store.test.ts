import { createHash } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect } from 'chai'
import sinon from 'sinon'
import Database from 'better-sqlite3'
import {
  createApiKeyManager,
  createGate,
  createMemoryBroker,
  isConfigError,
  type ApiKeyRecord,
  type AuthError,
  type Decision,
  type Gate,
  type UserID,
} from '@portcullis/core'
import { fakeRequest } from '@portcullis/core/testing'
import {
  DEFAULT_SQLITE_TABLE_PREFIX,
  SQLITE_SCHEMA_VERSION,
  createSqliteKeyStore,
  migrateSqlite,
  type SqliteKeyStore,
} from '@portcullis/sqlite'
import {
  buildKeyRecord,
  describeKeyStoreConformance,
  OPTIONAL_DEFAULTS,
  rejection,
  thrown,
} from '../helpers/key-store-conformance.js'

async function tempDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'portcullis-sqlite-'))
}

function tableNames(db: Database.Database): string[] {
  return db
    .prepare<[], string>("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
    .pluck()
    .all()
}

function denial(decision: Decision): { status: number; error: AuthError } {
  if (decision.allowed) throw new Error('expected the request to be denied, but it was allowed')
  return { status: decision.status, error: decision.error }
}

describeKeyStoreConformance('createSqliteKeyStore on a temporary file', async () => {
  const dir = await tempDir()
  const store = createSqliteKeyStore({ database: join(dir, 'keys.db') })
  return {
    store,
    cleanup: async () => {
      await store.close()
      await rm(dir, { recursive: true, force: true })
    },
  }
})

describeKeyStoreConformance("createSqliteKeyStore on a ':memory:' Database instance", async () => {
  const db = new Database(':memory:')
  const store = createSqliteKeyStore({ database: db })
  return {
    store,
    cleanup: async () => {
      await store.close()
      db.close()
    },
  }
})

describe('createSqliteKeyStore', function () {
  const sandbox = sinon.createSandbox()
  let dir: string
  let file: string
  const open: Array<{ close(): unknown }> = []

  /** A store on `file`, closed after the test. */
  function storeOn(database: string | Database.Database, tablePrefix?: string): SqliteKeyStore {
    const store = createSqliteKeyStore({
      database,
      ...(tablePrefix === undefined ? {} : { tablePrefix }),
    })
    open.push(store)
    return store
  }

  /** A raw connection to `file`, closed after the test. */
  function connect(path = file, options?: Database.Options): Database.Database {
    const db = new Database(path, options)
    open.push(db)
    return db
  }

  beforeEach(async function () {
    dir = await tempDir()
    file = join(dir, 'keys.db')
  })

  afterEach(async function () {
    sandbox.restore()
    for (const handle of open.splice(0).reverse()) await handle.close()
    await rm(dir, { recursive: true, force: true })
  })

  describe('migrations', function () {
    it('creates the schema once and applies nothing on reopen, keeping the data', async function () {
      const first = storeOn(file)
      const record = buildKeyRecord()
      await first.insert(record)
      await first.close()

      const second = storeOn(file)
      expect(await second.get(record.id)).to.deep.equal(record)
      await second.close()

      const db = connect()
      const rows = db.prepare(`SELECT version, name FROM portcullis_migrations`).all()
      expect(rows).to.deep.equal([
        { version: 1, name: 'create api_keys' },
        { version: 2, name: 'key lifecycle fields and hash index' },
      ])
      expect(migrateSqlite(db)).to.deep.equal({ applied: [], version: SQLITE_SCHEMA_VERSION })
    })

    it('reports the versions it applies to a fresh database', function () {
      const db = connect(':memory:')
      expect(migrateSqlite(db)).to.deep.equal({ applied: [1, 2], version: 2 })
      expect(tableNames(db)).to.deep.equal([
        'portcullis_api_key_hashes',
        'portcullis_api_keys',
        'portcullis_migrations',
      ])
      const indexes = db
        .prepare<[], string>(
          "SELECT name FROM sqlite_schema WHERE type = 'index' AND sql IS NOT NULL ORDER BY name",
        )
        .pluck()
        .all()
      expect(indexes).to.deep.equal([
        'portcullis_api_key_hashes_key_id',
        'portcullis_api_keys_owner_id',
        'portcullis_api_keys_status',
      ])
    })

    it('lets two stores on the same file migrate it once and see each other’s writes', async function () {
      const a = storeOn(file)
      const b = storeOn(file)
      const record = buildKeyRecord()
      await a.insert(record)
      expect(await b.get(record.id)).to.deep.equal(record)
      await b.update(record.id, { status: 'revoked', revokedAt: 1 })
      expect((await a.get(record.id))?.status).to.equal('revoked')
      const versions = connect().prepare('SELECT COUNT(*) AS n FROM portcullis_migrations').get()
      expect(versions).to.deep.equal({ n: 2 })
    })

    it('upgrades a version-1 database in place: defaults for new columns, hashes indexed', async function () {
      const db = connect()
      // The schema and a row exactly as @portcullis/sqlite 0.1.0 (migration 1) wrote them.
      db.exec(`
        CREATE TABLE portcullis_migrations (version INTEGER NOT NULL PRIMARY KEY, name TEXT NOT NULL,
          applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))) STRICT;
        CREATE TABLE portcullis_api_keys (id TEXT NOT NULL PRIMARY KEY, prefix TEXT NOT NULL,
          name TEXT NOT NULL, owner_id TEXT NOT NULL, scopes TEXT NOT NULL, roles TEXT NOT NULL,
          status TEXT NOT NULL CHECK (status IN ('active', 'revoked')), hashes TEXT NOT NULL,
          created_at INTEGER NOT NULL, expires_at INTEGER, revoked_at INTEGER,
          metadata TEXT NOT NULL) STRICT;
        INSERT INTO portcullis_migrations (version, name) VALUES (1, 'create api_keys');
      `)
      const record = buildKeyRecord()
      const hash = record.hashes[0]?.hash as string
      db.prepare(
        `INSERT INTO portcullis_api_keys VALUES (?, 'ptcl', 'v1 key', 'user-1', '[]', '[]', 'active',
           ?, 1, NULL, NULL, '{}')`,
      ).run(record.id, JSON.stringify(record.hashes))
      db.prepare(
        `INSERT INTO portcullis_api_keys VALUES ('corruptcorrupt00', 'ptcl', 'bad', 'u', '[]', '[]',
           'active', 'not json', 1, NULL, NULL, '{}')`,
      ).run()
      expect(migrateSqlite(db)).to.deep.equal({ applied: [2], version: 2 })
      const store = storeOn(db)
      const got = await store.findByHash?.(hash as never)
      expect(got).to.deep.include({
        id: record.id,
        name: 'v1 key',
        ...OPTIONAL_DEFAULTS,
      })
    })

    it('refuses with ERR_CONFIG_INVALID a database whose schema is newer than it knows', function () {
      const db = connect()
      migrateSqlite(db)
      db.prepare(
        `INSERT INTO portcullis_migrations (version, name) VALUES (99, 'from the future')`,
      ).run()
      const error = thrown(() => storeOn(db))
      expect(isConfigError(error)).to.equal(true)
      expect(error.message).to.include('99')
    })

    it('puts a file it opens in WAL mode', async function () {
      storeOn(file)
      expect(connect().pragma('journal_mode', { simple: true })).to.equal('wal')
    })

    it('leaves the pragmas of a database it was given alone, and leaves it open on close()', async function () {
      const db = connect()
      const store = storeOn(db)
      await store.close()
      expect(db.open).to.equal(true)
      expect(db.pragma('journal_mode', { simple: true })).to.equal('delete')
    })
  })

  describe('tablePrefix', function () {
    it("defaults to 'portcullis_'", function () {
      const db = connect()
      storeOn(db)
      expect(DEFAULT_SQLITE_TABLE_PREFIX).to.equal('portcullis_')
      expect(tableNames(db)).to.deep.equal([
        'portcullis_api_key_hashes',
        'portcullis_api_keys',
        'portcullis_migrations',
      ])
    })

    it('names every table and index, so two prefixes are two independent stores', async function () {
      const db = connect()
      const acme = storeOn(db, 'acme_')
      const other = storeOn(db, 'other_')
      expect(tableNames(db)).to.deep.equal([
        'acme_api_key_hashes',
        'acme_api_keys',
        'acme_migrations',
        'other_api_key_hashes',
        'other_api_keys',
        'other_migrations',
      ])
      const record = buildKeyRecord()
      await acme.insert(record)
      expect(await acme.get(record.id)).to.deep.equal(record)
      expect(await other.get(record.id)).to.equal(undefined)
    })

    for (const bad of [
      'Portcullis_',
      '1keys_',
      'keys-',
      'x"; DROP TABLE t; --',
      '',
      'sqlite_',
      42,
    ]) {
      it(`throws ERR_CONFIG_INVALID naming the option for tablePrefix ${JSON.stringify(bad)}`, function () {
        const db = connect()
        const error = thrown(() =>
          createSqliteKeyStore({ database: db, tablePrefix: bad as string }),
        )
        expect(error.code).to.equal('ERR_CONFIG_INVALID')
        expect(isConfigError(error)).to.equal(true)
        expect(error.message).to.match(/^tablePrefix: /)
        expect(tableNames(db)).to.deep.equal([])
      })
    }

    it('validates the prefix given to migrateSqlite too', function () {
      const error = thrown(() => migrateSqlite(connect(':memory:'), { tablePrefix: 'Bad' }))
      expect(error.code).to.equal('ERR_CONFIG_INVALID')
    })
  })

  describe('options', function () {
    it('throws ERR_CONFIG_INVALID without a database', function () {
      const error = thrown(() => createSqliteKeyStore({} as never))
      expect(error.code).to.equal('ERR_CONFIG_INVALID')
      expect(error.message).to.match(/^database: /)
    })

    it('throws ERR_CONFIG_INVALID for something that is not a database', function () {
      const error = thrown(() => createSqliteKeyStore({ database: { query() {} } as never }))
      expect(error.code).to.equal('ERR_CONFIG_INVALID')
      expect(error.message).to.include('better-sqlite3 Database')
    })

    it('throws ERR_CONFIG_INVALID for a closed or read-only database', function () {
      const closed = new Database(':memory:')
      closed.close()
      expect(thrown(() => createSqliteKeyStore({ database: closed })).code).to.equal(
        'ERR_CONFIG_INVALID',
      )
      connect().close()
      const readonly = connect(file, { readonly: true })
      const error = thrown(() => createSqliteKeyStore({ database: readonly }))
      expect(error.code).to.equal('ERR_CONFIG_INVALID')
      expect(error.message).to.include('read-only')
    })

    it('throws ERR_CONFIG_INVALID when the file cannot be opened', function () {
      const error = thrown(() =>
        createSqliteKeyStore({ database: join(dir, 'missing', 'deeper', 'keys.db') }),
      )
      expect(error.code).to.equal('ERR_CONFIG_INVALID')
      expect(error.message).to.match(/^database: cannot open/)
    })

    it('warns through the logger about an unknown option, suggesting the right name', function () {
      const logger = { warn: sandbox.spy(), error: sandbox.spy() }
      const store = createSqliteKeyStore({
        database: ':memory:',
        tablePrefx: 'x_',
        logger,
      } as never)
      open.push(store)
      sinon.assert.calledOnce(logger.warn)
      expect(logger.warn.firstCall.args[0]).to.deep.equal({})
      expect(logger.warn.firstCall.args[1]).to.include('did you mean "tablePrefix"')
    })
  })

  describe('records', function () {
    it('rejects get with ERR_KEYSTORE_UNAVAILABLE when a row holds invalid JSON', async function () {
      const db = connect()
      const store = storeOn(db)
      const record = buildKeyRecord()
      await store.insert(record)
      db.prepare('UPDATE portcullis_api_keys SET scopes = ? WHERE id = ?').run(
        '["a:b", tru',
        record.id,
      )
      const error = await rejection(store.get(record.id))
      expect(error).to.be.instanceOf(Error)
      expect(error.code).to.equal('ERR_KEYSTORE_UNAVAILABLE')
      expect(error.message).to.include(record.id).and.include('scopes')
      expect((await rejection(store.list())).code).to.equal('ERR_KEYSTORE_UNAVAILABLE')
      expect((await rejection(store.update(record.id, { name: 'x' }))).code).to.equal(
        'ERR_KEYSTORE_UNAVAILABLE',
      )
    })

    for (const [column, value] of [
      ['hashes', '{"hash":"x"}'],
      ['hashes', '[{"hash":"x","pepperId":"p1"}]'],
      ['roles', '[1, 2]'],
      ['metadata', '[]'],
      ['metadata', 'null'],
    ] as const) {
      it(`rejects get when ${column} holds valid JSON of the wrong shape (${value})`, async function () {
        const db = connect()
        const store = storeOn(db)
        const record = buildKeyRecord()
        await store.insert(record)
        db.prepare(`UPDATE portcullis_api_keys SET ${column} = ? WHERE id = ?`).run(
          value,
          record.id,
        )
        expect((await rejection(store.get(record.id))).code).to.equal('ERR_KEYSTORE_UNAVAILABLE')
      })
    }

    it('refuses on insert a record that would not read back, storing nothing', async function () {
      const store = storeOn(file)
      const cases: Array<Partial<ApiKeyRecord>> = [
        { metadata: { when: new Date(0) } },
        { metadata: { ratio: Number.NaN } },
        { metadata: { big: 1n } as never },
        { scopes: ['ok', 3] as never },
        { createdAt: 1.5 },
        { status: 'paused' as never },
        { name: 'lone \ud800 surrogate' },
      ]
      for (const overrides of cases) {
        const record = buildKeyRecord(overrides as never)
        expect(await rejection(store.insert(record))).to.be.instanceOf(TypeError)
        expect(await store.get(record.id)).to.equal(undefined)
      }
      expect((await store.list()).items).to.deep.equal([])
    })

    it('drops metadata members set to undefined, as JSON does', async function () {
      const store = storeOn(file)
      const record = buildKeyRecord({ metadata: { plan: 'pro', note: undefined } })
      await store.insert(record)
      expect((await store.get(record.id))?.metadata).to.deep.equal({ plan: 'pro' })
    })

    it('ignores fields outside ApiKeyPatch in update', async function () {
      const store = storeOn(file)
      const record = buildKeyRecord()
      await store.insert(record)
      const patch = { id: 'ZZZZZZZZZZZZZZZZ', ownerId: 'mallory', createdAt: 0, name: 'n' }
      const updated = await store.update(record.id, patch as never)
      expect(updated).to.deep.equal({ ...record, name: 'n' })
      expect(await store.get(record.id)).to.deep.equal({ ...record, name: 'n' })
    })

    it('rolls back an update whose patch is invalid', async function () {
      const store = storeOn(file)
      const record = buildKeyRecord()
      await store.insert(record)
      const error = await rejection(store.update(record.id, { name: 'n', scopes: 'a:b' as never }))
      expect(error).to.be.instanceOf(TypeError)
      expect(await store.get(record.id)).to.deep.equal(record)
    })

    it('returns numbers even when the caller’s database defaults to BigInt integers', async function () {
      const db = connect()
      db.defaultSafeIntegers(true)
      const store = storeOn(db)
      const record = buildKeyRecord({ expiresAt: Date.UTC(2027, 0, 1) })
      await store.insert(record)
      expect(await store.get(record.id)).to.deep.equal(record)
    })

    it('lowers a limit above 1000 to 1000 and rejects a limit below 1', async function () {
      const db = connect()
      const store = storeOn(db)
      const template = buildKeyRecord({ id: 'zzzzzzzzzzzzzzzz' as never })
      await store.insert(template)
      const copy = db.prepare<[number, string]>(
        `INSERT INTO portcullis_api_keys SELECT printf('%016d', ?), prefix, name, owner_id, scopes,
           roles, status, hashes, created_at, expires_at, revoked_at, metadata, tags, purpose,
           environment, policy, rotated_at, last_used_at, usage_count
         FROM portcullis_api_keys WHERE id = ?`,
      )
      db.transaction(() => {
        for (let i = 0; i < 1001; i++) copy.run(i, template.id)
      })()
      const page = await store.list({ limit: 5000 })
      expect(page.items).to.have.length(1000)
      expect(page.nextCursor).to.equal(page.items.at(-1)?.id)
      expect(await rejection(store.list({ limit: 0 }))).to.be.instanceOf(RangeError)
      expect(await rejection(store.list({ status: 'revoke' as never }))).to.be.instanceOf(TypeError)
    })

    it('rejects every method with ERR_KEYSTORE_UNAVAILABLE after close(), which is idempotent', async function () {
      const store = storeOn(file)
      const record = buildKeyRecord()
      await store.insert(record)
      await store.close()
      await store.close()
      for (const call of [
        () => store.get(record.id),
        () => store.insert(buildKeyRecord()),
        () => store.update(record.id, { name: 'x' }),
        () => store.delete(record.id),
        () => store.list(),
      ]) {
        expect((await rejection(call())).code).to.equal('ERR_KEYSTORE_UNAVAILABLE')
      }
    })
  })

  describe('with the gate and the key manager', function () {
    const pepper = 'e2e-pepper-0123456789abcdef0123456789'
    let gate: Gate | undefined

    afterEach(async function () {
      await gate?.close()
      gate = undefined
    })

    function bearer(key: string): ReturnType<typeof fakeRequest> {
      return fakeRequest({ url: '/documents', headers: { authorization: `Bearer ${key}` } })
    }

    it('accepts a key created through the manager and refuses it once revoked', async function () {
      const store = storeOn(file)
      const broker = createMemoryBroker()
      const keys = createApiKeyManager({ store, pepper, broker })
      gate = createGate({ apiKeys: { store, pepper }, broker, audit: false })
      const { key, record } = await keys.create({
        name: 'ci',
        ownerId: 'svc-ci',
        scopes: ['documents:read'],
        metadata: { team: 'platform' },
      })

      const allowed = await gate.evaluate(bearer(key), gate.compile({}))
      expect(allowed.allowed).to.equal(true)
      expect(allowed.status).to.equal(200)
      expect(allowed.principal).to.include({ id: 'svc-ci' as UserID, method: 'apikey' })
      const viaHeader = await gate.evaluate(
        fakeRequest({ headers: { 'x-api-key': key } }),
        gate.compile({ scopes: ['documents:read'] }),
      )
      expect(viaHeader.allowed).to.equal(true)

      await keys.revoke(record.id)
      const refused = denial(await gate.evaluate(bearer(key), gate.compile({})))
      expect(refused.status).to.equal(401)
      expect(refused.error.code).to.equal('ERR_APIKEY_INVALID')
      expect((await store.get(record.id))?.status).to.equal('revoked')
    })

    it('accepts a key after the store is reopened from the same file', async function () {
      const first = storeOn(file)
      const { key } = await createApiKeyManager({ store: first, pepper }).create({
        name: 'survivor',
        ownerId: 'svc-ci',
      })
      await first.close()

      const store = storeOn(file)
      gate = createGate({ apiKeys: { store, pepper }, audit: false })
      expect((await gate.evaluate(bearer(key), gate.compile({}))).allowed).to.equal(true)
    })

    it('verifies imported keys by hash, re-hashes a bare SHA-256 and records usage on close', async function () {
      const store = storeOn(file)
      const keys = createApiKeyManager({ store, pepper })
      const legacy = 'sk_live_legacy-0123456789abcdef'
      const other = 'old-system-token-0123456789'
      const plain = await keys.import({ key: legacy, name: 'p', ownerId: 'u', tags: ['migrated'] })
      const hashed = await keys.import({
        sha256: createHash('sha256').update(other).digest('hex'),
        name: 'h',
        ownerId: 'u',
        tags: ['migrated'],
      })
      expect((await keys.list({ tag: 'migrated' })).items).to.have.length(2)
      gate = createGate({ apiKeys: { store, pepper, importedKeys: true }, audit: false })
      const route = gate.compile({})
      for (let i = 0; i < 3; i++) {
        expect((await gate.evaluate(bearer(legacy), route)).allowed).to.equal(true)
        expect((await gate.evaluate(bearer(other), route)).allowed).to.equal(true)
      }
      const wrong = await gate.evaluate(bearer('sk_live_legacy-0123456789abcdeX'), route)
      expect(denial(wrong)).to.deep.include({ status: 401 })
      await gate.close()
      gate = undefined
      expect(await store.get(plain.id)).to.include({ usageCount: 3 })
      const after = (await store.get(hashed.id)) as ApiKeyRecord
      expect(after.usageCount).to.equal(3)
      expect(after.hashes[0]?.algorithm).to.equal(undefined)
      expect((await store.findByHash?.(after.hashes[0]?.hash as never))?.id).to.equal(hashed.id)
    })

    it('answers 503 ERR_KEYSTORE_UNAVAILABLE for a key whose row is corrupt', async function () {
      const db = connect()
      const store = storeOn(db)
      const { key, record } = await createApiKeyManager({ store, pepper }).create({
        name: 'corrupt',
        ownerId: 'svc-ci',
      })
      db.prepare('UPDATE portcullis_api_keys SET hashes = ? WHERE id = ?').run(
        'not json',
        record.id,
      )
      gate = createGate({ apiKeys: { store, pepper }, audit: false })
      const refused = denial(await gate.evaluate(bearer(key), gate.compile({})))
      expect(refused.status).to.equal(503)
      expect(refused.error.code).to.equal('ERR_KEYSTORE_UNAVAILABLE')
    })
  })
})
