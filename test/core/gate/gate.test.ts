import { expect } from 'chai'
import {
  AuthError,
  compileRequirements,
  createApiKeyManager,
  createGate,
  createMemoryKeyStore,
  normalizePath,
  parseRequestId,
  parseRoleId,
  parseUserId,
  permissionCovers,
  type GateStage,
  type StageResult,
} from '@portcullis/core'
import { createMemoryAuditSink, fakeRequest } from '@portcullis/core/testing'

const PEPPER = 'p'.repeat(32)

describe('createGate', () => {
  async function withKey(extra: Parameters<typeof createGate>[0] = {}) {
    const store = createMemoryKeyStore()
    const sink = createMemoryAuditSink()
    const gate = createGate({
      apiKeys: { store, pepper: PEPPER },
      audit: { sinks: [sink] },
      ...extra,
    })
    const { key } = await createApiKeyManager({ store, pepper: PEPPER }).create({
      name: 'k',
      ownerId: 'u',
      scopes: ['docs:read'],
      roles: ['viewer'],
    })
    return { gate, key, sink }
  }

  it('returns a decision with a per-stage trace', async () => {
    const { gate, key } = await withKey()
    const d = await gate.evaluate(
      fakeRequest({ headers: { 'x-api-key': key } }),
      gate.compile('docs:read'),
    )
    expect(d.allowed).to.equal(true)
    expect(d.status).to.equal(200)
    expect(d.trace.map((t) => [t.stage, t.outcome, t.by])).to.deep.equal([
      ['authenticate', 'allow', 'apikey'],
      ['authorize', 'allow', 'requirements'],
    ])
    for (const t of d.trace) expect(t.micros).to.be.a('number').and.at.least(0)
  })

  it('denies by default: anonymous requests reach only public routes', async () => {
    const { gate } = await withKey({ credentialsRequired: false })
    const open = await gate.evaluate(fakeRequest(), gate.compile({ public: true }))
    expect(open.allowed).to.equal(true)
    expect(open.principal).to.equal(null)
    const closed = await gate.evaluate(fakeRequest(), gate.compile({}))
    expect(closed.allowed).to.equal(false)
    if (!closed.allowed) expect(closed.error.code).to.equal('ERR_AUTH_REQUIRED')
  })

  it('still verifies credentials sent to a public route', async () => {
    const { gate } = await withKey()
    const d = await gate.evaluate(
      fakeRequest({ headers: { 'x-api-key': 'ptcl_nonsense' } }),
      gate.compile({ public: true }),
    )
    expect(d.allowed).to.equal(false)
    expect(d.status).to.equal(401)
  })

  it('runs stages between authentication and authorization and keeps their headers', async () => {
    const seen: string[] = []
    const limiter: GateStage = {
      name: 'ratelimit',
      run: ({ principal }): StageResult => {
        seen.push(String(principal?.id))
        if (seen.length === 1) return { ok: true, headers: { ratelimit: 'limit=1, remaining=0' } }
        return {
          ok: false,
          by: 'per-key',
          error: new AuthError('ERR_RATE_LIMITED', 'Too many requests', { reason: 'per-key 1/s' }),
          headers: { 'retry-after': '1' },
        }
      },
    }
    const { gate, key, sink } = await withKey({ stages: [limiter] })
    const req = () =>
      gate.evaluate(fakeRequest({ headers: { 'x-api-key': key } }), gate.compile('docs:read'))
    const first = await req()
    expect(first.allowed).to.equal(true)
    expect(first.headers).to.deep.equal({ ratelimit: 'limit=1, remaining=0' })
    expect(first.trace.map((t) => t.stage)).to.deep.equal([
      'authenticate',
      'ratelimit',
      'authorize',
    ])
    const second = await req()
    expect(second.allowed).to.equal(false)
    expect(second.status).to.equal(429)
    expect(second.headers).to.deep.equal({ 'retry-after': '1' })
    expect(second.trace.map((t) => [t.stage, t.outcome, t.by])).to.deep.equal([
      ['authenticate', 'allow', 'apikey'],
      ['ratelimit', 'deny', 'per-key'],
    ])
    expect(seen).to.deep.equal(['u', 'u'])
    await gate.audit.flush()
    // One access event per request: the allowed one, then the denial.
    expect(sink.events.map((e) => e.type)).to.deep.equal(['authz.allow', 'ratelimit.exceeded'])
  })

  it('turns a throwing stage into a 503 without leaking its message', async () => {
    const broken: GateStage = {
      name: 'quota',
      run: () => Promise.reject(new Error('redis: ECONNREFUSED 10.0.0.5')),
    }
    const { gate, key } = await withKey({ stages: [broken] })
    const d = await gate.evaluate(fakeRequest({ headers: { 'x-api-key': key } }))
    expect(d.allowed).to.equal(false)
    if (d.allowed) return
    expect(d.status).to.equal(503)
    expect(d.error.code).to.equal('ERR_STORE_UNAVAILABLE')
    expect(JSON.stringify(d.problem)).to.not.include('ECONNREFUSED')
  })

  it('uses the authorize hook when given (the policy engine plugs in here)', async () => {
    const { gate, key } = await withKey({
      authorize: (p, req) => ({
        allowed: req.permission === 'docs:read' && p.roles.includes('viewer' as never),
        level: 'read',
        matchedRules: ['r1'],
        riskScore: 0,
        explanation: 'viewer may read',
      }),
    })
    expect(
      (
        await gate.evaluate(
          fakeRequest({ headers: { 'x-api-key': key } }),
          gate.compile('docs:read'),
        )
      ).allowed,
    ).to.equal(true)
    const denied = await gate.evaluate(
      fakeRequest({ headers: { 'x-api-key': key } }),
      gate.compile('docs:write'),
    )
    expect(denied.allowed).to.equal(false)
    if (!denied.allowed) expect(denied.error.code).to.equal('ERR_POLICY_DENIED')
  })

  it('explains without auditing', async () => {
    const { gate, key, sink } = await withKey()
    const d = await gate.explain(
      fakeRequest({ headers: { 'x-api-key': key } }),
      gate.compile('docs:write'),
    )
    expect(d.allowed).to.equal(false)
    expect(d.trace.at(-1)).to.include({
      stage: 'authorize',
      outcome: 'deny',
      reason: 'missing permission docs:write',
    })
    await gate.audit.flush()
    expect(sink.events).to.have.length(0)
  })

  it('fails closed when the audit queue is full (one event per request, or one per step)', async () => {
    for (const [auditEvents, served] of [
      ['request', 2],
      ['step', 1],
    ] as const) {
      const gate = createGate({
        apiKeys: { store: createMemoryKeyStore(), pepper: PEPPER },
        credentialsRequired: false,
        auditEvents,
        audit: { sinks: [{ name: 'stuck', write: () => new Promise(() => {}) }], maxQueue: 2 },
      })
      const req = () => gate.evaluate(fakeRequest(), gate.compile({ public: true }))
      for (let i = 0; i < served; i++) expect((await req()).allowed, auditEvents).to.equal(true)
      const d = await req()
      expect(d.allowed, auditEvents).to.equal(false)
      expect(d.status).to.equal(503)
      expect(d.headers['retry-after']).to.equal('1')
    }
  })

  it('refuses bad options at creation with the option named', () => {
    expect(() => createGate({ credentialsRequired: 'yes' as never })).to.throw(
      /credentialsRequired: must be a boolean, received "yes"/,
    )
    expect(() =>
      createGate({
        jwt: {
          algorithms: ['HS256', 'HS257' as never],
          secret: 'x'.repeat(32),
          issuer: false,
          audience: false,
        },
      }),
    ).to.throw(/jwt.algorithms\[1\]: unknown algorithm "HS257"/)
    const warnings: string[] = []
    createGate({
      realmm: 'x',
      logger: {
        warn: (f: object, m: string) => warnings.push(`${JSON.stringify(f)} ${m}`),
        error() {},
      },
    } as never)
    expect(warnings).to.include('{} realmm: unknown option "realmm"; did you mean "realm"?')
  })
})

describe('route requirements', () => {
  it('compiles strings as permissions and rejects typos', () => {
    expect(compileRequirements('docs:read').permission).to.equal('docs:read')
    expect(() => compileRequirements('not a permission')).to.throw(/requirements.permission/)
    expect(() => compileRequirements({ scope: ['a'] } as never)).to.throw(/did you mean "scopes"/)
  })

  it('matches permission wildcards only at segment boundaries', () => {
    expect(permissionCovers('docs:*', 'docs:read')).to.equal(true)
    expect(permissionCovers('*', 'docs:read')).to.equal(true)
    expect(permissionCovers('docs*', 'docsecret:read')).to.equal(false)
    expect(permissionCovers('docs:read', 'docs:readall')).to.equal(false)
  })
})

describe('identifiers and paths', () => {
  it('makes branded ids only from valid input', () => {
    expect(parseUserId('alice')).to.equal('alice')
    expect(parseUserId('')).to.equal(undefined)
    expect(parseUserId('a b')).to.equal(undefined)
    expect(parseUserId({ toString: () => 'x' })).to.equal(undefined)
    expect(parseRoleId('ａdmin')).to.equal(undefined)
    expect(parseRoleId('__proto__')).to.equal(undefined)
    expect(parseRequestId('abc-123')).to.equal('abc-123')
    expect(parseRequestId('x'.repeat(129))).to.equal(undefined)
  })

  it('normalizes paths the way routers resolve them', () => {
    const cases: Array<[string, string]> = [
      ['/admin', '/admin'],
      ['/admin/', '/admin'],
      ['//admin', '/admin'],
      ['/%61dmin', '/admin'],
      ['/admin;x', '/admin'],
      ['/ADMIN', '/ADMIN'],
      // Routers match dot segments literally (`/admin/..` runs `/admin/:id`): kept, so the
      // `/admin` prefix stays visible.
      ['/admin/../admin', '/admin/../admin'],
      ['/admin/..', '/admin/..'],
      ['/a/./b', '/a/./b'],
      ['/%2e%2e/admin', '/../admin'],
      ['/docs/%2F', '/docs/%2F'],
      ['/', '/'],
      ['', '/'],
    ]
    for (const [input, expected] of cases) expect(normalizePath(input), input).to.equal(expected)
  })

  it('folds case for case-insensitive routing only', () => {
    expect(normalizePath('/ADMIN/Users', { caseSensitive: false })).to.equal('/admin/users')
    expect(normalizePath('/%41dmin//', { caseSensitive: false })).to.equal('/admin')
    expect(normalizePath('/ADMIN', { caseSensitive: true })).to.equal('/ADMIN')
  })

  it('gives fakeRequest the normalized path, as adapters do, and keeps the raw one', () => {
    const request = fakeRequest({ url: '//%41dmin;x/?q=1', caseSensitive: false })
    expect(request).to.include({ path: '/admin', rawPath: '//%41dmin;x/', query: 'q=1' })
    expect(fakeRequest({ url: '/Admin/' }).path).to.equal('/Admin')
  })
})

describe('createGate with custom authenticators', () => {
  it('refuses a bearer token sent together with a credential a custom authenticator detects', async () => {
    const custom = {
      name: 'legacy',
      detect: (r: { header(n: string): string | undefined }) =>
        r.header('x-legacy-token') !== undefined,
      authenticate: async () => ({
        ok: false as const,
        error: new AuthError('ERR_AUTH_INVALID', 'no'),
      }),
    }
    const gate = createGate({
      jwt: { secret: 's'.repeat(32), issuer: false, audience: false },
      authenticators: [custom],
      audit: false,
    })
    const d = await gate.evaluate(
      fakeRequest({ headers: { authorization: 'Bearer a.b.c', 'x-legacy-token': 't' } }),
    )
    expect(d.status).to.equal(400)
    if (!d.allowed) expect(d.error.code).to.equal('ERR_AUTH_AMBIGUOUS')
    const alone = await gate.evaluate(fakeRequest({ headers: { 'x-legacy-token': 't' } }))
    if (!alone.allowed) expect(alone.error.code).to.equal('ERR_AUTH_INVALID')
    expect(alone.trace[0]?.by).to.equal('legacy')
  })
})
