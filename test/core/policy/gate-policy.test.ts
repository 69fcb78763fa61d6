import { expect } from 'chai'
import {
  createAccessManager,
  createGate,
  createPolicyStore,
  matchRouteParams,
  type PolicySetInput,
} from '@portcullis/core'
import { createFakeClock, createMemoryAuditSink, fakeRequest } from '@portcullis/core/testing'
import { seconds, signHmac } from '../../helpers/jwt.js'

const SECRET = 'gate-policy-secret-0123456789abcdef'
const POLICY: PolicySetInput = {
  roles: {
    viewer: { permissions: ['documents:read'] },
    editor: { inherits: ['viewer'], permissions: ['documents:write'] },
  },
  resources: {
    document: {
      permission: 'documents',
      rules: [
        {
          id: 'owner-deletes',
          effect: 'allow',
          actions: ['delete'],
          when: { attr: 'resource.ownerId', op: 'eq', ref: 'principal.id' },
        },
      ],
    },
  },
  rules: [
    {
      id: 'shadow-contractors',
      effect: 'deny',
      actions: ['documents:*'],
      shadow: true,
      when: { attr: 'principal.attributes.claims.contractor', op: 'eq', value: true },
    },
  ],
  risk: { signals: { newIp: 60 }, stepUpAt: 50, actions: ['documents:write'] },
}

describe('gate with a policy', () => {
  const clock = createFakeClock(Date.UTC(2026, 10, 24, 10))
  const docs = new Map([['d1', { id: 'd1', ownerId: 'alice' }]])
  function setup(policy: NonNullable<Parameters<typeof createGate>[0]>['policy'] = POLICY) {
    const sink = createMemoryAuditSink()
    const gate = createGate({
      jwt: { secret: SECRET, issuer: 'https://id', audience: 'api' },
      policy,
      resourceLoaders: { document: ({ params }) => docs.get(params.id ?? '') },
      audit: { sinks: [sink], flushIntervalMs: 0 },
      now: clock,
    })
    const token = (sub: string, claims: Record<string, unknown> = {}) =>
      signHmac(
        { claims: { sub, iss: 'https://id', aud: 'api', exp: seconds(clock()) + 600, ...claims } },
        SECRET,
      )
    const ask = (
      sub: string,
      requirements: Parameters<typeof gate.compile>[0],
      init: { url?: string; route?: string; ip?: string; claims?: Record<string, unknown> } = {},
    ) =>
      gate.evaluate(
        fakeRequest({
          url: init.url ?? '/docs/d1',
          route: init.route ?? '/docs/:id',
          ip: init.ip ?? '10.0.0.1',
          headers: { authorization: `Bearer ${token(sub, init.claims)}` },
        }),
        gate.compile(requirements),
      )
    return { gate, sink, ask }
  }

  it('decides a route permission by policy, with rule ids in the trace', async () => {
    const { ask, gate } = setup()
    const ok = await ask('u', 'documents:read', { claims: { roles: ['editor'] } })
    expect(ok.allowed).to.equal(true)
    expect(ok.trace.at(-1)).to.deep.include({
      stage: 'authorize',
      outcome: 'allow',
      by: 'policy',
      rules: ['role:viewer'],
      riskScore: 0,
    })
    const no = await ask('u', 'documents:write', { claims: { roles: ['viewer'] } })
    expect(no).to.include({ allowed: false, status: 403 })
    expect(no.allowed === false && no.error.code).to.equal('ERR_POLICY_DENIED')
    expect(no.trace.at(-1)).to.deep.include({
      outcome: 'deny',
      by: 'policy',
      rules: ['default-deny'],
      reason: 'no rule allows documents:write (default deny)',
    })
    await gate.close()
  })

  it('keeps route scopes and roles alongside the policy', async () => {
    const { ask, gate } = setup()
    const r = await ask(
      'u',
      { permission: 'documents:read', roles: ['auditor'] },
      { claims: { roles: ['viewer'] } },
    )
    expect(r.allowed).to.equal(false)
    const s = await ask(
      'u',
      { permission: 'documents:read', scopes: ['documents:read'] },
      { claims: { roles: ['viewer'], scope: 'documents:read' } },
    )
    expect(s.allowed).to.equal(true)
    await gate.close()
  })

  it('loads the route resource and checks ownership: owner allowed, non-owner denied', async () => {
    const { ask, gate } = setup()
    const route = { permission: 'documents:delete', resource: 'document' } as const
    expect((await ask('alice', route)).allowed).to.equal(true)
    const bob = await ask('bob', route)
    expect(bob).to.include({ allowed: false, status: 403 })
    expect((await ask('alice', route, { url: '/docs/nope' })).allowed, 'missing record').to.equal(
      false,
    )
    // A route's own loader wins over the gate's.
    const own = {
      permission: 'documents:delete',
      resource: { type: 'document', load: () => ({ ownerId: 'bob' }) },
    }
    expect((await ask('bob', own)).allowed).to.equal(true)
    await gate.close()
  })

  it('fails closed with 503 when a loader fails, and 500 when none is configured', async () => {
    const { ask, gate } = setup()
    const failing = {
      permission: 'documents:delete',
      resource: {
        type: 'document',
        load: async () => {
          throw new Error('db down')
        },
      },
    }
    const r = await ask('alice', failing)
    expect(r).to.include({ allowed: false, status: 503 })
    expect(r.allowed === false && r.error.code).to.equal('ERR_STORE_UNAVAILABLE')
    const none = await ask('alice', { permission: 'documents:delete', resource: 'project' })
    expect(none.allowed).to.equal(false)
    expect(none.status).to.be.at.least(500)
    await gate.close()
  })

  it('answers step-up with 401 ERR_AUTHZ_STEP_UP_REQUIRED and an RFC 9470 challenge', async () => {
    const { ask, gate } = setup()
    const editor = { claims: { roles: ['editor'] } }
    expect((await ask('e', 'documents:write', editor)).allowed).to.equal(true)
    const r = await ask('e', 'documents:write', { ...editor, ip: '198.51.100.7' })
    expect(r).to.include({ allowed: false, status: 401 })
    if (r.allowed) return
    expect(r.error.code).to.equal('ERR_AUTHZ_STEP_UP_REQUIRED')
    expect(r.problem).to.include({
      code: 'ERR_AUTHZ_STEP_UP_REQUIRED',
      type: 'urn:portcullis:problem:step-up-required',
    })
    expect(r.headers['www-authenticate']).to.match(
      /^Bearer realm="api", error="insufficient_user_authentication"/,
    )
    expect(r.trace.at(-1)).to.deep.include({
      rules: ['role:editor', 'risk:step-up'],
      riskScore: 60,
    })
    const mfa = await ask('e', 'documents:write', {
      claims: { roles: ['editor'], amr: ['pwd', 'mfa'] },
      ip: '198.51.100.7',
    })
    expect(mfa.allowed).to.equal(true)
    await gate.close()
  })

  it('audits denials with rule ids, and shadow rules as "would deny" without denying', async () => {
    const { ask, gate, sink } = setup()
    await ask('bob', { permission: 'documents:delete', resource: 'document' })
    const shadow = await ask('c', 'documents:read', {
      claims: { roles: ['viewer'], contractor: true },
    })
    expect(shadow.allowed).to.equal(true)
    await gate.audit.flush()
    const deny = sink.events.find((e) => e.type === 'authz.deny')
    expect(deny?.reason?.trace?.at(-1)).to.deep.include({ rules: ['default-deny'] })
    const would = sink.events.find((e) => e.customType === 'policy.shadow-deny')
    expect(would?.reason?.detail).to.match(/^would deny: shadow-contractors/)
    await gate.close()
  })

  it('accepts an AccessManager and refuses policy together with authorize', () => {
    const manager = createAccessManager({ policy: POLICY })
    expect(() => createGate({ policy: manager, audit: false })).to.not.throw()
    expect(() =>
      createGate({ policy: manager, authorize: () => ({}) as never, audit: false }),
    ).to.throw(/give either policy or authorize/)
    expect(() => createGate({ policy: { rules: [{ id: 'x' }] } as never, audit: false })).to.throw(
      /rules\[0\]\.effect/,
    )
  })

  it('refuses the first-cut roles option next to a policy', () => {
    expect(() =>
      createGate({ policy: POLICY, roles: { viewer: ['documents:read'] }, audit: false }),
    ).to.throw(/roles: with a policy, declare roles/)
  })

  it('follows a policy store: a reload changes the next decision', async () => {
    const store = createPolicyStore({ initial: POLICY })
    const { ask, gate } = setup(store)
    expect((await ask('u', 'documents:read', { claims: { roles: ['viewer'] } })).allowed).to.equal(
      true,
    )
    expect(store.update({ roles: { viewer: { permissions: [] } } }).ok).to.equal(true)
    const after = await ask('u', 'documents:read', { claims: { roles: ['viewer'] } })
    expect(after.allowed).to.equal(false)
    store.close()
    await gate.close()
  })

  it('refuses a resource without a permission at route declaration', () => {
    const gate = createGate({ audit: false })
    expect(() => gate.compile({ resource: 'document' })).to.throw(/a resource needs a permission/)
    expect(() => gate.compile({ permission: 'documents:read', resource: 'bad type!' })).to.throw(
      /resource: must match/,
    )
  })
})

describe('matchRouteParams', () => {
  it('matches named segments and decodes them', () => {
    expect({ ...matchRouteParams('/orgs/:org/docs/:id', '/orgs/acme/docs/a%20b') }).to.deep.equal({
      org: 'acme',
      id: 'a b',
    })
    expect({ ...matchRouteParams('/docs', '/docs') }).to.deep.equal({})
    expect({ ...matchRouteParams(undefined, '/docs/1') }).to.deep.equal({})
    expect({ ...matchRouteParams('/x/:__proto__', '/x/1') }).to.deep.equal({})
  })
})
