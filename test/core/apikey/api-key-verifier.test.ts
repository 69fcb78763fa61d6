import { expect } from 'chai'
import sinon from 'sinon'
import {
  createApiKeyManager,
  createApiKeyVerifier,
  createMemoryBroker,
  createMemoryKeyStore,
  generateApiKey,
  type KeyStore,
} from '@portcullis/core'
import { createFakeClock } from '@portcullis/core/testing'

const PEPPER = 'p'.repeat(32)

function spyStore(store: KeyStore): KeyStore & { gets: sinon.SinonSpy } {
  const gets = sinon.spy(store, 'get')
  return Object.assign(store, { gets })
}

describe('createApiKeyVerifier', () => {
  const sandbox = sinon.createSandbox()
  afterEach(() => sandbox.restore())

  it('verifies a created key and serves repeats from the cache without a store read', async () => {
    const clock = createFakeClock()
    const store = spyStore(createMemoryKeyStore())
    const { key } = await createApiKeyManager({ store, pepper: PEPPER, now: clock }).create({
      name: 'k',
      ownerId: 'u1',
      scopes: ['a:b'],
    })
    const verifier = createApiKeyVerifier({ store, pepper: PEPPER }, { now: clock })
    const first = await verifier.verify(key)
    expect(first.ok).to.equal(true)
    if (first.ok) expect(first.principal).to.include({ id: 'u1', method: 'apikey' })
    await verifier.verify(key)
    await verifier.verify(key)
    expect(store.gets.callCount).to.equal(1)
    clock.advance(60_001)
    await verifier.verify(key)
    expect(store.gets.callCount).to.equal(2)
  })

  it('refuses malformed keys without touching the store', async () => {
    const store = spyStore(createMemoryKeyStore())
    const verifier = createApiKeyVerifier({ store, pepper: PEPPER }, { now: Date.now })
    for (const k of ['', 'ptcl_short', 'x'.repeat(500), generateApiKey({ prefix: 'other' }).key]) {
      const r = await verifier.verify(k)
      expect(r.ok).to.equal(false)
      if (!r.ok) expect(r.error.code).to.equal('ERR_APIKEY_MALFORMED')
    }
    expect(store.gets.callCount).to.equal(0)
  })

  it('caches unknown key ids so guessing floods do not reach the store', async () => {
    const store = spyStore(createMemoryKeyStore())
    const verifier = createApiKeyVerifier({ store, pepper: PEPPER }, { now: Date.now })
    const guess = generateApiKey({ prefix: 'ptcl' }).key
    for (let i = 0; i < 5; i++) {
      const r = await verifier.verify(guess)
      if (!r.ok) expect(r.error.code).to.equal('ERR_APIKEY_INVALID')
    }
    expect(store.gets.callCount).to.equal(1)
  })

  it('answers unknown, wrong-secret, revoked and expired keys alike', async () => {
    const clock = createFakeClock()
    const store = createMemoryKeyStore()
    const keys = createApiKeyManager({ store, pepper: PEPPER, now: clock })
    const revoked = await keys.create({ name: 'r', ownerId: 'u' })
    await keys.revoke(revoked.record.id)
    const expiring = await keys.create({ name: 'e', ownerId: 'u', expiresIn: '1m' })
    const live = await keys.create({ name: 'l', ownerId: 'u' })
    clock.advance(61_000)
    const verifier = createApiKeyVerifier({ store, pepper: PEPPER }, { now: clock })
    const wrongSecret = generateApiKey({ prefix: 'ptcl', id: live.record.id }).key
    const reasons: string[] = []
    for (const k of [
      generateApiKey({ prefix: 'ptcl' }).key,
      wrongSecret,
      revoked.key,
      expiring.key,
    ]) {
      const r = await verifier.verify(k)
      expect(r.ok).to.equal(false)
      if (r.ok) continue
      expect(r.error.code).to.equal('ERR_APIKEY_INVALID')
      expect(r.error.message).to.equal('The API key is invalid')
      reasons.push(r.error.reason as string)
    }
    expect(reasons).to.deep.equal(['unknown', 'wrong_secret', 'revoked', 'expired'])
  })

  it('drops a cached key when the broker announces its revocation', async () => {
    const store = createMemoryKeyStore()
    const broker = createMemoryBroker()
    const keys = createApiKeyManager({ store, pepper: PEPPER, broker })
    const { key, record } = await keys.create({ name: 'k', ownerId: 'u' })
    const verifier = createApiKeyVerifier({ store, pepper: PEPPER, broker }, { now: Date.now })
    expect((await verifier.verify(key)).ok).to.equal(true)
    await keys.revoke(record.id)
    const after = await verifier.verify(key)
    expect(after.ok).to.equal(false)
  })

  it('keeps the old secret working through the rotation grace period only', async () => {
    const clock = createFakeClock()
    const store = createMemoryKeyStore()
    const broker = createMemoryBroker()
    const keys = createApiKeyManager({ store, pepper: PEPPER, broker, now: clock })
    const old = await keys.create({ name: 'k', ownerId: 'u' })
    const verifier = createApiKeyVerifier({ store, pepper: PEPPER, broker }, { now: clock })
    expect((await verifier.verify(old.key)).ok).to.equal(true)
    const rotated = await keys.rotate(old.record.id, { grace: '10m' })
    expect(rotated?.record.id).to.equal(old.record.id)
    expect((await verifier.verify(rotated!.key)).ok).to.equal(true)
    expect((await verifier.verify(old.key)).ok).to.equal(true)
    clock.advance(10 * 60_000)
    expect((await verifier.verify(old.key)).ok).to.equal(false)
    expect((await verifier.verify(rotated!.key)).ok).to.equal(true)
  })

  it('verifies keys hashed under an older pepper, then re-hashes them under the current one', async () => {
    const store = createMemoryKeyStore()
    const { key } = await createApiKeyManager({
      store,
      pepper: [{ id: 'old', secret: 'o'.repeat(32) }],
    }).create({ name: 'k', ownerId: 'u' })
    const rotated = [
      { id: 'new', secret: 'n'.repeat(32) },
      { id: 'old', secret: 'o'.repeat(32) },
    ]
    const withoutOld = createApiKeyVerifier(
      { store, pepper: [{ id: 'new', secret: 'n'.repeat(32) }] },
      { now: Date.now },
    )
    expect((await withoutOld.verify(key)).ok).to.equal(false)
    const verifier = createApiKeyVerifier({ store, pepper: rotated }, { now: Date.now })
    expect((await verifier.verify(key)).ok).to.equal(true)
    await verifier.close()
    const [stored] = (await store.list()).items
    expect(stored?.hashes.map((h) => h.pepperId)).to.deep.equal(['new'])
    const fresh = createApiKeyVerifier(
      { store, pepper: [{ id: 'new', secret: 'n'.repeat(32) }] },
      { now: Date.now },
    )
    expect((await fresh.verify(key)).ok).to.equal(true)
  })

  it('re-hashes under a new pepper once, even for concurrent first uses, and survives a failing write', async () => {
    const store = createMemoryKeyStore()
    const old = { id: 'old', secret: 'o'.repeat(32) }
    const cur = { id: 'new', secret: 'n'.repeat(32) }
    const { key, record } = await createApiKeyManager({ store, pepper: [old] }).create({
      name: 'k',
      ownerId: 'u',
    })
    const update = sandbox.stub(store, 'update')
    update.onFirstCall().rejects(new Error('disk full'))
    update.callThrough()
    const warnings: [Readonly<Record<string, unknown>>, string][] = []
    const verifier = createApiKeyVerifier(
      { store, pepper: [cur, old], cache: false },
      { now: Date.now, logger: { warn: (f, m) => warnings.push([f, m]), error: () => {} } },
    )
    const first = await Promise.all([1, 2, 3, 4, 5].map(() => verifier.verify(key)))
    expect(first.every((r) => r.ok)).to.equal(true)
    await verifier.flush()
    expect(update.callCount).to.equal(1)
    expect(warnings).to.deep.include([
      { keyId: record.id, error: 'Error: disk full' },
      'apiKeys: re-hashing a key under the current pepper failed',
    ])
    expect((await store.get(record.id))?.hashes[0]?.pepperId).to.equal('old')
    await Promise.all([1, 2, 3].map(() => verifier.verify(key)))
    await verifier.flush()
    expect(update.callCount).to.equal(2)
    expect((await store.get(record.id))?.hashes[0]?.pepperId).to.equal('new')
    await verifier.verify(key)
    await verifier.close()
    expect(update.callCount).to.equal(2)
  })

  it('fails closed with ERR_KEYSTORE_UNAVAILABLE when the store throws', async () => {
    const store = createMemoryKeyStore()
    sandbox.stub(store, 'get').rejects(new Error('connection refused'))
    const verifier = createApiKeyVerifier({ store, pepper: PEPPER }, { now: Date.now })
    const r = await verifier.verify(generateApiKey({ prefix: 'ptcl' }).key)
    expect(r.ok).to.equal(false)
    if (!r.ok) expect(r.error.code).to.equal('ERR_KEYSTORE_UNAVAILABLE')
  })

  it('refuses bad options at creation', () => {
    const store = createMemoryKeyStore()
    expect(() => createApiKeyVerifier({ store, pepper: 'short' }, { now: Date.now })).to.throw(
      /apiKeys.pepper\[0\].secret: must be at least 32 bytes/,
    )
    expect(() =>
      createApiKeyVerifier({ store, pepper: PEPPER, prefixes: ['Bad-Prefix'] }, { now: Date.now }),
    ).to.throw(/apiKeys.prefixes\[0\]/)
    expect(() =>
      createApiKeyVerifier({ store, pepper: PEPPER, cache: { max: -1 } }, { now: Date.now }),
    ).to.throw(/apiKeys.cache.max/)
  })
})
