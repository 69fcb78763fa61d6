import { expect } from 'chai'
import {
  BoundedMemoryLimiter,
  clientIpKey,
  createApiKeyManager,
  createGate,
  createMemoryKeyStore,
  createRateLimitStage,
  type RateLimitStageOptions,
} from '@portcullis/core'
import {
  createFailingBackend,
  createFakeClock,
  createMemoryAuditSink,
  fakeRequest,
} from '@portcullis/core/testing'
import { failureCodes, stageGate, TEST_PEPPER as PEPPER } from '../../helpers/stage-gate.js'

/** A gate with one limits stage, auditing to memory, and alice's and bob's API keys. */
async function setup(
  options: RateLimitStageOptions,
  extra: { credentialsRequired?: boolean } = {},
) {
  const clock = createFakeClock(Date.UTC(2026, 10, 28, 12, 0, 0))
  const sink = createMemoryAuditSink()
  const stage = createRateLimitStage({ now: clock, ...options })
  const g = await stageGate([stage], { clock, sinks: [sink], ...extra })
  return { ...g, sink, stage, a: g.alice.key, b: g.bob.key }
}

describe('createRateLimitStage', () => {
  it('takes limits and windows from the principal (per plan)', async () => {
    const { as, a, b } = await setup({
      limits: [
        {
          name: 'plan',
          limit: (ctx) =>
            (ctx.principal?.attributes.metadata as { plan?: string } | undefined)?.plan === 'pro'
              ? 5
              : 1,
          windowMs: (ctx) => (ctx.principal?.id === 'alice' ? 10_000 : 60_000),
        },
      ],
    })
    expect((await as(a)).headers['ratelimit-policy']).to.equal('"plan";q=5;w=10')
    expect((await as(b)).headers['ratelimit-policy']).to.equal('"plan";q=1;w=60')
    expect((await as(b)).status).to.equal(429)
  })

  it('keys by client IP, grouping IPv6 clients by /56', async () => {
    const { gate } = await setup(
      { limits: [{ name: 'ip', limit: 1, windowMs: '1m', key: 'ip' }] },
      { credentialsRequired: false },
    )
    const req = (ip: string) => gate.evaluate(fakeRequest({ ip }), gate.compile({ public: true }))
    expect((await req('2001:db8:abcd:1200::1')).status).to.equal(200)
    expect((await req('2001:db8:abcd:12ff::2')).status).to.equal(429)
    expect((await req('2001:db8:abcd:1300::1')).status).to.equal(200)
    expect((await req('198.51.100.1')).status).to.equal(200)
    expect((await req('::ffff:198.51.100.1')).status).to.equal(429)
  })

  it('can group IPv6 by /64 instead', () => {
    expect(clientIpKey('2001:db8:abcd:12ff::1', 64)).to.not.equal(
      clientIpKey('2001:db8:abcd:12fe::1', 64),
    )
    expect(clientIpKey('2001:db8:abcd:12ff::1', 56)).to.equal(
      clientIpKey('2001:db8:abcd:12fe::1', 56),
    )
  })

  it('honours allow-lists and skip functions', async () => {
    const { as, a, b } = await setup({
      limits: [
        { name: 'l', limit: 1, windowMs: '1m', allowList: ['alice'] },
        {
          name: 'm',
          limit: 1,
          windowMs: '1m',
          skip: (ctx) => ctx.request.header('x-internal') === 'yes',
        },
      ],
    })
    for (let i = 0; i < 3; i++)
      expect((await as(a)).headers['ratelimit-policy']).to.equal('"m";q=1;w=60')
    expect((await as(b)).status).to.equal(200)
    expect((await as(b)).status).to.equal(429)
  })

  it('runs route limits in the authorization step', async () => {
    const { gate, a } = await setup({})
    const route = gate.compile({ rateLimits: [{ name: 'export', limit: 1, windowMs: 60_000 }] })
    const req = () =>
      gate.evaluate(fakeRequest({ headers: { 'x-api-key': a }, route: '/export' }), route)
    const ok = await req()
    expect(ok.headers['ratelimit-policy']).to.equal('"export";q=1;w=60')
    const denied = await req()
    expect(denied.status).to.equal(429)
    // The stage runs in both steps: no global limit here, then the route's.
    expect(denied.trace.map((t) => [t.stage, t.outcome])).to.deep.equal([
      ['authenticate', 'allow'],
      ['ratelimit', 'allow'],
      ['ratelimit', 'deny'],
    ])
  })

  it('answers a store outage with 503 and Retry-After, audited as ratelimit.unavailable (issue 17)', async () => {
    const { as, a, b, sink, gate } = await setup({
      backend: createFailingBackend(),
      limits: [{ name: 'l', limit: 5, windowMs: '1m' }],
    })
    const d = await as(a)
    expect(d.status).to.equal(503)
    expect(d.headers['retry-after']).to.equal('1')
    // A route limit (authorization step) too.
    const route = gate.compile({ rateLimits: [{ name: 'r', limit: 1, windowMs: 60_000 }] })
    const r = await gate.evaluate(
      fakeRequest({ headers: { 'x-api-key': b }, route: '/export' }),
      route,
    )
    expect(r.status).to.equal(503)
    expect(r.headers['retry-after']).to.equal('1')
    await gate.audit.flush()
    expect(failureCodes(sink.events)).to.deep.equal([
      ['ratelimit.unavailable', 'ERR_RATELIMIT_UNAVAILABLE'],
      ['ratelimit.unavailable', 'ERR_RATELIMIT_UNAVAILABLE'],
    ])
  })

  it('audits a failing stage or store as store.unavailable, never authn.failure (issue 17)', async () => {
    const sink = createMemoryAuditSink()
    const failing = {
      name: 'counter',
      run: () => {
        throw new Error('ECONNREFUSED')
      },
    }
    const { gate, as, alice } = await stageGate([failing], { sinks: [sink] })
    const d = await as(alice.key)
    expect(d.status).to.equal(503)
    await gate.audit.flush()
    await gate.close()
    expect(failureCodes(sink.events)).to.deep.equal([
      ['store.unavailable', 'ERR_STORE_UNAVAILABLE'],
    ])
  })

  it('fails closed with 503 when the store fails, by default', async () => {
    const broken = createFailingBackend()
    const closed = await setup({
      backend: broken,
      limits: [{ name: 'l', limit: 5, windowMs: '1m' }],
    })
    const d = await closed.as(closed.a)
    expect(d.status).to.equal(503)
    if (!d.allowed) expect(d.error.code).to.equal('ERR_RATELIMIT_UNAVAILABLE')

    const warnings: [Readonly<Record<string, unknown>>, string][] = []
    const open = await setup({
      backend: broken,
      onStoreError: 'open',
      logger: { warn: (f, m) => warnings.push([f, m]), error() {} },
      limits: [{ name: 'l', limit: 5, windowMs: '1m' }],
    })
    expect((await open.as(open.a)).status).to.equal(200)
    expect(warnings).to.have.length(1)
    expect(warnings[0]?.[1]).to.equal('ratelimit: store failed; request allowed (fail open)')
    expect(warnings[0]?.[0]).to.include({ limit: 'l' })
    await open.gate.audit.flush()
    expect(open.sink.events.map((e) => e.customType ?? e.type)).to.include('ratelimit.bypassed')
  })

  it('keeps memory bounded under a flood of distinct keys', async () => {
    const clock = createFakeClock()
    const limiter = new BoundedMemoryLimiter({
      points: 5,
      durationMs: 60_000,
      maxKeys: 1000,
      now: clock,
    })
    for (let i = 0; i < 20_000; i++) await limiter.consume(`ip-${i}`)
    expect(limiter.size).to.equal(1000)
  })

  it('refuses bad options at creation, naming them', () => {
    expect(() =>
      createRateLimitStage({ limits: [{ name: 'x', limit: 5, windowMs: -5 }] }),
    ).to.throw(/ratelimit.limits\[0\].windowMs: must be a positive duration/)
    expect(() =>
      createRateLimitStage({ limits: [{ name: 'x', limit: 'ten' as never, windowMs: 1000 }] }),
    ).to.throw(/ratelimit.limits\[0\].limit: must be an integer/)
    expect(() =>
      createRateLimitStage({
        limits: [{ name: 'x', limit: 1, windowMs: 1000, key: 'user' as never }],
      }),
    ).to.throw(/unknown limit key "user"/)
    expect(() => createRateLimitStage({ headers: 'draft-9' as never })).to.throw(
      /ratelimit.headers/,
    )
    expect(() =>
      createRateLimitStage({
        limits: [
          { name: 'x', limit: 1, windowMs: 1000 },
          { name: 'x', limit: 2, windowMs: 1000 },
        ],
      }),
    ).to.throw(/duplicate limit name/)
    const warnings: string[] = []
    createRateLimitStage({
      limitz: [],
      logger: {
        warn: (f: object, m: string) => warnings.push(`${JSON.stringify(f)} ${m}`),
        error() {},
      },
    } as never)
    expect(warnings.join()).to.include(
      '{} ratelimit.limitz: unknown option "limitz"; did you mean "limits"?',
    )
  })
})

describe('route limits without a configured limits stage', () => {
  it('are enforced by a default in-memory stage rather than ignored', async () => {
    const store = createMemoryKeyStore()
    const gate = createGate({ apiKeys: { store, pepper: PEPPER }, audit: false })
    const { key } = await createApiKeyManager({ store, pepper: PEPPER }).create({
      name: 'k',
      ownerId: 'u',
    })
    const route = gate.compile({ rateLimits: [{ name: 'r', limit: 1, windowMs: 60_000 }] })
    const req = () => gate.evaluate(fakeRequest({ headers: { 'x-api-key': key } }), route)
    expect((await req()).status).to.equal(200)
    expect((await req()).status).to.equal(429)
  })
})
