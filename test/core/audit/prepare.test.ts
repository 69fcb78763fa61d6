import { expect } from 'chai'
import {
  AUDIT_EVENT_TYPES,
  AUDIT_RETENTION_CLASS_DAYS,
  auditEventJson,
  COMPLIANCE_MAPPING_VERSION,
  COMPLIANCE_PROFILE_DEFINITIONS,
  canonicalize,
  createAuditRedactor,
  createAuditTrail,
  createPseudonymizer,
  resolveCompliance,
  scrubSecrets,
  verifyAuditChain,
  type AuditEvent,
  type AuditEventInput,
  type AuditLevel,
  type AuditRedactionOptions,
  type ComplianceProfileName,
  type Pseudonymizer,
} from '@portcullis/core'

const JWT =
  'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c2VyLTEiLCJzY29wZSI6ImRvY3M6cmVhZCJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ'
const API_KEY = `ptcl_live_${'A1b2C3d4E5'.repeat(5)}Zz9Y`

/**
 * The trail's preparation as documented: a copy of the input with id, time, level and compliance
 * tags, the type made `custom` when unknown, fields trimmed by level, the actor pseudonymized,
 * then cleaned as a whole by the public redactor, then the schema's own fields forced to their
 * types. The trail prepares gate-shaped events in one pass; it must give exactly this.
 */
function reference(
  raw: Record<string, unknown>,
  made: { id: unknown; time: unknown },
  o: {
    level: AuditLevel
    redaction: AuditRedactionOptions
    tags: Record<string, readonly string[]>
    pseudonyms?: Pseudonymizer
    profiles: readonly ComplianceProfileName[]
  },
): Record<string, unknown> {
  const given = typeof raw.id === 'string' && raw.id !== ''
  const e: Record<string, unknown> = {
    ...raw,
    id: given ? raw.id : made.id,
    time: typeof raw.time === 'string' ? raw.time : made.time,
  }
  if (!(AUDIT_EVENT_TYPES as readonly unknown[]).includes(raw.type)) {
    e.customType = String(raw.customType ?? raw.type)
    e.type = 'custom'
  }
  const reason = raw.reason as Record<string, unknown> | undefined
  if (o.level !== 'verbose' && reason?.trace !== undefined) {
    if (o.level === 'minimal' || raw.outcome === 'success') {
      const { trace: _t, ...rest } = reason
      e.reason = rest
    }
  }
  const request = raw.request as Record<string, unknown> | undefined
  if (o.level === 'minimal' && request?.userAgent !== undefined) {
    const { userAgent: _u, ...rest } = request
    e.request = rest
  }
  const actor = raw.actor as Record<string, unknown> | undefined
  if (o.pseudonyms !== undefined && typeof actor?.id === 'string')
    e.actor = { ...actor, id: o.pseudonyms.pseudonymFor(actor.id) }
  const extra = o.tags[e.type as string]
  if (extra !== undefined)
    e.tags = Array.isArray(raw.tags) ? [...new Set([...raw.tags, ...extra])] : extra
  e.level = o.level
  const out = createAuditRedactor(o.redaction)(e) as Record<string, unknown>
  // What the trail made itself (id, time) is written as made, never cut by `maxFieldLength`.
  if (!given) out.id = e.id
  if (typeof raw.time !== 'string') out.time = e.time
  // A top level past the key limit loses its last keys (the trail's own among them).
  if (typeof out.id !== 'string') out.id = e.id
  if (typeof out.time !== 'string') out.time = new Date(0).toISOString()
  if (out.outcome !== 'success' && out.outcome !== 'failure') out.outcome = 'failure'
  if (typeof out.action !== 'string') out.action = String(out.type)
  if (typeof out.actor !== 'object' || out.actor === null) out.actor = { id: null }
  // Under profiles, the trail's own stamp: the profiles, the mapping version, the longest retention.
  if (o.profiles.length > 0) {
    const classes = o.profiles.map((p) => COMPLIANCE_PROFILE_DEFINITIONS[p].retention)
    classes.sort((a, b) => AUDIT_RETENTION_CLASS_DAYS[b] - AUDIT_RETENTION_CLASS_DAYS[a])
    out.compliance = {
      profiles: o.profiles,
      mappingVersion: COMPLIANCE_MAPPING_VERSION,
      retention: classes[0],
    }
  }
  return out
}

const trace = [
  { stage: 'authenticate', outcome: 'allow', by: 'apikey', micros: 12 },
  {
    stage: 'authorize',
    outcome: 'deny',
    by: 'policy',
    code: 'ERR_POLICY_DENIED',
    reason: `token=${JWT}`,
    micros: 40,
  },
]

const gateEvent = (over: Record<string, unknown> = {}): Record<string, unknown> => ({
  type: 'authn.success',
  outcome: 'success',
  actor: { id: 'user-1', method: 'apikey', tokenId: 'key_1' },
  action: 'GET /docs/:id',
  target: { type: 'route', id: '/docs/:id' },
  request: {
    id: 'b4f7c1c2-6a55-4c1a-9d8e-3f1e2c3b4a5d',
    method: 'GET',
    path: `/docs/1?access_token=${JWT}`,
    route: '/docs/:id',
    ip: '203.0.113.77',
    userAgent: `curl Bearer ${API_KEY}`,
  },
  ...over,
})

const deep: Record<string, unknown> = { a: { b: { c: { d: { e: { f: { g: { h: 'deep' } } } } } } } }
const cyclic: Record<string, unknown> = { name: 'loop' }
cyclic.self = cyclic

/** Inputs: what the gate sends, and what hostile handlers could record. */
const inputs: Record<string, unknown>[] = [
  gateEvent(),
  gateEvent({ type: 'authz.allow' }),
  gateEvent({
    type: 'authz.deny',
    outcome: 'failure',
    reason: { code: 'ERR_POLICY_DENIED', detail: `no ${API_KEY}`, trace },
  }),
  gateEvent({ reason: { trace } }),
  gateEvent({ actor: { id: null } }),
  gateEvent({ actor: 'not an object', outcome: 'maybe', action: { x: 1 } }),
  gateEvent({ actor: ['a', 'b'] }),
  gateEvent({ actor: undefined, action: undefined, request: undefined }),
  { type: 'custom', customType: `x-${JWT}`, outcome: 'success', actor: { id: 'u' }, action: 'a' },
  { type: 'my.thing', outcome: 'success', actor: { id: 'u' }, action: 'a' },
  { type: 42, outcome: 'success', actor: { id: 'u' } },
  { type: 'authn.success', customType: { nested: true }, outcome: 'success', actor: { id: 'u' } },
  {
    type: 'key.created',
    outcome: 'success',
    id: 'given-id',
    time: '2026-01-01T00:00:00.000Z',
    actor: { id: 'admin', password: 'hunter2', email: 'a@example.com' },
    action: 'key.create',
    data: {
      apiKey: API_KEY,
      note: 'x'.repeat(10_000),
      when: new Date(0),
      error: new Error(`failed with ${JWT}`),
      big: 10n,
      nan: Number.NaN,
      fn: () => 1,
      bytes: new Uint8Array(8),
      list: Array.from({ length: 1200 }, (_, i) => i),
      deep,
      cyclic,
      nested: { ip: '198.51.100.23', Authorization: 'Basic abc', phone: '+1 555' },
    },
    tags: ['mine', 'SOC2:CC6.1'],
  },
  {
    type: 'policy.changed',
    outcome: 'success',
    actor: { id: 'ops' },
    ip: '2001:db8:1:2::5',
    Cookie: 'sid=1',
    email: 'top@example.com',
    level: 'forged',
    chain: { id: 'forged' },
    [`k${'y'.repeat(300)}`]: 'long key',
    ['__proto__']: { polluted: true },
  },
  JSON.parse(
    '{"type":"authn.failure","outcome":"failure","__proto__":{"admin":true},"actor":{"id":"x"}}',
  ),
  {
    type: 'authn.failure',
    outcome: 'failure',
    actor: { id: 'x' },
    ...Object.fromEntries(Array.from({ length: 300 }, (_, i) => [`f${i}`, i])),
  },
  {
    type: 'authn.failure',
    outcome: 'failure',
    actor: { id: 'x' },
    ...Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`f${i}`, `v${i}`])),
  },
]

const configs: {
  name: string
  level: AuditLevel
  redaction: AuditRedactionOptions
  compliance: ComplianceProfileName[]
  pseudonyms?: boolean
}[] = [
  { name: 'defaults', level: 'standard', redaction: {}, compliance: [] },
  { name: 'verbose', level: 'verbose', redaction: {}, compliance: [] },
  { name: 'minimal, SOC 2', level: 'minimal', redaction: {}, compliance: ['SOC2'] },
  {
    name: 'GDPR, PII fields, pseudonyms',
    level: 'standard',
    redaction: { piiFields: ['email', 'phone'], ip: 'truncate' },
    compliance: ['GDPR'],
    pseudonyms: true,
  },
  {
    name: 'HIPAA with hashed IPs, short fields, shallow depth',
    level: 'verbose',
    redaction: { ip: 'hmac', ipKey: 'ip-key-ip-key-ip-key', maxFieldLength: 32, maxDepth: 3 },
    compliance: ['HIPAA', 'ISO27001'],
  },
  {
    // PII names that are schema fields: the trail must still mask them everywhere.
    name: 'PII list naming schema fields',
    level: 'verbose',
    redaction: { piiFields: ['path', 'userAgent', 'id'] },
    compliance: [],
  },
]

describe('audit event preparation', () => {
  for (const c of configs) {
    it(`prepares every input as the redactor cleans it (${c.name})`, async () => {
      // Every event as written (the memory sink would drop repeated ids, e.g. masked ones).
      const sink = {
        name: 'capture',
        events: [] as AuditEvent[],
        write: async (batch: readonly AuditEvent[]): Promise<void> => {
          sink.events.push(...batch)
        },
      }
      const pseudonyms =
        c.pseudonyms === true ? createPseudonymizer({ key: 'p'.repeat(32) }) : undefined
      const trail = createAuditTrail({
        sinks: [sink],
        level: c.level,
        redaction: c.redaction,
        compliance: c.compliance,
        ...(pseudonyms === undefined ? {} : { pseudonyms }),
      })
      const tags: Record<string, string[]> = {}
      for (const control of resolveCompliance(c.compliance).controls)
        for (const type of control.events)
          (tags[type] ??= []).push(`${control.profile}:${control.id}`)
      const emitted: Record<string, unknown>[] = []
      for (const raw of inputs) {
        if (!trail.accepts(raw.type as never, raw.outcome as never)) continue
        trail.emit(raw as unknown as AuditEventInput)
        emitted.push(raw)
      }
      await trail.close()
      expect(sink.events).to.have.length(emitted.length)
      emitted.forEach((raw, i) => {
        const got = sink.events[i] as unknown as Record<string, unknown>
        const want = reference(
          raw,
          { id: got.id, time: got.time },
          {
            level: c.level,
            redaction: c.redaction,
            tags,
            profiles: c.compliance,
            ...(pseudonyms === undefined ? {} : { pseudonyms }),
          },
        )
        expect(got, `input ${i}`).to.deep.equal(want)
        expect(JSON.stringify(got)).to.not.include(JWT.slice(0, 40))
        expect(JSON.stringify(got)).to.not.include(API_KEY)
      })
    })
  }
})

describe('audit event text', () => {
  it('gives each chained event its canonical form as JSON text, which its mac covers', async () => {
    const events: AuditEvent[] = []
    const sinks = ['a', 'b'].map((name) => ({
      name,
      write: async (batch: readonly AuditEvent[]): Promise<void> => {
        if (name === 'a') events.push(...batch)
      },
    }))
    const key = 'chain-key-chain-key-chain-key-chain-key'
    const trail = createAuditTrail({
      sinks,
      level: 'verbose',
      integrity: { key, checkpointEvery: 5 },
      compliance: ['SOC2'],
    })
    for (const raw of inputs) trail.emit(raw as unknown as AuditEventInput)
    await trail.close()
    expect(events.length).to.be.greaterThan(inputs.length) // checkpoints too
    for (const e of events) {
      const text = auditEventJson(e)
      expect(text).to.equal(canonicalize(e))
      expect(JSON.parse(text)).to.deep.equal(e)
    }
    expect(verifyAuditChain(events, { keys: key })).to.include({ ok: true, checkpoints: 4 })
  })

  it('serializes an event once for several sinks without a chain', async () => {
    const seen: AuditEvent[][] = [[], []]
    const sinks = [0, 1].map((i) => ({
      name: `s${i}`,
      write: async (batch: readonly AuditEvent[]): Promise<void> => {
        seen[i]!.push(...batch)
      },
    }))
    const trail = createAuditTrail({ sinks })
    trail.emit(gateEvent() as unknown as AuditEventInput)
    await trail.close()
    const [a, b] = seen as [AuditEvent[], AuditEvent[]]
    expect(a).to.have.length(1)
    expect(b[0]).to.equal(a[0])
    expect(auditEventJson(a[0]!)).to.equal(JSON.stringify(a[0]))
    // Any other object is serialized on demand.
    expect(auditEventJson({ ...a[0]! })).to.equal(JSON.stringify(a[0]))
  })
})

describe('audit event time', () => {
  it('writes the emit time exactly as Date#toISOString does', async () => {
    const times = [0, 1, 9, 10, 99, 100, 999, 1000, 1764343112005, 1764343112050, 1764343112999]
    times.push(1764343112999.5, 253402300799999, 253402300800000, 8.64e15, 1764343113000)
    const events: AuditEvent[] = []
    let i = 0
    const trail = createAuditTrail({
      sinks: [{ name: 'c', write: async (b: readonly AuditEvent[]) => void events.push(...b) }],
      now: () => times[i] as number,
    })
    for (i = 0; i < times.length; i++)
      trail.emit({ type: 'authn.failure', outcome: 'failure', actor: { id: null }, action: 'x' })
    await trail.close()
    expect(events.map((e) => e.time)).to.deep.equal(times.map((t) => new Date(t).toISOString()))
  })
})

describe('scrubSecrets quick check', () => {
  it('passes plain words through and still removes a scheme followed by a token', () => {
    for (const plain of ['apikey', 'ApiKey', 'Token', 'bearer-user', 'basic', 'GET /docs/:id'])
      expect(scrubSecrets(plain)).to.equal(plain)
    expect(scrubSecrets('Token abcdefgh')).to.equal('Token [REDACTED]')
    expect(scrubSecrets('x bearer\tabc.def-1')).to.equal('x bearer [REDACTED]')
    expect(scrubSecrets(`ApiKey ${API_KEY}`)).to.equal('ApiKey [REDACTED]')
    expect(scrubSecrets(`key=${API_KEY}`)).to.not.include(API_KEY)
  })
})

describe('unreadable audit input', () => {
  it('writes an event whose fields throw as a marked event, and keeps the queue going', async () => {
    const events: AuditEvent[] = []
    const trail = createAuditTrail({
      sinks: [{ name: 'c', write: async (b: readonly AuditEvent[]) => void events.push(...b) }],
    })
    const hostile = [
      {
        type: 'authz.deny',
        outcome: 'failure',
        actor: { id: 'u' },
        action: 'x',
        data: {
          get boom(): never {
            throw new Error('getter')
          },
        },
      },
      {
        type: 'key.revoked',
        outcome: 'success',
        actor: { id: 'u' },
        data: new Proxy(
          {},
          {
            ownKeys: () => {
              throw new Error('proxy')
            },
          },
        ),
      },
    ]
    for (const raw of hostile) expect(trail.emit(raw as unknown as AuditEventInput)).to.equal(true)
    trail.emit({ type: 'authn.failure', outcome: 'failure', actor: { id: null }, action: 'after' })
    await trail.close()
    expect(events.map((e) => [e.type, e.outcome, e.action])).to.deep.equal([
      ['authz.deny', 'failure', 'authz.deny'],
      ['key.revoked', 'success', 'key.revoked'],
      ['authn.failure', 'failure', 'after'],
    ])
    expect(events[0]!.data).to.deep.equal({
      error: 'the event could not be prepared: its fields could not be read',
    })
  })

  it('stamps the epoch when the clock answers something that is not a time', async () => {
    const events: AuditEvent[] = []
    const trail = createAuditTrail({
      sinks: [{ name: 'c', write: async (b: readonly AuditEvent[]) => void events.push(...b) }],
      now: () => Number.NaN,
    })
    trail.emit({ type: 'authn.failure', outcome: 'failure', actor: { id: null }, action: 'x' })
    await trail.close()
    expect(events.map((e) => e.time)).to.deep.equal([new Date(0).toISOString()])
  })
})
