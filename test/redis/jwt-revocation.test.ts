import { once } from 'node:events'
import { expect } from 'chai'
import type { Redis } from 'ioredis'
import { isConfigError } from '@portcullis/core'
import {
  createRedisBroker,
  createRedisRevocationList,
  JWT_REVOCATION_NAMESPACE,
  type RedisBroker,
  type RedisRevocationList,
} from '@portcullis/redis'
import { describeWithRedisClients } from '../helpers/redis-server.js'

const SLACK_MS = 300_000

/** Resolves once `done()` holds, or fails after `ms`. */
async function until(done: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${ms} ms`)
    await new Promise((r) => setTimeout(r, 2))
  }
}

describeWithRedisClients('createRedisRevocationList (real redis-server)', (server, ioredis) => {
  const closers: Array<() => Promise<unknown>> = []
  let run = 0
  let prefix: string
  let channelPrefix: string

  beforeEach(() => {
    // A key and channel namespace per test.
    prefix = `jr${process.pid}-${run}`
    channelPrefix = `jr${process.pid}-${run++}:`
  })

  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close()
  })

  async function client(): Promise<Redis> {
    const c = new ioredis.Redis({
      port: server().port,
      host: '127.0.0.1',
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      commandTimeout: 500,
    })
    c.on('error', () => {})
    await once(c, 'ready')
    closers.push(() => c.quit())
    return c
  }

  /** One instance: its own connection, broker and list. */
  async function instance(): Promise<{ redis: Redis; list: RedisRevocationList }> {
    const redis = await client()
    const broker: RedisBroker = createRedisBroker({ publisher: redis, channelPrefix })
    closers.push(() => broker.close())
    const list = createRedisRevocationList({ client: redis, broker, prefix })
    closers.push(() => list.close())
    await Promise.all([broker.ready(), list.ready()])
    return { redis, list }
  }

  it('writes a jti entry under <prefix>:jwt-revoked:jti: expiring when the token does (+300 s)', async () => {
    const { redis, list } = await instance()
    const exp = Date.now() + 600_000
    const entry = await list.revokeToken({ jti: 'tok-1', expiresAtMs: exp })
    expect(entry).to.deep.equal({ kind: 'jti', jti: 'tok-1', retainUntilMs: exp + SLACK_MS })
    const key = `${prefix}:jwt-revoked:jti:tok-1`
    expect(JSON.parse((await redis.get(key))!)).to.deep.equal(entry)
    expect(await redis.call('PEXPIRETIME', key)).to.equal(exp + SLACK_MS)
    expect(list.check({ jti: 'tok-1' })).to.equal('jti')
  })

  it('uses the ptcl namespace by default', async () => {
    const redis = await client()
    const list = createRedisRevocationList({ client: redis, resyncIntervalMs: 0 })
    closers.push(async () => {
      await list.close()
      await redis.del('ptcl:jwt-revoked:jti:default-ns')
    })
    await list.revokeToken({ jti: 'default-ns' })
    expect(await redis.exists('ptcl:jwt-revoked:jti:default-ns')).to.equal(1)
  })

  it('writes a subject entry expiring at its cut-off plus the longest lifetime, keeping the later cut-off', async () => {
    const { redis, list } = await instance()
    const before = Date.now() - 1000
    await list.revokeSubject({ subject: 'u-1', beforeMs: before })
    const merged = await list.revokeSubject({ subject: 'u-1', beforeMs: before - 60_000 })
    expect(merged).to.deep.equal({
      kind: 'subject',
      subject: 'u-1',
      beforeMs: before,
      retainUntilMs: before + 86_400_000 + SLACK_MS,
    })
    const key = `${prefix}:jwt-revoked:sub:u-1`
    expect(JSON.parse((await redis.get(key))!)).to.deep.equal(merged)
    expect(await redis.call('PEXPIRETIME', key)).to.equal(before + 86_400_000 + SLACK_MS)
  })

  it('loads the entries already in Redis on ready()', async () => {
    const a = await instance()
    await a.list.revokeToken({ jti: 'tok-1' })
    await a.list.revokeSubject({ subject: 'u-1', beforeMs: Date.now() })
    const b = await instance()
    expect(b.list.size).to.equal(2)
    expect(b.list.check({ jti: 'tok-1' })).to.equal('jti')
    expect(b.list.check({ sub: 'u-1', iat: 1 })).to.equal('subject')
  })

  it('spreads a revocation to another instance through the broker', async () => {
    const a = await instance()
    const b = await instance()
    expect(b.list.check({ jti: 'tok-2' })).to.equal(undefined)
    await a.list.revokeToken({ jti: 'tok-2' })
    await until(() => b.list.check({ jti: 'tok-2' }) === 'jti', 1000)
    await a.list.revokeSubject({ subject: 'u-2', beforeMs: Date.now() })
    await until(() => b.list.check({ sub: 'u-2', iat: 1 }) === 'subject', 1000)
  })

  it('reads the entry back from Redis: an announcement alone revokes nothing', async () => {
    const a = await instance()
    const b = await instance()
    const broker = createRedisBroker({ publisher: a.redis, channelPrefix })
    closers.push(() => broker.close())
    await broker.ready()
    await broker.publish('cache.invalidated', {
      namespace: JWT_REVOCATION_NAMESPACE,
      key: 'jti:never-written',
      origin: 'stranger',
    })
    // A real revocation published after it arrives: the forged one was handled before it.
    await a.list.revokeToken({ jti: 'real' })
    await until(() => b.list.check({ jti: 'real' }) === 'jti', 1000)
    expect(b.list.check({ jti: 'never-written' })).to.equal(undefined)
  })

  it('ignores malformed entries written by someone else', async () => {
    const redis = await client()
    await redis.set(`${prefix}:jwt-revoked:jti:bad`, 'not json')
    await redis.set(`${prefix}:jwt-revoked:jti:bad2`, JSON.stringify({ kind: 'jti', jti: 'x' }))
    await redis.set(
      `${prefix}:jwt-revoked:sub:bad3`,
      JSON.stringify({ kind: 'subject', subject: 'a b', beforeMs: 1, retainUntilMs: 9e15 }),
    )
    const { list } = await instance()
    expect(list.size).to.equal(0)
  })

  it('catches a revocation missed by the broker at the next resync', async () => {
    const a = await instance()
    const redis = await client()
    // No broker: this list learns only by reading Redis.
    const lonely = createRedisRevocationList({ client: redis, prefix, resyncIntervalMs: 0 })
    closers.push(() => lonely.close())
    await a.list.revokeToken({ jti: 'missed' })
    expect(lonely.check({ jti: 'missed' })).to.equal(undefined)
    await lonely.resync()
    expect(lonely.check({ jti: 'missed' })).to.equal('jti')
  })

  it('refuses unknown and ill-typed options with a ConfigError', async () => {
    const redis = await client()
    for (const [options, pattern] of [
      [{ client: 'http://x' }, /client/],
      [{ client: redis, prefix: 'a b' }, /prefix/],
      [{ client: redis, resyncIntervalMs: -1 }, /resyncIntervalMs/],
      [{ client: redis, broker: {} }, /broker/],
      [{ client: redis, maxTokenLifetimeSeconds: 0 }, /maxTokenLifetimeSeconds/],
      [{ client: redis, resync: 5 }, /resync/],
    ] as const) {
      try {
        createRedisRevocationList(options as never)
        expect.fail(`accepted ${JSON.stringify(Object.keys(options))}`)
      } catch (error) {
        expect(isConfigError(error), String(error)).to.equal(true)
        expect((error as Error).message).to.match(pattern)
      }
    }
  })
})
