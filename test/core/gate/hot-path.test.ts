import { expect } from 'chai'
import {
  createApiKeyManager,
  createApiKeyVerifier,
  createGate,
  createJwtVerifier,
  createMemoryKeyStore,
  matchRouteParams,
  policyTraceEntry,
  type PolicySetInput,
} from '@gatehouse/core'
import { fakeRequest } from '@gatehouse/core/testing'
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
      expect(verifier.looksLikeKey('gh_abc')).to.equal(true)
      expect(verifier.looksLikeKey('gh_test_abc')).to.equal(false)
      expect(verifier.looksLikeKey('eyJh_bGc.eyJz_dWI.c2ln_')).to.equal(false)
      expect(verifier.looksLikeKey('_abc')).to.equal(false)
      expect(verifier.looksLikeKey('gh')).to.equal(false)
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

  describe('decisions', () => {
    it('keeps one trace entry per stage with its timing; a prior decision keeps its own trace', async () => {
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
      const authorized = await gate.authorize(request, prior, gate.compile('documents:read'))
      expect(authorized.trace).to.have.length(2)
      expect(prior.trace).to.have.length(1)
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
