import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { expect } from 'chai'
import { Redis } from 'ioredis'
import {
  createApiKeyManager,
  createGate,
  createMemoryKeyStore,
  createQuotaStage,
  createRateLimitStage,
  type Decision,
  type Gate,
  type StoreFailureMode,
} from '@gatehouse/core'
import { createMemoryAuditSink, fakeRequest } from '@gatehouse/core/testing'
import { createRedisBackend } from '@gatehouse/redis'
import { describeWithRedis } from '../helpers/redis-server.js'

const PEPPER = 'p'.repeat(32)
let run = 0
const unique = (name: string): string => `${name}-${process.pid}-${Date.now()}-${run++}`

function client(port: number): Redis {
  // The settings the README recommends: fail fast while disconnected, reconnect quickly.
  const c = new Redis({
    port,
    host: '127.0.0.1',
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    retryStrategy: (times) => Math.min(times * 50, 500),
    lazyConnect: false,
  })
  // Outages are expected here; the limits' failure modes report them.
  c.on('error', () => {})
  return c
}

async function ready(c: Redis): Promise<void> {
  if (c.status !== 'ready') await once(c, 'ready')
}

/** Resolves within `ms` or fails the test: no request may stay pending. */
async function settled<TValue>(p: Promise<TValue>, ms = 2000): Promise<TValue> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`still pending after ${ms} ms`)), ms)
      }),
    ])
  } finally {
    clearTimeout(timer)
  }
}

async function gateWith(redis: Redis, limit: number, mode: StoreFailureMode, insurance = false) {
  const store = createMemoryKeyStore()
  const sink = createMemoryAuditSink()
  const warnings: string[] = []
  const gate: Gate = createGate({
    apiKeys: { store, pepper: PEPPER },
    stages: [
      createRateLimitStage({
        backend: createRedisBackend({ client: redis, insurance }),
        onStoreError: mode,
        logger: { warn: (m) => warnings.push(m), error() {} },
        limits: [{ name: unique('l'), limit, windowMs: '60s' }],
      }),
    ],
    audit: { sinks: [sink] },
  })
  const { key } = await createApiKeyManager({ store, pepper: PEPPER }).create({
    name: 'k',
    ownerId: 'u',
  })
  const hit = (): Promise<Decision> =>
    settled(gate.evaluate(fakeRequest({ headers: { 'x-api-key': key } })))
  return { gate, hit, sink, warnings }
}

describeWithRedis('@gatehouse/redis backend against a real redis-server', (server) => {
  let redis: Redis
  beforeEach(async () => {
    redis = client(server().port)
    await ready(redis)
  })
  afterEach(async () => {
    redis.disconnect()
  })

  it('limits through the gate like the memory backend, with RateLimit headers', async () => {
    const { hit } = await gateWith(redis, 3, 'closed')
    const answers = [await hit(), await hit(), await hit(), await hit()]
    expect(answers.map((d) => d.status)).to.deep.equal([200, 200, 200, 429])
    expect(answers[0]?.headers.ratelimit).to.match(/^"l-[^"]+";r=2;t=(59|60)$/)
    expect(Number(answers[3]?.headers['retry-after'])).to.be.within(58, 60)
  })

  it('keeps quotas and reads usage back from Redis', async () => {
    const store = createMemoryKeyStore()
    const quotas = createQuotaStage({
      backend: createRedisBackend({ client: redis }),
      quotas: [{ name: unique('q'), limit: 5, period: 'day', cost: 2 }],
    })
    const gate = createGate({ apiKeys: { store, pepper: PEPPER }, stages: [quotas], audit: false })
    const { key, record } = await createApiKeyManager({ store, pepper: PEPPER }).create({
      name: 'k',
      ownerId: 'u',
    })
    const hit = () => gate.evaluate(fakeRequest({ headers: { 'x-api-key': key } }))
    expect([(await hit()).status, (await hit()).status, (await hit()).status]).to.deep.equal([
      200, 200, 429,
    ])
    const [usage] = await quotas.usage(record.id)
    expect(usage).to.include({ used: 6, limit: 5, remaining: 0 })
  })

  it('admits exactly 100 of 2,000 concurrent requests from 4 processes sharing one limit', async function () {
    this.timeout(60_000)
    const name = unique('dist')
    const workers = Array.from({ length: 4 }, () =>
      spawn(
        process.execPath,
        ['test/redis/fixtures/worker.mjs', String(server().port), name, '500'],
        { stdio: ['pipe', 'pipe', 'inherit'] },
      ),
    )
    const lines = workers.map((w) => {
      const out: string[] = []
      w.stdout
        .setEncoding('utf8')
        .on('data', (d: string) => out.push(...d.split('\n').filter(Boolean)))
      return out
    })
    // All four connected and ready, then all fire at once.
    while (!lines.every((l) => l.includes('ready'))) await new Promise((r) => setTimeout(r, 20))
    for (const w of workers) w.stdin.end('go\n')
    await Promise.all(workers.map((w) => once(w, 'exit')))
    const results = lines.map(
      (l) =>
        JSON.parse(l.find((x) => x.startsWith('{')) as string) as {
          admitted: number
          errors: number
        },
    )
    expect(results.reduce((n, r) => n + r.errors, 0)).to.equal(0)
    expect(results.reduce((n, r) => n + r.admitted, 0)).to.equal(100)
  })

  describe('when Redis dies and comes back', () => {
    it('fails closed, open or to the insurance limiter as configured, then resumes', async function () {
      this.timeout(30_000)
      const closed = await gateWith(redis, 2, 'closed')
      const open = await gateWith(redis, 2, 'open')
      const insured = await gateWith(redis, 2, 'insurance', true)
      expect((await closed.hit()).status).to.equal(200)

      await server().kill()
      // Every request settles quickly while Redis is down (settled() fails after 2 s).
      const c = await closed.hit()
      expect(c.status).to.equal(503)
      if (!c.allowed) expect(c.error.code).to.equal('ERR_RATELIMIT_UNAVAILABLE')
      const o = await open.hit()
      expect(o.status).to.equal(200)
      expect(open.warnings.join()).to.include('fail open')
      await open.gate.audit.flush()
      expect(open.sink.events.map((e) => e.customType)).to.include('ratelimit.bypassed')
      // The insurance limiter counts in memory: 2 allowed, the third refused.
      expect([
        (await insured.hit()).status,
        (await insured.hit()).status,
        (await insured.hit()).status,
      ]).to.deep.equal([200, 200, 429])

      await server().restart()
      await ready(redis)
      const resumed = await closed.hit()
      expect(resumed.status).to.equal(200)
      expect(resumed.headers.ratelimit).to.match(/;r=1;/)
    })
  })

  it('settles every in-flight request when Redis is killed under load, and resumes after', async function () {
    this.timeout(30_000)
    const closed = await gateWith(redis, 1_000_000, 'closed')
    const inFlight = Array.from({ length: 300 }, () => closed.hit())
    await server().kill()
    // settled() inside hit() bounds each request to 2 s: nothing stays pending.
    const statuses = (await Promise.all(inFlight)).map((d) => d.status)
    expect(statuses.every((s) => s === 200 || s === 503)).to.equal(true)
    expect(statuses).to.include(503)
    await server().restart()
    await ready(redis)
    expect((await closed.hit()).status).to.equal(200)
  })

  it('refuses windows that are not whole seconds, naming the limit', () => {
    const backend = createRedisBackend({ client: redis })
    expect(() =>
      backend.create({ keyPrefix: 'x', points: 1, durationMs: 1500, blockDurationMs: 0 }),
    ).to.throw(/whole seconds/)
    expect(() => createRedisBackend({ client: {} as never })).to.throw(
      /redis.client: must be an ioredis client/,
    )
  })
})
