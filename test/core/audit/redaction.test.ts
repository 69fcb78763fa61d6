import { expect } from 'chai'
import {
  auditComplianceReport,
  createAuditRedactor,
  createAuditTrail,
  createMemoryPseudonymStore,
  createPseudonymizer,
  resolveCompliance,
  verifyAuditChain,
  type AuditEvent,
  type AuditEventInput,
  type AuditOptions,
} from '@portcullis/core'
import { createMemoryAuditSink } from '@portcullis/core/testing'

const KEY = 'chain-key-0123456789abcdef0123456789'
const JWT =
  'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSIsImV4cCI6OTk5OTk5OTk5OX0.c2lnbmF0dXJlLWJ5dGVz'
const API_KEY = `ptcl_${'A1b2C3d4E5'.repeat(5)}x9Z8`

const base: AuditEventInput = {
  type: 'authz.deny',
  outcome: 'failure',
  actor: { id: 'alice@example.com', method: 'apikey' },
  action: 'GET /patients/:id',
  request: {
    id: 'r1',
    method: 'GET',
    path: '/patients/7',
    ip: '203.0.113.77',
    userAgent: 'curl/8',
  },
}

async function run(
  options: AuditOptions,
  events: AuditEventInput[] = [base],
): Promise<AuditEvent[]> {
  const sink = createMemoryAuditSink()
  const trail = createAuditTrail({ flushIntervalMs: 0, ...options, sinks: [sink] })
  for (const e of events) trail.emit(e)
  await trail.close()
  return [...sink.events]
}

describe('audit redaction and compliance profiles', () => {
  it('never writes a credential, whatever the configuration', async () => {
    const [event] = await run({}, [
      {
        ...base,
        reason: { detail: `token was ${JWT}` },
        data: {
          headers: {
            Authorization: `Bearer ${JWT}`,
            COOKIE: 'sid=s3cr3t-session',
            'X-Api-Key': API_KEY,
            'set-cookie': ['a=1'],
          },
          nested: [{ deeper: { client_secret: 'cs-123', note: `key ${API_KEY} leaked` } }],
          url: '/cb?code=1&access_token=at-999&x=2',
          proxy: 'Basic dXNlcjpwYXNzd29yZA==',
        },
      },
    ])
    const text = JSON.stringify(event)
    for (const secret of [
      JWT,
      API_KEY,
      's3cr3t-session',
      'cs-123',
      'at-999',
      'dXNlcjpwYXNzd29yZA==',
    ])
      expect(text, secret).to.not.include(secret)
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- walking a nested test fixture
    const data = event?.data as Record<string, any>
    expect(data.headers.Authorization).to.equal('[REDACTED]')
    expect(data.nested[0].deeper.note).to.equal('key [REDACTED:apikey] leaked')
    expect(data.url).to.equal('/cb?code=1&access_token=[REDACTED]&x=2')
    expect(event?.reason?.detail).to.equal('token was [REDACTED:jwt]')
  })

  it('SOC2 keeps IPs and tags events with their controls', async () => {
    const [event] = await run({ compliance: ['SOC2'] })
    expect(event?.request?.ip).to.equal('203.0.113.77')
    expect(event?.actor.id).to.equal('alice@example.com')
    expect(event?.tags).to.include.members(['SOC2:CC6.6', 'SOC2:CC7.2'])
  })

  it('GDPR truncates IPs, masks PII fields at any depth and pseudonymizes principals', async () => {
    const store = createMemoryPseudonymStore()
    const pseudonyms = createPseudonymizer({ key: 'pseudonym-key-0123456789abcdef', store })
    const [a, b] = await run(
      {
        compliance: ['GDPR'],
        redaction: { piiFields: ['email', 'Phone_Number'] },
        pseudonyms,
        integrity: { key: KEY },
      },
      [
        {
          ...base,
          data: { profile: { EMAIL: 'alice@example.com', 'phone-number': '+44 1', city: 'Leeds' } },
        },
        { ...base, request: { ...base.request!, ip: '2001:db8:85a3:8d3:1319:8a2e:370:7348' } },
      ],
    )
    expect(a?.request?.ip).to.equal('203.0.113.0')
    expect(b?.request?.ip).to.equal('2001:db8:85a3::')
    expect(a?.data).to.deep.equal({
      profile: { EMAIL: '[MASKED]', 'phone-number': '[MASKED]', city: 'Leeds' },
    })
    expect(a?.actor.id).to.match(/^ps_[0-9a-f]{32}$/)
    expect(b?.actor.id).to.equal(a?.actor.id)
    expect(JSON.stringify([a, b])).to.not.include('alice@example.com')
    expect(a?.tags).to.include('GDPR:Art. 32')
    expect(pseudonyms.resolve(a?.actor.id as string)).to.equal('alice@example.com')
    // Erasure forgets the mapping; the chain still verifies.
    expect(pseudonyms.erase('alice@example.com')).to.equal(true)
    expect(pseudonyms.resolve(a?.actor.id as string)).to.equal(undefined)
    expect(verifyAuditChain([a!, b!, /* final checkpoint */ ...[]], { keys: KEY }).ok).to.equal(
      true,
    )
    expect(pseudonyms.pseudonymFor('alice@example.com')).to.not.equal(a?.actor.id)
  })

  it('truncates and hashes the address, not its spelling (issue 19)', () => {
    const truncate = createAuditRedactor({ ip: 'truncate' })
    const hmac = createAuditRedactor({ ip: 'hmac', ipKey: 'ip-key-0123456789abcdef0123' })
    // These three once gave `2001:DB8::`, `[REDACTED]` and `::`.
    expect(truncate({ ip: '2001:DB8::1' })).to.deep.equal({ ip: '2001:db8::' })
    expect(truncate({ ip: '::ffff:0102:0304' })).to.deep.equal({ ip: '1.2.3.0' })
    expect(truncate({ ip: '::FFFF:1.2.3.4' })).to.deep.equal({ ip: '1.2.3.0' })
    expect(hmac({ ip: '::ffff:1.2.3.4' })).to.deep.equal(hmac({ ip: '1.2.3.4' }))
    expect(hmac({ ip: '2001:DB8:0::1' })).to.deep.equal(hmac({ ip: '2001:db8::1' }))
    expect(hmac({ ip: '2001:db8::2' })).to.not.deep.equal(hmac({ ip: '2001:db8::1' }))
    expect(truncate({ ip: 'not an address' })).to.deep.equal({ ip: '[REDACTED]' })
  })

  it('HIPAA hashes IPs with a key (or truncates without one)', async () => {
    const [hashed] = await run({
      compliance: ['HIPAA'],
      redaction: { ipKey: 'ip-key-0123456789abcdef' },
    })
    expect(hashed?.request?.ip).to.match(/^ip_[0-9a-f]{32}$/)
    const [again] = await run({
      compliance: ['HIPAA'],
      redaction: { ipKey: 'ip-key-0123456789abcdef' },
    })
    expect(again?.request?.ip).to.equal(hashed?.request?.ip)
    const [truncated] = await run({ compliance: ['HIPAA'] })
    expect(truncated?.request?.ip).to.equal('203.0.113.0')
    expect(() => createAuditTrail({ redaction: { ip: 'hmac' } })).to.throw(/redaction.ipKey/)
  })

  it('combines profiles: strictest redaction, longest retention, every control', () => {
    const both = resolveCompliance(['SOC2', 'GDPR', 'HIPAA', 'ISO27001'])
    expect(both.ip).to.equal('hmac')
    expect(both.minRetentionDays).to.equal(2190)
    expect(both.pseudonymize).to.equal(true)
    expect(both.controls.map((c) => `${c.profile} ${c.id}`)).to.include.members([
      'SOC2 CC6.1',
      'SOC2 CC6.6',
      'SOC2 CC7.2',
      'ISO27001 A.8.15',
      'ISO27001 A.8.16',
      'GDPR Art. 30',
      'GDPR Art. 32',
      'HIPAA 164.312(b)',
    ])
  })

  it('reports covered controls and gaps', () => {
    const weak = auditComplianceReport({
      profiles: ['SOC2', 'GDPR'],
      level: 'minimal',
      sinks: 1,
      integrity: false,
      spool: false,
      ip: 'keep',
      pseudonymize: false,
    })
    expect(weak.controls.find((c) => c.id === 'CC6.1')?.covered).to.equal(false)
    expect(weak.events.missing).to.include('authn.success')
    expect(weak.gaps.join('\n')).to.match(/no tamper evidence/)
    expect(weak.gaps.join('\n')).to.match(
      /retention is not stated; SOC2\+GDPR need at least 365 days/,
    )
    expect(weak.gaps.join('\n')).to.match(/client IPs are written as "keep"/)
    expect(weak.gaps.join('\n')).to.match(/not pseudonymized/)
    const trail = createAuditTrail({
      sinks: [createMemoryAuditSink()],
      compliance: ['SOC2', 'GDPR'],
      integrity: { key: KEY },
      spool: { dir: '/tmp/unused-spool-dir-for-report' },
      retentionDays: 400,
      pseudonyms: createPseudonymizer({ key: 'pseudonym-key-0123456789abcdef' }),
    })
    const good = trail.report({ failClosed: true })
    expect(good.gaps).to.deep.equal([])
    expect(good.controls.every((c) => c.covered)).to.equal(true)
    void trail.close()
  })

  it('writes fields by level: minimal drops traces and user agents', async () => {
    const trace = [{ stage: 'authorize', outcome: 'deny' as const, by: 'policy', micros: 3 }]
    const input = { ...base, reason: { code: 'ERR_POLICY_DENIED' as const, trace } }
    const [minimal] = await run({ level: 'minimal' }, [input])
    expect(minimal?.reason).to.deep.equal({ code: 'ERR_POLICY_DENIED' })
    expect(minimal?.request).to.not.have.property('userAgent')
    expect(minimal?.level).to.equal('minimal')
    const [standard] = await run({ level: 'standard' }, [input])
    expect(standard?.reason?.trace).to.deep.equal(trace)
    expect(standard?.request?.userAgent).to.equal('curl/8')
  })
})

describe('hostile audit content', () => {
  it('keeps lines, chains and types intact', async () => {
    const cyclic: Record<string, unknown> = { a: 1 }
    cyclic.self = cyclic
    const hostile = JSON.parse('{"__proto__":{"polluted":true},"constructor":{"prototype":1}}')
    let deep: Record<string, unknown> = {}
    const root = deep
    for (let i = 0; i < 50; i++) deep = deep.next = {}
    const events = await run({ integrity: { key: KEY }, redaction: { maxFieldLength: 100 } }, [
      {
        ...base,
        action: 'GET /x\n{"type":"authn.success"}\r\u0000\u2028',
        data: {
          huge: 'A'.repeat(10_000),
          hostile,
          cyclic,
          root,
          big: 10n as unknown as number,
          nan: Number.NaN,
          fn: (() => 1) as unknown as number,
          many: Array.from({ length: 2000 }, (_, i) => i),
        },
      },
      { ...base, type: 'weird.type' as never },
    ])
    expect(({} as Record<string, unknown>).polluted).to.equal(undefined)
    const [e, custom] = events
    const line = JSON.stringify(e)
    expect(line).to.not.include('\n')
    expect(JSON.parse(line).action).to.equal('GET /x\n{"type":"authn.success"}\r\u0000\u2028')
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- walking a nested test fixture
    const data = e?.data as Record<string, any>
    expect(data.huge).to.have.length.below(200)
    expect(data.huge).to.match(/…\[truncated 9900 chars\]$/)
    expect(Object.keys(data.hostile)).to.deep.equal(['__proto__', 'constructor'])
    expect(Object.getPrototypeOf(data.hostile)).to.equal(Object.prototype)
    expect(data.hostile.__proto__).to.deep.equal({ polluted: true })
    expect(data.cyclic.self).to.equal('[cycle]')
    expect(JSON.stringify(data.root)).to.include('[too deep]')
    expect(data.big).to.equal('10')
    expect(data.nan).to.equal('NaN')
    expect(data.fn).to.equal('[function]')
    expect(data.many).to.have.length(1001)
    expect(custom).to.include({ type: 'custom', customType: 'weird.type' })
    expect(verifyAuditChain(JSON.parse(JSON.stringify(events)), { keys: KEY }).ok).to.equal(true)
  })
})
