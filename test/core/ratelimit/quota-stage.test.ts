import { expect } from 'chai'
import {
  createApiKeyManager,
  createAuditTrail,
  createGate,
  createMemoryKeyStore,
  createQuotaStage,
  periodBounds,
  type QuotaStageOptions,
} from '@portcullis/core'
import {
  createFailingBackend,
  createFakeClock,
  createMemoryAuditSink,
  createMemoryMetrics,
  fakeRequest,
} from '@portcullis/core/testing'

const PEPPER = 'p'.repeat(32)

async function setup(options: Omit<QuotaStageOptions, 'now'>) {
  const clock = createFakeClock(Date.UTC(2026, 10, 30, 23, 0, 0))
  const store = createMemoryKeyStore()
  const quotas = createQuotaStage({ now: clock, ...options })
  const gate = createGate({
    apiKeys: { store, pepper: PEPPER },
    stages: [quotas],
    audit: false,
    now: clock,
  })
  const keys = createApiKeyManager({ store, pepper: PEPPER, now: clock })
  const a = await keys.create({ name: 'a', ownerId: 'alice' })
  const as = () => gate.evaluate(fakeRequest({ headers: { 'x-api-key': a.key } }))
  return { clock, quotas, as, id: a.record.id }
}

describe('createQuotaStage', () => {
  it('computes UTC calendar periods', () => {
    const t = Date.UTC(2026, 1, 28, 13, 5)
    expect(periodBounds('day', t)).to.deep.equal({
      id: '2026-02-28',
      start: Date.UTC(2026, 1, 28),
      end: Date.UTC(2026, 2, 1),
    })
    expect(periodBounds('month', t)).to.deep.equal({
      id: '2026-02',
      start: Date.UTC(2026, 1, 1),
      end: Date.UTC(2026, 2, 1),
    })
  })

  it('counts per API key per day, resets at midnight UTC, and answers 429 quota-exceeded', async () => {
    const { as, clock } = await setup({ quotas: [{ name: 'daily', limit: 2, period: 'day' }] })
    const first = await as()
    expect(first.headers).to.deep.equal({
      'ratelimit-policy': '"daily";q=2;w=86400',
      ratelimit: '"daily";r=1;t=3600',
    })
    await as()
    const over = await as()
    expect(over.status).to.equal(429)
    expect(over.headers['retry-after']).to.equal('3600')
    if (!over.allowed) {
      expect(over.error.code).to.equal('ERR_QUOTA_EXCEEDED')
      expect(over.problem.type).to.match(/quota-exceeded$/)
      expect(over.problem).to.include({ policy: 'daily', retryAfter: 3600 })
    }
    clock.advance(3_600_000)
    expect((await as()).status).to.equal(200)
  })

  it('rolls monthly quotas over on the 1st', async () => {
    const { as, clock } = await setup({
      quotas: [{ name: 'monthly', limit: 1, period: 'month', cost: 1 }],
    })
    expect((await as()).status).to.equal(200)
    expect((await as()).status).to.equal(429)
    clock.set(Date.UTC(2026, 11, 1, 0, 0, 1))
    expect((await as()).status).to.equal(200)
  })

  it('reports, refunds and resets usage per key', async () => {
    const { as, quotas, id } = await setup({
      quotas: [{ name: 'daily', limit: 10, period: 'day', cost: 3 }],
    })
    await as()
    await as()
    expect(await quotas.usage(id)).to.deep.equal([
      { name: 'daily', used: 6, limit: 10, remaining: 4, resetAt: Date.UTC(2026, 11, 1) },
    ])
    await quotas.refund(id, 3)
    expect((await quotas.usage(id))[0]?.used).to.equal(3)
    await quotas.reset(id)
    expect((await quotas.usage(id))[0]?.used).to.equal(0)
  })

  it('refuses bad options', () => {
    expect(() =>
      createQuotaStage({ quotas: [{ name: 'q', limit: 1, period: 'week' as never }] }),
    ).to.throw(/quota.quotas\[0\].period: unknown quota period "week"/)
    expect(() => createQuotaStage({ quotas: [] })).to.throw(/quota.quotas: must not be empty/)
  })
})

describe('quota refunds on server errors', () => {
  it('gives the unit back when the adapter settles with a 5xx, and only then', async () => {
    const clock = createFakeClock(Date.UTC(2026, 10, 30, 12))
    const store = createMemoryKeyStore()
    const quotas = createQuotaStage({
      now: clock,
      refundOnServerError: true,
      quotas: [{ name: 'd', limit: 5, period: 'day' }],
    })
    const gate = createGate({
      apiKeys: { store, pepper: PEPPER },
      stages: [quotas],
      audit: false,
      now: clock,
    })
    const { key, record } = await createApiKeyManager({ store, pepper: PEPPER, now: clock }).create(
      { name: 'a', ownerId: 'u' },
    )
    const served = async (status: number) => {
      const d = await gate.evaluate(fakeRequest({ headers: { 'x-api-key': key } }))
      if (d.allowed) d.settle?.(status)
      await new Promise((r) => setImmediate(r))
    }
    await served(200)
    await served(502)
    await served(404)
    expect((await quotas.usage(record.id))[0]?.used).to.equal(2)
  })

  it('fails closed with 503 when the store fails, by default, and open when configured', async () => {
    const broken = createFailingBackend()
    const run = async (onStoreError?: 'open' | 'closed') => {
      const logs: string[] = []
      const metrics = createMemoryMetrics()
      const sink = createMemoryAuditSink()
      const store = createMemoryKeyStore()
      const gate = createGate({
        apiKeys: { store, pepper: PEPPER },
        stages: [
          createQuotaStage({
            backend: broken,
            quotas: [{ name: 'monthly', limit: 10, period: 'month' }],
            logger: {
              warn: (f, m) => logs.push(`warn ${m} ${JSON.stringify(f)}`),
              error: (f, m) => logs.push(`error ${m} ${JSON.stringify(f)}`),
            },
            ...(onStoreError === undefined ? {} : { onStoreError }),
          }),
        ],
        audit: createAuditTrail({ sinks: [sink] }),
        metrics,
      })
      const { key } = await createApiKeyManager({ store, pepper: PEPPER }).create({
        name: 'a',
        ownerId: 'alice',
      })
      const decision = await gate.evaluate(fakeRequest({ headers: { 'x-api-key': key } }))
      await gate.audit.flush()
      const types = sink.events.map((e) => e.customType ?? e.type)
      await gate.close()
      return { decision, logs, types, metrics }
    }

    const closed = await run()
    expect(closed.decision.status).to.equal(503)
    if (!closed.decision.allowed) {
      expect(closed.decision.error.code).to.equal('ERR_QUOTA_UNAVAILABLE')
      expect(JSON.stringify(closed.decision.problem)).to.not.include('ECONNREFUSED')
    }
    expect(closed.logs).to.deep.equal([
      'error quota: store failed; request denied (fail closed) {"quota":"monthly","error":"Error: ECONNREFUSED"}',
    ])
    expect(closed.metrics.value('storeFailures', { store: 'quota' })).to.equal(1)
    expect(
      closed.metrics.value('failureModeActivations', { store: 'quota', mode: 'closed' }),
    ).to.equal(1)
    expect(closed.types).to.not.include('quota.bypassed')

    const open = await run('open')
    expect(open.decision.status).to.equal(200)
    expect(open.logs).to.deep.equal([
      'warn quota: store failed; request allowed (fail open) {"quota":"monthly","error":"Error: ECONNREFUSED"}',
    ])
    expect(open.metrics.value('failureModeActivations', { store: 'quota', mode: 'open' })).to.equal(
      1,
    )
    expect(open.types).to.include('quota.bypassed')
  })
})
