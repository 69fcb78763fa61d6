// The limit-backend conformance suite (issue 19): the same scenarios for the rate-limit stage and
// the quota stage on every counter backend (memory, Redis through @portcullis/redis on each
// ioredis major), so that every backend gives the same answers and the same RateLimit headers.
// What only one backend does (Redis key layout, TIME, outages, in-memory block) stays in its own
// test file.
import { setImmediate as nextTurn } from 'node:timers/promises'
import { expect } from 'chai'
import {
  createMemoryBackend,
  createQuotaStage,
  createRateLimitStage,
  periodBounds,
  type Decision,
  type QuotaStageOptions,
  type RateLimitBackend,
  type RateLimitStageOptions,
} from '@portcullis/core'
import { createFakeClock, type FakeClock } from '@portcullis/core/testing'
import { stageGate } from './stage-gate.js'

/** One backend under test. */
export interface LimitBackendFixture {
  /**
   * A backend for one test. A backend that reads a clock reads `clock`; one with its own (Redis
   * counts in its server's time) ignores it.
   */
  backend(clock: FakeClock): RateLimitBackend | Promise<RateLimitBackend>
  /**
   * Whether the backend's windows run on the injected clock. When false, letting a window pass waits in
   * real time, so the scenarios that need it use windows of one second, and the scenarios that
   * cross a calendar day run only for injected clocks.
   */
  readonly injectedClock: boolean
  /**
   * Waits until what the stages sent without waiting (refunds, released idempotency records) has
   * reached the store. @default one turn of the event loop
   */
  drain?(): Promise<void>
}

/** 2026-11-28 12:00 UTC: whole minutes, mid-day (no calendar boundary in the way). */
const START = Date.UTC(2026, 10, 28, 12, 0, 0)

let counter = 0
/** A limit or quota name of its own per test, so runs against one store never share counters. */
const unique = (name: string): string => `${name}-${process.pid}-${counter++}`

/** Lets `ms` pass for the windows: the fake clock, and real time where the store keeps its own. */
async function elapse(fixture: LimitBackendFixture, clock: FakeClock, ms: number): Promise<void> {
  clock.advance(ms)
  // Redis expires keys on its own clock; 100 ms of margin for its expiry to be seen.
  if (!fixture.injectedClock) await new Promise((r) => setTimeout(r, ms + 100))
}

async function limits(
  fixture: LimitBackendFixture,
  options: Omit<RateLimitStageOptions, 'backend' | 'now'>,
  clock: FakeClock = createFakeClock(START),
) {
  const stage = createRateLimitStage({
    backend: await fixture.backend(clock),
    now: clock,
    ...options,
  })
  return { stage, ...(await stageGate([stage], { clock })) }
}

async function quotas(
  fixture: LimitBackendFixture,
  options: Omit<QuotaStageOptions, 'backend' | 'now'>,
  clock: FakeClock = createFakeClock(START),
) {
  const backend = await fixture.backend(clock)
  const stage = createQuotaStage({ backend, now: clock, ...options })
  const g = await stageGate([stage], { clock })
  /** The backend's "now": the quota period's clock (the store's where it has one). */
  const now = async (): Promise<number> => (backend.now === undefined ? clock() : backend.now())
  const used = async (id: string, name?: string) =>
    (await stage.usage(id)).find((u) => name === undefined || u.name === name)?.used
  return { stage, now, used, ...g }
}

const statuses = (ds: readonly Decision[]): number[] => ds.map((d) => d.status)

/** Seconds from `now` to the end of its UTC day, as the RateLimit header's `t` says it. */
const toEndOfDay = (now: number): number => Math.ceil((periodBounds('day', now).end - now) / 1000)

/** `"name";r=R;t=T` into `r` and `t`. */
function rateLimitState(header: string | undefined, name: string): { r: number; t: number } {
  const m = new RegExp(`^"${name}";r=(\\d+);t=(\\d+)$`).exec(header ?? '')
  expect(m, `RateLimit: ${header}`).to.not.equal(null)
  return { r: Number(m![1]), t: Number(m![2]) }
}

/**
 * Runs the limit-backend conformance scenarios against `fixture`, whose functions are called inside
 * the tests: call it in a `describe` (or `describeWithRedisClients`) whose hooks make what they use.
 */
export function describeLimitBackendConformance(title: string, fixture: LimitBackendFixture): void {
  const drain = async (): Promise<void> => {
    if (fixture.drain === undefined) await nextTurn()
    else await fixture.drain()
  }

  describe(`${title}: rate-limit stage`, () => {
    it('fixed window: admits exactly N, refuses the N+1th with 429, exact draft-8 headers', async () => {
      const name = unique('per-minute')
      const { as, alice } = await limits(fixture, { limits: [{ name, limit: 3, windowMs: '1m' }] })
      const seen = [await as(alice.key), await as(alice.key), await as(alice.key)]
      const denied = await as(alice.key)
      expect(statuses([...seen, denied])).to.deep.equal([200, 200, 200, 429])
      expect(seen.map((d) => d.headers)).to.deep.equal(
        [2, 1, 0].map((r) => ({
          'ratelimit-policy': `"${name}";q=3;w=60`,
          ratelimit: `"${name}";r=${r};t=60`,
        })),
      )
      expect(denied.headers).to.deep.equal({
        'ratelimit-policy': `"${name}";q=3;w=60`,
        ratelimit: `"${name}";r=0;t=60`,
        'retry-after': '60',
      })
      if (denied.allowed) return expect.fail('the fourth request passed')
      expect(denied.error.code).to.equal('ERR_RATE_LIMITED')
      expect(denied.problem).to.include({ status: 429, policy: name, retryAfter: 60 })
      expect(denied.trace.find((t) => t.stage === 'ratelimit')).to.include({
        outcome: 'deny',
        by: name,
      })
    })

    it('fixed window: opens a new window once the old one has passed', async function () {
      this.timeout(5000)
      const name = unique('reset')
      const { as, alice, clock } = await limits(fixture, {
        limits: [{ name, limit: 1, windowMs: '1s' }],
      })
      expect(statuses([await as(alice.key), await as(alice.key)])).to.deep.equal([200, 429])
      await elapse(fixture, clock, 1000)
      const next = await as(alice.key)
      expect(next.status).to.equal(200)
      expect(next.headers.ratelimit).to.equal(`"${name}";r=0;t=1`)
    })

    it('weights requests by cost', async () => {
      const name = unique('units')
      const { as, alice } = await limits(fixture, {
        limits: [{ name, limit: 10, windowMs: '1m', cost: 4 }],
      })
      const first = await as(alice.key)
      expect(first.headers.ratelimit).to.equal(`"${name}";r=6;t=60`)
      const second = await as(alice.key)
      expect(second.headers.ratelimit).to.equal(`"${name}";r=2;t=60`)
      const third = await as(alice.key)
      expect(statuses([first, second, third])).to.deep.equal([200, 200, 429])
      if (third.allowed) return expect.fail('the third request passed')
      expect(third.error).to.include({ code: 'ERR_RATE_LIMITED', limit: 10, remaining: 0 })
    })

    it('applies several limits per request, lists each in the headers, names the one that tripped', async () => {
      const [burst, daily] = [unique('burst'), unique('daily')]
      const { as, alice } = await limits(fixture, {
        limits: [
          { name: burst, limit: 2, windowMs: '1m' },
          { name: daily, limit: 1000, windowMs: '1d' },
        ],
      })
      const first = await as(alice.key)
      expect(first.headers).to.deep.equal({
        'ratelimit-policy': `"${burst}";q=2;w=60, "${daily}";q=1000;w=86400`,
        ratelimit: `"${burst}";r=1;t=60, "${daily}";r=999;t=86400`,
      })
      await as(alice.key)
      const third = await as(alice.key)
      expect(third.status).to.equal(429)
      expect(third.trace.find((t) => t.stage === 'ratelimit')).to.include({
        outcome: 'deny',
        by: burst,
      })
    })

    it('keeps the counters of each principal apart', async () => {
      const name = unique('own')
      const { as, alice, bob } = await limits(fixture, {
        limits: [{ name, limit: 2, windowMs: '1m' }],
      })
      expect(
        statuses([await as(alice.key), await as(alice.key), await as(alice.key)]),
      ).to.deep.equal([200, 200, 429])
      const b = await as(bob.key)
      expect(b.status).to.equal(200)
      expect(b.headers.ratelimit).to.equal(`"${name}";r=1;t=60`)
    })

    it('forgets one key with reset(name, key), leaving the others', async () => {
      const name = unique('admin')
      const { as, alice, bob, stage } = await limits(fixture, {
        limits: [{ name, limit: 1, windowMs: '1m' }],
      })
      await as(alice.key)
      await as(bob.key)
      await stage.reset(name, 'p:alice')
      expect((await as(alice.key)).status).to.equal(200)
      expect((await as(bob.key)).status).to.equal(429)
    })

    it('sliding window: smooths the window edge by the previous window’s weight', async () => {
      const name = unique('s')
      const clock = createFakeClock(START + 50_000) // 50 s into a minute
      const { as, alice } = await limits(
        fixture,
        { limits: [{ name, limit: 4, windowMs: '1m', algorithm: 'sliding' }] },
        clock,
      )
      for (let i = 0; i < 4; i++) expect((await as(alice.key)).status).to.equal(200)
      clock.advance(15_000) // 5 s into the next window: 4 * (55/60) ≈ 3.7 still counts
      expect((await as(alice.key)).status).to.equal(429)
      clock.advance(30_000) // 35 s in: 4 * (25/60) ≈ 1.7
      expect(
        statuses([await as(alice.key), await as(alice.key), await as(alice.key)]),
      ).to.deep.equal([200, 200, 429])
    })

    it('burst: the base limit, then the burst allowance, then 429', async () => {
      const name = unique('b')
      const { as, alice } = await limits(fixture, {
        limits: [
          {
            name,
            limit: 2,
            windowMs: '1m',
            algorithm: 'burst',
            burst: { limit: 3, windowMs: '1m' },
          },
        ],
      })
      const seen: Decision[] = []
      for (let i = 0; i < 6; i++) seen.push(await as(alice.key))
      expect(statuses(seen)).to.deep.equal([200, 200, 200, 200, 200, 429])
    })

    it('ban: refuses the key for blockDurationMs after it exceeded, past the window', async function () {
      this.timeout(5000)
      const name = unique('login')
      const { as, alice, bob, clock } = await limits(fixture, {
        limits: [{ name, limit: 1, windowMs: '1s', blockDurationMs: '1m' }],
      })
      await as(alice.key)
      const over = await as(alice.key)
      expect(over.status).to.equal(429)
      expect(over.headers['retry-after']).to.equal('60')
      await elapse(fixture, clock, 1000)
      const banned = await as(alice.key)
      expect(banned.status).to.equal(429)
      // 59 s left on the ban (58 where Redis has counted the real second and the margin).
      expect(Number(banned.headers['retry-after'])).to.be.within(58, 59)
      expect((await as(bob.key)).status).to.equal(200)
    })

    it('gives the same statuses and RateLimit headers as the memory backend, request by request', async () => {
      const [burst, minute] = [unique('eq-burst'), unique('eq-minute')]
      const options: Omit<RateLimitStageOptions, 'backend' | 'now'> = {
        limits: [
          { name: burst, limit: 2, windowMs: '1s' },
          { name: minute, limit: 5, windowMs: '1m', cost: 2 },
        ],
      }
      const sequence = async (backend: LimitBackendFixture) => {
        const { as, alice, bob } = await limits(backend, options)
        const out: Decision[] = []
        for (const key of [alice.key, alice.key, bob.key, alice.key]) out.push(await as(key))
        return out.map((d) => ({ status: d.status, headers: d.headers }))
      }
      const memory = await sequence({
        backend: (clock) => createMemoryBackend({ now: clock }),
        injectedClock: true,
      })
      expect(memory.map((d) => d.status)).to.deep.equal([200, 200, 200, 429])
      expect(await sequence(fixture)).to.deep.equal(memory)
    })
  })

  describe(`${title}: quota stage`, () => {
    it('admits exactly N units per day, then 429 ERR_QUOTA_EXCEEDED with Retry-After to midnight UTC', async () => {
      const name = unique('daily')
      const { as, alice, now } = await quotas(fixture, {
        quotas: [{ name, limit: 2, period: 'day' }],
      })
      const first = await as(alice.key)
      const t = toEndOfDay(await now())
      expect(first.headers['ratelimit-policy']).to.equal(`"${name}";q=2;w=86400`)
      const s1 = rateLimitState(first.headers.ratelimit, name)
      expect(s1.r).to.equal(1)
      expect(s1.t).to.be.within(t - 1, t + 1)
      const second = await as(alice.key)
      expect(rateLimitState(second.headers.ratelimit, name).r).to.equal(0)
      const over = await as(alice.key)
      expect(statuses([first, second, over])).to.deep.equal([200, 200, 429])
      expect(Number(over.headers['retry-after'])).to.be.within(t - 1, t + 1)
      if (over.allowed) return expect.fail('the third request passed')
      expect(over.error.code).to.equal('ERR_QUOTA_EXCEEDED')
      expect(over.problem.type).to.match(/quota-exceeded$/)
      expect(over.problem).to.include({ status: 429, policy: name })
    })

    it('refuses a request costing more than what is left without spending the rest', async () => {
      const name = unique('aon')
      const { as, alice, used } = await quotas(fixture, {
        quotas: [{ name, limit: 5, period: 'day', cost: 3 }],
      })
      expect((await as(alice.key)).status).to.equal(200)
      const over = await as(alice.key)
      expect(over.status).to.equal(429)
      if (over.allowed) return expect.fail('the second request passed')
      expect(over.error).to.include({ code: 'ERR_QUOTA_EXCEEDED', remaining: 2, limit: 5 })
      expect(rateLimitState(over.headers.ratelimit, name).r).to.equal(2)
      expect(await used(alice.record.id)).to.equal(3)
      // Still refused, and still nothing spent.
      expect((await as(alice.key)).status).to.equal(429)
      expect(await used(alice.record.id)).to.equal(3)
    })

    it('all or nothing across quotas: gives back the units of those counted before the one that refused', async () => {
      const [monthly, daily] = [unique('monthly'), unique('daily')]
      const { as, alice, used } = await quotas(fixture, {
        quotas: [
          { name: monthly, limit: 100, period: 'month' },
          { name: daily, limit: 1, period: 'day' },
        ],
      })
      expect(statuses([await as(alice.key), await as(alice.key)])).to.deep.equal([200, 429])
      await drain()
      expect(await used(alice.record.id, monthly)).to.equal(1)
      expect(await used(alice.record.id, daily)).to.equal(1)
    })

    it('reports usage, takes refunds and resets per key', async () => {
      const name = unique('usage')
      const { as, alice, bob, stage, now } = await quotas(fixture, {
        quotas: [{ name, limit: 10, period: 'day', cost: 3 }],
      })
      await as(alice.key)
      await as(alice.key)
      await as(bob.key)
      expect(await stage.usage(alice.record.id)).to.deep.equal([
        { name, used: 6, limit: 10, remaining: 4, resetAt: periodBounds('day', await now()).end },
      ])
      await stage.refund(alice.record.id, 3)
      expect((await stage.usage(alice.record.id))[0]?.used).to.equal(3)
      await stage.reset(alice.record.id)
      expect((await stage.usage(alice.record.id))[0]).to.include({ used: 0, remaining: 10 })
      // Bob's usage is his own: untouched by Alice's refund and reset.
      expect((await stage.usage(bob.record.id))[0]?.used).to.equal(3)
    })

    it('keeps the usage of each API key apart', async () => {
      const name = unique('own-q')
      const { as, alice, bob, used } = await quotas(fixture, {
        quotas: [{ name, limit: 1, period: 'day' }],
      })
      expect(statuses([await as(alice.key), await as(alice.key), await as(bob.key)])).to.deep.equal(
        [200, 429, 200],
      )
      expect(await used(alice.record.id)).to.equal(1)
      expect(await used(bob.record.id)).to.equal(1)
    })

    it('refunds the unit of a request answered 5xx (refundOnServerError), and only then', async () => {
      const name = unique('refund')
      const { as, alice, used } = await quotas(fixture, {
        refundOnServerError: true,
        quotas: [{ name, limit: 5, period: 'day' }],
      })
      for (const status of [200, 502, 404]) {
        const d = await as(alice.key)
        if (!d.allowed) return expect.fail(`refused before settling ${status}`)
        d.settle?.(status)
      }
      await drain()
      expect(await used(alice.record.id)).to.equal(2)
    })

    it('counts retries carrying one Idempotency-Key once, and the retry still sees the headers', async () => {
      const name = unique('idem')
      const { as, alice, used } = await quotas(fixture, {
        idempotency: true,
        quotas: [{ name, limit: 5, period: 'day' }],
      })
      const first = await as(alice.key, { 'idempotency-key': 'order-1' })
      const retry = await as(alice.key, { 'idempotency-key': 'order-1' })
      expect(statuses([first, retry])).to.deep.equal([200, 200])
      expect(rateLimitState(retry.headers.ratelimit, name).r).to.equal(4)
      await as(alice.key, { 'idempotency-key': 'order-2' })
      await as(alice.key)
      expect(await used(alice.record.id)).to.equal(3)
    })

    // Only where the clock is injected: on a store with its own clock a day cannot pass in a test.
    if (fixture.injectedClock)
      it('rolls a daily quota over at midnight UTC (injected clock only)', async () => {
        const name = unique('midnight')
        const clock = createFakeClock(Date.UTC(2026, 10, 30, 23, 0, 0))
        const { as, alice } = await quotas(
          fixture,
          { quotas: [{ name, limit: 1, period: 'day' }] },
          clock,
        )
        expect(statuses([await as(alice.key), await as(alice.key)])).to.deep.equal([200, 429])
        clock.advance(3_600_000)
        expect((await as(alice.key)).status).to.equal(200)
      })
  })
}
