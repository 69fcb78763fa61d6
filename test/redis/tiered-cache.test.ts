import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { once } from 'node:events'
import { createInterface, type Interface } from 'node:readline'
import { expect } from 'chai'
import type { Redis } from 'ioredis'
import { ConfigError } from '@portcullis/core'
import { createRedisCache } from '@portcullis/redis'
import { createRecordingMetrics } from '../helpers/recording-metrics.js'
import {
  describeWithRedisClients,
  type RedisClientMajor,
  useRedisClient,
} from '../helpers/redis-server.js'

interface Reply {
  readonly result: unknown
  readonly remoteReads: number
}

/** One Node process holding a tiered cache (fixtures/tiered-cache-worker.mjs). */
class Instance {
  readonly #lines: AsyncIterator<string>
  private constructor(
    readonly child: ChildProcessWithoutNullStreams,
    lines: Interface,
  ) {
    this.#lines = lines[Symbol.asyncIterator]()
  }

  static async start(
    ioredis: RedisClientMajor,
    port: number,
    channelPrefix: string,
    namespace: string,
  ): Promise<Instance> {
    const child = spawn(
      process.execPath,
      [
        'test/redis/fixtures/tiered-cache-worker.mjs',
        String(port),
        channelPrefix,
        namespace,
        ioredis.module,
      ],
      { stdio: 'pipe' },
    )
    let stderr = ''
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    const instance = new Instance(child, createInterface({ input: child.stdout }))
    const first = await instance.#next()
    if (first === undefined) throw new Error(`worker did not start: ${stderr}`)
    expect(JSON.parse(first)).to.include({ ready: true })
    return instance
  }

  async #next(): Promise<string | undefined> {
    const { value, done } = await this.#lines.next()
    return done === true ? undefined : value
  }

  async send(command: Record<string, unknown>): Promise<Reply> {
    this.child.stdin.write(JSON.stringify(command) + '\n')
    const line = await this.#next()
    if (line === undefined) throw new Error('worker exited')
    return JSON.parse(line) as Reply
  }

  get = (key: string): Promise<Reply> => this.send({ op: 'get', key })

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return
    this.child.stdin.end()
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 3000)
    await once(this.child, 'exit')
    clearTimeout(timer)
  }
}

/** Polls `instance` until `key` reads `expected`; resolves the milliseconds it took. */
async function readsWithin(
  instance: Instance,
  key: string,
  expected: unknown,
  ms: number,
): Promise<number> {
  const started = Date.now()
  for (;;) {
    const { result } = await instance.get(key)
    if (JSON.stringify(result) === JSON.stringify(expected)) return Date.now() - started
    if (Date.now() - started > ms)
      throw new Error(`${key} still reads ${JSON.stringify(result)} after ${ms} ms`)
    await new Promise((r) => setTimeout(r, 5))
  }
}

describeWithRedisClients(
  'two-tier cache across processes (real redis-server)',
  (server, ioredis) => {
    let run = 0
    const instances: Instance[] = []
    let a: Instance
    let b: Instance

    beforeEach(async function () {
      this.timeout(20_000)
      const prefix = `t${process.pid}-${run}:`
      const namespace = `ns${run++}`
      ;[a, b] = await Promise.all([
        Instance.start(ioredis, server().port, prefix, namespace),
        Instance.start(ioredis, server().port, prefix, namespace),
      ])
      instances.push(a, b)
    })

    afterEach(async () => {
      await Promise.all(instances.splice(0).map((i) => i.stop()))
    })

    it('serves repeats from the local tier, and invalidates the other process on set and delete', async () => {
      await a.send({ op: 'set', key: 'user:1', value: { name: 'Ada' } })
      const first = await b.get('user:1')
      expect(first.result).to.deep.equal({ name: 'Ada' })
      expect(first.remoteReads).to.equal(1)
      const again = await b.get('user:1')
      expect(again).to.deep.equal({ result: { name: 'Ada' }, remoteReads: 1 }) // a local hit

      await a.send({ op: 'set', key: 'user:1', value: { name: 'Grace' } })
      const ms = await readsWithin(b, 'user:1', { name: 'Grace' }, 1000)
      expect(ms).to.be.below(1000)

      await b.send({ op: 'delete', key: 'user:1' })
      await readsWithin(a, 'user:1', null, 1000)
    })

    it('clears the namespace in every process', async () => {
      await a.send({ op: 'set', key: 'x', value: 1 })
      await a.send({ op: 'set', key: 'y', value: 2 })
      expect((await b.get('x')).result).to.equal(1)
      await a.send({ op: 'clear' })
      await readsWithin(b, 'x', null, 1000)
      expect((await b.get('y')).result).to.equal(null)
    })

    it("keeps no local copy past the entry's TTL, in either process", async () => {
      await a.send({ op: 'set', key: 'short', value: 'v', options: { ttlMs: 300 } })
      expect((await b.get('short')).result).to.equal('v')
      expect((await a.get('short')).result).to.equal('v')
      await new Promise((r) => setTimeout(r, 400))
      // b's local copy took the remaining TTL from Redis (PTTL), not its LRU's 30 s.
      expect((await b.get('short')).result).to.equal(null)
      expect((await a.get('short')).result).to.equal(null)
    })
  },
)

describeWithRedisClients('createRedisCache (real redis-server)', (server, ioredis) => {
  let client: Redis
  let run = 0
  let namespace: string
  useRedisClient(server, ioredis, (c) => (client = c))
  beforeEach(() => {
    namespace = `c${process.pid}-${run++}`
  })

  it('stores JSON under <prefix>:<namespace>:<key> with a PX TTL', async () => {
    const cache = createRedisCache<{ a: number[] }>({ client, namespace, ttlMs: 5000 })
    await cache.set('k', { a: [1, 2] })
    expect(await client.get(`ptcl:cache:${namespace}:k`)).to.equal('{"a":[1,2]}')
    expect(await client.pttl(`ptcl:cache:${namespace}:k`)).to.be.within(4000, 5000)
    expect(await cache.get('k')).to.deep.equal({ a: [1, 2] })
    await cache.set('k', { a: [] }, { ttlMs: 1000 })
    const entry = await cache.getWithTtl('k')
    expect(entry?.value).to.deep.equal({ a: [] })
    expect(entry?.ttlMs).to.be.within(900, 1000)
    await cache.delete('k')
    expect(await cache.get('k')).to.equal(undefined)
    expect(await cache.getWithTtl('k')).to.equal(undefined)
  })

  it('expires entries with their TTL', async () => {
    const cache = createRedisCache<string>({ client, namespace })
    await cache.set('k', 'v', { ttlMs: 50 })
    await new Promise((r) => setTimeout(r, 80))
    expect(await cache.get('k')).to.equal(undefined)
  })

  it('reads a value that is not JSON as a miss, deletes it and counts it', async () => {
    const metrics = createRecordingMetrics()
    const cache = createRedisCache({ client, namespace, metrics })
    await client.set(`ptcl:cache:${namespace}:bad`, '{not json')
    expect(await cache.get('bad')).to.equal(undefined)
    expect(await client.exists(`ptcl:cache:${namespace}:bad`)).to.equal(0)
    expect(metrics.count('storeFailures', { store: 'cache' })).to.equal(1)
  })

  it('clears its own namespace only', async () => {
    const mine = createRedisCache({ client, namespace })
    const other = createRedisCache({ client, namespace: `${namespace}-other` })
    for (let i = 0; i < 1200; i++) await mine.set(`k${i}`, i)
    await other.set('k0', 'keep')
    await mine.clear()
    expect(await client.keys(`ptcl:cache:${namespace}:*`)).to.deep.equal([])
    expect(await other.get('k0')).to.equal('keep')
  })

  it('does not store values above maxValueBytes', async () => {
    const warnings: string[] = []
    const cache = createRedisCache({
      client,
      namespace,
      maxValueBytes: 100,
      logger: { warn: (_f, m) => warnings.push(m), error: () => {} },
    })
    await cache.set('big', 'x'.repeat(200))
    expect(await cache.get('big')).to.equal(undefined)
    expect(warnings).to.deep.equal(['redis cache: value too large; not cached'])
  })

  it('refuses bad options with ConfigError naming the option', () => {
    expect(() => createRedisCache({ client, namespace: 'a b' }))
      .to.throw(ConfigError)
      .with.property('message')
      .that.matches(/redisCache\.namespace: must match/)
    expect(() => createRedisCache({ client: {} as never, namespace })).to.throw(
      /redisCache\.client/,
    )
    expect(() => createRedisCache({ client, namespace, ttlMs: 0 })).to.throw(/redisCache\.ttlMs/)
  })
})
