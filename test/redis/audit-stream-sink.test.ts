import { randomUUID } from 'node:crypto'
import { once } from 'node:events'
import { expect } from 'chai'
import type { Redis, RedisOptions } from 'ioredis'
import sinon from 'sinon'
import {
  ConfigError,
  createAuditTrail,
  type AuditEvent,
  type AuditSink,
  type Logger,
} from '@portcullis/core'
import {
  RedisReplicationError,
  createRedisStreamAuditReader,
  createRedisStreamAuditSink,
} from '@portcullis/redis'
import {
  describeWithRedisClients,
  startRedisReplica,
  type RedisServer,
  useRedisClient,
} from '../helpers/redis-server.js'

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
  useRedisClient(server, ioredis, (c) => (client = c))
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

  it('never trims an entry a consumer group has not acknowledged; trims acknowledged ones', async () => {
    const logger = { warn: sinon.spy(), error: sinon.spy(), info: sinon.spy(), debug: sinon.spy() }
    const maxLen = 20
    const sink = createRedisStreamAuditSink({
      client,
      stream,
      maxLen,
      logger: logger as unknown as Logger,
    })
    // Group a reads and acknowledges part of what it reads; group b reads nothing at all.
    const a = await createRedisStreamAuditReader({ client, stream, group: 'a', consumer: 'a1' })
    const b = await createRedisStreamAuditReader({ client, stream, group: 'b', consumer: 'b1' })
    const written: string[] = []
    const write = async (n: number) => {
      const batch = Array.from({ length: n }, () => event(written.length))
      written.push(...batch.map((e) => e.id))
      await sink.write(batch)
    }
    for (let i = 0; i < 30; i++) {
      await write(20)
      const got = await a.read({ count: 30 })
      const ack = got.slice(0, 15).map((e) => e.streamId)
      await a.ack(ack)
    }
    // b has read nothing: not one entry may go, however far past maxLen the stream is.
    expect(await client.xlen(stream)).to.equal(600)
    expect(logger.warn.callCount).to.equal(1)
    const [fields, message] = logger.warn.firstCall.args as [Record<string, unknown>, string]
    expect(fields).to.include({ stream, maxLen })
    expect(fields.length).to.be.a('number').that.is.above(maxLen)
    expect(message).to.match(/not acknowledged/)

    // b reads and acknowledges everything; a acknowledges everything before the 400th entry and
    // keeps the rest of what it left unacknowledged pending.
    const all = await b.read({ count: 1000 })
    expect(all.map((e) => e.event?.id)).to.deep.equal(written)
    await b.ack(all.map((e) => e.streamId))
    await a.ack(all.slice(0, 400).map((e) => e.streamId))
    const pendingBefore = (await a.pending({ count: 1000 })).map((e) => e.streamId)
    expect(pendingBefore).to.have.length.above(0)
    await write(20)
    // Acknowledged entries went (approximately, whole nodes), and none that a still has pending
    // (a acknowledged 15 of every 20 it read: its oldest pending one is the 416th entry).
    const left = await client.xrange(stream, '-', '+')
    expect(left.length)
      .to.be.below(400)
      .and.at.least(600 - 416 + 20)
    const leftIds = new Set(left.map(([id]) => id))
    for (const id of pendingBefore) expect(leftIds.has(id)).to.equal(true)
    // Every entry a group has not acknowledged is still there, event and all.
    const pendingA = await a.pending({ count: 1000 })
    expect(pendingA.map((e) => e.streamId)).to.deep.equal(pendingBefore)
    expect(pendingA.every((e) => e.event !== undefined)).to.equal(true)
    const newA = await a.read({ count: 1000 })
    const newB = await b.read({ count: 1000 })
    expect(newA.map((e) => e.event?.id)).to.deep.equal(written.slice(600))
    expect(newB.map((e) => e.event?.id)).to.deep.equal(written.slice(600))
    const needed = new Set([...pendingA, ...newA].map((e) => e.streamId))
    for (const id of needed) expect(leftIds.has(id)).to.equal(true)

    // Once both groups acknowledged everything, the stream comes back to about maxLen.
    await a.ack([...needed])
    await b.ack(newB.map((e) => e.streamId))
    await write(20)
    expect(await client.xlen(stream)).to.be.below(200)
    expect(logger.warn.callCount).to.equal(1)
  })

  it('catches up over a few writes once a stalled group acknowledges a long backlog', async () => {
    const sink = createRedisStreamAuditSink({ client, stream, maxLen: 10 })
    const g = await createRedisStreamAuditReader({ client, stream, group: 'g', consumer: 'c' })
    for (let i = 0; i < 12; i++)
      await sink.write(Array.from({ length: 250 }, (_, j) => event(i * 250 + j)))
    expect(await client.xlen(stream)).to.equal(3000)
    const all = await g.read({ count: 5000 })
    expect(all).to.have.length(3000)
    await g.ack(all.map((e) => e.streamId))
    // One write trims at most 1024 entries (a short script); the next ones finish the job.
    await sink.write([event(3000)])
    const afterOne = await client.xlen(stream)
    expect(afterOne).to.be.below(3001).and.above(1000)
    for (let i = 1; i <= 3; i++) await sink.write([event(3000 + i)])
    expect(await client.xlen(stream)).to.be.below(200)
    // What is left is the newest entries, the last one written last.
    const [, last] = (await client.xrevrange(stream, '+', '-', 'COUNT', 1))[0]!
    expect((JSON.parse(last[5]!) as AuditEvent).action).to.equal('GET /docs/3003')
  })

  it('trims by length alone when the stream has no consumer group', async () => {
    const sink = createRedisStreamAuditSink({ client, stream, maxLen: 10 })
    for (let i = 0; i < 10; i++)
      await sink.write(Array.from({ length: 50 }, (_, j) => event(i * 50 + j)))
    const left = await client.xrange(stream, '-', '+')
    expect(left.length).to.be.at.least(10).and.below(200)
    // The newest entries are the ones kept.
    expect((JSON.parse(left.at(-1)![1][5]!) as AuditEvent).action).to.equal('GET /docs/499')
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

  describe('waitForReplicas, against a real replica', () => {
    let replica: RedisServer
    let onReplica: Redis
    before(async function () {
      this.timeout(15_000)
      replica = await startRedisReplica(server())
      onReplica = new ioredis.Redis({ port: replica.port, host: '127.0.0.1' })
      onReplica.on('error', () => {})
      await once(onReplica, 'ready')
    })
    after(async () => {
      onReplica?.disconnect()
      await replica?.stop()
    })

    it('acknowledges a batch only once the replica has it; too few replicas reject', async () => {
      const sink = createRedisStreamAuditSink({
        client,
        stream,
        waitForReplicas: { replicas: 1, timeoutMs: 5000 },
      })
      const events = [event(1), event(2), event(3)]
      await sink.write(events)
      // WAIT answered 1: the replica holds the batch the moment write resolves.
      const onIt = await onReplica.xrange(stream, '-', '+')
      expect(onIt.map(([, f]) => f[1])).to.deep.equal(events.map((e) => e.id))
      const two = createRedisStreamAuditSink({
        client,
        stream,
        waitForReplicas: { replicas: 2, timeoutMs: 50 },
      })
      await two.write([event(4)]).then(
        () => expect.fail('should reject'),
        (e: unknown) => {
          expect(e).to.be.instanceOf(RedisReplicationError)
          expect(e).to.include({ code: 'ERR_REDIS_NOT_REPLICATED', wanted: 2, acknowledged: 1 })
        },
      )
    })

    it('fails while the replica is frozen, then the trail retries without loss or duplication', async function () {
      this.timeout(15_000)
      const sink = createRedisStreamAuditSink({
        client,
        stream,
        waitForReplicas: { replicas: 1, timeoutMs: 200 },
      })
      const failures: unknown[] = []
      let written = 0
      const recording: AuditSink = {
        name: sink.name,
        async write(events) {
          try {
            await sink.write(events)
            written++
          } catch (error) {
            failures.push(error)
            throw error
          }
        },
      }
      const trail = createAuditTrail({
        sinks: [recording],
        logger: { warn: () => {}, error: () => {}, info: () => {}, debug: () => {} } as Logger,
      })
      await replica.pause()
      try {
        for (let i = 0; i < 5; i++) trail.emit({ ...event(i), id: undefined, time: undefined })
        while (failures.length === 0) await new Promise((r) => setTimeout(r, 20))
      } finally {
        await replica.resume()
      }
      expect(failures[0]).to.be.instanceOf(RedisReplicationError)
      expect(failures[0]).to.include({ wanted: 1, acknowledged: 0 })
      expect(written).to.equal(0)
      await trail.flush()
      await trail.close()
      expect(written).to.be.at.least(1)
      // The primary took the batch on the first attempt; the retries appended nothing again.
      const onPrimary = (await client.xrange(stream, '-', '+')).map(([, f]) => f)
      // The trail's own sink-health events (audit.sink.degraded/recovered) follow the batch.
      const requests = onPrimary.filter((f) => !f[3]!.startsWith('audit.'))
      const actions = requests.map((f) => (JSON.parse(f[5]!) as AuditEvent).action)
      expect(actions).to.deep.equal([0, 1, 2, 3, 4].map((i) => `GET /docs/${i}`))
      expect(new Set(requests.map((f) => f[1])).size).to.equal(5)
      expect(onPrimary.slice(5).map((f) => f[3])).to.deep.equal([
        'audit.sink.degraded',
        'audit.sink.recovered',
      ])
      // And the replica caught up with exactly the same entries.
      const onIt = (await onReplica.xrange(stream, '-', '+')).map(([, f]) => f)
      expect(onIt).to.deep.equal(onPrimary)
    })

    it('refuses a bad waitForReplicas with ConfigError', () => {
      expect(() =>
        createRedisStreamAuditSink({ client, waitForReplicas: { replicas: 0, timeoutMs: 100 } }),
      ).to.throw(/waitForReplicas\.replicas/)
      expect(() =>
        createRedisStreamAuditSink({ client, waitForReplicas: { replicas: 1, timeoutMs: 0 } }),
      ).to.throw(/waitForReplicas\.timeoutMs/)
    })
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
