import nodeCrypto from 'node:crypto'
import { syncBuiltinESMExports } from 'node:module'
import { BlockList } from 'node:net'
import { expect } from 'chai'
import sinon from 'sinon'
import {
  type Decision,
  type DenyDecision,
  createApiKeyManager,
  createApiKeyVerifier,
  createGate,
  createMemoryKeyStore,
  createQuotaStage,
  createRateLimitStage,
  generateApiKey,
  type ApiKeyRequestContext,
  type ApiKeyUsage,
  type KeyStore,
  type Logger,
} from '@portcullis/core'
import { createFakeClock, fakeRequest } from '@portcullis/core/testing'

const PEPPER = 'p'.repeat(32)

/** A memory store holding a revoked, an expired (2 s ago on `clock`) and a live key. */
async function keysInEveryState() {
  const clock = createFakeClock()
  const store = createMemoryKeyStore()
  const keys = createApiKeyManager({ store, pepper: PEPPER, now: clock })
  const revoked = await keys.create({ name: 'r', ownerId: 'u' })
  await keys.revoke(revoked.record.id)
  const expired = await keys.create({ name: 'e', ownerId: 'u', expiresIn: '1s' })
  const live = await keys.create({ name: 'l', ownerId: 'u' })
  clock.advance(2000)
  return { clock, store, revoked, expired, live }
}

function denied(d: Decision): DenyDecision {
  if (d.allowed) throw new Error('expected a denial')
  return d
}

function from(ip: string | undefined, origin?: string): ApiKeyRequestContext {
  return { ip, header: (name) => (name === 'origin' ? origin : undefined) }
}

/** A memory store whose reads are counted. */
function countingStore(): KeyStore & { reads: () => number } {
  const store = createMemoryKeyStore()
  let reads = 0
  return {
    ...store,
    get: (id) => (reads++, store.get(id)),
    findByHash: (h) => (reads++, (store.findByHash as NonNullable<KeyStore['findByHash']>)(h)),
    reads: () => reads,
  }
}

describe('API-key verification: reasons, policies and usage', () => {
  const sandbox = sinon.createSandbox()
  afterEach(() => sandbox.restore())

  describe('refusals before any store read', () => {
    it('refuses malformed, truncated, wrong-prefix and wrong-checksum keys without reading the store', async () => {
      const store = countingStore()
      const good = generateApiKey({ prefix: 'ptcl' }).key
      const flipped = good.slice(0, -1) + (good.endsWith('A') ? 'B' : 'A')
      const cases: Array<[string, string]> = [
        ['', 'malformed: length'],
        [good.slice(0, -3), 'malformed: length'],
        [`ptcl_${'a'.repeat(10)}`, 'malformed: length'],
        [generateApiKey({ prefix: 'other' }).key, 'malformed: prefix'],
        [good.slice(0, -8) + '!!' + good.slice(-6), 'malformed: charset'],
        [flipped, 'bad_checksum'],
      ]
      // importedKeys on: tokens that start like our keys are still never looked up.
      for (const importedKeys of [false, true]) {
        const v = createApiKeyVerifier(
          { store, pepper: PEPPER, importedKeys, prefixes: ['ptcl'] },
          { now: Date.now },
        )
        for (const [key, reason] of cases) {
          if (importedKeys && reason === 'malformed: prefix') continue
          const r = await v.verify(key)
          expect(r.ok).to.equal(false)
          if (!r.ok) expect(r.error, key).to.include({ code: 'ERR_APIKEY_MALFORMED', reason })
        }
      }
      expect(store.reads()).to.equal(0)
    })
  })

  describe('no oracle', () => {
    it('answers unknown, revoked, expired and wrong-secret keys identically, reasons apart', async () => {
      const { clock, store, revoked, expired, live } = await keysInEveryState()
      const gate = createGate({ apiKeys: { store, pepper: PEPPER }, audit: false, now: clock })
      const answers = []
      for (const [key, reason] of [
        [generateApiKey({ prefix: 'ptcl' }).key, 'unknown'],
        [revoked.key, 'revoked'],
        [expired.key, 'expired'],
        [generateApiKey({ prefix: 'ptcl', id: live.record.id }).key, 'wrong_secret'],
      ] as const) {
        const d = denied(
          await gate.evaluate(fakeRequest({ headers: { 'x-api-key': key } }), gate.compile({})),
        )
        expect(d.error.reason).to.equal(reason)
        expect(d.trace.find((t) => t.stage === 'authenticate')?.reason).to.equal(reason)
        answers.push({
          status: d.status,
          code: d.error.code,
          message: d.error.message,
          problem: { ...d.problem, instance: undefined, requestId: undefined },
          headers: d.headers,
        })
      }
      for (const a of answers.slice(1)) expect(a).to.deep.equal(answers[0])
      expect(answers[0]).to.include({ status: 401, code: 'ERR_APIKEY_INVALID' })
      await gate.close()
    })
  })

  it('spends one HMAC and one constant-time compare on unknown, revoked, expired and wrong-secret keys alike', async () => {
    const { clock, store, revoked, expired, live } = await keysInEveryState()
    const v = createApiKeyVerifier({ store, pepper: PEPPER, cache: false }, { now: clock })
    // Count the crypto work through node:crypto itself (ESM bindings follow the builtin module).
    const hmac = sandbox.spy(nodeCrypto, 'createHmac')
    const compare = sandbox.spy(nodeCrypto, 'timingSafeEqual')
    syncBuiltinESMExports()
    const work: Array<[number, number]> = []
    try {
      for (const key of [
        generateApiKey({ prefix: 'ptcl' }).key,
        revoked.key,
        expired.key,
        generateApiKey({ prefix: 'ptcl', id: live.record.id }).key,
      ]) {
        hmac.resetHistory()
        compare.resetHistory()
        expect((await v.verify(key)).ok).to.equal(false)
        work.push([hmac.callCount, compare.callCount])
      }
    } finally {
      sandbox.restore()
      syncBuiltinESMExports()
    }
    expect(work).to.deep.equal([
      [1, 1],
      [1, 1],
      [1, 1],
      [1, 1],
    ])
  })

  describe('usage policy', () => {
    async function keyWith(policy: object, environment?: 'live' | 'test') {
      const store = createMemoryKeyStore()
      const keys = createApiKeyManager({ store, pepper: PEPPER })
      const { key } = await keys.create({
        name: 'k',
        ownerId: 'u',
        policy,
        ...(environment === undefined ? {} : { environment }),
      })
      return { store, key }
    }

    it('allows only client IPs inside the CIDRs, IPv4, IPv6 and IPv4-mapped', async () => {
      const { store, key } = await keyWith({
        allowedCidrs: ['10.1.0.0/16', '2001:db8::/32', '192.0.2.7'],
      })
      const v = createApiKeyVerifier({ store, pepper: PEPPER }, { now: Date.now })
      for (const ip of ['10.1.2.3', '2001:db8:1::5', '::ffff:10.1.9.9', '192.0.2.7'])
        expect((await v.verify(key, from(ip))).ok, ip).to.equal(true)
      for (const ip of ['10.2.0.1', '2001:db9::1', '192.0.2.8', 'garbage', undefined]) {
        const r = await v.verify(key, from(ip))
        expect(r.ok, String(ip)).to.equal(false)
        if (!r.ok)
          expect(r.error).to.include({ code: 'ERR_POLICY_DENIED', reason: 'ip_not_allowed' })
      }
      const none = await v.verify(key)
      expect(none.ok).to.equal(false)
    })

    it('compiles the IP list once per record, not per request', async () => {
      const { store, key } = await keyWith({ allowedCidrs: ['10.0.0.0/8'] })
      const spy = sandbox.spy(BlockList.prototype, 'addSubnet')
      const v = createApiKeyVerifier({ store, pepper: PEPPER }, { now: Date.now })
      for (let i = 0; i < 5; i++) await v.verify(key, from(`10.0.0.${i}`))
      expect(spy.callCount).to.equal(1)
    })

    it('allows only listed origins, exact or by host wildcard, and refuses a missing Origin', async () => {
      const { store, key } = await keyWith({
        allowedOrigins: ['https://app.example', '*.example.org', 'https://*.secure.example'],
      })
      const v = createApiKeyVerifier({ store, pepper: PEPPER }, { now: Date.now })
      for (const o of ['https://app.example', 'http://a.example.org', 'https://x.secure.example'])
        expect((await v.verify(key, from('1.2.3.4', o))).ok, o).to.equal(true)
      for (const o of [
        'https://evil.example',
        'https://app.example.evil',
        'https://example.org',
        'http://x.secure.example',
        'null',
        undefined,
      ]) {
        const r = await v.verify(key, from('1.2.3.4', o))
        expect(r.ok, String(o)).to.equal(false)
        if (!r.ok) expect(r.error.reason).to.equal('origin_not_allowed')
      }
    })

    it('accepts only the configured environments', async () => {
      const { store, key } = await keyWith({}, 'test')
      const liveOnly = createApiKeyVerifier(
        { store, pepper: PEPPER, prefixes: ['ptcl', 'ptcl_test'], environments: ['live'] },
        { now: Date.now },
      )
      const r = await liveOnly.verify(key)
      expect(r.ok).to.equal(false)
      if (!r.ok) expect(r.error.reason).to.equal('environment_not_allowed')
      const both = createApiKeyVerifier(
        { store, pepper: PEPPER, prefixes: ['ptcl', 'ptcl_test'] },
        { now: Date.now },
      )
      expect((await both.verify(key)).ok).to.equal(true)
    })

    it('hands per-key rate limits and quota to the limits and quota stages', async () => {
      const clock = createFakeClock()
      const store = createMemoryKeyStore()
      const keys = createApiKeyManager({ store, pepper: PEPPER, now: clock })
      const limited = await keys.create({
        name: 'l',
        ownerId: 'u',
        policy: { rateLimits: [{ limit: 2, windowMs: '1m' }] },
      })
      const quota = await keys.create({
        name: 'q',
        ownerId: 'u',
        policy: { quota: { limit: 3, period: 'day' } },
      })
      const free = await keys.create({ name: 'f', ownerId: 'u' })
      const gate = createGate({
        apiKeys: { store, pepper: PEPPER },
        stages: [
          createRateLimitStage({ now: clock }),
          createQuotaStage({ quotas: [{ name: 'all', limit: 1000, period: 'day' }], now: clock }),
        ],
        audit: false,
        now: clock,
      })
      const call = (key: string) =>
        gate.evaluate(fakeRequest({ headers: { 'x-api-key': key } }), gate.compile({}))
      expect((await call(limited.key)).allowed).to.equal(true)
      expect((await call(limited.key)).allowed).to.equal(true)
      const third = denied(await call(limited.key))
      expect(third.status).to.equal(429)
      expect(third.error.code).to.equal('ERR_RATE_LIMITED')
      for (let i = 0; i < 3; i++) expect((await call(quota.key)).allowed).to.equal(true)
      const over = denied(await call(quota.key))
      expect(over.error.code).to.equal('ERR_QUOTA_EXCEEDED')
      for (let i = 0; i < 5; i++) expect((await call(free.key)).allowed).to.equal(true)
      await gate.close()
    })
  })

  it('refuses bad environments and usage options at creation, naming them', () => {
    const store = createMemoryKeyStore()
    const make = (extra: object) => () =>
      createApiKeyVerifier({ store, pepper: PEPPER, ...extra }, { now: Date.now })
    expect(make({ environments: ['prod'] })).to.throw(/apiKeys\.environments\[0\]/)
    expect(make({ environments: [] })).to.throw(/apiKeys\.environments: must not be empty/)
    expect(make({ usage: { flushIntervalMs: 0 } })).to.throw(/apiKeys\.usage\.flushIntervalMs/)
    expect(make({ usage: { maxBatch: 1.5 } })).to.throw(/apiKeys\.usage\.maxBatch/)
    expect(make({ importedKeys: 'yes' })).to.throw(/apiKeys\.importedKeys/)
  })

  describe('usage batching', () => {
    async function setup(usage: { flushIntervalMs?: number; maxBatch?: number }) {
      const timers = sandbox.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] })
      const store = createMemoryKeyStore()
      const calls: ApiKeyUsage[][] = []
      const record = store.recordUsage?.bind(store) as NonNullable<KeyStore['recordUsage']>
      store.recordUsage = (u) => (calls.push([...u]), record(u))
      const keys = createApiKeyManager({ store, pepper: PEPPER })
      const a = await keys.create({ name: 'a', ownerId: 'u' })
      const b = await keys.create({ name: 'b', ownerId: 'u' })
      const clock = createFakeClock()
      const warn = sinon.spy()
      const logger: Logger = { warn, error: () => {} }
      const v = createApiKeyVerifier({ store, pepper: PEPPER, usage }, { now: clock, logger })
      return { timers, store, calls, a, b, clock, warn, v }
    }

    it('counts uses in memory and writes them in one batch per interval', async () => {
      const { timers, store, calls, a, b, clock, v } = await setup({ flushIntervalMs: 5000 })
      await v.verify(a.key)
      clock.advance(10)
      await v.verify(a.key)
      await v.verify(b.key)
      clock.advance(10)
      await v.verify(a.key)
      expect(calls).to.deep.equal([])
      expect((await store.get(a.record.id))?.usageCount).to.equal(0)
      timers.tick(5000)
      await v.flush()
      expect(calls).to.have.length(1)
      expect(calls[0]).to.have.deep.members([
        { id: a.record.id, count: 3, lastUsedAt: clock() },
        { id: b.record.id, count: 1, lastUsedAt: clock() - 10 },
      ])
      expect(await store.get(a.record.id)).to.include({ usageCount: 3, lastUsedAt: clock() })
      timers.tick(5000)
      expect(calls).to.have.length(1)
      await v.close()
    })

    it('writes early when maxBatch keys are pending', async () => {
      const { calls, a, b, v } = await setup({ flushIntervalMs: 60_000, maxBatch: 2 })
      await v.verify(a.key)
      await v.verify(a.key)
      expect(calls).to.have.length(0)
      await v.verify(b.key)
      expect(calls).to.have.length(1)
      await v.close()
    })

    it('never blocks a request on a slow write, and logs a failed one', async () => {
      const { store, a, v, warn, timers } = await setup({ flushIntervalMs: 1000, maxBatch: 1 })
      let release: () => void = () => {}
      store.recordUsage = () => new Promise<void>((resolve) => (release = resolve))
      expect((await v.verify(a.key)).ok).to.equal(true)
      expect((await v.verify(a.key)).ok).to.equal(true)
      release()
      store.recordUsage = () => Promise.reject(new Error('disk full'))
      expect((await v.verify(a.key)).ok).to.equal(true)
      timers.tick(1000)
      await v.flush()
      expect(warn.called).to.equal(true)
      expect(warn.firstCall.args).to.deep.equal([
        { keys: 1, error: 'Error: disk full' },
        'apiKeys: writing key usage failed; this batch is dropped',
      ])
    })

    it('flushes pending usage on close and stops its timer', async () => {
      const { calls, a, v, timers } = await setup({ flushIntervalMs: 1000 })
      await v.verify(a.key)
      await v.close()
      expect(calls).to.have.length(1)
      await v.verify(a.key)
      timers.tick(5000)
      expect(calls).to.have.length(1)
    })
  })
})
