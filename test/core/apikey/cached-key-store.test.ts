import { expect } from 'chai'
import sinon from 'sinon'
import {
  ConfigError,
  createApiKeyManager,
  createCachedKeyStore,
  createGate,
  createLruCache,
  createMemoryBroker,
  createMemoryKeyStore,
  createTieredCache,
  generateApiKey,
  type ApiKeyHash,
  type ApiKeyId,
  type ApiKeyRecord,
  type KeyStore,
} from '@portcullis/core'
import { createFakeClock, fakeRequest } from '@portcullis/core/testing'
import { createRecordingMetrics } from '../../helpers/recording-metrics.js'

const PEPPER = 'p'.repeat(32)

/** A real memory store whose reads can be made to fail (an outage) and are counted. */
function outageStore() {
  const inner = createMemoryKeyStore()
  const state = { down: false, gets: 0, findByHash: 0 }
  const down = (): void => {
    if (state.down) throw new Error('connection refused')
  }
  const store: KeyStore = {
    async get(id) {
      state.gets++
      down()
      return inner.get(id)
    },
    insert: (r) => inner.insert(r),
    update: (id, p) => inner.update(id, p),
    delete: (id) => inner.delete(id),
    list: (q) => inner.list(q),
    async findByHash(hash: ApiKeyHash) {
      state.findByHash++
      down()
      for (let cursor: string | undefined; ;) {
        const page = await inner.list({ limit: 1000, ...(cursor ? { cursor } : {}) })
        const hit = page.items.find((r) => r.hashes.some((h) => h.hash === hash))
        if (hit !== undefined || page.nextCursor === null) return hit
        cursor = page.nextCursor
      }
    },
  }
  return { store, state }
}

const unknownId = (): ApiKeyId => generateApiKey({ prefix: 'ptcl' }).id

describe('createCachedKeyStore', () => {
  const sandbox = sinon.createSandbox()
  afterEach(() => sandbox.restore())

  async function setup(options: { maxNegative?: number; ttlMs?: number } = {}) {
    const clock = createFakeClock()
    const { store, state } = outageStore()
    const broker = createMemoryBroker()
    const metrics = createRecordingMetrics()
    const cached = createCachedKeyStore({ store, broker, now: clock, metrics, ...options })
    const manager = createApiKeyManager({ store, pepper: PEPPER, broker, now: clock })
    const { key, record } = await manager.create({ name: 'k', ownerId: 'u1' })
    return { clock, store, state, broker, metrics, cached, manager, key, record }
  }

  it('serves repeated reads from the cache: one store read per key per TTL', async () => {
    const { cached, state, record, clock, metrics } = await setup()
    expect((await cached.get(record.id))?.name).to.equal('k')
    expect((await cached.get(record.id))?.name).to.equal('k')
    expect((await cached.get(record.id))?.name).to.equal('k')
    expect(state.gets).to.equal(1)
    expect(metrics.count('keyCacheLookups', { cache: 'keystore', result: 'hit' })).to.equal(2)
    expect(metrics.count('keyCacheLookups', { cache: 'keystore', result: 'miss' })).to.equal(1)
    clock.advance(60_001)
    await cached.get(record.id)
    expect(state.gets).to.equal(2)
  })

  it('fills a shared tiered cache without telling the other instances to drop their copies', async () => {
    const { store, state, broker, record } = await setup()
    const remote = createLruCache<ApiKeyRecord>({ max: 100 })
    const instance = () =>
      createCachedKeyStore({
        store,
        broker,
        cache: createTieredCache({
          local: createLruCache<ApiKeyRecord>({ max: 100 }),
          remote,
          broker,
          namespace: 'keys',
        }),
      })
    const invalidations: unknown[] = []
    broker.subscribe('cache.invalidated', (m) => invalidations.push(m))
    const [a, b, c] = [instance(), instance(), instance()]
    for (const s of [a, b, c]) expect((await s.get(record.id))?.id).to.equal(record.id)
    expect(invalidations).to.deep.equal([])
    // The first read filled the shared tier; the others found it there.
    expect(state.gets).to.equal(1)
    // A change still reaches every instance.
    await a.update(record.id, { name: 'renamed' })
    expect(invalidations).to.have.length(1)
    expect((await c.get(record.id))?.name).to.equal('renamed')
  })

  it('remembers unknown ids for negativeTtlMs, at most maxNegative of them', async () => {
    const { cached, state, clock, metrics } = await setup({ maxNegative: 2 })
    const [a, b, c] = [unknownId(), unknownId(), unknownId()]
    for (const id of [a, b, c]) expect(await cached.get(id)).to.equal(undefined)
    expect(state.gets).to.equal(3)
    // b and c are remembered; a was evicted by the bound.
    await cached.get(b)
    await cached.get(c)
    expect(state.gets).to.equal(3)
    expect(
      metrics.count('keyCacheLookups', { cache: 'keystore', result: 'negative_hit' }),
    ).to.equal(2)
    await cached.get(a)
    expect(state.gets).to.equal(4)
    clock.advance(10_001)
    await cached.get(c)
    expect(state.gets).to.equal(5)
  })

  it('keeps a guessing flood of one unknown id away from the store', async () => {
    const { cached, state } = await setup()
    const id = unknownId()
    await Promise.all(Array.from({ length: 50 }, () => cached.get(id)))
    const before = state.gets
    for (let i = 0; i < 1000; i++) await cached.get(id)
    expect(state.gets).to.equal(before)
  })

  it('turns negative caching off with maxNegative: 0', async () => {
    const { cached, state } = await setup({ maxNegative: 0 })
    const id = unknownId()
    await cached.get(id)
    await cached.get(id)
    expect(state.gets).to.equal(2)
  })

  it('drops the cached copy on every instance when a key is revoked through the broker', async () => {
    const { store, broker, manager, record, clock } = await setup()
    const instances = [1, 2, 3].map(() => createCachedKeyStore({ store, broker, now: clock }))
    for (const i of instances) expect((await i.get(record.id))?.status).to.equal('active')
    await manager.revoke(record.id)
    for (const i of instances) expect((await i.get(record.id))?.status).to.equal('revoked')
    await manager.update(record.id, { name: 'renamed' })
    for (const i of instances) expect((await i.get(record.id))?.name).to.equal('renamed')
    await manager.delete(record.id)
    for (const i of instances) expect(await i.get(record.id)).to.equal(undefined)
  })

  it('forgets a cached miss when key.created arrives for that id', async () => {
    const { cached, broker, state } = await setup()
    const id = unknownId()
    await cached.get(id)
    await broker.publish('key.created', { keyId: id })
    await cached.get(id)
    expect(state.gets).to.equal(2)
  })

  it('writes through to the store and drops its own cached copy and cached miss', async () => {
    const { cached, store, record } = await setup()
    await cached.get(record.id)
    const updated = await cached.update(record.id, { name: 'new' })
    expect(updated?.name).to.equal('new')
    expect((await cached.get(record.id))?.name).to.equal('new')
    expect((await store.get(record.id))?.name).to.equal('new')

    const fresh: ApiKeyRecord = { ...record, id: unknownId() }
    expect(await cached.get(fresh.id)).to.equal(undefined)
    await cached.insert(fresh)
    expect((await cached.get(fresh.id))?.id).to.equal(fresh.id)
    expect(await cached.delete(fresh.id)).to.equal(true)
    expect(await cached.get(fresh.id)).to.equal(undefined)
    expect((await cached.list()).items.map((r) => r.id)).to.deep.equal([record.id])
  })

  it('does not cache a store read that straddles an invalidation', async () => {
    const { store, broker, manager, record, clock } = await setup()
    let release: () => void = () => {}
    const gate = new Promise<void>((r) => (release = r))
    const slow: KeyStore = {
      ...store,
      async get(id) {
        const r = await store.get(id) // read before the revocation commits
        await gate
        return r
      },
    }
    const cached = createCachedKeyStore({ store: slow, broker, now: clock })
    const pending = cached.get(record.id)
    await new Promise((r) => setImmediate(r))
    await manager.revoke(record.id)
    release()
    expect((await pending)?.status).to.equal('active') // the read's own answer
    expect((await cached.get(record.id))?.status).to.equal('revoked') // not cached
  })

  describe('during a store outage', () => {
    it('keeps cached keys working until their TTL, then fails; unknown ids reject', async () => {
      const { cached, state, record, clock, metrics } = await setup({ ttlMs: 5_000 })
      await cached.get(record.id)
      state.down = true
      clock.advance(4_000)
      expect((await cached.get(record.id))?.id).to.equal(record.id)
      await cached.get(unknownId()).then(
        () => expect.fail('an unknown id must not be answered during an outage'),
        (e: Error) => expect(e.message).to.equal('connection refused'),
      )
      clock.advance(1_001)
      await cached.get(record.id).then(
        () => expect.fail('expired entries must not outlive their TTL'),
        (e: Error) => expect(e.message).to.equal('connection refused'),
      )
      expect(metrics.count('storeFailures', { store: 'keystore' })).to.equal(2)
      state.down = false
      expect((await cached.get(record.id))?.id).to.equal(record.id)
    })

    it('lets the gate serve cached keys and answer 503 ERR_KEYSTORE_UNAVAILABLE for others', async () => {
      const { cached, state, manager, key, clock } = await setup()
      const other = await manager.create({ name: 'other', ownerId: 'u2' })
      // The verifier's own cache is off, so every request reaches the cached store.
      const gate = createGate({
        apiKeys: { store: cached, pepper: PEPPER, cache: false },
        now: clock,
      })
      const hit = (k: string) => gate.evaluate(fakeRequest({ headers: { 'x-api-key': k } }))
      expect((await hit(key)).status).to.equal(200)
      state.down = true
      expect((await hit(key)).status).to.equal(200)
      const refused = await hit(other.key)
      expect(refused.status).to.equal(503)
      if (!refused.allowed) expect(refused.error.code).to.equal('ERR_KEYSTORE_UNAVAILABLE')
      state.down = false
      expect((await hit(other.key)).status).to.equal(200)
      await gate.close()
    })
  })

  it('caches findByHash, and re-reads when the cached key no longer holds the hash', async () => {
    const { cached, state, record, manager } = await setup()
    const hash = record.hashes[0]!.hash
    expect((await cached.findByHash!(hash))?.id).to.equal(record.id)
    expect((await cached.findByHash!(hash))?.id).to.equal(record.id)
    expect(state.findByHash).to.equal(1)
    const unknown = 'x'.repeat(43) as ApiKeyHash
    await cached.findByHash!(unknown)
    await cached.findByHash!(unknown)
    expect(state.findByHash).to.equal(2)
    // Rotation without grace replaces the hash: the old one must no longer find the key.
    await manager.rotate(record.id)
    await cached.invalidate(record.id)
    expect(await cached.findByHash!(hash)).to.equal(undefined)
  })

  it('offers findByHash and recordUsage only when the wrapped store has them', () => {
    const { store } = outageStore()
    const { findByHash, recordUsage, ...basic } = { ...store, recordUsage: async () => {} }
    expect(findByHash).to.be.a('function')
    const plain = createCachedKeyStore({ store: basic })
    expect([plain.findByHash, plain.recordUsage]).to.deep.equal([undefined, undefined])
    const full = createCachedKeyStore({ store: { ...basic, findByHash, recordUsage } })
    expect(full.findByHash).to.be.a('function')
    expect(full.recordUsage).to.be.a('function')
  })

  it('reads a cache holding something else under a key id as a miss', async () => {
    const { store, record, state } = await setup()
    const cache = createLruCache<ApiKeyRecord>()
    cache.set(record.id, { id: 'someone-else' } as unknown as ApiKeyRecord)
    const warnings: [Readonly<Record<string, unknown>>, string][] = []
    const cached = createCachedKeyStore({
      store,
      cache,
      logger: { warn: (f, m) => warnings.push([f, m]), error: () => {} },
    })
    expect((await cached.get(record.id))?.id).to.equal(record.id)
    expect(state.gets).to.equal(1)
    expect(warnings[0]?.[1]).to.match(/not this key/)
    expect(warnings[0]?.[0]).to.include({ keyId: record.id })
  })

  it('reads a failing cache as a miss and serves from the store', async () => {
    const { store, record } = await setup()
    const metrics = createRecordingMetrics()
    const cached = createCachedKeyStore({
      store,
      metrics,
      cache: {
        get: () => Promise.reject(new Error('redis down')),
        set: () => Promise.reject(new Error('redis down')),
        delete: () => Promise.reject(new Error('redis down')),
      },
    })
    expect((await cached.get(record.id))?.id).to.equal(record.id)
    expect(metrics.count('storeFailures', { store: 'cache' })).to.equal(2) // read and fill
  })

  it('stops listening to the broker and closes the wrapped store on close()', async () => {
    const { store, broker, record, manager } = await setup()
    const close = sandbox.spy()
    const cached = createCachedKeyStore({ store: { ...store, close: async () => close() }, broker })
    await cached.get(record.id)
    await cached.close()
    expect(close.calledOnce).to.equal(true)
    await manager.revoke(record.id)
    expect((await cached.get(record.id))?.status).to.equal('active')
  })

  it('refuses bad options with ConfigError naming the option', () => {
    const store = createMemoryKeyStore()
    expect(() => createCachedKeyStore({ store: {} as never }))
      .to.throw(ConfigError)
      .with.property('message')
      .that.matches(/cachedKeyStore\.store: must implement KeyStore/)
    expect(() => createCachedKeyStore({ store, ttlMs: 0 })).to.throw(/cachedKeyStore\.ttlMs/)
    expect(() => createCachedKeyStore({ store, maxNegative: -1 })).to.throw(
      /cachedKeyStore\.maxNegative/,
    )
    expect(() => createCachedKeyStore({ store, cache: {} as never })).to.throw(
      /cachedKeyStore\.cache: must be a CacheClient/,
    )
    const warnings: string[] = []
    createCachedKeyStore({
      store,
      ttl: 5,
      logger: { warn: (_f: object, m: string) => warnings.push(m), error: () => {} },
    } as never)
    expect(warnings[0]).to.match(/unknown option "ttl"; did you mean "ttlMs"\?/)
  })
})
