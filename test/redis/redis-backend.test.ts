import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { once } from 'node:events'
import { setImmediate as nextTurn } from 'node:timers/promises'
import { expect } from 'chai'
import type { Redis, RedisOptions } from 'ioredis'
import {
  createApiKeyManager,
  createGate,
  createMemoryKeyStore,
  createQuotaStage,
  createRateLimitStage,
  isAuthError,
  type Decision,
  type Gate,
  type LimiterSpec,
  type QuotaStage,
  type RateLimitBackend,
  type StoreFailureMode,
} from '@portcullis/core'
import { createMemoryAuditSink, createMemoryMetrics, fakeRequest } from '@portcullis/core/testing'
import { createRedisBackend, type RedisBackendOptions } from '@portcullis/redis'
import { describeWithRedisClients, recommendedRedisOptions } from '../helpers/redis-server.js'

const PEPPER = 'p'.repeat(32)
let run = 0
/** Limit names unique per run, so reruns against one server never share counters. */
const unique = (name: string): string => `${name}-${process.pid}-${Date.now()}-${run++}`

/** The client settings the README recommends: fail fast while Redis is down, reconnect quickly. */
const RECOMMENDED: RedisOptions = recommendedRedisOptions(500)

function connect(Client: typeof Redis, port: number): Redis {
  const c = new Client({ ...RECOMMENDED, port })
  // Outages are expected here; the limits' failure modes report them.
  c.on('error', () => {})
  return c
}

async function ready(c: Redis): Promise<void> {
  if (c.status !== 'ready') await once(c, 'ready')
}

async function close(c: Redis): Promise<void> {
  if (c.status === 'ready') await c.quit()
  else c.disconnect()
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

/** A gate with one limit on `backend`, and a function sending one request with an API key. */
async function limitedGate(options: {
  backend: RateLimitBackend
  name: string
  limit: number
  windowMs: string
  mode?: StoreFailureMode
}) {
  const store = createMemoryKeyStore()
  const sink = createMemoryAuditSink()
  const warnings: string[] = []
  const gate = createGate({
    apiKeys: { store, pepper: PEPPER },
    stages: [
      createRateLimitStage({
        backend: options.backend,
        onStoreError: options.mode ?? 'closed',
        logger: { warn: (_f, m) => warnings.push(m), error() {} },
        limits: [{ name: options.name, limit: options.limit, windowMs: options.windowMs }],
      }),
    ],
    audit: { sinks: [sink] },
  })
  const { key } = await createApiKeyManager({ store, pepper: PEPPER }).create({
    name: 'k',
    ownerId: 'u',
  })
  /** One request, bounded to 2 s, with how long it took. */
  const hit = async (): Promise<Decision & { ms: number }> => {
    const t = performance.now()
    const d = await settled(gate.evaluate(fakeRequest({ headers: { 'x-api-key': key } })))
    return Object.assign(d, { ms: performance.now() - t })
  }
  return { gate, hit, sink, warnings, name: options.name }
}

/** `"name";r=2;t=5` into its parts. */
function parseRateLimit(header: string | undefined): { name: string; r: number; t: number } {
  const m = /^"([^"]+)";r=(\d+);t=(\d+)$/.exec(header ?? '')
  expect(m, `RateLimit header ${header}`).to.not.equal(null)
  return { name: m![1]!, r: Number(m![2]), t: Number(m![3]) }
}

describeWithRedisClients('@portcullis/redis against a real redis-server', (server, ioredis) => {
  let redis: Redis
  beforeEach(async () => {
    redis = connect(ioredis.Redis, server().port)
    await ready(redis)
  })
  afterEach(async () => {
    await close(redis)
  })

  /** A limiter of a Redis backend on `redis` (no ban unless the spec has one). */
  const limiterOn = (
    options: Omit<RedisBackendOptions, 'client'>,
    spec: Omit<LimiterSpec, 'blockDurationMs'> & { blockDurationMs?: number },
  ) => createRedisBackend({ client: redis, ...options }).create({ blockDurationMs: 0, ...spec })

  it(`speaks RESP${ioredis.protocol}, the default of ${ioredis.name}`, async () => {
    expect(await redis.client('INFO')).to.match(new RegExp(`\\bresp=${ioredis.protocol}\\b`))
  })

  describe('createRedisBackend', () => {
    it('refuses bad options with ERR_CONFIG_INVALID naming the option', () => {
      const attempts: Array<[unknown, RegExp]> = [
        [{}, /redis\.client: must be an ioredis client/],
        [{ client: { eval() {} } }, /redis\.client: must be an ioredis client/],
        [{ client: redis, prefix: 'has space' }, /redis\.prefix: must match/],
        [{ client: redis, insurance: 'yes' }, /redis\.insurance: must be a boolean/],
        [{ client: redis, inMemoryBlock: 1 }, /redis\.inMemoryBlock: must be a boolean/],
      ]
      for (const [options, message] of attempts) {
        try {
          createRedisBackend(options as never)
          expect.fail(`accepted ${JSON.stringify(Object.keys(options as object))}`)
        } catch (e) {
          expect(isAuthError(e) && e.code).to.equal('ERR_CONFIG_INVALID')
          expect((e as Error).message).to.match(message)
        }
      }
    })

    it('warns about unknown options and a client that would queue during outages', () => {
      const warnings: string[] = []
      const logger = { warn: (_f: object, m: string) => warnings.push(m), error() {} }
      createRedisBackend({ client: redis, logger })
      expect(warnings).to.deep.equal([])
      const queueing = new ioredis.Redis({
        port: server().port,
        host: '127.0.0.1',
        lazyConnect: true,
      })
      createRedisBackend({ client: queueing, prefx: 'x', logger } as never)
      expect(warnings[0]).to.match(/unknown option "prefx"; did you mean "prefix"\?/)
      expect(warnings[1]).to.match(/enableOfflineQueue: false/)
      queueing.disconnect()
    })

    it('refuses windows and bans that are not whole seconds, naming the limit', () => {
      const backend = createRedisBackend({ client: redis })
      expect(() =>
        backend.create({ keyPrefix: 'ptcl:rl:x', points: 1, durationMs: 1500, blockDurationMs: 0 }),
      ).to.throw(/ptcl:rl:x: windowMs must be a whole number of seconds, received 1500.*use 2000/)
      expect(() =>
        backend.create({
          keyPrefix: 'ptcl:rl:y',
          points: 1,
          durationMs: 1000,
          blockDurationMs: 10,
        }),
      ).to.throw(/ptcl:rl:y: blockDurationMs must be a whole number of seconds/)
    })

    it("keeps core's limiter contract: consume, get, reward, delete", async () => {
      const prefix = unique('contract')
      const limiter = limiterOn(
        { prefix: 'test' },
        { keyPrefix: prefix, points: 2, durationMs: 10_000 },
      )
      expect(await limiter.get('k')).to.equal(null)
      const first = await limiter.consume('k')
      expect(first).to.include({ consumedPoints: 1, remainingPoints: 1, isFirstInDuration: true })
      expect(first.msBeforeNext).to.be.within(9_000, 10_000)
      await limiter.consume('k')
      const over = await limiter.consume('k').then(
        () => expect.fail('admitted a third'),
        (e: unknown) => e,
      )
      // A RateLimiterRes, not an Error: the stage tells refusals from store failures by that.
      expect(over).to.not.be.instanceOf(Error)
      expect(over).to.include({ remainingPoints: 0 })
      expect((await limiter.get('k'))?.consumedPoints).to.equal(3)
      expect(await redis.get(`test:${prefix}:k`)).to.equal('3')
      expect((await limiter.reward('k', 2)).consumedPoints).to.equal(1)
      expect(await limiter.delete('k')).to.equal(true)
      expect(await limiter.get('k')).to.equal(null)
      expect(await redis.exists(`test:${prefix}:k`)).to.equal(0)
    })

    it("puts prefix in place of core's ptcl namespace: ptcl:rl:... by default, never ptcl:ptcl:", async () => {
      const name = unique('ns')
      const spec = {
        keyPrefix: `ptcl:rl:${name}`,
        points: 5,
        durationMs: 10_000,
        blockDurationMs: 0,
      }
      await createRedisBackend({ client: redis }).create(spec).consume('k')
      await createRedisBackend({ client: redis, prefix: 'api' }).create(spec).consume('k')
      expect(await redis.get(`ptcl:rl:${name}:k`)).to.equal('1')
      expect(await redis.get(`api:rl:${name}:k`)).to.equal('1')
      expect(await redis.keys(`ptcl:ptcl:*${name}*`)).to.deep.equal([])
    })

    it('honours the customDuration (seconds) the quota stage passes for a new window', async () => {
      const prefix = unique('custom')
      const limiter = limiterOn({}, { keyPrefix: prefix, points: 10, durationMs: 86_400_000 })
      const res = await limiter.consume('k', 1, { customDuration: 5 })
      expect(res.msBeforeNext).to.be.within(4_000, 5_000)
      expect(await redis.pttl(`ptcl:${prefix}:k`)).to.be.within(4_000, 5_000)
      // The window's length is set when it opens; later consumes keep it.
      await limiter.consume('k', 1, { customDuration: 100 })
      expect(await redis.pttl(`ptcl:${prefix}:k`)).to.be.within(4_000, 5_000)
    })

    it('refuses from process memory once a key is over its limit (inMemoryBlock)', async () => {
      const counts: Record<string, string | null> = {}
      for (const inMemoryBlock of [true, false]) {
        const prefix = unique(`block-${inMemoryBlock}`)
        const limiter = limiterOn(
          { inMemoryBlock },
          { keyPrefix: prefix, points: 2, durationMs: 10_000 },
        )
        const outcomes = []
        for (let i = 0; i < 6; i++) {
          outcomes.push(
            await limiter.consume('k').then(
              () => 'ok',
              () => 'limited',
            ),
          )
        }
        expect(outcomes).to.deep.equal(['ok', 'ok', 'limited', 'limited', 'limited', 'limited'])
        counts[String(inMemoryBlock)] = await redis.get(`ptcl:${prefix}:k`)
      }
      // With the block, Redis saw the first refusal only; without, every request.
      expect(counts).to.deep.equal({ true: '3', false: '6' })
    })
  })

  describe('the limits stage on Redis', () => {})

  describe('the quota stage on Redis', () => {
    it('counts units per key until the end of the UTC day and reads usage back', async () => {
      const name = unique('q')
      const store = createMemoryKeyStore()
      const quotas = createQuotaStage({
        backend: createRedisBackend({ client: redis }),
        quotas: [{ name, limit: 5, period: 'day', cost: 2 }],
      })
      const gate = createGate({
        apiKeys: { store, pepper: PEPPER },
        stages: [quotas],
        audit: false,
      })
      const { key, record } = await createApiKeyManager({ store, pepper: PEPPER }).create({
        name: 'k',
        ownerId: 'u',
      })
      const hit = () => gate.evaluate(fakeRequest({ headers: { 'x-api-key': key } }))
      const first = await hit()
      expect(first.headers.ratelimit).to.match(new RegExp(`^"${name}";r=3;t=\\d+$`))
      expect([(await hit()).status, (await hit()).status]).to.deep.equal([200, 429])
      expect(first.status).to.equal(200)
      const [usage] = await quotas.usage(record.id)
      // The refused third request (cost 2, 1 left) spent nothing (issue 18).
      expect(usage).to.include({ name, used: 4, limit: 5, remaining: 1 })
      // The counter expires at 00:00 UTC (customDuration), not 24 h after the first request.
      const keys = await redis.keys(`ptcl:q:${name}:*`)
      expect(keys).to.have.length(1)
      const endOfDay = Date.UTC(
        new Date().getUTCFullYear(),
        new Date().getUTCMonth(),
        new Date().getUTCDate() + 1,
      )
      expect(Math.abs((await redis.pttl(keys[0]!)) - (endOfDay - Date.now()))).to.be.below(2000)
      await quotas.reset(record.id)
      expect((await quotas.usage(record.id))[0]).to.include({ used: 0, remaining: 5 })
    })
  })

  describe('quotas on Redis (issue 18)', () => {
    const clients: Redis[] = []
    afterEach(async () => {
      for (const c of clients.splice(0)) await close(c)
    })

    /** Two nodes: gates sharing one key store and one Redis, each with its own client and clock. */
    async function nodes(
      quota: { name: string; limit: number; cost?: number },
      skewsMs: readonly number[],
      extra: { idempotency?: boolean; refundOnServerError?: boolean } = {},
    ) {
      const store = createMemoryKeyStore()
      const own: Redis[] = []
      const stages: QuotaStage[] = []
      const gates: Gate[] = []
      for (const skew of skewsMs) {
        const client = connect(ioredis.Redis, server().port)
        await ready(client)
        clients.push(client)
        own.push(client)
        const quotas = createQuotaStage({
          backend: createRedisBackend({ client }),
          quotas: [{ ...quota, period: 'day' }],
          now: () => Date.now() + skew,
          ...extra,
        })
        stages.push(quotas)
        gates.push(
          createGate({ apiKeys: { store, pepper: PEPPER }, stages: [quotas], audit: false }),
        )
      }
      const { key, record } = await createApiKeyManager({ store, pepper: PEPPER }).create({
        name: 'k',
        ownerId: 'u',
      })
      const hit = (node: number, headers: Record<string, string> = {}) =>
        gates[node]!.evaluate(fakeRequest({ headers: { 'x-api-key': key, ...headers } }))
      const used = async () => (await stages[0]!.usage(record.id))[0]?.used
      return { hit, used, clients: own }
    }

    it('refuses a cost larger than what is left without spending the rest', async () => {
      const prefix = unique('aon')
      const limiter = limiterOn(
        {},
        { keyPrefix: prefix, points: 5, durationMs: 86_400_000, allOrNothing: true },
      )
      expect((await limiter.consume('k', 3)).remainingPoints).to.equal(2)
      const refused = await limiter.consume('k', 3).then(
        () => expect.fail('consumed past the limit'),
        (e: unknown) => e as { remainingPoints: number; consumedPoints: number },
      )
      expect(refused).to.include({ remainingPoints: 2, consumedPoints: 3 })
      expect(await redis.get(`ptcl:${prefix}:k`)).to.equal('3')
      // What fits still passes.
      expect((await limiter.consume('k', 2)).remainingPoints).to.equal(0)
      // Through the quota stage: the limit-backend conformance suite (test/redis/limit-backends.test.ts).
    })

    it('takes the period from Redis TIME: nodes a day apart count into one period', async () => {
      const name = unique('q-skew')
      const { hit } = await nodes({ name, limit: 1 }, [86_400_000, -86_400_000])
      expect((await hit(0)).status).to.equal(200)
      expect((await hit(1)).status).to.equal(429)
      const [seconds] = await redis.time()
      const today = new Date(Number(seconds) * 1000).toISOString().slice(0, 10)
      const keys = await redis.keys(`ptcl:q:${name}:*`)
      expect(keys).to.have.length(1)
      expect(keys[0]).to.match(new RegExp(`:${today}$`))
    })

    it('reads TIME once per clockRefreshMs, in the background after the first', async () => {
      let monotonic = 0
      const store = createMemoryKeyStore()
      const quotas = createQuotaStage({
        backend: createRedisBackend({
          client: redis,
          clockRefreshMs: 10_000,
          monotonicNow: () => monotonic,
        }),
        quotas: [{ name: unique('q-clock'), limit: 100, period: 'day' }],
      })
      const gate = createGate({
        apiKeys: { store, pepper: PEPPER },
        stages: [quotas],
        audit: false,
      })
      const { key } = await createApiKeyManager({ store, pepper: PEPPER }).create({
        name: 'k',
        ownerId: 'u',
      })
      const hit = () => gate.evaluate(fakeRequest({ headers: { 'x-api-key': key } }))
      const timeCalls = async () =>
        Number(/cmdstat_time:calls=(\d+)/.exec(await redis.info('commandstats'))?.[1] ?? 0)
      const before = await timeCalls()
      for (let i = 0; i < 3; i++) expect((await hit()).status).to.equal(200)
      expect((await timeCalls()) - before).to.equal(1)
      monotonic += 9_999
      await hit()
      expect((await timeCalls()) - before).to.equal(1)
      monotonic += 1
      // TIME goes out before the counter's script on the same connection: done when it answers.
      await hit()
      expect((await timeCalls()) - before).to.equal(2)
    })

    it('applies the quota failure mode when Redis TIME cannot be read', async () => {
      const down = connect(ioredis.Redis, server().port)
      await ready(down)
      down.disconnect()
      const store = createMemoryKeyStore()
      const { key } = await createApiKeyManager({ store, pepper: PEPPER }).create({
        name: 'k',
        ownerId: 'u',
      })
      const statuses: Record<string, number> = {}
      for (const onStoreError of ['closed', 'open'] as const) {
        const gate = createGate({
          apiKeys: { store, pepper: PEPPER },
          stages: [
            createQuotaStage({
              backend: createRedisBackend({ client: down }),
              onStoreError,
              quotas: [{ name: unique('q-down'), limit: 5, period: 'day' }],
            }),
          ],
          audit: false,
        })
        const d = await settled(gate.evaluate(fakeRequest({ headers: { 'x-api-key': key } })))
        statuses[onStoreError] = d.status
        if (!d.allowed) expect(d.error.code).to.equal('ERR_QUOTA_UNAVAILABLE')
      }
      expect(statuses).to.deep.equal({ closed: 503, open: 200 })
    })

    it('counts an Idempotency-Key retry once across nodes (SET NX PX beside the counter)', async () => {
      const { hit, used } = await nodes({ name: unique('q-idem'), limit: 5 }, [0, 0], {
        idempotency: true,
      })
      const first = await hit(0, { 'idempotency-key': 'order-7' })
      const retry = await hit(1, { 'idempotency-key': 'order-7' })
      expect([first.status, retry.status]).to.deep.equal([200, 200])
      expect(await used()).to.equal(1)
      expect(retry.headers.ratelimit).to.match(/;r=4;t=\d+$/)
      const records = await redis.keys('ptcl:qi:*')
      expect(records.length).to.be.at.least(1)
      for (const k of records) expect(await redis.pttl(k)).to.be.within(1, 86_400_000)
    })

    it('drops the idempotency record when the first attempt is refunded (5xx)', async () => {
      const {
        hit,
        used,
        clients: [node0],
      } = await nodes({ name: unique('q-idem-5xx'), limit: 5 }, [0, 0], {
        idempotency: true,
        refundOnServerError: true,
      })
      const first = await hit(0, { 'idempotency-key': 'order-8' })
      if (!first.allowed) return expect.fail('refused')
      first.settle?.(502)
      // The refund and the record's removal go out without waiting, on node 0's connection: a
      // PING answered there comes after them.
      await node0!.ping()
      expect(await used()).to.equal(0)
      expect((await hit(1, { 'idempotency-key': 'order-8' })).status).to.equal(200)
      expect(await used()).to.equal(1)
    })
  })

  describe('across processes', () => {
    let workers: ChildProcessWithoutNullStreams[] = []
    afterEach(() => {
      for (const w of workers) if (w.exitCode === null && w.signalCode === null) w.kill('SIGKILL')
      workers = []
    })

    it('admits exactly 100 of 2,000 concurrent requests from 4 processes sharing one limit', async function () {
      this.timeout(30_000)
      const name = unique('dist')
      workers = Array.from({ length: 4 }, () =>
        spawn(
          process.execPath,
          [
            'test/redis/fixtures/worker.mjs',
            String(server().port),
            name,
            '100',
            '500',
            ioredis.module,
          ],
          { stdio: ['pipe', 'pipe', 'pipe'] },
        ),
      )
      const lines: string[][] = workers.map((w) => {
        const out: string[] = []
        w.stdout.setEncoding('utf8').on('data', (d: string) => out.push(...d.split('\n')))
        w.stderr.setEncoding('utf8').on('data', (d: string) => process.stderr.write(d))
        return out
      })
      const exits = workers.map((w) => once(w, 'exit'))
      // All four connected, then all fire at once.
      const deadline = Date.now() + 10_000
      while (!lines.every((l) => l.includes('ready'))) {
        if (Date.now() > deadline) expect.fail('workers did not get ready')
        await new Promise((r) => setTimeout(r, 20))
      }
      for (const w of workers) w.stdin.write('go\n')
      const codes = (await Promise.all(exits)).map(([code]) => code as number | null)
      expect(codes).to.deep.equal([0, 0, 0, 0])
      const results = lines.map(
        (l) =>
          JSON.parse(l.find((x) => x.startsWith('{')) ?? 'null') as {
            admitted: number
            limited: number
            other: number
          },
      )
      expect(results.map((r) => r.other)).to.deep.equal([0, 0, 0, 0])
      expect(results.reduce((n, r) => n + r.limited, 0)).to.equal(1900)
      expect(results.reduce((n, r) => n + r.admitted, 0)).to.equal(100)
    })
  })

  // Last: these kill and restart the server.
  describe('when Redis fails', () => {
    const gates = (mode: StoreFailureMode, insurance = false) =>
      limitedGate({
        backend: createRedisBackend({ client: redis, insurance }),
        name: unique(mode),
        limit: 2,
        windowMs: '60s',
        mode,
      })
    afterEach(async () => {
      // A failed test must not leave the server down for the next one.
      if (!server().running) await server().restart()
    })

    it('fails closed, open or to the insurance limiter as configured, then resumes', async function () {
      this.timeout(20_000)
      const closed = await gates('closed')
      const open = await gates('open')
      const insured = await gates('insurance', true)
      expect((await closed.hit()).status).to.equal(200)

      await server().kill()
      // hit() fails the test if a request is still pending after 2 s.
      const c = await closed.hit()
      expect(c.status).to.equal(503)
      if (!c.allowed) expect(c.error.code).to.equal('ERR_RATELIMIT_UNAVAILABLE')
      const o = await open.hit()
      expect(o.status).to.equal(200)
      expect(open.warnings.join()).to.include('fail open')
      await open.gate.audit.flush()
      expect(open.sink.events.map((e) => e.customType)).to.include('ratelimit.bypassed')
      // The insurance limiter counts in process memory: 2 allowed, the third refused.
      const i = [await insured.hit(), await insured.hit(), await insured.hit()]
      expect(i.map((d) => d.status)).to.deep.equal([200, 200, 429])
      expect(Math.max(c.ms, o.ms, ...i.map((d) => d.ms))).to.be.below(100)

      await server().restart()
      await ready(redis)
      // A fresh server: counting starts again, in Redis.
      const resumed = await closed.hit()
      expect(resumed.status).to.equal(200)
      expect(parseRateLimit(resumed.headers.ratelimit).r).to.equal(1)
      expect((await insured.hit()).status).to.equal(200)
      expect(await redis.keys('ptcl:rl:insurance-*')).to.have.length(1)
    })

    it('insurance does not hide an outage: counted, start and end logged once, audited, decisions marked (issue 17)', async function () {
      this.timeout(20_000)
      const name = unique('insured')
      const store = createMemoryKeyStore()
      const sink = createMemoryAuditSink()
      const metrics = createMemoryMetrics()
      const logs: [string, Readonly<Record<string, unknown>>][] = []
      const gate = createGate({
        apiKeys: { store, pepper: PEPPER },
        stages: [
          createRateLimitStage({
            backend: createRedisBackend({ client: redis, insurance: true }),
            onStoreError: 'insurance',
            logger: { warn: (f, m) => logs.push([m, f]), error: (f, m) => logs.push([m, f]) },
            limits: [{ name, limit: 2, windowMs: '60s' }],
          }),
        ],
        audit: { sinks: [sink] },
        metrics,
      })
      const { key } = await createApiKeyManager({ store, pepper: PEPPER }).create({
        name: 'k',
        ownerId: 'u',
      })
      const hit = () => settled(gate.evaluate(fakeRequest({ headers: { 'x-api-key': key } })))
      const limitEntry = (d: Decision) => d.trace.find((t) => t.stage === 'ratelimit')
      const before = await hit()
      expect(before.status).to.equal(200)
      expect(limitEntry(before)?.by).to.equal('ratelimit')

      await server().kill()
      const during = [await hit(), await hit(), await hit()]
      expect(during.map((d) => d.status)).to.deep.equal([200, 200, 429])
      // Decisions taken by the insurance limiter say so in their trace.
      expect(limitEntry(during[0]!)?.by).to.equal('insurance')
      expect(limitEntry(during[1]!)?.by).to.equal('insurance')
      expect(limitEntry(during[2]!)?.reason).to.include('(insurance: store unavailable)')
      // Every failure counted; the start logged and audited once.
      expect(metrics.value('storeFailures', { store: 'ratelimit' })).to.equal(3)
      expect(
        metrics.value('failureModeActivations', { store: 'ratelimit', mode: 'insurance' }),
      ).to.equal(3)
      expect(logs.map(([m]) => m)).to.deep.equal([
        'ratelimit: store failed; counting in process memory (insurance) until it answers again',
      ])
      expect(logs[0]![1]).to.include({ store: 'ratelimit', limit: name })
      expect(String(logs[0]![1].error)).to.not.equal('undefined')
      await gate.audit.flush()
      expect(sink.events.filter((e) => e.type === 'ratelimit.degraded')).to.have.length(1)

      await server().restart()
      await ready(redis)
      // The store answers again: the end logged once, decisions no longer marked.
      const after = [await hit(), await hit()]
      expect(after.map((d) => d.status)).to.deep.equal([200, 200])
      expect(limitEntry(after[0]!)?.by).to.equal('ratelimit')
      expect(logs.map(([m]) => m)).to.deep.equal([
        'ratelimit: store failed; counting in process memory (insurance) until it answers again',
        'ratelimit: store answers again; insurance ended',
      ])
      expect(logs[1]![1]).to.include({ store: 'ratelimit', limit: name })
      expect(metrics.value('storeFailures', { store: 'ratelimit' })).to.equal(3)
      await gate.close()
    })

    it('settles every request when Redis is killed under load, then resumes', async function () {
      this.timeout(20_000)
      const closed = await gates('closed')
      const limit = createRateLimitStage({
        backend: createRedisBackend({ client: redis }),
        limits: [{ name: unique('load'), limit: 1_000_000, windowMs: '60s', key: 'ip' }],
      })
      const gate = createGate({ credentialsRequired: false, stages: [limit], audit: false })
      // 50 clients keep requests in flight before, during and after the crash.
      let firing = true
      const seen: Array<{ status: number; ms: number }> = []
      const client = async (i: number): Promise<void> => {
        while (firing) {
          const t = performance.now()
          const d = await settled(gate.evaluate(fakeRequest({ ip: `192.0.2.${i}` })))
          seen.push({ status: d.status, ms: performance.now() - t })
          // While Redis is down a refusal needs no I/O: let the timers run.
          await nextTurn()
        }
      }
      const clients = Array.from({ length: 50 }, (_, i) => client(i))
      await new Promise((r) => setTimeout(r, 100))
      const before = seen.length
      await server().kill()
      await new Promise((r) => setTimeout(r, 200))
      firing = false
      await Promise.all(clients)
      const statuses = new Set(seen.map((s) => s.status))
      expect([...statuses].sort()).to.deep.equal([200, 503])
      expect(seen.slice(0, before).every((s) => s.status === 200)).to.equal(true)
      expect(Math.max(...seen.map((s) => s.ms))).to.be.below(1000)
      await server().restart()
      await ready(redis)
      expect((await closed.hit()).status).to.equal(200)
    })

    it('settles within commandTimeout when Redis hangs with the socket open', async function () {
      this.timeout(20_000)
      const closed = await gates('closed')
      const insured = await gates('insurance', true)
      expect((await closed.hit()).status).to.equal(200)
      await server().pause()
      try {
        const [c, i] = await Promise.all([closed.hit(), insured.hit()])
        expect(c.status).to.equal(503)
        expect(i.status).to.equal(200)
        // commandTimeout is 500 ms: without it these would wait for the kernel to give up.
        expect(c.ms).to.be.within(400, 1500)
      } finally {
        await server().resume()
      }
      // The timeout abandons the reply, not the command: Redis ran the refused request's consume
      // when it woke up, so the count is 2 of 2 and the next request is over the limit.
      const after = await closed.hit()
      expect(after.status).to.equal(429)
      expect(parseRateLimit(after.headers.ratelimit).r).to.equal(0)
      expect(await redis.keys(`ptcl:rl:${closed.name}:*`)).to.have.length(1)
    })
  })
})
