import { once } from 'node:events'
import { expect } from 'chai'
import type { Redis, RedisOptions } from 'ioredis'
import { ConfigError, generateApiKey, type BrokerMessages } from '@portcullis/core'
import { createRedisBroker, type RedisBroker } from '@portcullis/redis'
import { createRecordingMetrics } from '../helpers/recording-metrics.js'
import { describeWithRedisClients, recommendedRedisOptions } from '../helpers/redis-server.js'

/** The publisher settings the README recommends: fail fast while Redis is down, reconnect quickly. */
const RECOMMENDED: RedisOptions = recommendedRedisOptions(200)

const keyId = (): string => generateApiKey({ prefix: 'ptcl' }).id

/** Resolves once `done()` holds, or fails after `ms`. */
async function until(done: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${ms} ms`)
    await new Promise((r) => setTimeout(r, 5))
  }
}

/** Resolves once `list` holds `count` items, or fails after `ms`. */
function nextMessage<TValue>(list: TValue[], count: number, ms = 2000): Promise<TValue[]> {
  const deadline = Date.now() + ms
  return new Promise((resolve, reject) => {
    const poll = () => {
      if (list.length >= count) resolve(list)
      else if (Date.now() > deadline)
        reject(new Error(`expected ${count} messages within ${ms} ms, got ${list.length}`))
      else setTimeout(poll, 5)
    }
    poll()
  })
}

describeWithRedisClients('createRedisBroker (real redis-server)', (server, ioredis) => {
  const clients: Redis[] = []
  const brokers: RedisBroker[] = []
  let channelPrefix: string
  let run = 0

  beforeEach(() => {
    // A channel namespace per test, so messages of one test never reach another.
    channelPrefix = `t${process.pid}-${run++}:`
  })

  afterEach(async () => {
    for (const b of brokers.splice(0)) await b.close()
    for (const c of clients.splice(0)) {
      if (c.status === 'ready') await c.quit()
      else c.disconnect()
    }
  })

  async function client(): Promise<Redis> {
    const c = new ioredis.Redis({ ...RECOMMENDED, port: server().port })
    c.on('error', () => {})
    clients.push(c)
    if (c.status !== 'ready') await once(c, 'ready')
    return c
  }

  async function broker(
    options: Partial<Parameters<typeof createRedisBroker>[0]> = {},
  ): Promise<RedisBroker> {
    const b = createRedisBroker({ publisher: await client(), channelPrefix, ...options })
    brokers.push(b)
    return b
  }

  it('carries messages from one instance to another over separate connections', async () => {
    const [a, b] = [await broker(), await broker()]
    const atA: BrokerMessages['key.revoked'][] = []
    const atB: BrokerMessages['key.revoked'][] = []
    a.subscribe('key.revoked', (m) => atA.push(m))
    b.subscribe('key.revoked', (m) => atB.push(m))
    await Promise.all([a.ready(), b.ready()])
    const id = keyId()
    await a.publish('key.revoked', { keyId: id })
    // The publisher hears its own message at once, and only once.
    expect(atA).to.deep.equal([{ keyId: id }])
    await nextMessage(atB, 1)
    expect(atB).to.deep.equal([{ keyId: id }])
    await new Promise((r) => setTimeout(r, 50))
    expect(atA).to.have.length(1)
  })

  it('keeps its subscriptions across a Redis restart: a message published after it arrives', async function () {
    this.timeout(15_000)
    const [a, b] = [await broker(), await broker()]
    const received: string[] = []
    b.subscribe('key.revoked', (m) => received.push(m.keyId))
    b.subscribe('policy.changed', (m) => received.push(m.version))
    await b.ready()
    await a.publish('key.revoked', { keyId: 'AAAAAAAAAAAAAAAA' })
    await nextMessage(received, 1)

    await server().kill()
    // Lost while Redis is down: published, counted, and the promise still resolves.
    await a.publish('key.revoked', { keyId: 'BBBBBBBBBBBBBBBB' })
    await server().restart()
    await Promise.all([a.ready(), b.ready()])

    await a.publish('key.revoked', { keyId: 'CCCCCCCCCCCCCCCC' })
    await a.publish('policy.changed', { version: 'v2' })
    await nextMessage(received, 3, 3000)
    expect(received).to.deep.equal(['AAAAAAAAAAAAAAAA', 'CCCCCCCCCCCCCCCC', 'v2'])
  })

  it('survives a hung Redis (SIGSTOP) and delivers again after it resumes', async function () {
    this.timeout(15_000)
    const metrics = createRecordingMetrics()
    const [a, b] = [await broker({ metrics }), await broker()]
    const received: string[] = []
    b.subscribe('key.deleted', (m) => received.push(m.keyId))
    await b.ready()
    await server().pause()
    try {
      // commandTimeout (500 ms) settles the publish; local subscribers still hear it.
      const local: string[] = []
      const off = a.subscribe('key.deleted', (m) => local.push(m.keyId))
      await a.publish('key.deleted', { keyId: 'DDDDDDDDDDDDDDDD' })
      off()
      expect(local).to.deep.equal(['DDDDDDDDDDDDDDDD'])
      expect(metrics.count('storeFailures', { store: 'broker' })).to.equal(1)
    } finally {
      await server().resume()
    }
    await Promise.all([a.ready(), b.ready()])
    await a.publish('key.deleted', { keyId: 'EEEEEEEEEEEEEEEE' })
    // The timed-out publish may still run when Redis wakes (it sat in the socket), so D may
    // arrive too; E must.
    await until(() => received.includes('EEEEEEEEEEEEEEEE'), 3000)
    expect(received.filter((id) => id !== 'DDDDDDDDDDDDDDDD')).to.deep.equal(['EEEEEEEEEEEEEEEE'])
  })

  it('reconnects a subscriber that stops answering PING, then delivers again', async function () {
    this.timeout(15_000)
    const warnings: string[] = []
    const a = await broker()
    const b = await broker({
      pingIntervalMs: 200,
      logger: { warn: (_f, m) => warnings.push(m), error: () => {} },
    })
    const received: string[] = []
    b.subscribe('key.rotated', (m) => received.push(m.keyId))
    await b.ready()
    await server().pause()
    try {
      await until(() => warnings.some((w) => w.includes('did not answer PING')), 3000)
    } finally {
      await server().resume()
    }
    await Promise.all([a.ready(), b.ready()])
    const id = keyId()
    await a.publish('key.rotated', { keyId: id })
    await nextMessage(received, 1, 3000)
    expect(received).to.deep.equal([id])
  })

  it('ignores malformed and foreign messages, counting and logging each, and keeps delivering', async () => {
    const metrics = createRecordingMetrics()
    const warnings: string[] = []
    const b = await broker({
      metrics,
      logger: { warn: (_f, m) => warnings.push(m), error: () => {} },
      maxMessageBytes: 1024,
    })
    const received: unknown[] = []
    b.subscribe('key.revoked', (m) => received.push(m))
    await b.ready()
    const raw = await client()
    const channel = `${channelPrefix}key.revoked`
    const junk = [
      'not json',
      '[1,2,3]',
      JSON.stringify({ keyId: keyId() }), // a bare message: not our envelope
      JSON.stringify({ v: 2, src: 'other', msg: { keyId: keyId() } }), // a future version
      JSON.stringify({ v: 1, msg: { keyId: keyId() } }), // no source
      JSON.stringify({ v: 1, src: 'x', msg: { keyId: '../../etc' } }), // a bad key id
      JSON.stringify({ v: 1, src: 'x', msg: { keyId: keyId(), pad: 'x'.repeat(2000) } }), // too large
    ]
    for (const j of junk) await raw.publish(channel, j)
    const good = keyId()
    await raw.publish(
      channel,
      JSON.stringify({ v: 1, src: 'other-instance', msg: { keyId: good, later: true } }),
    )
    await nextMessage(received, 1)
    expect(received).to.deep.equal([{ keyId: good }])
    expect(metrics.count('brokerMessagesRejected', { topic: 'key.revoked' })).to.equal(junk.length)
    expect(warnings).to.have.length(junk.length)
    expect(
      warnings.every((w) => w.startsWith('redis broker: ignored a malformed or foreign message')),
    ).to.equal(true)
  })

  it('keeps delivering to other subscribers when one throws', async () => {
    const errors: string[] = []
    const [a, b] = [
      await broker(),
      await broker({ logger: { warn: () => {}, error: (_f, m) => errors.push(m) } }),
    ]
    const received: string[] = []
    b.subscribe('key.updated', () => {
      throw new Error('subscriber bug')
    })
    b.subscribe('key.updated', (m) => received.push(m.keyId))
    await b.ready()
    const id = keyId()
    await a.publish('key.updated', { keyId: id })
    await nextMessage(received, 1)
    expect(received).to.deep.equal([id])
    expect(errors).to.deep.equal(['redis broker: a subscriber threw'])
  })

  it('stops delivering after unsubscribe and after close', async () => {
    const [a, b] = [await broker(), await broker()]
    const received: string[] = []
    const off = b.subscribe('key.created', (m) => received.push(m.keyId))
    const witness: string[] = []
    b.subscribe('key.rotated', (m) => witness.push(m.keyId))
    await b.ready()
    off()
    await b.ready()
    await a.publish('key.created', { keyId: keyId() })
    await a.publish('key.rotated', { keyId: keyId() })
    await nextMessage(witness, 1)
    expect(received).to.deep.equal([])
  })

  it('refuses to publish a message that does not fit its topic', async () => {
    const a = await broker()
    await a.publish('key.revoked', { keyId: 'nope' }).then(
      () => expect.fail('should reject'),
      (e: Error) => expect(e).to.be.instanceOf(TypeError),
    )
  })

  it('connects by URL when given one, and closes what it opened', async () => {
    const b = createRedisBroker({ subscriber: server().url, channelPrefix })
    const received: string[] = []
    b.subscribe('config.changed', (m) => received.push(m.version))
    await b.ready()
    const a = await broker()
    await a.publish('config.changed', { version: '7' })
    await nextMessage(received, 1)
    await b.close()
    const clientsBefore = (await (await client()).client('LIST')) as string
    expect(clientsBefore.split('\n').filter((l) => l.includes('cmd=subscribe'))).to.have.length(0)
  })

  it('refuses bad options with ConfigError naming the option', async () => {
    const c = await client()
    expect(() => createRedisBroker({}))
      .to.throw(ConfigError)
      .with.property('message')
      .that.matches(/redisBroker\.publisher: required unless subscriber is a URL/)
    expect(() => createRedisBroker({ publisher: {} as never })).to.throw(
      /redisBroker\.publisher: must be an ioredis client/,
    )
    expect(() => createRedisBroker({ publisher: c, subscriber: c })).to.throw(
      /must be a connection of its own/,
    )
    expect(() => createRedisBroker({ publisher: c, subscriber: 'http://x' })).to.throw(
      /redisBroker\.subscriber/,
    )
    expect(() => createRedisBroker({ publisher: c, channelPrefix: 'a b' })).to.throw(
      /redisBroker\.channelPrefix/,
    )
  })
})
