import { expect } from 'chai'
import { createQuotaStage, periodBounds, type QuotaStageOptions } from '@portcullis/core'
import {
  createFailingBackend,
  createFakeClock,
  createMemoryAuditSink,
  createMemoryMetrics,
  fakeRequest,
} from '@portcullis/core/testing'
import { failureCodes, recordingLogger, stageGate } from '../../helpers/stage-gate.js'

/** A gate with one quota stage and two API keys (issue 18 scenarios), on a fake clock. */
async function quotaGate(
  options: Omit<QuotaStageOptions, 'now'>,
  start = Date.UTC(2026, 10, 30, 12),
) {
  const clock = createFakeClock(start)
  const quotas = createQuotaStage({ now: clock, ...options })
  const g = await stageGate([quotas], { clock })
  const request = (key: string, headers: Record<string, string> = {}, path = '/docs') =>
    fakeRequest({ url: path, headers: { 'x-api-key': key, ...headers } })
  const used = async (id: string, name?: string) =>
    (await quotas.usage(id)).find((u) => name === undefined || u.name === name)?.used
  return { ...g, quotas, a: g.alice, b: g.bob, request, used }
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

  it('rolls monthly quotas over on the 1st', async () => {
    const { as, a, clock } = await quotaGate(
      { quotas: [{ name: 'monthly', limit: 1, period: 'month', cost: 1 }] },
      Date.UTC(2026, 10, 30, 23, 0, 0),
    )
    expect((await as(a.key)).status).to.equal(200)
    expect((await as(a.key)).status).to.equal(429)
    clock.set(Date.UTC(2026, 11, 1, 0, 0, 1))
    expect((await as(a.key)).status).to.equal(200)
  })

  it('refuses bad options', () => {
    expect(() =>
      createQuotaStage({ quotas: [{ name: 'q', limit: 1, period: 'week' as never }] }),
    ).to.throw(/quota.quotas\[0\].period: unknown quota period "week"/)
    expect(() => createQuotaStage({ quotas: [] })).to.throw(/quota.quotas: must not be empty/)
  })
})

describe('quota refunds on server errors', () => {
  it('answers a quota store outage with 503 and Retry-After, audited as quota.unavailable (issue 17)', async () => {
    const sink = createMemoryAuditSink()
    const quotas = createQuotaStage({
      backend: createFailingBackend(),
      quotas: [{ name: 'monthly', limit: 10, period: 'month' }],
      logger: { warn() {}, error() {} },
    })
    const { gate, as, alice } = await stageGate([quotas], { sinks: [sink] })
    const decision = await as(alice.key)
    expect(decision.status).to.equal(503)
    expect(decision.headers['retry-after']).to.equal('1')
    await gate.audit.flush()
    await gate.close()
    expect(failureCodes(sink.events)).to.deep.equal([
      ['quota.unavailable', 'ERR_QUOTA_UNAVAILABLE'],
    ])
  })

  it('fails closed with 503 when the store fails, by default, and open when configured', async () => {
    const broken = createFailingBackend()
    const run = async (onStoreError?: 'open' | 'closed') => {
      const { logger, lines: logs } = recordingLogger()
      const metrics = createMemoryMetrics()
      const sink = createMemoryAuditSink()
      const quotas = createQuotaStage({
        backend: broken,
        quotas: [{ name: 'monthly', limit: 10, period: 'month' }],
        logger,
        ...(onStoreError === undefined ? {} : { onStoreError }),
      })
      const { gate, as, alice } = await stageGate([quotas], { sinks: [sink], metrics })
      const decision = await as(alice.key)
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

describe('quota: requests refused by authorization (chargeDenied, issue 18)', () => {
  it('gives the unit back when the authorize step denies, by default (gate.evaluate)', async () => {
    const { gate, a, request, used } = await quotaGate({
      quotas: [{ name: 'daily', limit: 5, period: 'day' }],
    })
    const denied = await gate.evaluate(request(a.key), gate.compile('docs:write'))
    expect(denied.status).to.equal(403)
    expect(await used(a.record.id)).to.equal(0)
    expect((await gate.evaluate(request(a.key), gate.compile('docs:read'))).status).to.equal(200)
    expect(await used(a.record.id)).to.equal(1)
  })

  it('gives the unit back when a route guard denies (gate.authenticate then authorize)', async () => {
    const { gate, a, request, used } = await quotaGate({
      quotas: [{ name: 'daily', limit: 5, period: 'day' }],
    })
    const req = request(a.key)
    const authn = await gate.authenticate(req)
    if (!authn.allowed) return expect.fail('authentication failed')
    const authz = await gate.authorize(req, authn, gate.compile('docs:write'))
    expect(authz.status).to.equal(403)
    // What every adapter does once the response is sent: settle with its final status.
    authn.settle?.(authz.status)
    expect(await used(a.record.id)).to.equal(0)
  })

  it('charges denied requests with chargeDenied: true', async () => {
    const { gate, a, request, used } = await quotaGate({
      chargeDenied: true,
      quotas: [{ name: 'daily', limit: 5, period: 'day' }],
    })
    expect((await gate.evaluate(request(a.key), gate.compile('docs:write'))).status).to.equal(403)
    expect(await used(a.record.id)).to.equal(1)
  })

  it('refuses a chargeDenied that is not a boolean', () => {
    expect(() =>
      createQuotaStage({
        chargeDenied: 'no' as never,
        quotas: [{ name: 'q', limit: 1, period: 'day' }],
      }),
    ).to.throw(/quota.chargeDenied/)
  })
})

describe('quota: Idempotency-Key (issue 18)', () => {
  const idem = (value: string) => ({ 'idempotency-key': value })

  it('never trusts a key across principals or for another request', async () => {
    const { gate, a, b, request, used } = await quotaGate({
      idempotency: true,
      quotas: [{ name: 'daily', limit: 5, period: 'day' }],
    })
    await gate.evaluate(request(a.key, idem('k')))
    await gate.evaluate(request(b.key, idem('k')))
    await gate.evaluate(request(a.key, idem('k'), '/other'))
    expect(await used(a.record.id)).to.equal(2)
    expect(await used(b.record.id)).to.equal(1)
  })

  it('forgets a key after its TTL, and beyond maxEntries the least recently used', async () => {
    const { gate, a, clock, request, used } = await quotaGate({
      idempotency: { header: 'X-Request-Key', ttlMs: 60_000, maxEntries: 2 },
      quotas: [{ name: 'daily', limit: 50, period: 'day' }],
    })
    const hit = (v: string) => gate.evaluate(request(a.key, { 'x-request-key': v }))
    await hit('one')
    await hit('one')
    expect(await used(a.record.id)).to.equal(1)
    clock.advance(60_000)
    await hit('one')
    expect(await used(a.record.id)).to.equal(2)
    await hit('two')
    await hit('three')
    // 'one' was the least recently used of three records with room for two.
    await hit('one')
    expect(await used(a.record.id)).to.equal(5)
    await hit('three')
    expect(await used(a.record.id)).to.equal(5)
  })

  it('charges the retry of a request refunded (5xx)', async () => {
    const { gate, a, request, used } = await quotaGate({
      idempotency: true,
      refundOnServerError: true,
      quotas: [{ name: 'daily', limit: 5, period: 'day' }],
    })
    const first = await gate.evaluate(request(a.key, idem('r')))
    if (!first.allowed) return expect.fail('refused')
    first.settle?.(503)
    expect(await used(a.record.id)).to.equal(0)
    await gate.evaluate(request(a.key, idem('r')))
    expect(await used(a.record.id)).to.equal(1)
  })

  it('charges the retry of a request the quota refused', async () => {
    const { gate, a, quotas, request, used } = await quotaGate({
      idempotency: true,
      quotas: [{ name: 'daily', limit: 1, period: 'day' }],
    })
    await gate.evaluate(request(a.key))
    expect((await gate.evaluate(request(a.key, idem('late')))).status).to.equal(429)
    await quotas.reset(a.record.id)
    // The refusal left no record: the retry is counted (and would be refused if over).
    expect((await gate.evaluate(request(a.key, idem('late')))).status).to.equal(200)
    expect(await used(a.record.id)).to.equal(1)
  })

  it('is off by default: a repeated key is charged each time', async () => {
    const { gate, a, request, used } = await quotaGate({
      quotas: [{ name: 'daily', limit: 5, period: 'day' }],
    })
    await gate.evaluate(request(a.key, idem('k')))
    await gate.evaluate(request(a.key, idem('k')))
    expect(await used(a.record.id)).to.equal(2)
  })
})
