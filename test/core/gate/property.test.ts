import { expect } from 'chai'
import fc from 'fast-check'
import { createApiKeyManager, createGate, createMemoryKeyStore, type Gate } from '@portcullis/core'
import { createMemoryAuditSink, fakeRequest } from '@portcullis/core/testing'
import { b64u, signHmac } from '../../helpers/jwt.js'

const PEPPER = 'pepper-for-property-tests-0123456789'
const SECRET = 'secret-for-property-tests-0123456789'

// Any status the gate may answer; 5xx would mean a crash was turned into an answer.
const CLIENT_STATUSES = new Set([200, 400, 401, 403])

describe('the gate under random input', () => {
  let gate: Gate
  let key: string
  const sink = createMemoryAuditSink()

  before(async () => {
    const store = createMemoryKeyStore()
    gate = createGate({
      apiKeys: { store, pepper: PEPPER },
      jwt: { secret: SECRET, issuer: false, audience: 'api' },
      audit: { sinks: [sink], flushIntervalMs: 0 },
    })
    key = (await createApiKeyManager({ store, pepper: PEPPER }).create({ name: 'p', ownerId: 'u' }))
      .key
  })
  after(() => gate.close())

  const headerValue = fc.oneof(
    fc.string(),
    fc.string({ unit: 'binary' }),
    fc.constantFrom(
      'Bearer',
      'Bearer ',
      'bearer x',
      'Basic',
      'BEARER a.b.c',
      'Bearer ..',
      'Bearer a..b',
    ),
    fc.string().map((s) => `Bearer ${s}`),
  )
  const tokenParts = fc.tuple(
    fc.oneof(fc.json(), fc.string(), fc.constant('{"alg":"HS256"}'), fc.constant('{"alg":"none"}')),
    fc.oneof(fc.json(), fc.string(), fc.constant('{"sub":"x","aud":"api","exp":99999999999}')),
    fc.oneof(
      fc.string(),
      fc.uint8Array({ maxLength: 80 }).map((b) => b64u(Buffer.from(b))),
    ),
  )

  it('answers random Authorization and X-API-Key values with a 4xx or an allow, never a throw', async () => {
    await fc.assert(
      fc.asyncProperty(
        headerValue,
        fc.option(fc.string(), { nil: undefined }),
        fc.string(),
        async (authorization, apiKey, query) => {
          const headers: Record<string, string> = { authorization }
          if (apiKey !== undefined) headers['x-api-key'] = apiKey
          const d = await gate.evaluate(fakeRequest({ url: `/x?${query}`, headers }))
          expect(CLIENT_STATUSES.has(d.status), `status ${d.status}`).to.equal(true)
          if (!d.allowed) expect(d.problem.code).to.match(/^ERR_[A-Z]+_[A-Z_]+$/)
        },
      ),
      { numRuns: 2000 },
    )
  })

  it('refuses random JWT-shaped tokens, whatever their segments hold', async () => {
    await fc.assert(
      fc.asyncProperty(tokenParts, async ([h, p, s]) => {
        const token = `${b64u(h)}.${b64u(p)}.${s}`
        const d = await gate.evaluate(
          fakeRequest({ headers: { authorization: `Bearer ${token}` } }),
        )
        expect(d.allowed).to.equal(false)
        expect([400, 401]).to.include(d.status)
      }),
      { numRuns: 2000 },
    )
  })

  it('refuses random mutations of a valid key and a valid token', async () => {
    const token = signHmac(
      { claims: { sub: 'u', aud: 'api', exp: Math.floor(Date.now() / 1000) + 600 } },
      SECRET,
    )
    const mutate = (s: string) =>
      fc
        .tuple(fc.nat({ max: s.length - 1 }), fc.string({ minLength: 1, maxLength: 3 }))
        .map(([i, ins]) => s.slice(0, i) + ins + s.slice(i + 1))
        .filter((m) => m !== s)
    await fc.assert(
      fc.asyncProperty(fc.oneof(mutate(key), mutate(token)), async (credential) => {
        const d = await gate.evaluate(
          fakeRequest({ headers: { authorization: `Bearer ${credential}` } }),
        )
        // A mutation can only be accepted if it decodes to the same bytes, which canonical
        // base64url and the checksum forbid.
        expect(d.allowed, credential).to.equal(false)
        expect([400, 401]).to.include(d.status)
      }),
      { numRuns: 2000 },
    )
  })

  it('audits every decision it was asked to make', async () => {
    sink.clear()
    await gate.audit.flush()
    sink.clear()
    const n = 50
    for (let i = 0; i < n; i++)
      await gate.evaluate(fakeRequest({ headers: { authorization: `Bearer junk${i}` } }))
    await gate.audit.flush()
    expect(sink.events).to.have.length(n)
  })
})
