import { expect } from 'chai'
import {
  ipKeyGenerator as erlIpKeyGenerator,
  MemoryStore as ErlMemoryStore,
} from 'express-rate-limit'
import fc from 'fast-check'
import sinon from 'sinon'
import {
  BoundedMemoryStore,
  createDropInLimiter,
  DEFAULT_RATE_LIMIT_MAX_KEYS,
  DROP_IN_DEFAULTS,
  ipKeyGenerator,
  isAuthError,
  isConfigError,
  type DropInCounted,
  type DropInLimiterOptions,
  type DropInResult,
  type DropInStore,
} from '@portcullis/core'
import { createFakeClock } from '@portcullis/core/testing'

interface FakeRequest {
  ip?: string | undefined
  headers?: Record<string, string>
  [property: string]: unknown
}
interface FakeResponse {
  statusCode: number
}
type Options = DropInLimiterOptions<FakeRequest, FakeResponse, () => void>

const T0 = Date.UTC(2026, 10, 28, 12, 0, 0, 250)
const sandbox = sinon.createSandbox()

function setup(options: Options = {}) {
  const clock = createFakeClock(T0)
  const limiter = createDropInLimiter<FakeRequest, FakeResponse, () => void>({
    now: clock,
    ...options,
  })
  const hit = async (ip = '203.0.113.7', statusCode = 200): Promise<DropInCounted> => {
    const result = await limiter.hit({ ip }, { statusCode })
    if (!result.counted) throw new Error('not counted')
    return result
  }
  return { clock, limiter, hit }
}

const quietLogger = () => ({ warn: sandbox.spy(), error: sandbox.spy() })

function configError(options: Options): Error {
  try {
    createDropInLimiter(options)
  } catch (error) {
    expect(isConfigError(error), String(error)).to.equal(true)
    return error as Error
  }
  throw new Error('no ConfigError')
}

describe('createDropInLimiter', () => {
  afterEach(() => sandbox.restore())

  describe('options', () => {
    it("resolves express-rate-limit 8's defaults once", () => {
      const { options } = createDropInLimiter()
      expect(options).to.include({
        windowMs: 60_000,
        limit: 5,
        message: 'Too many requests, please try again later.',
        statusCode: 429,
        legacyHeaders: true,
        standardHeaders: false,
        requestPropertyName: 'rateLimit',
        skipFailedRequests: false,
        skipSuccessfulRequests: false,
        ipv6Subnet: 56,
        passOnStoreError: false,
        handler: undefined,
      })
      expect(options.store).to.be.instanceOf(BoundedMemoryStore)
      expect((options.store as BoundedMemoryStore).maxKeys).to.equal(DEFAULT_RATE_LIMIT_MAX_KEYS)
      expect(DROP_IN_DEFAULTS).to.include({ windowMs: 60_000, limit: 5, statusCode: 429 })
    })

    it('maps standardHeaders true to draft-6, and the max and headers aliases', () => {
      expect(createDropInLimiter({ standardHeaders: true }).options.standardHeaders).to.equal(
        'draft-6',
      )
      expect(createDropInLimiter({ max: 9 }).options.limit).to.equal(9)
      expect(createDropInLimiter({ max: 9, limit: 3 }).options.limit).to.equal(3)
      expect(createDropInLimiter({ headers: false }).options.legacyHeaders).to.equal(false)
      expect(
        createDropInLimiter({ headers: false, legacyHeaders: true }).options.legacyHeaders,
      ).to.equal(true)
      expect(createDropInLimiter({ limit: undefined }).options.limit).to.equal(5)
    })

    it('throws ConfigError naming the option and the value received', () => {
      expect(configError({ windowMs: -5 }).message).to.equal(
        'rateLimit.windowMs: must be a number >= 1, received -5',
      )
      expect(configError({ limit: 'ten' as never }).message).to.equal(
        'rateLimit.limit: must be a number >= 0 or a function, received "ten"',
      )
      expect(configError({ max: -1 }).message).to.match(/^rateLimit\.max: /)
      expect(configError({ statusCode: 42 }).message).to.match(/^rateLimit\.statusCode: /)
      expect(configError({ standardHeaders: 'draft-9' as never }).message).to.equal(
        'rateLimit.standardHeaders: unknown header draft "draft-9"; expected one of "draft-6", "draft-7", "draft-8" (did you mean "draft-6"?)',
      )
      expect(configError({ ipv6Subnet: 200 }).message).to.match(/^rateLimit\.ipv6Subnet: /)
      expect(configError({ requestPropertyName: '' }).message).to.match(
        /^rateLimit\.requestPropertyName: /,
      )
      expect(configError({ keyGenerator: 'ip' as never }).message).to.match(
        /^rateLimit\.keyGenerator: must be a function/,
      )
      expect(configError({ store: { increment() {} } as never }).message).to.match(
        /^rateLimit\.store: must implement express-rate-limit's Store/,
      )
      expect(configError({ logger: console.log as never }).message).to.match(/^rateLimit\.logger/)
      const several = configError({ windowMs: 0, limit: 'ten' as never, skip: true as never })
      expect((several as unknown as { issues: string[] }).issues).to.have.length(3)
    })

    it('warns about unknown options once, with a did-you-mean, and accepts express-slow-down ones', () => {
      const logger = quietLogger()
      createDropInLimiter({ windowMS: 1, delayMs: 500, logger } as Options)
      expect(logger.warn.args).to.deep.equal([
        [{}, 'rateLimit.windowMS: unknown option "windowMS"; did you mean "windowMs"?'],
      ])
    })

    it('calls store.init once with the resolved options and logs its failures', async () => {
      const logger = quietLogger()
      const store = {
        init: sandbox.spy(),
        increment: async () => ({ totalHits: 1, resetTime: undefined }),
        decrement() {},
        resetKey() {},
      }
      createDropInLimiter({ store, windowMs: 5000, logger })
      expect(store.init.calledOnce).to.equal(true)
      expect(store.init.firstCall.args[0]).to.include({ windowMs: 5000, limit: 5 })
      const boom = new Error('init failed')
      createDropInLimiter({ store: { ...store, init: () => Promise.reject(boom) }, logger })
      createDropInLimiter({
        store: {
          ...store,
          init: () => {
            throw boom
          },
        },
        logger,
      })
      await Promise.resolve()
      expect(logger.error.args).to.deep.include.members([
        [boom, 'express-rate-limit: async error during store initialization.'],
        [boom, 'express-rate-limit: error during store initialization.'],
      ])
    })
  })

  describe('hit', () => {
    it('counts, fills the request property and reports limited requests', async () => {
      const { hit, limiter } = setup({ limit: 2 })
      const request: FakeRequest = { ip: '198.51.100.1' }
      const first = await limiter.hit(request, { statusCode: 200 })
      expect(request.rateLimit).to.deep.equal({
        limit: 2,
        used: 1,
        remaining: 1,
        resetTime: new Date(T0 + 60_000),
        key: '198.51.100.1',
      })
      expect((request.rateLimit as { current: number }).current).to.equal(1)
      expect(first).to.include({ counted: true, limited: false, statusCode: 429 })
      await hit('198.51.100.1')
      const third = await hit('198.51.100.1')
      expect(third.limited).to.equal(true)
      expect(third.info).to.include({ used: 3, remaining: 0 })
      expect(await third.message()).to.equal(DROP_IN_DEFAULTS.message)
    })

    it('sends legacy headers, with Date, in express-rate-limit case and order', async () => {
      const { hit, clock } = setup({ limit: 1 })
      await hit()
      clock.advance(10_500)
      const limited = await hit()
      expect(limited.headers).to.deep.equal([
        { name: 'X-RateLimit-Limit', value: '1', append: false },
        { name: 'X-RateLimit-Remaining', value: '0', append: false },
        { name: 'Date', value: new Date(T0 + 10_500).toUTCString(), append: false },
        {
          name: 'X-RateLimit-Reset',
          value: String(Math.ceil((T0 + 60_000) / 1000)),
          append: false,
        },
        { name: 'Retry-After', value: '50', append: false },
      ])
    })

    it('writes draft-6, draft-7 and draft-8 headers byte for byte', async () => {
      const line = (r: DropInCounted) => r.headers.map((h) => `${h.name}: ${h.value}`)
      let r = await setup({ standardHeaders: 'draft-6', legacyHeaders: false }).hit()
      expect(line(r)).to.deep.equal([
        'RateLimit-Policy: 5;w=60',
        'RateLimit-Limit: 5',
        'RateLimit-Remaining: 4',
        'RateLimit-Reset: 60',
      ])
      r = await setup({ standardHeaders: 'draft-7', legacyHeaders: false, windowMs: 1500 }).hit()
      expect(line(r)).to.deep.equal([
        'RateLimit-Policy: 5;w=2',
        'RateLimit: limit=5, remaining=4, reset=2',
      ])
      r = await setup({ standardHeaders: 'draft-8', legacyHeaders: false, windowMs: 90_000 }).hit(
        '192.0.2.1',
      )
      expect(line(r)).to.deep.equal([
        'RateLimit: "5-in-1.5min"; r=4; t=90',
        // base64 of the first 12 hex digits of sha256("192.0.2.1")
        `RateLimit-Policy: "5-in-1.5min"; q=5; w=90; pk=:${Buffer.from(
          (await import('node:crypto'))
            .createHash('sha256')
            .update('192.0.2.1')
            .digest('hex')
            .slice(0, 12),
        ).toString('base64')}:`,
      ])
      expect(r.headers.every((h) => h.append)).to.equal(true)
    })

    it('sets the request property before identifier runs', async () => {
      const { hit } = setup({
        standardHeaders: 'draft-8',
        identifier: (request) => `tier-${(request.rateLimit as { limit: number }).limit}`,
        limit: async () => 7,
      })
      const policy = (await hit()).headers.find((h) => h.name === 'RateLimit-Policy')
      expect(policy?.value).to.match(/^"tier-7"; q=7;/)
    })

    it('sends Retry-After only with some headers on, from retryAfter when given', async () => {
      const off = setup({ limit: 0, legacyHeaders: false })
      expect((await off.hit()).headers).to.deep.equal([])
      const custom = setup({
        limit: 0,
        legacyHeaders: false,
        standardHeaders: 'draft-7',
        retryAfter: 0,
      })
      expect((await custom.hit()).headers.at(-1)).to.deep.equal({
        name: 'Retry-After',
        value: '0',
        append: false,
      })
    })

    it('does not count skipped requests and resolves message functions lazily', async () => {
      const message = sandbox.stub().resolves({ error: 'slow' })
      const { limiter } = setup({
        limit: 0,
        message,
        skip: async (request) => request.headers?.['x-skip'] === '1',
      })
      const skipped: DropInResult = await limiter.hit(
        { ip: '192.0.2.9', headers: { 'x-skip': '1' } },
        { statusCode: 200 },
      )
      expect(skipped).to.deep.equal({ counted: false })
      const response = { statusCode: 429 }
      const limited = await limiter.hit({ ip: '192.0.2.9' }, response)
      expect(message.called).to.equal(false)
      expect(limited.counted && (await limited.message())).to.deep.equal({ error: 'slow' })
      expect(message.firstCall.args[1]).to.equal(response)
    })

    it('keys a missing client address as one shared "unknown" bucket (express-rate-limit: undefined)', async () => {
      const { limiter } = setup()
      const result = await limiter.hit({ ip: undefined }, { statusCode: 200 })
      expect(result.counted && result.info.key).to.equal('unknown')
    })
  })

  describe('settle (skipSuccessfulRequests / skipFailedRequests)', () => {
    it('gives a successful hit back at most once, asking requestWasSuccessful', async () => {
      const { hit, limiter } = setup({ skipSuccessfulRequests: true })
      const ok = await hit('192.0.2.3', 204)
      expect(ok.settle).to.be.a('function')
      await ok.settle!()
      await ok.settle!()
      expect(await limiter.getKey('192.0.2.3')).to.include({ totalHits: 0 })
      const failed = await hit('192.0.2.3', 503)
      await failed.settle!()
      await failed.settle!(false)
      expect(await limiter.getKey('192.0.2.3')).to.include({ totalHits: 1 })
    })

    it('gives failed and aborted hits back with skipFailedRequests', async () => {
      const { hit, limiter } = setup({ skipFailedRequests: true })
      await (
        await hit('192.0.2.4', 500)
      ).settle!()
      await (
        await hit('192.0.2.4', 200)
      ).settle!(false)
      await (
        await hit('192.0.2.4', 200)
      ).settle!()
      expect(await limiter.getKey('192.0.2.4')).to.include({ totalHits: 1 })
    })

    it('never gives a hit back into the next window', async () => {
      const { hit, limiter, clock } = setup({ skipFailedRequests: true, windowMs: 1000 })
      const old = await hit('192.0.2.5', 500)
      clock.advance(1000)
      await hit('192.0.2.5')
      await old.settle!()
      expect(await limiter.getKey('192.0.2.5')).to.include({ totalHits: 1 })
    })

    it('has no settle without the skip options, and logs failures instead of rejecting', async () => {
      expect((await setup().hit()).settle).to.equal(undefined)
      const logger = quietLogger()
      const boom = new Error('boom')
      const { hit } = setup({
        skipSuccessfulRequests: true,
        logger,
        requestWasSuccessful: () => {
          throw boom
        },
      })
      await (
        await hit()
      ).settle!()
      expect(logger.error.firstCall.args).to.deep.equal([
        boom,
        'express-rate-limit: error in requestWasSuccessful callback.',
      ])
    })
  })

  describe('stores', () => {
    const failing = (): DropInStore => ({
      increment: () => Promise.reject(new Error('down')),
      decrement() {},
      resetKey() {},
    })

    it('rejects with ERR_RATELIMIT_UNAVAILABLE (503) when the store fails', async () => {
      const { limiter } = setup({ store: failing() })
      const error: unknown = await limiter.hit({ ip: '192.0.2.6' }, { statusCode: 200 }).then(
        () => undefined,
        (e: unknown) => e,
      )
      expect(isAuthError(error)).to.equal(true)
      expect(error).to.include({ code: 'ERR_RATELIMIT_UNAVAILABLE', status: 503 })
      expect((error as Error).cause).to.have.property('message', 'down')
    })

    it('lets the request through, logged, with passOnStoreError', async () => {
      const logger = quietLogger()
      const { limiter } = setup({ store: failing(), passOnStoreError: true, logger })
      expect(await limiter.hit({ ip: '192.0.2.6' }, { statusCode: 200 })).to.deep.equal({
        counted: false,
      })
      expect(logger.error.firstCall.args[1]).to.equal(
        'express-rate-limit: error from store, allowing request without rate-limiting.',
      )
    })

    it('accepts callback-style legacy stores', async () => {
      const reset = new Date(T0 + 1000)
      const { hit } = setup({
        store: {
          incr: (_key, callback) => callback(undefined, 3, reset),
          decrement() {},
          resetKey() {},
        },
      })
      expect((await hit()).info).to.include({ used: 3, resetTime: reset })
    })

    it("uses express-rate-limit's own MemoryStore unchanged", async () => {
      const store = new ErlMemoryStore()
      const { hit } = setup({ store, windowMs: 30_000 })
      await hit()
      expect((await hit()).info.used).to.equal(2)
      expect(store.windowMs).to.equal(30_000)
      store.shutdown()
    })

    it('resets keys, and getKey throws at once when the store has no get', async () => {
      const { hit, limiter } = setup()
      await hit('192.0.2.8')
      await limiter.resetKey('192.0.2.8')
      expect(await limiter.getKey('192.0.2.8')).to.equal(undefined)
      const bare = setup({
        store: {
          increment: () => ({ totalHits: 1, resetTime: undefined }),
          decrement() {},
          resetKey() {},
        },
      })
      expect(() => bare.limiter.getKey('x')).to.throw(
        'The current store does not support the get/getKey method',
      )
    })
  })

  describe('BoundedMemoryStore', () => {
    it('keeps a flood of 50,000 distinct client addresses within maxKeys', async () => {
      const { limiter } = setup({ maxKeys: 1000 })
      for (let i = 0; i < 50_000; i++)
        await limiter.hit(
          { ip: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}` },
          {
            statusCode: 200,
          },
        )
      const store = limiter.options.store as BoundedMemoryStore
      expect(store.size).to.equal(1000)
      // The latest clients are still counted exactly.
      expect((await store.get('10.0.195.79'))?.totalHits).to.equal(1)
    })

    it('counts fixed windows like express-rate-limit and starts empty after resetAll', async () => {
      const clock = createFakeClock(T0)
      const store = new BoundedMemoryStore({ now: clock })
      store.init({ windowMs: 1000 })
      await store.increment('a')
      expect(await store.increment('a')).to.deep.equal({
        totalHits: 2,
        resetTime: new Date(T0 + 1000),
      })
      await store.decrement('a')
      expect(await store.get('a')).to.deep.equal({ totalHits: 1, resetTime: new Date(T0 + 1000) })
      clock.advance(1000)
      expect(await store.get('a')).to.equal(undefined)
      expect(await store.increment('a')).to.deep.equal({
        totalHits: 1,
        resetTime: new Date(T0 + 2000),
      })
      await store.resetAll()
      expect(store.size).to.equal(0)
    })

    it("ignores a decrement without a live window (express-rate-limit's MemoryStore opens one)", async () => {
      const clock = sandbox.useFakeTimers({
        now: T0,
        toFake: ['Date', 'setInterval', 'clearInterval'],
      })
      const theirs = new ErlMemoryStore()
      theirs.init({ windowMs: 1000 } as never)
      const ours = new BoundedMemoryStore()
      ours.init({ windowMs: 1000 })
      await Promise.all([theirs.decrement('new'), ours.decrement('new')])
      expect(await theirs.get('new')).to.deep.equal({
        totalHits: 0,
        resetTime: new Date(T0 + 1000),
      })
      expect(await ours.get('new')).to.equal(undefined)
      clock.tick(10)
      // So the next window of that key starts at its first hit here, at the decrement there.
      expect((await theirs.increment('new')).resetTime).to.deep.equal(new Date(T0 + 1000))
      expect((await ours.increment('new')).resetTime).to.deep.equal(new Date(T0 + 1010))
      theirs.shutdown()
    })
  })

  describe('ipKeyGenerator', () => {
    it("matches express-rate-limit's ipKeyGenerator on known cases", () => {
      const cases: [string, number | false][] = [
        ['203.0.113.9', 56],
        ['2001:db8::1', 56],
        ['2001:db8::1', 128],
        ['2001:DB8:0:0:1::A', 64],
        ['2001:db8::1', false],
        ['2001:db8::1', 0],
        ['fe80::1%eth0', 56],
        ['fe80::1%eth0.1', 56],
        ['::1%eth0.1', 56],
        ['::ffff:1.2.3.4', 56],
        ['::ffff:7f00:1', 64],
        ['::1.2.3.4', 56],
        ['0:0:0:0:0:0:1.2.3.4', 96],
        ['::1', 56],
        ['::', 56],
        ['1:0:0:1:0:0:0:1', 128],
        ['1:0:0:1:0:0:1:1', 128],
        ['64:ff9b::1.2.3.4', 56],
        ['::ffff:0:1.2.3.4', 56],
        ['not-an-ip', 56],
      ]
      for (const [ip, subnet] of cases)
        expect(ipKeyGenerator(ip, subnet), `${ip} /${subnet}`).to.equal(
          erlIpKeyGenerator(ip, subnet),
        )
      expect(() => ipKeyGenerator('2001:db8::1', 129)).to.throw(RangeError, 'Invalid subnet mask.')
      expect(() => erlIpKeyGenerator('2001:db8::1', 129)).to.throw('Invalid subnet mask.')
    })

    it("matches express-rate-limit's ipKeyGenerator on any address and prefix length", () => {
      fc.assert(
        fc.property(
          fc.oneof(
            fc.ipV6(),
            fc.ipV4(),
            fc.ipV4().map((v4) => `::ffff:${v4}`),
          ),
          fc.oneof(fc.integer({ min: 1, max: 128 }), fc.constant(false as const)),
          (ip, subnet) => ipKeyGenerator(ip, subnet) === erlIpKeyGenerator(ip, subnet),
        ),
        { numRuns: 2000 },
      )
    })
  })
})
