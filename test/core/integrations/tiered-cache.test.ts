import { expect } from 'chai'
import {
  ConfigError,
  createLruCache,
  createMemoryBroker,
  createTieredCache,
  type CacheClient,
  type CacheSetOptions,
} from '@portcullis/core'
import { createFakeClock } from '@portcullis/core/testing'
import { createRecordingMetrics } from '../../helpers/recording-metrics.js'

/** A shared remote tier in memory: asynchronous like Redis, counting reads, able to fail. */
function memoryRemote<TValue>() {
  const lru = createLruCache<TValue>({ max: 1000 })
  const state = { reads: 0, failing: false }
  const guard = async (): Promise<void> => {
    if (state.failing) throw new Error('remote down')
  }
  const remote: CacheClient<TValue> = {
    async get(key: string) {
      state.reads++
      await guard()
      return lru.get(key)
    },
    async set(key: string, value: TValue, options?: CacheSetOptions) {
      await guard()
      lru.set(key, value, options)
    },
    async delete(key: string) {
      await guard()
      lru.delete(key)
    },
    async clear() {
      await guard()
      lru.clear()
    },
  }
  return { remote, state }
}

describe('createTieredCache', () => {
  function twoInstances(options: { localTtlMs?: number } = {}) {
    const broker = createMemoryBroker()
    const { remote, state } = memoryRemote<string>()
    const make = () =>
      createTieredCache<string>({
        local: createLruCache<string>({ max: 100 }),
        remote,
        broker,
        namespace: 'profiles',
        ...options,
      })
    return { a: make(), b: make(), remote, state, broker }
  }

  it('serves a local hit synchronously, without reading the remote tier', async () => {
    const { a, state } = twoInstances()
    await a.set('k', 'v')
    const hit = a.get('k')
    expect(hit).to.equal('v') // not a promise
    expect(state.reads).to.equal(0)
  })

  it('fills the local tier from the remote tier on a miss', async () => {
    const { a, b, state } = twoInstances()
    await a.set('k', 'v')
    expect(await b.get('k')).to.equal('v')
    expect(state.reads).to.equal(1)
    expect(b.get('k')).to.equal('v')
    expect(state.reads).to.equal(1)
  })

  it("drops other instances' local copies on set and delete, through the broker", async () => {
    const { a, b } = twoInstances()
    await a.set('k', 'v1')
    expect(await b.get('k')).to.equal('v1')
    await a.set('k', 'v2')
    expect(await b.get('k')).to.equal('v2')
    await b.delete('k')
    expect(await a.get('k')).to.equal(undefined)
  })

  it("stores a fill in both tiers without dropping other instances' copies", async () => {
    const { a, b, remote, state, broker } = twoInstances()
    const heard: unknown[] = []
    broker.subscribe('cache.invalidated', (m) => heard.push(m))
    await b.set('k', 'v1')
    expect(heard).to.have.length(1)
    await a.set('k', 'v1', { fill: true, ttlMs: 60_000 })
    expect(heard).to.have.length(1)
    state.reads = 0
    // Both answer from their local tier: b's copy survived a's fill.
    expect(a.get('k')).to.equal('v1')
    expect(b.get('k')).to.equal('v1')
    expect(state.reads).to.equal(0)
    await a.set('k', 'v2')
    expect(heard).to.have.length(2)
    expect(await b.get('k')).to.equal('v2')
    expect(await remote.get('k')).to.equal('v2')
  })

  it('ignores invalidations of other namespaces and its own', async () => {
    const { a, b, broker, state } = twoInstances()
    await a.set('k', 'v')
    expect(await b.get('k')).to.equal('v')
    const reads = state.reads
    await broker.publish('cache.invalidated', { namespace: 'other', key: 'k', origin: 'x' })
    await broker.publish('cache.invalidated', {
      namespace: 'profiles',
      key: 'k',
      origin: b.instanceId,
    })
    expect(b.get('k')).to.equal('v')
    expect(state.reads).to.equal(reads)
  })

  it('clears every instance on clear()', async () => {
    const { a, b } = twoInstances()
    await a.set('k', 'v')
    expect(await b.get('k')).to.equal('v')
    await a.clear()
    expect(await b.get('k')).to.equal(undefined)
  })

  it('does not fill the local tier with a remote read that straddles an invalidation', async () => {
    const { a, b } = twoInstances()
    await a.set('k', 'old')
    const pending = b.get('k') // reads the remote tier: 'old'
    await a.set('k', 'new') // the invalidation reaches b while its read is in flight
    expect(await pending).to.equal('old')
    expect(await b.get('k')).to.equal('new')
  })

  it('reads a failing remote tier as a miss, with a metric and a warning', async () => {
    const metrics = createRecordingMetrics()
    const warnings: [Readonly<Record<string, unknown>>, string][] = []
    const { remote, state } = memoryRemote<string>()
    const cache = createTieredCache<string>({
      local: createLruCache<string>(),
      remote,
      broker: createMemoryBroker(),
      namespace: 'n',
      metrics,
      logger: { warn: (f, m) => warnings.push([f, m]), error: () => {} },
    })
    state.failing = true
    expect(await cache.get('k')).to.equal(undefined)
    expect(metrics.count('storeFailures', { store: 'cache' })).to.equal(1)
    expect(warnings[0]?.[1]).to.equal('tiered cache n: remote cache read failed; treated as a miss')
    expect(warnings[0]?.[0]).to.deep.equal({ key: 'k', error: 'remote down' })
  })

  it('still invalidates other instances when the remote write fails, then rejects', async () => {
    const { a, b, state } = twoInstances()
    await a.set('k', 'v1')
    expect(await b.get('k')).to.equal('v1')
    state.failing = true
    await a.delete('k').then(
      () => expect.fail('should reject'),
      (e: Error) => expect(e.message).to.equal('remote down'),
    )
    state.failing = false
    // b's local copy is gone; it reads the remote tier again.
    const reads = state.reads
    await b.get('k')
    expect(state.reads).to.equal(reads + 1)
  })

  it('keeps local copies no longer than localTtlMs (the bound when a message is lost)', async () => {
    const clock = createFakeClock()
    const { remote, state } = memoryRemote<string>()
    const cache = createTieredCache<string>({
      local: createLruCache<string>({ now: clock }),
      remote,
      broker: createMemoryBroker(),
      namespace: 'n',
      localTtlMs: 500,
    })
    await cache.set('k', 'v', { ttlMs: 60_000 })
    clock.advance(499)
    expect(cache.get('k')).to.equal('v')
    clock.advance(2)
    expect(await cache.get('k')).to.equal('v') // from the remote tier
    expect(state.reads).to.equal(1)
  })

  it("keeps a local copy no longer than the remote entry's remaining TTL (getWithTtl)", async () => {
    const clock = createFakeClock()
    const { remote, state } = memoryRemote<string>()
    let remaining = 200
    const withTtl: CacheClient<string> = {
      ...remote,
      async getWithTtl(key: string) {
        const value = await remote.get(key)
        return value === undefined ? undefined : { value, ttlMs: remaining }
      },
    }
    const broker = createMemoryBroker()
    const make = () =>
      createTieredCache<string>({
        local: createLruCache<string>({ now: clock, ttlMs: 60_000 }),
        remote: withTtl,
        broker,
        namespace: 'n',
      })
    const [a, b] = [make(), make()]
    await a.set('k', 'v', { ttlMs: 60_000 })
    expect(await b.get('k')).to.equal('v')
    const reads = state.reads
    clock.advance(200)
    expect(b.get('k')).to.equal('v')
    clock.advance(1)
    remaining = 50_000
    expect(await b.get('k')).to.equal('v')
    expect(state.reads).to.equal(reads + 1)
  })

  it('stops listening on close()', async () => {
    const { a, b } = twoInstances()
    await a.set('k', 'v1')
    expect(await b.get('k')).to.equal('v1')
    await b.close()
    await a.set('k', 'v2')
    expect(b.get('k')).to.equal('v1')
  })

  it('refuses bad options with ConfigError naming the option', () => {
    const { remote } = memoryRemote()
    const broker = createMemoryBroker()
    const local = createLruCache()
    expect(() => createTieredCache({ local, remote, broker, namespace: 'a b' }))
      .to.throw(ConfigError)
      .with.property('message')
      .that.matches(/tieredCache\.namespace: must match/)
    expect(() =>
      createTieredCache({ local: {} as never, remote, broker, namespace: 'a' }),
    ).to.throw(/tieredCache\.local: must be a CacheClient/)
    expect(() =>
      createTieredCache({ local, remote, broker: {} as never, namespace: 'a' }),
    ).to.throw(/tieredCache\.broker/)
  })
})
