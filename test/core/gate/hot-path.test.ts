import { expect } from 'chai'
import {
  BoundedMemoryLimiter,
  createApiKeyManager,
  createApiKeyVerifier,
  createGate,
  createJwtVerifier,
  createMemoryBackend,
  createMemoryKeyStore,
  createQuotaStage,
  createRateLimitStage,
  matchRouteParams,
  policyTraceEntry,
  type PolicySetInput,
  type Principal,
  type StageResult,
} from '@portcullis/core'
import { fakeRequest } from '@portcullis/core/testing'
import { seconds, signHmac } from '../../helpers/jwt.js'

// The hot path answers synchronously where nothing waits, matches route parameters only when a
// policy reads them, and builds trace entries field by field. These tests pin the behaviour those
// shortcuts must keep.

const PEPPER = 'p'.repeat(32)
const SECRET = 'hot-path-secret-0123456789abcdef'

async function cachedKey() {
  const store = createMemoryKeyStore()
  const { key } = await createApiKeyManager({ store, pepper: PEPPER }).create({
    name: 'k',
    ownerId: 'u1',
    scopes: ['documents:read'],
  })
  return { store, key }
}

describe('gate hot path', () => {
  describe('API keys', () => {
    it('answers a cached key synchronously with verifyNow, and verify still returns a promise', async () => {
      const { store, key } = await cachedKey()
      const verifier = createApiKeyVerifier({ store, pepper: PEPPER }, { now: Date.now })
      const first = verifier.verifyNow(key)
      expect(first).to.be.instanceOf(Promise)
      expect((await first).ok).to.equal(true)
      const again = verifier.verifyNow(key)
      expect(again).not.to.be.instanceOf(Promise)
      expect((again as Awaited<typeof first>).ok).to.equal(true)
      const promised = verifier.verify(key)
      expect(promised).to.be.instanceOf(Promise)
      expect((await promised).ok).to.equal(true)
    })

    it('never serves a cached key to a different secret under the same key id', async () => {
      const { store, key } = await cachedKey()
      const verifier = createApiKeyVerifier({ store, pepper: PEPPER }, { now: Date.now })
      expect((await verifier.verify(key)).ok).to.equal(true)
      // Same prefix and id (the cache key), one character of the secret changed.
      const i = key.length - 10
      const forged = key.slice(0, i) + (key[i] === 'A' ? 'B' : 'A') + key.slice(i + 1)
      for (const answer of [await verifier.verify(forged), await verifier.verifyNow(forged)]) {
        expect(answer.ok).to.equal(false)
        if (!answer.ok) expect(answer.error.code).to.match(/^ERR_APIKEY_(MALFORMED|INVALID)$/)
      }
      expect((await verifier.verify(key)).ok).to.equal(true)
    })

    it('still tells keys from JWTs when a JWT contains underscores', async () => {
      const { store } = await cachedKey()
      const verifier = createApiKeyVerifier({ store, pepper: PEPPER }, { now: Date.now })
      expect(verifier.looksLikeKey('ptcl_abc')).to.equal(true)
      expect(verifier.looksLikeKey('ptcl_test_abc')).to.equal(false)
      expect(verifier.looksLikeKey('eyJh_bGc.eyJz_dWI.c2ln_')).to.equal(false)
      expect(verifier.looksLikeKey('_abc')).to.equal(false)
      expect(verifier.looksLikeKey('ptcl')).to.equal(false)
    })
  })

  describe('JWTs', () => {
    it('answers with static keys synchronously with verifyNow, and verify still returns a promise', async () => {
      const verifier = createJwtVerifier(
        { secret: SECRET, issuer: 'https://id', audience: 'api', cache: false },
        { now: Date.now },
      )
      const token = signHmac(
        { claims: { sub: 'u1', iss: 'https://id', aud: 'api', exp: seconds(Date.now()) + 600 } },
        SECRET,
      )
      const now = verifier.verifyNow(token)
      expect(now).not.to.be.instanceOf(Promise)
      expect((now as { ok: boolean }).ok).to.equal(true)
      const promised = verifier.verify(token)
      expect(promised).to.be.instanceOf(Promise)
      expect((await promised).ok).to.equal(true)
      const bad = verifier.verifyNow(`${token}x`)
      expect((bad as { ok: boolean }).ok).to.equal(false)
    })
  })

  describe('limits and quotas', () => {
    const request = (headers: Record<string, string>, route = '/docs/:id') =>
      fakeRequest({ url: '/docs/1', route, headers })
    const context = (principal: Principal | null) => ({
      request: request({}),
      principal,
      requirements: undefined,
    })
    const alice = { id: 'alice', method: 'apikey' } as unknown as Principal

    it('count in memory synchronously, and through a promise with any other limiter', async () => {
      const memory = createRateLimitStage({ limits: [{ name: 'l', limit: 2, windowMs: '1m' }] })
      const quota = createQuotaStage({ quotas: [{ name: 'q', limit: 1, period: 'day' }] })
      // A subclass may override consume: it gets the promise path, and its override is used.
      let overridden = 0
      class Counting extends BoundedMemoryLimiter {
        override consume(key: string | number, points?: number) {
          overridden++
          return super.consume(key, points)
        }
      }
      const counting = createRateLimitStage({
        backend: {
          name: 'counting',
          create: (spec) =>
            new Counting({
              points: spec.points,
              durationMs: spec.durationMs,
              maxKeys: 10,
              now: Date.now,
            }),
        },
        limits: [{ name: 'l', limit: 1, windowMs: '1m' }],
      })

      const first = memory.run(context(alice))
      expect(first).to.not.be.instanceOf(Promise)
      expect((first as StageResult).ok).to.equal(true)
      expect((memory.run(context(alice)) as StageResult).ok).to.equal(true)
      const over = memory.run(context(alice)) as StageResult
      expect(over.ok).to.equal(false)
      if (!over.ok) expect(over.error.code).to.equal('ERR_RATE_LIMITED')
      expect(over.headers?.['retry-after']).to.equal('60')

      const q1 = quota.run(context(alice))
      expect(q1).to.not.be.instanceOf(Promise)
      expect((q1 as StageResult).ok).to.equal(true)
      const q2 = quota.run(context(alice)) as StageResult
      expect(q2.ok).to.equal(false)
      if (!q2.ok) expect(q2.error.code).to.equal('ERR_QUOTA_EXCEEDED')

      const viaPromise = counting.run(context(alice))
      expect(viaPromise).to.be.instanceOf(Promise)
      expect((await viaPromise).ok).to.equal(true)
      expect((await counting.run(context(alice))).ok).to.equal(false)
      expect(overridden).to.equal(2)
    })

    it('runs memory limits and the quota in order in the gate, counting each request once', async () => {
      const { store, key } = await cachedKey()
      const gate = createGate({
        apiKeys: { store, pepper: PEPPER },
        stages: [
          createRateLimitStage({ limits: [{ name: 'l', limit: 100, windowMs: '1m' }] }),
          createQuotaStage({ quotas: [{ name: 'q', limit: 100, period: 'month' }] }),
        ],
        audit: false,
      })
      await gate.authenticate(request({ 'x-api-key': key }))
      const decision = await gate.authenticate(request({ 'x-api-key': key }))
      expect(decision.allowed).to.equal(true)
      expect(decision.trace.map((t) => t.stage)).to.deep.equal([
        'authenticate',
        'ratelimit',
        'quota',
      ])
      expect(decision.headers.ratelimit).to.match(/^"l";r=98;t=60, "q";r=98;t=\d+$/)
    })

    it('never counts a limit on a limiter its stage has dropped', async () => {
      // 1,024 limiters are kept per stage. Two route rules of the same name share one counter;
      // after the first rule's limiter was dropped (1,100 other sizes since), both must count on
      // the new one, not the first on the dropped one.
      const stage = createRateLimitStage({ backend: createMemoryBackend({ maxKeys: 8 }) })
      const route = (rule: object) => ({
        request: request({}),
        principal: alice,
        requirements: { rateLimits: [rule] } as never,
      })
      const ruleA = { name: 'shared', limit: 2, windowMs: 60_000 }
      const ruleB = { name: 'shared', limit: 2, windowMs: 60_000 }
      expect((stage.run(route(ruleA)) as StageResult).ok).to.equal(true)
      for (let i = 0; i < 1100; i++)
        stage.run(route({ name: 'shared', limit: 1000 + i, windowMs: 60_000 }))
      // A's limiter is gone: the shared counter starts again, and A and B count on the same one.
      expect((stage.run(route(ruleB)) as StageResult).ok).to.equal(true)
      expect((stage.run(route(ruleA)) as StageResult).ok).to.equal(true)
      expect((stage.run(route(ruleB)) as StageResult).ok).to.equal(false)
    })
  })

  describe('decisions', () => {
    it('keeps one trace entry per stage with its timing; a route step extends the one decision', async () => {
      const { store, key } = await cachedKey()
      const gate = createGate({ apiKeys: { store, pepper: PEPPER }, audit: false })
      const request = fakeRequest({ url: '/docs/1', headers: { 'x-api-key': key } })
      const pending = gate.evaluate(request, gate.compile('documents:read'))
      expect(pending).to.be.instanceOf(Promise)
      const decision = await pending
      expect(decision.allowed).to.equal(true)
      expect(decision.trace.map((t) => [t.stage, t.outcome, t.by])).to.deep.equal([
        ['authenticate', 'allow', 'apikey'],
        ['authorize', 'allow', 'requirements'],
      ])
      for (const t of decision.trace) expect(t.micros).to.be.a('number').and.at.least(0)
      expect(decision).not.to.have.property('settle')
      const prior = await gate.authenticate(request)
      if (!prior.allowed) expect.fail('authentication refused')
      const first = prior.trace
      const authorized = await gate.authorize(request, prior, gate.compile('documents:read'))
      // One Decision per request: the route step's answer is the authentication's, extended; the
      // trace is a new array, so an event written with the first keeps its own.
      expect(authorized).to.equal(prior)
      expect(authorized.trace).to.have.length(2)
      expect(first).to.have.length(1)
      const denied = await gate.evaluate(request, gate.compile('documents:write'))
      expect(denied.allowed).to.equal(false)
      if (!denied.allowed) expect(denied.error.code).to.equal('ERR_SCOPE_INSUFFICIENT')
    })

    it('reads route parameters and headers for policy conditions only through the request', async () => {
      const { store, key } = await cachedKey()
      const policy: PolicySetInput = {
        rules: [
          {
            id: 'doc-7-for-acme',
            effect: 'allow',
            actions: ['documents:read'],
            when: {
              all: [
                { attr: 'request.params.id', op: 'eq', value: '7' },
                { attr: 'request.headers.x-tenant', op: 'eq', value: 'acme' },
              ],
            },
          },
        ],
      }
      const gate = createGate({ apiKeys: { store, pepper: PEPPER }, policy, audit: false })
      const compiled = gate.compile('documents:read')
      const ask = async (url: string, tenant: string) => {
        const d = await gate.evaluate(
          fakeRequest({
            url,
            route: '/docs/:id',
            headers: { 'x-api-key': key, 'x-tenant': tenant },
          }),
          compiled,
        )
        return d
      }
      const allowed = await ask('/docs/7', 'acme')
      expect(allowed.allowed).to.equal(true)
      expect(allowed.trace.at(-1)).to.include({ stage: 'authorize', by: 'policy' })
      expect(allowed.trace.at(-1)?.rules).to.deep.equal(['doc-7-for-acme'])
      expect((await ask('/docs/8', 'acme')).allowed).to.equal(false)
      expect((await ask('/docs/7', 'other')).allowed).to.equal(false)
      // Percent-encoded parameters are decoded, as the router does.
      expect((await ask('/docs/%37', 'acme')).allowed).to.equal(true)
    })
  })

  describe('helpers', () => {
    it('matchRouteParams gives the same answer for a route seen before, and skips __proto__', () => {
      for (let i = 0; i < 3; i++) {
        expect({ ...matchRouteParams('/orgs/:org/docs/:id', '/orgs/a%20b/docs/7') }).to.deep.equal({
          org: 'a b',
          id: '7',
        })
      }
      expect({ ...matchRouteParams('/x/:__proto__/:id', '/x/1/2') }).to.deep.equal({ id: '2' })
      expect({ ...matchRouteParams('/x/:id', '/x/%E0%A4%A') }).to.deep.equal({ id: '%E0%A4%A' })
      expect({ ...matchRouteParams(undefined, '/x/1') }).to.deep.equal({})
    })

    it('policyTraceEntry keeps the entry fields and adds the policy ones', () => {
      const result = {
        allowed: false,
        decision: 'deny',
        level: 'read',
        matchedRules: ['r1'],
        riskScore: 12,
        explanation: 'denied by rule "r1"',
        shadowDenied: [],
      }
      const entry = {
        stage: 'authorize',
        outcome: 'deny',
        by: 'authorize',
        code: 'ERR_POLICY_DENIED',
        reason: 'old',
        micros: 5,
      } as const
      expect(policyTraceEntry(entry, result)).to.deep.equal({
        stage: 'authorize',
        outcome: 'deny',
        by: 'policy',
        code: 'ERR_POLICY_DENIED',
        reason: 'denied by rule "r1"',
        micros: 5,
        rules: ['r1'],
        riskScore: 12,
      })
      const { code: _code, ...allowEntry } = { ...entry, outcome: 'allow' as const }
      expect(policyTraceEntry(allowEntry, result)).not.to.have.property('code')
      expect(policyTraceEntry(entry, { ...result, matchedRules: [] })).to.equal(entry)
      expect(policyTraceEntry(entry, undefined)).to.equal(entry)
    })
  })
})
