import { randomUUID } from 'node:crypto'
import { once } from 'node:events'
import { expect } from 'chai'
import type { Redis, RedisOptions } from 'ioredis'
import { ConfigError, createAuditTrail, type AuditEvent } from '@portcullis/core'
import { createRedisStreamAuditReader, createRedisStreamAuditSink } from '@portcullis/redis'
import { describeWithRedisClients } from '../helpers/redis-server.js'

function event(n: number): AuditEvent {
  return {
    id: randomUUID(),
    time: new Date(Date.UTC(2026, 0, 1, 0, 0, n)).toISOString(),
    type: 'authn.failure',
    outcome: 'failure',
    actor: { id: null },
    action: `GET /docs/${n}`,
    reason: { code: 'ERR_APIKEY_INVALID' },
  }
}

describeWithRedisClients('createRedisStreamAuditSink (real redis-server)', (server, ioredis) => {
  let client: Redis
  let run = 0
  let stream: string
  before(async () => {
    client = new ioredis.Redis({ port: server().port, host: '127.0.0.1' })
    client.on('error', () => {})
    await once(client, 'ready')
  })
  after(async () => {
    if (client.status === 'ready') await client.quit()
    else client.disconnect()
  })
  beforeEach(() => {
    stream = `audit-${process.pid}-${run++}`
  })

  it('appends each event with XADD, readable in order through a consumer group', async () => {
    const sink = createRedisStreamAuditSink({ client, stream })
    const events = [event(1), event(2), event(3)]
    await sink.write(events)
    const reader = await createRedisStreamAuditReader({
      client,
      stream,
      group: 'siem',
      consumer: 'c1',
    })
    const entries = await reader.read({ count: 10 })
    expect(entries.map((e) => e.event)).to.deep.equal(events)
    const [, fields] = (await client.xrange(stream, '-', '+'))[0]!
    expect(fields.slice(0, 4)).to.deep.equal(['id', events[0]!.id, 'type', 'authn.failure'])
    expect(await reader.ack(entries.map((e) => e.streamId))).to.equal(3)
    expect(await reader.pending()).to.deep.equal([])
    expect(await reader.read()).to.deep.equal([])
  })

  if (ioredis.protocol === 3) {
    it("reads and claims through a client with ioredis 6's replyMapping: 'resp3'", async () => {
      // RESP3 maps then arrive as objects: XREADGROUP answers { [stream]: entries }.
      const resp3 = new ioredis.Redis({
        port: server().port,
        host: '127.0.0.1',
        protocol: 3,
        replyMapping: 'resp3',
      } as RedisOptions)
      resp3.on('error', () => {})
      try {
        await once(resp3, 'ready')
        const events = [event(1), event(2)]
        await createRedisStreamAuditSink({ client: resp3, stream }).write(events)
        const reader = (consumer: string) =>
          createRedisStreamAuditReader({ client: resp3, stream, group: 'siem', consumer })
        const first = await reader('c1')
        expect((await first.read()).map((e) => e.event)).to.deep.equal(events)
        expect((await first.pending()).map((e) => e.event)).to.deep.equal(events)
        const claimed = await (await reader('c2')).claim({ minIdleMs: 0 })
        expect(claimed.map((e) => e.event)).to.deep.equal(events)
        expect(await first.ack(claimed.map((e) => e.streamId))).to.equal(2)
      } finally {
        await resp3.quit()
      }
    })
  }

  it('never appends an event twice when the trail retries a batch (a lost reply)', async () => {
    const sink = createRedisStreamAuditSink({ client, stream })
    const [e1, e2, e3, e4] = [event(1), event(2), event(3), event(4)]
    await sink.write([e1!, e2!])
    // The trail retries from the first unacknowledged event, possibly with more appended.
    await sink.write([e1!, e2!])
    await sink.write([e1!, e2!, e3!, e4!])
    const ids = (await client.xrange(stream, '-', '+')).map(([, f]) => f[1])
    expect(ids).to.deep.equal([e1!.id, e2!.id, e3!.id, e4!.id])
  })

  it('carries the audit trail to two consumer groups, each getting every event', async () => {
    const sink = createRedisStreamAuditSink({ client, stream })
    const siem = await createRedisStreamAuditReader({
      client,
      stream,
      group: 'siem',
      consumer: 'a',
    })
    const alerts = await createRedisStreamAuditReader({
      client,
      stream,
      group: 'alerts',
      consumer: 'a',
    })
    const trail = createAuditTrail({ sinks: [sink] })
    for (let i = 0; i < 5; i++) trail.emit({ ...event(i), id: undefined, time: undefined })
    await trail.close()
    const [s, a] = [await siem.read(), await alerts.read()]
    expect(s).to.have.length(5)
    expect(a.map((e) => e.event?.id)).to.deep.equal(s.map((e) => e.event?.id))
    expect(s.map((e) => e.event?.action)).to.deep.equal(
      [0, 1, 2, 3, 4].map((i) => `GET /docs/${i}`),
    )
  })

  it('redelivers unacknowledged entries: pending after a crash, claimable by another consumer', async () => {
    const sink = createRedisStreamAuditSink({ client, stream })
    await sink.write([event(1), event(2)])
    const c1 = await createRedisStreamAuditReader({ client, stream, group: 'g', consumer: 'c1' })
    const c2 = await createRedisStreamAuditReader({ client, stream, group: 'g', consumer: 'c2' })
    const delivered = await c1.read()
    expect(delivered).to.have.length(2)
    // c1 "crashed" before acknowledging: it sees them again as pending...
    expect((await c1.pending()).map((e) => e.streamId)).to.deep.equal(
      delivered.map((e) => e.streamId),
    )
    // ...and c2 can take them over once they sat idle long enough.
    const claimed = await c2.claim({ minIdleMs: 0 })
    expect(claimed.map((e) => e.event?.id)).to.deep.equal(delivered.map((e) => e.event?.id))
    await c2.ack(claimed.map((e) => e.streamId))
    expect(await c1.pending()).to.deep.equal([])
    expect(await c2.pending()).to.deep.equal([])
  })

  it('trims to about maxLen entries when asked', async () => {
    const sink = createRedisStreamAuditSink({ client, stream, maxLen: 10 })
    for (let i = 0; i < 10; i++)
      await sink.write(Array.from({ length: 50 }, (_, j) => event(i * 50 + j)))
    expect(await client.xlen(stream)).to.be.below(500)
  })

  it('loads its script again after Redis forgot it (SCRIPT FLUSH, a restart)', async () => {
    const sink = createRedisStreamAuditSink({ client, stream })
    await sink.write([event(1)])
    await client.script('FLUSH')
    await sink.write([event(2)])
    expect(await client.xlen(stream)).to.equal(2)
  })

  it('rejects while Redis is down, so the audit trail retries', async function () {
    this.timeout(10_000)
    const down = new ioredis.Redis({
      port: server().port,
      host: '127.0.0.1',
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      retryStrategy: () => 50,
    })
    down.on('error', () => {})
    await once(down, 'ready')
    const sink = createRedisStreamAuditSink({ client: down, stream })
    await server().kill()
    try {
      await sink.write([event(1)]).then(
        () => expect.fail('should reject'),
        (e: Error) => expect(e).to.be.instanceOf(Error),
      )
    } finally {
      await server().restart()
      down.disconnect()
      if (client.status !== 'ready') await once(client, 'ready')
    }
  })

  it('refuses bad options with ConfigError naming the option', async () => {
    expect(() => createRedisStreamAuditSink({ client, stream: 'a b' }))
      .to.throw(ConfigError)
      .with.property('message')
      .that.matches(/redisStreamAuditSink\.stream: must match/)
    expect(() => createRedisStreamAuditSink({ client: {} as never })).to.throw(
      /redisStreamAuditSink\.client/,
    )
    expect(() => createRedisStreamAuditSink({ client, maxLen: -1 })).to.throw(/maxLen/)
    await createRedisStreamAuditReader({ client, group: '', consumer: 'c' }).then(
      () => expect.fail('should reject'),
      (e: Error) => expect(e.message).to.match(/redisStreamAuditReader\.group/),
    )
  })
})
