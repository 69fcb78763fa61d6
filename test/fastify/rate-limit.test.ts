// fastifyRateLimit against the real @fastify/rate-limit 11: two Fastify apps, one with each plugin
// and the same options, get the same requests; every answer (status, all headers, body) and every
// callback must agree. Then the deliberate differences, each pinned on its own.
import { expect } from 'chai'
import fc from 'fast-check'
import Fastify, {
  type FastifyInstance,
  type FastifyPluginAsync,
  type FastifyRequest,
  type LightMyRequestResponse,
} from 'fastify'
import theirPlugin from '@fastify/rate-limit'
import sinon from 'sinon'
import { isConfigError } from '@portcullis/core'
import { fastifyRateLimit, normalizeIP, type RateLimitPluginOptions } from '@portcullis/fastify'

// A quarter second past a full second, so every "seconds until reset" is rounded up.
const T0 = Date.UTC(2026, 10, 28, 12, 0, 0, 250)

type Options = Record<string, unknown>
type Log = (event: string, ...args: unknown[]) => void

interface Setup {
  /** Plugin options, built afresh for each app (`log` records callbacks in call order). */
  readonly plugin: (log: Log) => Options
  /** `config.rateLimit` of extra GET routes, by path. */
  readonly routes?: (log: Log) => Record<string, unknown>
  /** Also rate limit 404s with `preHandler: fastify.rateLimit(notFound)`. */
  readonly notFound?: Options | true
  /** Adds more routes before the app is ready. */
  readonly extend?: (app: FastifyInstance) => void
}

interface Step {
  readonly path?: string
  readonly method?: 'GET' | 'POST'
  readonly ip?: string
  readonly headers?: Readonly<Record<string, string>>
  /** Advance the fake clock instead of sending a request. */
  readonly tick?: number
}

interface Exchange {
  readonly status: number
  readonly headers: Record<string, unknown>
  readonly body: string
}

interface App {
  readonly app: FastifyInstance
  readonly calls: unknown[][]
}

const sandbox = sinon.createSandbox()
let clock: sinon.SinonFakeTimers
let apps: FastifyInstance[] = []

async function build(plugin: FastifyPluginAsync<Options>, setup: Setup): Promise<App> {
  const calls: unknown[][] = []
  const log: Log = (event, ...args) => void calls.push([event, ...args])
  const app = Fastify({ trustProxy: true })
  apps.push(app)
  await app.register(plugin, setup.plugin(log))
  const routes: Record<string, unknown> = { '/ok': undefined, ...setup.routes?.(log) }
  for (const [url, rateLimit] of Object.entries(routes)) {
    const config = rateLimit === undefined ? {} : { config: { rateLimit } }
    app.get(url, config as object, async (request) => ({ url, ip: request.ip }))
  }
  app.post('/body', async (request) => ({ body: request.body }))
  if (setup.notFound !== undefined) {
    const options = setup.notFound === true ? undefined : setup.notFound
    app.setNotFoundHandler(
      { preHandler: app.rateLimit(options as never) as never },
      (_request, reply) => reply.code(404).send({ missing: true }),
    )
  }
  setup.extend?.(app)
  await app.ready()
  return { app, calls }
}

async function exchange(app: FastifyInstance, step: Step): Promise<Exchange> {
  const res: LightMyRequestResponse = await app.inject({
    method: step.method ?? 'GET',
    url: step.path ?? '/ok',
    headers: { 'x-forwarded-for': step.ip ?? '203.0.113.1', ...step.headers },
    ...(step.method === 'POST' ? { payload: { hello: 'world' } } : {}),
  })
  return { status: res.statusCode, headers: { ...res.headers }, body: res.body }
}

async function pair(setup: Setup): Promise<[App, App]> {
  const theirs = await build(theirPlugin as unknown as FastifyPluginAsync<Options>, setup)
  const ours = await build(fastifyRateLimit as unknown as FastifyPluginAsync<Options>, setup)
  return [theirs, ours]
}

/** Replays `steps` on both apps, one step at a time; answers and callbacks must be identical. */
async function differential(setup: Setup, steps: readonly Step[]): Promise<Exchange[]> {
  const [theirs, ours] = await pair(setup)
  return replay(theirs, ours, steps)
}

async function replay(theirs: App, ours: App, steps: readonly Step[]): Promise<Exchange[]> {
  const seen: Exchange[] = []
  for (const [i, step] of steps.entries()) {
    if (step.tick !== undefined) {
      clock.tick(step.tick)
      continue
    }
    const expected = await exchange(theirs.app, step)
    const actual = await exchange(ours.app, step)
    expect(actual, `step ${i}: ${JSON.stringify(step)}`).to.deep.equal(expected)
    seen.push(expected)
  }
  expect(ours.calls, 'callbacks').to.deep.equal(theirs.calls)
  return seen
}

const times = (n: number, step: Step = {}): Step[] => Array.from({ length: n }, () => step)
const statuses = (seen: readonly Exchange[]): number[] => seen.map((e) => e.status)
const message = (e: Exchange | undefined): unknown => (JSON.parse(e!.body) as Options).message

describe('fastifyRateLimit (@fastify/rate-limit 11 drop-in)', () => {
  beforeEach(() => {
    // Both stores read Date.now(); only Date is faked, so inject()'s own ticks still run.
    clock = sandbox.useFakeTimers({ now: T0, toFake: ['Date'] })
  })

  afterEach(async () => {
    sandbox.restore()
    await Promise.all(apps.map((app) => app.close()))
    apps = []
  })

  describe('differential against @fastify/rate-limit', () => {
    it('answers identically with max and timeWindow as numbers (headers, 429 body, new window)', async () => {
      const seen = await differential({ plugin: () => ({ max: 2, timeWindow: 5000 }) }, [
        ...times(3),
        { tick: 4999 },
        {},
        { tick: 1 },
        ...times(2),
      ])
      expect(statuses(seen)).to.deep.equal([200, 200, 429, 429, 200, 200])
      expect(seen[0]!.headers).to.include({
        'x-ratelimit-limit': '2',
        'x-ratelimit-remaining': '1',
        'x-ratelimit-reset': '5',
      })
      expect(seen[2]!.headers).to.include({ 'retry-after': '5', 'x-ratelimit-remaining': '0' })
      expect(JSON.parse(seen[2]!.body)).to.deep.equal({
        statusCode: 429,
        error: 'Too Many Requests',
        message: 'Rate limit exceeded, retry in 5 seconds',
      })
    })

    it('answers identically with the defaults (1000 a minute)', async () => {
      const seen = await differential({ plugin: () => ({}) }, times(3))
      expect(seen[2]!.headers).to.include({ 'x-ratelimit-remaining': '997' })
    })

    for (const timeWindow of [
      '1 minute',
      '30 seconds',
      '2 hours',
      '1.5s',
      '10 mins',
      '1h',
      '3 days',
    ]) {
      it(`reads timeWindow '${timeWindow}' and words the wait alike`, async () => {
        const seen = await differential({ plugin: () => ({ max: 1, timeWindow }) }, [
          ...times(2),
          { tick: 1200 },
          {},
        ])
        expect(statuses(seen)).to.include(429)
      })
    }

    it('takes max as an (async) function of (request, key)', async () => {
      const pro: Step = { headers: { 'x-plan': 'pro' }, ip: '198.51.100.7' }
      await differential(
        {
          plugin: (log) => ({
            max: async (request: FastifyRequest, key: string) => {
              log('max', key)
              return request.headers['x-plan'] === 'pro' ? 3 : 1
            },
          }),
        },
        [{}, {}, pro, pro, pro, pro],
      )
    })

    it('keys clients with keyGenerator (a string or a number), and allowList sees that key', async () => {
      const a: Step = { headers: { 'x-api-key': 'alice' } }
      const b: Step = { headers: { 'x-api-key': 'bob' } }
      const seen = await differential(
        {
          plugin: (log) => ({
            max: 1,
            keyGenerator: (request: FastifyRequest) => request.headers['x-api-key'] ?? 42,
            allowList: (request: FastifyRequest, key: string) => {
              log('allowList', key, request.url)
              return key === 'bob'
            },
          }),
        },
        [a, a, b, b, b, {}, {}],
      )
      expect(statuses(seen)).to.deep.equal([200, 429, 200, 200, 200, 200, 429])
      // Allowed keys get no headers at all.
      expect(seen[2]!.headers).not.to.have.property('x-ratelimit-limit')
    })

    it('skips keys in an allowList array, matched against the normalized key', async () => {
      await differential(
        { plugin: () => ({ max: 1, allowList: ['198.51.100.1', '2001:db8:1::'] }) },
        [
          ...times(2, { ip: '198.51.100.1' }),
          ...times(2, { ip: '2001:db8:1::7' }),
          ...times(2, { ip: '2001:db8:2::7' }),
        ],
      )
    })

    for (const ban of [0, 2]) {
      it(`bans with 403 after ban: ${ban} answers over the limit, calling onBanReach`, async () => {
        const seen = await differential(
          {
            plugin: (log) => ({
              max: 1,
              ban,
              onBanReach: (_request: FastifyRequest, key: string) => log('ban', key),
              onExceeded: (_request: FastifyRequest, key: string) => log('exceeded', key),
              onExceeding: (_request: FastifyRequest, key: string) => log('exceeding', key),
            }),
          },
          times(5),
        )
        expect(statuses(seen).filter((s) => s === 403)).to.have.length(ban === 0 ? 4 : 2)
      })
    }

    it('passes the same context to errorResponseBuilder, and throws what it returns', async () => {
      const seen = await differential(
        {
          plugin: () => ({
            max: 1,
            ban: 1,
            timeWindow: '90 seconds',
            errorResponseBuilder: (request: FastifyRequest, context: Options) => ({
              statusCode: context.statusCode,
              url: request.url,
              ...context,
            }),
          }),
        },
        times(4),
      )
      expect(JSON.parse(seen[2]!.body)).to.include({ statusCode: 403 })
    })

    const flags = (names: string[], on: boolean[]): Options =>
      Object.fromEntries(names.map((n, i) => [n, on[i % on.length]]))
    const legacy = ['x-ratelimit-limit', 'x-ratelimit-remaining', 'x-ratelimit-reset']
    const draft = ['ratelimit-limit', 'ratelimit-remaining', 'ratelimit-reset']
    for (const enableDraftSpec of [false, true]) {
      const names = enableDraftSpec ? draft : legacy
      for (const pattern of [[true], [false], [true, false], [false, true, false]]) {
        it(`switches headers alike: enableDraftSpec ${enableDraftSpec}, flags ${pattern}`, async () => {
          await differential(
            {
              plugin: () => ({
                max: 1,
                enableDraftSpec,
                addHeaders: flags([...names, 'retry-after'], pattern),
                addHeadersOnExceeding: flags(names, [...pattern].reverse()),
              }),
            },
            times(2),
          )
        })
      }
    }

    for (const hook of ['onRequest', 'preParsing', 'preValidation', 'preHandler']) {
      it(`counts in the ${hook} hook`, async () => {
        const post: Step = { method: 'POST', path: '/body' }
        await differential({ plugin: () => ({ max: 2, hook }) }, [post, {}, post, post, {}])
      })
    }

    it('limits only routes with config.rateLimit when global is false, each with its own count', async () => {
      const seen = await differential(
        {
          plugin: () => ({ global: false, max: 1 }),
          routes: () => ({ '/a': { max: 2 }, '/b': { timeWindow: '1 minute' }, '/off': false }),
        },
        [...times(2), ...times(3, { path: '/a' }), ...times(2, { path: '/b' }), { path: '/off' }],
      )
      expect(statuses(seen)).to.deep.equal([200, 200, 200, 200, 429, 200, 429, 200])
    })

    it('shares the global count across routes, opts routes out, and groups routes by groupId', async () => {
      await differential(
        {
          plugin: () => ({ max: 2 }),
          routes: () => ({
            '/off': false,
            '/null': null,
            '/g1': { max: 3, groupId: 'otp' },
            '/g2': { max: 3, groupId: 'otp' },
          }),
        },
        [
          {},
          { path: '/null' },
          {},
          ...times(2, { path: '/off' }),
          ...times(2, { path: '/g1' }),
          ...times(2, { path: '/g2' }),
        ],
      )
    })

    it('merges route options over the plugin options (a route addHeaders map replaces the plugin one)', async () => {
      await differential(
        {
          plugin: (log) => ({
            max: 3,
            addHeaders: { 'retry-after': false },
            onExceeded: (_request: FastifyRequest, key: string) => log('plugin exceeded', key),
          }),
          routes: (log) => ({
            '/a': {
              max: 1,
              hook: 'preHandler',
              addHeaders: { 'x-ratelimit-limit': true },
              addHeadersOnExceeding: { 'x-ratelimit-reset': false },
              onExceeded: (_request: FastifyRequest, key: string) => log('route exceeded', key),
            },
            '/b': { timeWindow: 2000, keyGenerator: () => 'everyone' },
          }),
        },
        [
          ...times(3, { path: '/a' }),
          ...times(2, { path: '/b', ip: '198.51.100.1' }),
          { path: '/b', ip: '198.51.100.2' },
          ...times(4, { path: '/b', ip: '198.51.100.3' }),
          ...times(5),
        ],
      )
    })

    it('restarts the window on every request over the limit with continueExceeding', async () => {
      const seen = await differential({ plugin: () => ({ max: 1, continueExceeding: true }) }, [
        {},
        { tick: 30_000 },
        {},
        { tick: 45_000 },
        {},
        { tick: 60_000 },
        {},
      ])
      expect(statuses(seen)).to.deep.equal([200, 429, 429, 200])
    })

    it('reports exponentialBackoff waits alike within a window', async () => {
      const seen = await differential(
        { plugin: () => ({ max: 1, exponentialBackoff: true, timeWindow: 10_000 }) },
        [...times(4), { tick: 5000 }, ...times(2)],
      )
      expect(seen.map((e) => e.headers['retry-after'])).to.deep.equal([
        undefined,
        '10',
        '20',
        '40',
        '80',
        '160',
      ])
    })

    it('rate limits 404s through fastify.rateLimit(), with the plugin options or its own', async () => {
      await differential({ plugin: () => ({ max: 1, global: false }), notFound: true }, [
        ...times(3, { path: '/nope' }),
      ])
      await differential({ plugin: () => ({ max: 1 }), notFound: { max: 2 } }, [
        ...times(3, { path: '/nope' }),
        ...times(2),
      ])
    })

    /** A @fastify/rate-limit store class: what users pass as `store`. */
    function mapStore(log: Log, failing = false) {
      return class MapStore {
        readonly hits = new Map<string, { current: number; until: number }>()
        constructor(readonly options: Options) {
          log('store', options.timeWindow, options.max)
        }
        incr(
          key: string,
          cb: (e: Error | null, r?: { current: number; ttl: number }) => void,
          timeWindow: number,
          max: number,
        ): void {
          log('incr', key, timeWindow, max)
          if (failing) return cb(new Error('store down'))
          let c = this.hits.get(key)
          if (c === undefined || c.until <= Date.now()) {
            c = { current: 0, until: Date.now() + timeWindow }
            this.hits.set(key, c)
          }
          c.current++
          cb(null, { current: c.current, ttl: c.until - Date.now() })
        }
        child(options: Options): MapStore {
          log('child', options.max, (options.routeInfo as { url?: string }).url)
          return new MapStore({ ...this.options, ...options })
        }
      }
    }

    it('uses the same custom store class in both (constructor, incr, child)', async () => {
      await differential(
        {
          plugin: (log) => ({ max: 2, timeWindow: '1 minute', store: mapStore(log) }),
          routes: () => ({ '/a': { max: 1 } }),
        },
        [...times(3), ...times(2, { path: '/a' }), { tick: 60_000 }, {}],
      )
    })

    it('lets requests through with full headers when the store fails and skipOnError is set', async () => {
      const seen = await differential(
        { plugin: (log) => ({ max: 2, skipOnError: true, store: mapStore(log, true) }) },
        times(3),
      )
      expect(seen[2]!.headers).to.include({
        'x-ratelimit-remaining': '2',
        'x-ratelimit-reset': '0',
      })
    })

    it('answers createRateLimit() alike, counting or only reading', async () => {
      const [theirs, ours] = await pair({
        plugin: () => ({ global: false, max: 2 }),
        extend: (app) => {
          const count = app.createRateLimit()
          const own = app.createRateLimit({ max: 1, allowList: ['198.51.100.9'] })
          app.get('/count', async (request) => count(request))
          app.get('/peek', async (request) => count(request, { increment: false }))
          app.get('/own', async (request) => own(request))
        },
      })
      const paths = ['/peek', '/count', '/peek', '/count', '/count', '/own', '/own', '/peek']
      await replay(theirs, ours, [
        ...paths.map((path) => ({ path })),
        { path: '/own', ip: '198.51.100.9' },
        { tick: 60_000 },
        { path: '/peek' },
      ])
    })

    it('normalizes client addresses as normalizeIP does (IPv4, mapped, IPv6 /64)', async () => {
      const { normalizeIP: theirNormalizeIP } = theirPlugin as unknown as {
        normalizeIP: (ip: string, subnet?: number) => string
      }
      fc.assert(
        fc.property(fc.ipV6(), fc.integer({ min: 1, max: 128 }), (ip, subnet) => {
          expect(normalizeIP(ip, subnet), ip).to.equal(theirNormalizeIP(ip, subnet))
        }),
        { numRuns: 2000 },
      )
      const ips = [
        '2001:db8:1:2::1',
        '2001:DB8:1:2:ff::9',
        '::ffff:198.51.100.4',
        '198.51.100.4',
        '::1.2.3.4',
      ]
      await differential(
        { plugin: () => ({ max: 1 }) },
        ips.flatMap((ip) => [{ ip }, { ip }]),
      )
      await differential(
        { plugin: () => ({ max: 1, ipv6Subnet: 128 }) },
        ips.map((ip) => ({ ip })),
      )
    })

    it('answers every generated sequence alike over generated options', async () => {
      const maxOf = async (request: FastifyRequest, key: string) =>
        request.headers['x-plan'] === 'pro' || key.endsWith('2') ? 3 : 1
      const options = fc.record(
        {
          max: fc.oneof(fc.integer({ min: 0, max: 3 }), fc.constant(maxOf)),
          timeWindow: fc.constantFrom(1000, 2500, 60_000, '1 minute', '30 seconds', '2s'),
          ban: fc.integer({ min: 0, max: 2 }),
          continueExceeding: fc.boolean(),
          enableDraftSpec: fc.boolean(),
          hook: fc.constantFrom('onRequest', 'preHandler', 'preValidation', 'preParsing'),
          allowList: fc.constantFrom(
            ['198.51.100.3'],
            (_r: FastifyRequest, k: string) => k === '198.51.100.3',
          ),
          global: fc.boolean(),
        },
        { requiredKeys: [] },
      )
      const route = fc.oneof(
        fc.constant(false),
        fc.constant(undefined),
        fc.record(
          {
            max: fc.integer({ min: 0, max: 3 }),
            timeWindow: fc.constantFrom(1500, '5 seconds'),
            groupId: fc.constant('g'),
          },
          { requiredKeys: [] },
        ),
      )
      const step = fc.oneof(
        fc.record({
          ip: fc.constantFrom('198.51.100.1', '198.51.100.2', '198.51.100.3', '2001:db8::2'),
          path: fc.constantFrom('/ok', '/a', '/b', '/nope'),
          headers: fc.constantFrom<Record<string, string>>({}, { 'x-plan': 'pro' }),
        }),
        fc.record({ tick: fc.integer({ min: 1, max: 70_000 }) }),
      )
      await fc.assert(
        fc.asyncProperty(
          options,
          route,
          route,
          fc.array(step, { maxLength: 20 }),
          async (o, a, b, steps) => {
            clock.setSystemTime(T0)
            const routes = () =>
              Object.fromEntries(
                Object.entries({ '/a': a, '/b': b }).filter(([, r]) => r !== undefined),
              )
            await differential({ plugin: () => ({ ...o }), routes, notFound: true }, steps)
            await Promise.all(apps.map((app) => app.close()))
            apps = []
          },
        ),
        { numRuns: 100 },
      )
    })
  })

  describe('deliberate differences from @fastify/rate-limit', () => {
    it('with problemDetails: true, answers limited requests with an RFC 9457 problem, headers unchanged', async () => {
      const setup: Setup = { plugin: () => ({ max: 1, ban: 1 }) }
      const theirs = await build(theirPlugin as unknown as FastifyPluginAsync<Options>, setup)
      const ours = await build(fastifyRateLimit as unknown as FastifyPluginAsync<Options>, {
        plugin: () => ({ ...setup.plugin(() => {}), problemDetails: true }),
      })
      const problems = []
      for (let i = 0; i < 3; i++) {
        const expected = await exchange(theirs.app, {})
        const actual = await exchange(ours.app, {})
        expect(actual.status).to.equal(expected.status)
        const strip = ({ 'content-type': _t, 'content-length': _l, ...rest }: Options) => rest
        expect(strip(actual.headers)).to.deep.equal(strip(expected.headers))
        if (i > 0) {
          expect(actual.headers['content-type']).to.equal('application/problem+json')
          problems.push(JSON.parse(actual.body) as Options)
        }
      }
      expect(problems[0]).to.include({
        status: 429,
        code: 'ERR_RATE_LIMITED',
        policy: '1-in-60s',
        retryAfter: 60,
      })
      expect(problems[0]!.type).to.equal('urn:portcullis:problem:rate-limited')
      expect(problems[1]).to.include({ status: 403, code: 'ERR_POLICY_DENIED' })
    })

    it('refuses problemDetails together with errorResponseBuilder', async () => {
      const app = Fastify()
      apps.push(app)
      const caught = await app
        .register(fastifyRateLimit, { problemDetails: true, errorResponseBuilder: () => ({}) })
        .ready()
        .then(
          () => undefined,
          (error: unknown) => error,
        )
      expect(isConfigError(caught)).to.equal(true)
      expect((caught as Error).message).to.match(/problemDetails/)
    })

    it('fails requests with ERR_RATELIMIT_UNAVAILABLE (503) when the store fails, never with its error (500)', async () => {
      const Failing = class {
        incr(_k: string, cb: (e: Error) => void): void {
          cb(new Error('connect ECONNREFUSED 10.0.0.5:6379'))
        }
        child() {
          return this
        }
      }
      const [theirs, ours] = await pair({ plugin: () => ({ store: Failing }) })
      const expected = await exchange(theirs.app, {})
      const actual = await exchange(ours.app, {})
      expect(expected.status).to.equal(500)
      expect(message(expected)).to.equal('connect ECONNREFUSED 10.0.0.5:6379')
      expect(actual.status).to.equal(503)
      expect(JSON.parse(actual.body)).to.deep.equal({
        statusCode: 503,
        code: 'ERR_RATELIMIT_UNAVAILABLE',
        error: 'Service Unavailable',
        message: 'Rate limiting is unavailable',
      })
    })

    it('restarts the window for the whole backoff with exponentialBackoff, as their Redis store does', async () => {
      const [theirs, ours] = await pair({
        plugin: () => ({ max: 1, exponentialBackoff: true, timeWindow: 10_000 }),
      })
      await replay(theirs, ours, times(3))
      // Retry-After said 20 s; their memory store lets the client in again after 10 s.
      clock.tick(10_000)
      expect((await exchange(theirs.app, {})).status).to.equal(200)
      expect((await exchange(ours.app, {})).status).to.equal(429)
    })

    async function refusal(options: Options, route?: unknown): Promise<unknown> {
      const app = Fastify()
      apps.push(app)
      try {
        await app.register(fastifyRateLimit, options as RateLimitPluginOptions)
        if (route !== undefined)
          app.get('/x', { config: { rateLimit: route as never } }, async () => 'x')
        await app.ready()
      } catch (error) {
        return error
      }
      return undefined
    }

    it('throws ConfigError for bad options where @fastify/rate-limit falls back to defaults', async () => {
      const cases: [Options, RegExp][] = [
        [{ max: '10' }, /fastifyRateLimit\.max: .*"10"/],
        [{ max: -1 }, /fastifyRateLimit\.max: .*-1/],
        [
          { timeWindow: '1 fortnight' },
          /fastifyRateLimit\.timeWindow: .*'1 minute'.*"1 fortnight"/,
        ],
        [{ timeWindow: 0 }, /timeWindow/],
        [{ ban: 'two' }, /fastifyRateLimit\.ban/],
        [{ hook: 'onSend' }, /fastifyRateLimit\.hook: unknown hook "onSend"/],
        [{ ipv6Subnet: 0 }, /fastifyRateLimit\.ipv6Subnet/],
        [{ allowList: '127.0.0.1' }, /fastifyRateLimit\.allowList: must be an array/],
        [
          { addHeaders: { 'X-RateLimit-Limit': false } },
          /addHeaders\.X-RateLimit-Limit: unknown header/,
        ],
        [
          { addHeaders: { 'x-ratelimit-limit': false }, enableDraftSpec: true },
          /did you mean "ratelimit-limit"/,
        ],
        [{ addHeadersOnExceeding: { 'retry-after': true } }, /addHeadersOnExceeding\.retry-after/],
        [{ onExceeded: 'log' }, /onExceeded: must be a function/],
        [{ store: {} }, /store: must be a function/],
        [{ redis: {} }, /fastifyRateLimit\.redis: is not supported/],
        [{ nameSpace: 'rl-' }, /fastifyRateLimit\.nameSpace: is not supported/],
      ]
      for (const [options, pattern] of cases) {
        const theirs = Fastify()
        apps.push(theirs)
        if (!('redis' in options || 'store' in options))
          await theirs.register(theirPlugin, options as never).ready()
        const caught = await refusal(options)
        expect(isConfigError(caught), JSON.stringify(options)).to.equal(true)
        expect((caught as Error).message).to.match(pattern)
      }
    })

    it('refuses a bad route config when the route is added, and plugin-wide options on a route', async () => {
      expect((await refusal({}, true)) as Error).to.satisfy(isConfigError)
      expect(((await refusal({}, true)) as Error).message).to.equal(
        'GET /x config.rateLimit: must be an object or false, received true',
      )
      expect(((await refusal({}, { max: 'x' })) as Error).message).to.match(
        /^GET \/x config\.rateLimit\.max: /,
      )
      for (const name of ['global', 'enableDraftSpec', 'store', 'redis', 'nameSpace']) {
        const caught = (await refusal({}, { [name]: true })) as Error
        expect(isConfigError(caught)).to.equal(true)
        expect(caught.message).to.include(`${name}: is plugin-wide`)
      }
    })

    it('warns about an unknown option through fastify.log, with a did-you-mean', async () => {
      const lines: string[] = []
      const app = Fastify({
        logger: { level: 'warn', stream: { write: (l: string) => void lines.push(l) } },
      })
      apps.push(app)
      await app.register(fastifyRateLimit, { maxx: 1 } as never).ready()
      const warning = JSON.parse(lines[0]!) as Options
      expect(warning).to.include({
        level: 40,
        msg: 'fastifyRateLimit.maxx: unknown option "maxx"; did you mean "max"?',
      })
    })
  })
})
