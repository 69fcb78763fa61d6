import type { Server } from 'node:http'
import { expect } from 'chai'
import express, {
  type ErrorRequestHandler,
  type Express,
  type NextFunction,
  type Request,
  type RequestHandler,
  type Response,
} from 'express'
import {
  MemoryStore as ErlMemoryStore,
  rateLimit as erlRateLimit,
  type Options as ErlOptions,
} from 'express-rate-limit'
import sinon from 'sinon'
import request from 'supertest'
import { isAuthError, isConfigError } from '@portcullis/core'
import {
  MemoryStore,
  rateLimit,
  type RateLimitInfo,
  type RateLimitOptions,
  type RateLimitOptionsUsed,
  type RateLimitRequestHandler,
} from '@portcullis/express'

// A quarter second past a full second, so every "seconds until reset" is rounded up.
const T0 = Date.UTC(2026, 10, 28, 12, 0, 0, 250)
const LIMIT_HEADER = /^(x-ratelimit-|ratelimit|retry-after$)/i

/** The same options, built afresh for each library (so stateful objects are not shared). */
type Shared = () => Record<string, unknown>

interface Step {
  readonly path?: string
  readonly headers?: Readonly<Record<string, string>>
  /** Advance the fake clock instead of sending a request. */
  readonly tick?: number
}

interface Exchange {
  readonly status: number
  readonly type: string | undefined
  readonly body: string
  /** Rate-limit header fields as sent: name (in its case) and value, in order. */
  readonly headers: readonly (readonly [string, string])[]
  /** Every header line as sent (with the clock frozen, even Date and ETag must agree). */
  readonly raw: readonly string[]
}

interface AppSetup {
  readonly trustProxy?: boolean
  readonly property?: string
}

const sandbox = sinon.createSandbox()
let clock: sinon.SinonFakeTimers | undefined
let servers: Server[] = []

function infoOf(req: Request, property = 'rateLimit'): unknown {
  return (req as unknown as Record<string, unknown>)[property] ?? null
}

const rateLimitOf = (req: Request): RateLimitInfo =>
  (req as unknown as { rateLimit: RateLimitInfo }).rateLimit

const reportErrors: ErrorRequestHandler = (error: unknown, _req, res, _next) => {
  const e = error as { status?: number; code?: string; message?: string }
  res.status(e.status ?? 500).json({ error: e.message, code: e.code ?? null })
}

function makeApp(limiter: RequestHandler, setup: AppSetup = {}): Express {
  const app = express()
  if (setup.trustProxy === true) app.set('trust proxy', true)
  app.use(limiter)
  app.get('/ok', (req, res) => {
    res.json(infoOf(req, setup.property))
  })
  app.get('/fail', (req, res) => {
    res.status(500).json(infoOf(req, setup.property))
  })
  app.use(reportErrors)
  return app
}

function serve(app: Express): Server {
  const server = app.listen(0)
  servers.push(server)
  return server
}

async function exchange(server: Server, step: Step): Promise<Exchange> {
  let req = request(server).get(step.path ?? '/ok')
  for (const [name, value] of Object.entries(step.headers ?? {})) req = req.set(name, value)
  const res = await req
  // supertest's types omit the Node response, whose rawHeaders keep names in their case.
  // The Date value is masked: the two servers answer a moment apart and may straddle a second.
  const raw = (res as unknown as { res: { rawHeaders: string[] } }).res.rawHeaders.map((v, i, a) =>
    i % 2 === 1 && a[i - 1]!.toLowerCase() === 'date' ? '<date>' : v,
  )
  const headers: [string, string][] = []
  for (let i = 0; i < raw.length; i += 2)
    if (LIMIT_HEADER.test(raw[i]!)) headers.push([raw[i]!, raw[i + 1]!])
  return { status: res.status, type: res.headers['content-type'], body: res.text, headers, raw }
}

function pair(
  shared: Shared,
  setup: AppSetup = {},
): { theirs: RateLimitRequestHandler; ours: RateLimitRequestHandler; apps: [Server, Server] } {
  const theirs = erlRateLimit(shared() as Partial<ErlOptions>) as unknown as RateLimitRequestHandler
  const ours = rateLimit(shared() as RateLimitOptions)
  return { theirs, ours, apps: [serve(makeApp(theirs, setup)), serve(makeApp(ours, setup))] }
}

/** Sends the same steps to both apps, one step at a time, and asserts identical answers. */
async function differential(
  shared: Shared,
  steps: readonly Step[],
  setup: AppSetup = {},
): Promise<Exchange[]> {
  const {
    apps: [theirs, ours],
  } = pair(shared, setup)
  return replay(theirs, ours, steps)
}

async function replay(theirs: Server, ours: Server, steps: readonly Step[]): Promise<Exchange[]> {
  const seen: Exchange[] = []
  for (const step of steps) {
    if (step.tick !== undefined) {
      clock!.tick(step.tick)
      continue
    }
    const expected = await exchange(theirs, step)
    const actual = await exchange(ours, step)
    expect(actual, `step ${seen.length}: ${JSON.stringify(step)}`).to.deep.equal(expected)
    seen.push(expected)
  }
  return seen
}

const times = (n: number, step: Step = {}): Step[] => Array.from({ length: n }, () => step)
/** The `req.rateLimit` a route answered with, or `undefined` for a limited answer. */
const infoIn = (e: Exchange | undefined): Record<string, unknown> | null | undefined =>
  e?.status === 200 ? (JSON.parse(e.body) as Record<string, unknown> | null) : undefined
const statuses = (seen: readonly Exchange[]): number[] => seen.map((e) => e.status)
const header = (e: Exchange | undefined, name: string): string | undefined =>
  e?.headers.find(([n]) => n.toLowerCase() === name.toLowerCase())?.[1]

describe('rateLimit (express-rate-limit 8 drop-in)', () => {
  beforeEach(() => {
    // Both libraries read Date.now(); express-rate-limit's MemoryStore also sweeps with
    // setInterval, so that is faked too, to keep its sweeps in step with the fake clock.
    clock = sandbox.useFakeTimers({ now: T0, toFake: ['Date', 'setInterval', 'clearInterval'] })
  })

  afterEach(async () => {
    sandbox.restore()
    clock = undefined
    await Promise.all(
      servers.map(
        (s) =>
          new Promise<void>((resolve) => {
            s.closeAllConnections()
            s.close(() => resolve())
          }),
      ),
    )
    servers = []
  })

  describe('differential against express-rate-limit', () => {
    it('answers identically with the defaults (limit 5 per minute, legacy headers only)', async () => {
      const seen = await differential(() => ({}), times(7))
      expect(statuses(seen)).to.deep.equal([200, 200, 200, 200, 200, 429, 429])
      expect(seen[0]!.headers.map(([n]) => n)).to.deep.equal([
        'X-RateLimit-Limit',
        'X-RateLimit-Remaining',
        'X-RateLimit-Reset',
      ])
      expect(header(seen[0], 'x-ratelimit-reset')).to.equal(String(Math.ceil((T0 + 60_000) / 1000)))
      expect(seen[5]!.body).to.equal('Too many requests, please try again later.')
      expect(header(seen[5], 'retry-after')).to.equal('60')
      const info = JSON.parse(seen[2]!.body) as Record<string, unknown>
      expect(info).to.include({ limit: 5, used: 3, remaining: 2 })
      expect(info.resetTime).to.equal(new Date(T0 + 60_000).toISOString())
    })

    for (const standardHeaders of [true, 'draft-6', 'draft-7', 'draft-8'] as const) {
      for (const legacyHeaders of [true, false]) {
        it(`sends identical headers with standardHeaders ${standardHeaders}, legacyHeaders ${legacyHeaders}`, async () => {
          const seen = await differential(
            () => ({ standardHeaders, legacyHeaders, limit: 3, windowMs: 90_000 }),
            [...times(2), { tick: 30_500 }, ...times(3)],
          )
          expect(statuses(seen)).to.deep.equal([200, 200, 200, 429, 429])
          expect(header(seen[3], 'retry-after')).to.equal('60')
          expect(header(seen[0], 'ratelimit-policy')).to.match(/3.*w=90/)
        })
      }
    }

    it('names draft-8 policies as express-rate-limit does (default identifiers per window)', async () => {
      for (const windowMs of [30_000, 90_000, 3_600_000, 7_200_000, 86_400_000, 172_800_000]) {
        const [first] = await differential(
          () => ({ standardHeaders: 'draft-8', windowMs, limit: 4 }),
          times(1),
        )
        expect(header(first, 'ratelimit')).to.match(/^"4-in-\d/)
      }
    })

    it('uses a draft-8 identifier given as a string or as a function', async () => {
      const [first] = await differential(
        () => ({ standardHeaders: 'draft-8', identifier: 'per-client' }),
        times(2),
      )
      expect(header(first, 'ratelimit')).to.equal('"per-client"; r=4; t=60')
      await differential(
        () => ({
          standardHeaders: 'draft-8',
          identifier: async (req: Request) =>
            `plan-${req.get('x-plan') ?? 'free'}-${rateLimitOf(req).limit}`,
        }),
        [{}, { headers: { 'x-plan': 'pro' } }],
      )
    })

    it('sends no headers, not even Retry-After, with both header options off', async () => {
      const seen = await differential(
        () => ({ standardHeaders: false, legacyHeaders: false, limit: 1 }),
        times(2),
      )
      expect(statuses(seen)).to.deep.equal([200, 429])
      expect(seen.flatMap((e) => e.headers)).to.deep.equal([])
      await differential(() => ({ headers: false, limit: 1 }), times(2))
      await differential(() => ({ headers: false, legacyHeaders: true, limit: 1 }), times(2))
    })

    it('sends a custom message (string, object, async function) and statusCode', async () => {
      let seen = await differential(() => ({ limit: 1, message: 'Slow down' }), times(2))
      expect(seen[1]).to.include({ status: 429, body: 'Slow down' })
      seen = await differential(
        () => ({ limit: 1, statusCode: 503, message: { error: 'slow' } }),
        times(2),
      )
      expect(seen[1]).to.include({ status: 503, body: '{"error":"slow"}' })
      seen = await differential(
        () => ({
          limit: 1,
          statusCode: 418,
          message: async (req: Request, res: Response) => ({
            status: res.statusCode,
            used: rateLimitOf(req).used,
          }),
        }),
        times(2),
      )
      expect(JSON.parse(seen[1]!.body)).to.deep.equal({ status: 418, used: 2 })
    })

    it('calls a custom handler with (req, res, next, optionsUsed)', async () => {
      const handler = (
        req: Request,
        res: Response,
        _next: NextFunction,
        o: RateLimitOptionsUsed,
      ) => {
        res.status(o.statusCode).json({
          message: o.message,
          limit: o.limit,
          windowMs: o.windowMs,
          standardHeaders: o.standardHeaders,
          legacyHeaders: o.legacyHeaders,
          property: o.requestPropertyName,
          skipFailedRequests: o.skipFailedRequests,
          passOnStoreError: o.passOnStoreError,
          ipv6Subnet: o.ipv6Subnet,
          info: rateLimitOf(req),
        })
      }
      const seen = await differential(
        () => ({ limit: 2, standardHeaders: 'draft-7', handler }),
        times(3),
      )
      expect(JSON.parse(seen[2]!.body)).to.include({
        message: 'Too many requests, please try again later.',
        limit: 2,
      })
      // A handler may also let the request through, or fail it.
      await differential(
        () => ({ limit: 1, handler: (_q: Request, _s: Response, next: NextFunction) => next() }),
        times(3),
      )
      const failing = await differential(
        () => ({
          limit: 1,
          handler: async () => {
            throw new Error('handler broke')
          },
        }),
        times(2),
      )
      expect(failing[1]).to.include({ status: 500 })
    })

    it('does not count skipped requests', async () => {
      const skipped: Step = { headers: { 'x-skip': '1' } }
      const seen = await differential(
        () => ({ limit: 2, skip: async (req: Request) => req.get('x-skip') === '1' }),
        [{}, skipped, {}, skipped, {}, skipped],
      )
      expect(statuses(seen)).to.deep.equal([200, 200, 200, 200, 429, 200])
      expect(seen[1]!.body).to.equal('null')
    })

    const mixed: Step[] = [
      { path: '/ok' },
      { path: '/fail' },
      { path: '/ok' },
      { path: '/fail' },
      { path: '/fail' },
      { path: '/ok' },
      { path: '/ok' },
    ]

    it('gives successful requests back with skipSuccessfulRequests', async () => {
      const seen = await differential(
        () => ({ limit: 2, skipSuccessfulRequests: true, standardHeaders: 'draft-6' }),
        mixed,
      )
      expect(statuses(seen)).to.deep.equal([200, 500, 200, 500, 429, 429, 429])
    })

    it('gives failed requests back with skipFailedRequests', async () => {
      const seen = await differential(
        () => ({ limit: 2, skipFailedRequests: true, standardHeaders: 'draft-8' }),
        mixed,
      )
      expect(statuses(seen)).to.deep.equal([200, 500, 200, 429, 429, 429, 429])
    })

    it('follows requestWasSuccessful and both skip options together', async () => {
      await differential(
        () => ({
          limit: 2,
          skipFailedRequests: true,
          skipSuccessfulRequests: true,
          requestWasSuccessful: (_req: Request, res: Response) => res.statusCode < 500,
        }),
        mixed,
      )
      await differential(
        () => ({
          limit: 3,
          skipFailedRequests: true,
          requestWasSuccessful: async (_req: Request, res: Response) => res.statusCode !== 500,
        }),
        [...mixed, { tick: 60_000 }, ...mixed],
      )
    })

    it('keys clients with a custom keyGenerator', async () => {
      const a: Step = { headers: { 'x-api-key': 'alice' } }
      const b: Step = { headers: { 'x-api-key': 'bob' } }
      const seen = await differential(
        () => ({
          limit: 2,
          standardHeaders: 'draft-8',
          keyGenerator: (req: Request) => req.get('x-api-key') ?? 'anonymous',
        }),
        [a, a, b, a, b, {}, b],
      )
      expect(statuses(seen)).to.deep.equal([200, 200, 200, 429, 200, 200, 429])
      expect(JSON.parse(seen[2]!.body)).to.include({ key: 'bob', used: 1 })
    })

    it('stores the info under requestPropertyName', async () => {
      const seen = await differential(
        () => ({ limit: 2, requestPropertyName: 'limits' }),
        times(3),
        { property: 'limits' },
      )
      expect(JSON.parse(seen[1]!.body)).to.include({ used: 2, remaining: 0 })
    })

    it('takes limit as an (async) function, max as its alias, and limit over max', async () => {
      const pro: Step = { headers: { 'x-plan': 'pro' } }
      const seen = await differential(
        () => ({ limit: async (req: Request) => (req.get('x-plan') === 'pro' ? 4 : 2) }),
        [{}, {}, {}, pro, pro],
      )
      expect(statuses(seen)).to.deep.equal([200, 200, 429, 200, 429])
      await differential(() => ({ max: 3 }), times(4))
      await differential(
        () => ({ max: (req: Request) => (req.get('x-plan') ? 1 : 2) }),
        [{}, pro, {}],
      )
      await differential(() => ({ max: 1, limit: 3 }), times(4))
      const zero = await differential(() => ({ limit: 0, standardHeaders: 'draft-7' }), times(2))
      expect(statuses(zero)).to.deep.equal([429, 429])
    })

    it('sends the retryAfter option as Retry-After', async () => {
      await differential(() => ({ limit: 1, retryAfter: 30 }), times(2))
      await differential(
        () => ({ limit: 1, standardHeaders: 'draft-8', retryAfter: async () => 7 }),
        times(2),
      )
    })

    const v6 = (ip: string): Step => ({ headers: { 'x-forwarded-for': ip } })
    const addresses = [
      v6('2001:db8:1::1'),
      v6('2001:db8:1:ff::2'), // same /56 as the first
      v6('2001:db8:1:100::1'), // next /56
      v6('2001:db8:1:0:ffff::9'),
      v6('::ffff:203.0.113.9'), // IPv4-mapped: keyed as 203.0.113.9
      v6('203.0.113.9'),
      v6('2001:DB8:1:0::7'),
    ]

    for (const ipv6Subnet of [undefined, 64, 48, 32, false]) {
      it(`groups IPv6 clients by ipv6Subnet ${String(ipv6Subnet)}`, async () => {
        const seen = await differential(
          () => ({ limit: 2, standardHeaders: 'draft-8', ipv6Subnet, validate: false }),
          [...addresses, ...addresses],
          { trustProxy: true },
        )
        const keys = seen.map((e) => infoIn(e)?.key)
        expect(keys[4]).to.equal('203.0.113.9')
        if (ipv6Subnet === undefined) expect(keys[0]).to.equal('2001:db8:1::/56')
      })
    }

    it('takes ipv6Subnet as a function of the request', async () => {
      await differential(
        () => ({
          limit: 1,
          ipv6Subnet: (req: Request) => (req.get('x-wide') === '1' ? 40 : 64),
          validate: false,
        }),
        [...addresses, { headers: { 'x-forwarded-for': '2001:db8:1::1', 'x-wide': '1' } }],
        { trustProxy: true },
      )
    })

    class MapStore {
      windowMs = 0
      readonly hits = new Map<string, { totalHits: number; resetTime: Date }>()
      init(options: { windowMs: number }): void {
        this.windowMs = options.windowMs
      }
      async increment(key: string): Promise<{ totalHits: number; resetTime: Date }> {
        let c = this.hits.get(key)
        if (c === undefined || c.resetTime.getTime() <= Date.now()) {
          c = { totalHits: 0, resetTime: new Date(Date.now() + this.windowMs) }
          this.hits.set(key, c)
        }
        c.totalHits++
        return { ...c }
      }
      async decrement(key: string): Promise<void> {
        const c = this.hits.get(key)
        if (c !== undefined) c.totalHits--
      }
      async resetKey(key: string): Promise<void> {
        this.hits.delete(key)
      }
      async get(key: string): Promise<{ totalHits: number; resetTime: Date } | undefined> {
        return this.hits.get(key)
      }
    }

    it('works with the same custom Store class in both (init, increment, decrement)', async () => {
      const stores: MapStore[] = []
      const seen = await differential(() => {
        const store = new MapStore()
        stores.push(store)
        return {
          store,
          limit: 2,
          windowMs: 45_000,
          skipFailedRequests: true,
          standardHeaders: 'draft-7',
        }
      }, [...mixed, { tick: 45_000 }, ...mixed])
      expect(stores.map((s) => s.windowMs)).to.deep.equal([45_000, 45_000])
      expect(seen.some((e) => e.status === 429)).to.equal(true)
    })

    it("works with express-rate-limit's own MemoryStore and with a legacy (incr) store", async () => {
      await differential(
        () => ({ store: new ErlMemoryStore(), limit: 2 }),
        [...times(3), { tick: 60_000 }, ...times(2)],
      )
      const legacy = () => {
        const inner = new MapStore()
        inner.init({ windowMs: 60_000 })
        return {
          incr(
            key: string,
            cb: (e: Error | undefined, hits: number, reset: Date | undefined) => void,
          ) {
            inner.increment(key).then(
              (r) => cb(undefined, r.totalHits, r.resetTime),
              (e: Error) => cb(e, 0, undefined),
            )
          },
          decrement: (key: string) => void inner.decrement(key),
          resetKey: (key: string) => void inner.resetKey(key),
        }
      }
      await differential(
        () => ({ store: legacy(), limit: 2, standardHeaders: 'draft-6' }),
        times(3),
      )
    })

    it('starts a new window when the old one ends', async () => {
      const seen = await differential(
        () => ({ limit: 2, standardHeaders: 'draft-8' }),
        [...times(3), { tick: 59_999 }, {}, { tick: 1 }, ...times(3)],
      )
      expect(statuses(seen)).to.deep.equal([200, 200, 429, 429, 200, 200, 429])
    })

    it('resets and reads keys identically through resetKey and getKey', async () => {
      const { theirs, ours, apps } = pair(() => ({ limit: 2 }))
      const seen = await replay(apps[0], apps[1], times(3))
      const key = (JSON.parse(seen[0]!.body) as { key: string }).key
      expect(JSON.stringify(await ours.getKey(key))).to.equal(
        JSON.stringify(await theirs.getKey(key)),
      )
      expect(await ours.getKey('nobody')).to.equal(await theirs.getKey('nobody'))
      await Promise.all([theirs.resetKey(key), ours.resetKey(key)])
      const after = await replay(apps[0], apps[1], times(1))
      expect(JSON.parse(after[0]!.body)).to.include({ used: 1 })
    })

    it('lets requests through, uncounted, when the store fails and passOnStoreError is set', async () => {
      const loggers: { error: sinon.SinonSpy; warn: sinon.SinonSpy }[] = []
      const broken = new Error('store down')
      const seen = await differential(() => {
        const logger = { error: sinon.spy(), warn: sinon.spy() }
        loggers.push(logger)
        return {
          passOnStoreError: true,
          logger,
          standardHeaders: 'draft-8',
          store: {
            increment: () => Promise.reject(broken),
            decrement: async () => {},
            resetKey: async () => {},
          },
        }
      }, times(2))
      expect(statuses(seen)).to.deep.equal([200, 200])
      expect(seen[0]).to.include({ body: 'null' })
      expect(loggers[1]!.error.args).to.deep.equal(loggers[0]!.error.args)
      expect(loggers[1]!.error.firstCall.args).to.deep.equal([
        broken,
        'express-rate-limit: error from store, allowing request without rate-limiting.',
      ])
    })

    it('matches within a second on the real clock', async () => {
      sandbox.restore()
      const { apps } = pair(() => ({ standardHeaders: 'draft-7', limit: 2 }))
      for (let i = 0; i < 3; i++) {
        const [expected, actual] = [await exchange(apps[0], {}), await exchange(apps[1], {})]
        expect(actual.status).to.equal(expected.status)
        const a = infoIn(actual)
        const e = infoIn(expected)
        if (e && a) {
          const drift = Date.parse(a.resetTime as string) - Date.parse(e.resetTime as string)
          expect(Math.abs(drift)).to.be.at.most(1000)
          expect({ ...a, resetTime: 0 }).to.deep.equal({ ...e, resetTime: 0 })
        }
        expect(actual.headers.map(([n]) => n)).to.deep.equal(expected.headers.map(([n]) => n))
        const reset = (x: Exchange): number =>
          Number(/reset=(\d+)/.exec(header(x, 'ratelimit') ?? '')?.[1])
        expect(Math.abs(reset(actual) - reset(expected))).to.be.at.most(1)
      }
    })
  })

  describe('deliberate differences from express-rate-limit', () => {
    it('fails a request with ERR_RATELIMIT_UNAVAILABLE (503) when the store fails, not with the raw error (500)', async () => {
      const broken = new Error('store down')
      const errors: unknown[] = []
      const shared = (): Record<string, unknown> => ({
        store: {
          increment: () => Promise.reject(broken),
          decrement: async () => {},
          resetKey: async () => {},
        },
      })
      const build = (limiter: RequestHandler): Server => {
        const app = express()
        app.use(limiter)
        app.get('/ok', (_req, res) => {
          res.json({ reached: true })
        })
        app.use(((error, req, res, next) => {
          errors.push(error)
          reportErrors(error, req, res, next)
        }) as ErrorRequestHandler)
        return serve(app)
      }
      const theirs = await request(build(erlRateLimit(shared() as Partial<ErlOptions>))).get('/ok')
      const ours = await request(build(rateLimit(shared() as RateLimitOptions))).get('/ok')
      // express-rate-limit passes the store's own error on, which Express answers with 500.
      expect(theirs.status).to.equal(500)
      expect(errors[0]).to.equal(broken)
      // Portcullis wraps it in its stable code, answered 503, with the store error as cause.
      expect(ours.status).to.equal(503)
      expect(ours.body).to.deep.equal({
        error: 'Rate limiting is unavailable',
        code: 'ERR_RATELIMIT_UNAVAILABLE',
      })
      expect(isAuthError(errors[1])).to.equal(true)
      expect((errors[1] as Error).cause).to.equal(broken)
    })

    it('throws ConfigError for bad options where express-rate-limit only logs', () => {
      const quiet = { error: () => {}, warn: () => {} }
      // express-rate-limit accepts these and logs (or not) at runtime.
      expect(() => erlRateLimit({ windowMs: -5, logger: quiet })).not.to.throw()
      expect(() => erlRateLimit({ limit: 'ten' as never, logger: quiet })).not.to.throw()
      expect(() => rateLimit({ windowMs: -5 })).to.throw(/rateLimit\.windowMs: .*received -5/)
      let caught: unknown
      try {
        rateLimit({ limit: 'ten' as never })
      } catch (error) {
        caught = error
      }
      expect(isConfigError(caught)).to.equal(true)
      expect((caught as Error).message).to.match(/rateLimit\.limit: .*"ten"/)
    })

    it('warns about an unknown option with a did-you-mean, as a warning rather than an error', () => {
      const theirs = { error: sinon.spy(), warn: sinon.spy() }
      const ours = { error: sinon.spy(), warn: sinon.spy() }
      erlRateLimit({ windowMS: 1000, logger: theirs } as never)
      rateLimit({ windowMS: 1000, logger: ours } as never)
      expect(theirs.error.firstCall.args[0]).to.include({ code: 'ERR_ERL_UNKNOWN_OPTION' })
      expect(ours.error.called).to.equal(false)
      expect(ours.warn.firstCall.args).to.deep.equal([
        {},
        'rateLimit.windowMS: unknown option "windowMS"; did you mean "windowMs"?',
      ])
    })

    it('bounds its memory: beyond maxKeys the least recently seen client starts over', async () => {
      const steps = ['10.0.0.1', '10.0.0.2', '10.0.0.3', '10.0.0.1'].map((ip) => ({
        headers: { 'x-forwarded-for': ip },
      }))
      const theirs = serve(
        makeApp(erlRateLimit({ limit: 5, validate: false }), { trustProxy: true }),
      )
      const ours = serve(
        makeApp(rateLimit({ limit: 5, maxKeys: 2, validate: false }), { trustProxy: true }),
      )
      const used = async (server: Server): Promise<number[]> => {
        const out: number[] = []
        for (const step of steps)
          out.push((JSON.parse((await exchange(server, step)).body) as { used: number }).used)
        return out
      }
      // express-rate-limit's MemoryStore keeps every client of the window; ours keeps maxKeys.
      expect(await used(theirs)).to.deep.equal([1, 1, 1, 2])
      expect(await used(ours)).to.deep.equal([1, 1, 1, 1])
    })

    it('leaves optionsUsed.handler undefined without a custom handler (its default answer is built in)', () => {
      const seen: Record<string, unknown>[] = []
      const store = () => ({
        init: (options: Record<string, unknown>) => void seen.push(options),
        increment: () => ({ totalHits: 1, resetTime: undefined }),
        decrement() {},
        resetKey() {},
      })
      erlRateLimit({ store: store() })
      rateLimit({ store: store() })
      expect(typeof seen[0]!.handler).to.equal('function')
      expect(seen[1]!.handler).to.equal(undefined)
      // Everything else a store reads at init agrees.
      for (const name of ['windowMs', 'limit', 'statusCode', 'message', 'legacyHeaders'])
        expect(seen[1]![name], name).to.deep.equal(seen[0]![name])
    })

    it('exports MemoryStore as the bounded store, usable as express-rate-limit users do', async () => {
      const store = new MemoryStore()
      const server = serve(makeApp(rateLimit({ limit: 1, store })))
      await exchange(server, {})
      expect((await exchange(server, {})).status).to.equal(429)
      expect(store.size).to.equal(1)
    })
  })
})

describe('@portcullis/express/rate-limit', () => {
  it('default-exports rateLimit, so switching from express-rate-limit changes only the import', async () => {
    const mod = await import('@portcullis/express/rate-limit')
    const { rateLimit: named } = await import('@portcullis/express')
    expect(mod.default).to.equal(named)
  })
})
