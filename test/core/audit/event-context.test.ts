// What an auditor asks of every event besides what happened: which adapter answered the request,
// and under which compliance profiles, mapping version and retention class it was written.
import { createHash } from 'node:crypto'
import { expect } from 'chai'
import {
  canonicalize,
  COMPLIANCE_MAPPING_VERSION,
  COMPLIANCE_PROFILE_DEFINITIONS,
  COMPLIANCE_PROFILES,
  createAuditTrail,
  createGate,
  NodeGateRequest,
  resolveCompliance,
  verifyAuditChain,
  type AuditEvent,
  type ComplianceProfileName,
} from '@portcullis/core'
import { createMemoryAuditSink, fakeRequest } from '@portcullis/core/testing'

const KEY = 'event-context-chain-key-0123456789'

describe('audit event request.adapter', () => {
  it('records request.adapter as custom when application code calls the gate directly', async () => {
    const sink = createMemoryAuditSink()
    const gate = createGate({ audit: { sinks: [sink], flushIntervalMs: 0 } })
    await gate.evaluate(fakeRequest({ url: '/docs/1' }))
    const node = new NodeGateRequest({
      method: 'GET',
      url: '/docs/2',
      route: undefined,
      ip: '127.0.0.1',
      headers: {},
      rawHeaders: [],
    })
    expect(node.adapter).to.equal('custom')
    await gate.evaluate(node)
    const tagged = new NodeGateRequest({
      method: 'GET',
      url: '/docs/3',
      route: undefined,
      ip: '127.0.0.1',
      headers: {},
      rawHeaders: [],
      adapter: 'hono',
    })
    // A route guard's copy of the request keeps the adapter that built it.
    await gate.evaluate(tagged.withRoute('/docs/:id'))
    await gate.audit.flush()
    expect(sink.events.map((e) => [e.request?.path, e.request?.adapter])).to.deep.equal([
      ['/docs/1', 'custom'],
      ['/docs/2', 'custom'],
      ['/docs/3', 'hono'],
    ])
    await gate.close()
  })
})

/** The retention class each profile declares, as the docs table states it. */
const RETENTION: Record<ComplianceProfileName, string> = {
  SOC2: '1y',
  ISO27001: '1y',
  GDPR: '6m',
  HIPAA: '6y',
}

async function eventsUnder(
  compliance: readonly ComplianceProfileName[],
  integrity = false,
): Promise<AuditEvent[]> {
  const sink = createMemoryAuditSink()
  const trail = createAuditTrail({
    sinks: [sink],
    compliance,
    ...(integrity ? { integrity: { key: KEY, checkpointEvery: 2 } } : {}),
  })
  trail.emit({ type: 'authn.failure', outcome: 'failure', actor: { id: null }, action: 'GET /a' })
  trail.emit({ type: 'authz.allow', outcome: 'success', actor: { id: 'u1' }, action: 'GET /b' })
  trail.record('invoice.paid', { data: { amount: 3 } })
  await trail.close()
  return [...sink.events]
}

describe('audit event compliance stamp', () => {
  for (const profile of COMPLIANCE_PROFILES) {
    it(`stamps every event prepared under ${profile} with its retention class and the mapping version`, async () => {
      expect(COMPLIANCE_PROFILE_DEFINITIONS[profile].retention).to.equal(RETENTION[profile])
      const events = await eventsUnder([profile])
      expect(events).to.have.length(3)
      for (const e of events)
        expect(e.compliance, e.type).to.deep.equal({
          profiles: [profile],
          mappingVersion: COMPLIANCE_MAPPING_VERSION,
          retention: RETENTION[profile],
        })
    })
  }

  it('stamps the longest retention class when profiles combine', async () => {
    const events = await eventsUnder(['GDPR', 'SOC2', 'HIPAA'])
    expect(events[0]?.compliance).to.deep.equal({
      profiles: ['GDPR', 'SOC2', 'HIPAA'],
      mappingVersion: COMPLIANCE_MAPPING_VERSION,
      retention: '6y',
    })
    expect(resolveCompliance(['GDPR', 'ISO27001']).retention).to.equal('1y')
    expect(resolveCompliance(['GDPR']).retention).to.equal('6m')
  })

  it("reports the retention class and mapping version (trail.report(), 'audit report --json')", () => {
    const trail = createAuditTrail({ sinks: [createMemoryAuditSink()], compliance: ['GDPR'] })
    expect(trail.report()).to.deep.include({ retention: '6m', mappingVersion: '2026-12-08.2' })
    void trail.close()
  })

  it('writes no stamp without a profile', async () => {
    for (const e of await eventsUnder([])) expect(e).to.not.have.property('compliance')
  })

  it('covers the stamp with the hash chain', async () => {
    const events = await eventsUnder(['HIPAA'], true)
    // Checkpoints are the chain's own statements, made by the chainer: they carry no stamp.
    const checkpoints = events.filter((e) => e.type === 'audit.checkpoint')
    expect(checkpoints).to.have.length.of.at.least(1)
    for (const e of events)
      expect(e.compliance?.retention).to.equal(e.type === 'audit.checkpoint' ? undefined : '6y')
    expect(verifyAuditChain(events, { keys: KEY })).to.include({ ok: true })
    const forged = events.map((e, i) =>
      i === 0 ? { ...e, compliance: { ...e.compliance!, retention: '6m' as const } } : e,
    )
    expect(verifyAuditChain(forged, { keys: KEY })).to.deep.include({ ok: false })
  })

  it('pins the event→control mapping to COMPLIANCE_MAPPING_VERSION (bump both together)', () => {
    // Changing a control, its events or fields, or a retention class changes this hash: bump
    // COMPLIANCE_MAPPING_VERSION in the same commit, then update the hash here.
    const hash = createHash('sha256')
      .update(canonicalize(COMPLIANCE_PROFILE_DEFINITIONS))
      .digest('hex')
    expect({ version: COMPLIANCE_MAPPING_VERSION, hash }).to.deep.equal({
      version: '2026-12-08.2',
      hash: '285ed2b1e420ad27d30f8c802d9c6f89b3c8bc7704d1ba5ab15586e57cad162b',
    })
  })
})
