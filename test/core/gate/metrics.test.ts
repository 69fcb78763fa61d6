import { expect } from 'chai'
import {
  createApiKeyManager,
  createGate,
  createMemoryKeyStore,
  createQuotaStage,
  createRateLimitStage,
  type GateOptions,
  type PortcullisMetric,
  type MetricLabels,
  type MetricsClient,
  type TraceEntry,
} from '@portcullis/core'
import {
  createFailingBackend,
  createMemoryAuditSink,
  createMemoryMetrics,
  fakeRequest,
} from '@portcullis/core/testing'
import { signHmac, seconds } from '../../helpers/jwt.js'

const PEPPER = 'p'.repeat(32)
const SECRET = 'jwt-secret-for-tests-only-0123456789'

const broken = createFailingBackend()

async function setup(extra: Partial<GateOptions> = {}) {
  const metrics = createMemoryMetrics()
  const store = createMemoryKeyStore()
  const sink = createMemoryAuditSink()
  const gate = createGate({
    apiKeys: { store, pepper: PEPPER },
    jwt: { secret: SECRET, issuer: false, audience: false },
    audit: { sinks: [sink] },
    metrics,
    ...extra,
  })
  const { key } = await createApiKeyManager({ store, pepper: PEPPER }).create({
    name: 'k',
    ownerId: 'u',
    scopes: ['docs:read'],
  })
  const withKey = () => fakeRequest({ headers: { 'x-api-key': key } })
  return { gate, metrics, key, sink, withKey }
}

describe('gate metrics', () => {
  it('counts each decision by step, outcome, stage and code, and times it in seconds', async () => {
    const { gate, metrics, withKey } = await setup()
    await gate.evaluate(withKey(), gate.compile('docs:read'))
    await gate.evaluate(withKey(), gate.compile('docs:write'))
    await gate.evaluate(fakeRequest())

    const allowAuthn = {
      step: 'authenticate',
      outcome: 'allow',
      stage: 'authenticate',
      code: 'none',
    }
    expect(metrics.value('requests', allowAuthn)).to.equal(2)
    expect(
      metrics.value('requests', {
        step: 'authorize',
        outcome: 'allow',
        stage: 'authorize',
        code: 'none',
      }),
    ).to.equal(1)
    expect(
      metrics.value('requests', {
        step: 'authorize',
        outcome: 'deny',
        stage: 'authorize',
        code: 'ERR_SCOPE_INSUFFICIENT',
      }),
    ).to.equal(1)
    expect(
      metrics.value('requests', {
        step: 'authenticate',
        outcome: 'deny',
        stage: 'authenticate',
        code: 'ERR_AUTH_REQUIRED',
      }),
    ).to.equal(1)
    // Every request is counted once at step authenticate.
    expect(metrics.sum('requests', { step: 'authenticate' })).to.equal(3)

    const latencies = metrics.observations('decisionDuration')
    expect(latencies).to.have.length(5)
    for (const s of latencies) expect(s).to.be.within(0, 1)
    expect(
      metrics.observations('decisionDuration', { step: 'authorize', outcome: 'deny' }),
    ).to.have.length(1)
    expect(metrics.observations('stageDuration', { stage: 'authenticate' })).to.have.length(3)
    expect(metrics.observations('stageDuration', { stage: 'authorize' })).to.have.length(2)
  })

  it('counts the separate authenticate and authorize calls of a middleware and a route guard alike', async () => {
    const { gate, metrics, withKey } = await setup()
    const first = await gate.authenticate(withKey())
    if (!first.allowed) throw new Error('expected an allowed decision')
    await gate.authorize(withKey(), first, gate.compile('docs:read'))
    expect(metrics.sum('requests', { step: 'authenticate', outcome: 'allow' })).to.equal(1)
    expect(metrics.sum('requests', { step: 'authorize', outcome: 'allow' })).to.equal(1)
    // The authorize step observes only its own stage, not the copied authentication entry.
    expect(metrics.observations('stageDuration', { stage: 'authenticate' })).to.have.length(1)
    expect(metrics.observations('stageDuration', { stage: 'authorize' })).to.have.length(1)
  })

  it('does not count dry runs (explain)', async () => {
    const { gate, metrics, withKey } = await setup()
    await gate.explain(withKey(), gate.compile('docs:read'))
    expect(metrics.labelSets('requests')).to.deep.equal([])
    expect(metrics.observations('decisionDuration')).to.deep.equal([])
  })

  it('counts rate-limit rejections by limit name, never by key', async () => {
    const limits = createRateLimitStage({ limits: [{ name: 'burst', limit: 1, windowMs: '1m' }] })
    const { gate, metrics, withKey, key } = await setup({ stages: [limits] })
    expect((await gate.evaluate(withKey())).allowed).to.equal(true)
    const d = await gate.evaluate(withKey())
    expect(d.status).to.equal(429)
    expect(metrics.value('rateLimitRejections', { limit: 'burst' })).to.equal(1)
    expect(
      metrics.value('requests', {
        step: 'authenticate',
        outcome: 'deny',
        stage: 'ratelimit',
        code: 'ERR_RATE_LIMITED',
      }),
    ).to.equal(1)
    const everyLabel = JSON.stringify(
      (['requests', 'rateLimitRejections', 'stageDuration'] as PortcullisMetric[]).flatMap((m) =>
        metrics.labelSets(m),
      ),
    )
    expect(everyLabel).not.to.include(key.slice(-20))
    expect(everyLabel).not.to.include('127.0.0.1')
  })

  it('counts route-limit rejections in the authorize step', async () => {
    const { gate, metrics, withKey } = await setup()
    const route = gate.compile({ rateLimits: [{ name: 'per-route', limit: 1, windowMs: 60_000 }] })
    await gate.evaluate(withKey(), route)
    const d = await gate.evaluate(withKey(), route)
    expect(d.status).to.equal(429)
    expect(metrics.value('rateLimitRejections', { limit: 'per-route' })).to.equal(1)
    expect(metrics.sum('requests', { step: 'authorize', stage: 'ratelimit' })).to.equal(1)
  })

  it('counts quota rejections by quota name', async () => {
    const quotas = createQuotaStage({ quotas: [{ name: 'daily', limit: 1, period: 'day' }] })
    const { gate, metrics, withKey } = await setup({ stages: [quotas] })
    await gate.evaluate(withKey())
    expect((await gate.evaluate(withKey())).status).to.equal(429)
    expect(metrics.value('quotaRejections', { quota: 'daily' })).to.equal(1)
    expect(metrics.sum('requests', { stage: 'quota', code: 'ERR_QUOTA_EXCEEDED' })).to.equal(1)
  })

  it('counts store failures and which failure mode decided', async () => {
    const open = await setup({
      stages: [
        createRateLimitStage({
          backend: broken,
          onStoreError: 'open',
          limits: [{ name: 'l', limit: 5, windowMs: '1m' }],
        }),
        createQuotaStage({
          backend: broken,
          quotas: [{ name: 'q', limit: 5, period: 'day' }],
        }),
      ],
    })
    const d = await open.gate.evaluate(open.withKey())
    // The rate limit failed open; the quota (closed by default) denied.
    expect(d.status).to.equal(503)
    const m = open.metrics
    expect(m.value('storeFailures', { store: 'ratelimit' })).to.equal(1)
    expect(m.value('failureModeActivations', { store: 'ratelimit', mode: 'open' })).to.equal(1)
    expect(m.value('storeFailures', { store: 'quota' })).to.equal(1)
    expect(m.value('failureModeActivations', { store: 'quota', mode: 'closed' })).to.equal(1)
    expect(
      m.value('requests', {
        step: 'authenticate',
        outcome: 'error',
        stage: 'quota',
        code: 'ERR_QUOTA_UNAVAILABLE',
      }),
    ).to.equal(1)
  })

  it('counts API-key cache hits, misses and negative hits', async () => {
    const { gate, metrics, withKey } = await setup()
    await gate.evaluate(withKey())
    await gate.evaluate(withKey())
    expect(metrics.value('keyCacheLookups', { cache: 'apikey', result: 'miss' })).to.equal(1)
    expect(metrics.value('keyCacheLookups', { cache: 'apikey', result: 'hit' })).to.equal(1)
    // A well-formed key that is not in the store: a miss, then remembered as unknown.
    const other = await createApiKeyManager({
      store: createMemoryKeyStore(),
      pepper: PEPPER,
    }).create({ name: 'x', ownerId: 'v' })
    await gate.evaluate(fakeRequest({ headers: { 'x-api-key': other.key } }))
    await gate.evaluate(fakeRequest({ headers: { 'x-api-key': other.key } }))
    expect(metrics.value('keyCacheLookups', { cache: 'apikey', result: 'miss' })).to.equal(2)
    expect(metrics.value('keyCacheLookups', { cache: 'apikey', result: 'negative_hit' })).to.equal(
      1,
    )
  })

  it('counts JWT cache hits and misses', async () => {
    const { gate, metrics } = await setup()
    const token = signHmac({ claims: { sub: 'u', exp: seconds(Date.now()) + 600 } }, SECRET)
    const req = () => fakeRequest({ headers: { authorization: `Bearer ${token}` } })
    expect((await gate.evaluate(req())).allowed).to.equal(true)
    await gate.evaluate(req())
    expect(metrics.value('keyCacheLookups', { cache: 'jwt', result: 'miss' })).to.equal(1)
    expect(metrics.value('keyCacheLookups', { cache: 'jwt', result: 'hit' })).to.equal(1)
  })

  it('passes its metrics to the audit trail it builds', async () => {
    const { gate, metrics, withKey } = await setup()
    await gate.evaluate(withKey())
    await gate.audit.flush()
    expect(metrics.sum('auditEvents')).to.be.at.least(1)
  })

  it('reuses the same label objects on every request (nothing allocated per request)', async () => {
    const seen = new Map<string, Set<MetricLabels | undefined>>()
    const spy: MetricsClient = {
      increment(metric, labels) {
        const s = seen.get(metric) ?? new Set()
        s.add(labels)
        seen.set(metric, s)
      },
      set() {},
      observe(metric, _value, labels) {
        const s = seen.get(metric) ?? new Set()
        s.add(labels)
        seen.set(metric, s)
      },
    }
    const limits = createRateLimitStage({ limits: [{ name: 'burst', limit: 2, windowMs: '1m' }] })
    const { gate, withKey } = await setup({ metrics: spy, stages: [limits], audit: false })
    for (let i = 0; i < 6; i++) await gate.evaluate(withKey(), gate.compile('docs:read'))
    // allow at authenticate, allow at authorize, deny at ratelimit: three label objects in all.
    expect(seen.get('requests')?.size).to.equal(3)
    expect(seen.get('rateLimitRejections')?.size).to.equal(1)
    expect(seen.get('decisionDuration')?.size).to.equal(3)
    expect(seen.get('stageDuration')?.size).to.equal(3)
    for (const set of seen.values())
      for (const labels of set) expect(Object.isFrozen(labels)).to.equal(true)
  })

  it('decides as usual when the metrics client throws', async () => {
    const throwing: MetricsClient = {
      increment() {
        throw new Error('boom')
      },
      set() {
        throw new Error('boom')
      },
      observe() {
        throw new Error('boom')
      },
    }
    const { gate, withKey } = await setup({ metrics: throwing, audit: false })
    expect((await gate.evaluate(withKey(), gate.compile('docs:read'))).allowed).to.equal(true)
  })

  it('refuses a metrics option that is not a MetricsClient', () => {
    expect(() => createGate({ metrics: { increment() {} } as never })).to.throw(/metrics/)
    expect(() => createGate({ tracer: {} as never })).to.throw(/tracer/)
  })
})

describe('gate tracer', () => {
  it('opens and closes one span per stage, in order, with each stage entry', async () => {
    const events: string[] = []
    const ended: TraceEntry[] = []
    const limits = createRateLimitStage({ limits: [{ name: 'burst', limit: 5, windowMs: '1m' }] })
    const { gate, withKey } = await setup({
      stages: [limits],
      tracer: {
        startStage(stage, request) {
          events.push(`start ${stage} ${request.method}`)
          return { stage }
        },
        endStage(span, entry) {
          events.push(`end ${(span as { stage: string }).stage} ${entry.outcome}`)
          ended.push(entry)
        },
      },
    })
    await gate.evaluate(withKey(), gate.compile('docs:write'))
    expect(events).to.deep.equal([
      'start authenticate GET',
      'end authenticate allow',
      'start ratelimit GET',
      'end ratelimit allow',
      'start authorize GET',
      'end authorize deny',
    ])
    expect(ended[2]?.code).to.equal('ERR_SCOPE_INSUFFICIENT')
  })

  it('decides as usual when the tracer throws', async () => {
    const { gate, withKey } = await setup({
      tracer: {
        startStage() {
          throw new Error('boom')
        },
        endStage() {
          throw new Error('boom')
        },
      },
    })
    expect((await gate.evaluate(withKey(), gate.compile('docs:read'))).allowed).to.equal(true)
  })
})
