import { createHash } from 'node:crypto'
import { expect } from 'chai'
import {
  ApiKeyComplianceError,
  apiKeyStatus,
  createApiKeyManager,
  createApiKeyVerifier,
  createAuditTrail,
  createMemoryBroker,
  createMemoryKeyStore,
  generateApiKey,
  isAuthError,
  isConfigError,
  sha256Hex,
  type ApiKeyManagerOptions,
  type ApiKeyRecord,
} from '@portcullis/core'
import { createFakeClock, createMemoryAuditSink } from '@portcullis/core/testing'

const PEPPER = 'p'.repeat(32)
const DAY = 86_400_000

function setup(extra: Partial<ApiKeyManagerOptions> = {}) {
  const clock = createFakeClock()
  const store = createMemoryKeyStore()
  const broker = createMemoryBroker()
  const sink = createMemoryAuditSink()
  const audit = createAuditTrail({ sinks: [sink] })
  const published: string[] = []
  for (const t of ['key.created', 'key.updated', 'key.revoked', 'key.rotated'] as const)
    broker.subscribe(t, (m) => published.push(`${t} ${m.keyId}`))
  const keys = createApiKeyManager({ store, pepper: PEPPER, broker, audit, now: clock, ...extra })
  const verifier = (options: { importedKeys?: boolean } = {}) =>
    createApiKeyVerifier(
      { store, pepper: PEPPER, broker, prefixes: ['ptcl', 'ptcl_test'], ...options },
      { now: clock },
    )
  return { clock, store, broker, sink, audit, published, keys, verifier }
}

async function rejection(p: Promise<unknown>): Promise<Error & { code?: string; rule?: string }> {
  try {
    await p
  } catch (e) {
    return e as Error & { code?: string; rule?: string }
  }
  throw new Error('expected a rejection')
}

describe('ApiKeyManager lifecycle', () => {
  describe('create', () => {
    it('stores tags, purpose and a usage policy with durations resolved to ms', async () => {
      const { keys, store } = setup()
      const { record } = await keys.create({
        name: 'ci',
        ownerId: 'svc',
        tags: ['ci', 'deploy', 'ci'],
        purpose: 'deploys',
        policy: {
          allowedCidrs: ['10.0.0.0/8', '2001:db8::/32'],
          allowedOrigins: ['https://app.example', '*.example.org'],
          rateLimits: [{ limit: 10, windowMs: '1s' }],
          quota: { limit: 100, period: 'day' },
        },
      })
      const stored = (await store.get(record.id)) as ApiKeyRecord
      expect(stored.tags).to.deep.equal(['ci', 'deploy'])
      expect(stored.purpose).to.equal('deploys')
      expect(stored.policy).to.deep.equal({
        allowedCidrs: ['10.0.0.0/8', '2001:db8::/32'],
        allowedOrigins: ['https://app.example', '*.example.org'],
        rateLimits: [{ limit: 10, windowMs: 1000 }],
        quota: { limit: 100, period: 'day' },
      })
      expect(stored).to.include({ environment: 'live', rotatedAt: null, usageCount: 0 })
    })

    it('maps the environment to the key prefix, and a _test prefix to the test environment', async () => {
      const { keys } = setup()
      const test = await keys.create({ name: 't', ownerId: 'u', environment: 'test' })
      expect(test.key.startsWith('ptcl_test_')).to.equal(true)
      expect(test.record).to.include({ prefix: 'ptcl_test', environment: 'test' })
      const live = await keys.create({ name: 'l', ownerId: 'u' })
      expect(live.record).to.include({ prefix: 'ptcl', environment: 'live' })
      const custom = await keys.create({ name: 'c', ownerId: 'u', prefix: 'acme_test' })
      expect(custom.record).to.include({ prefix: 'acme_test', environment: 'test' })
    })

    it('refuses a bad usage policy with ConfigError naming the field', async () => {
      const { keys } = setup()
      const cases: Array<[unknown, RegExp]> = [
        [{ allowedCidrs: ['10.0.0.0/33'] }, /key\.policy\.allowedCidrs\[0\]/],
        [{ allowedCidrs: ['not-an-ip'] }, /key\.policy\.allowedCidrs\[0\]/],
        [{ allowedOrigins: ['https://x.example/path'] }, /key\.policy\.allowedOrigins\[0\]/],
        [{ rateLimits: [{ limit: 0, windowMs: '1s' }] }, /key\.policy\.rateLimits\[0\]\.limit/],
        [
          { rateLimits: [{ limit: 1, windowMs: 'soon' }] },
          /key\.policy\.rateLimits\[0\]\.windowMs/,
        ],
        [{ quota: { limit: 1, period: 'week' } }, /key\.policy\.quota\.period/],
        [
          { allowedCidr: ['10.0.0.0/8'] },
          /key\.policy\.allowedCidr: .*did you mean "allowedCidrs"/,
        ],
      ]
      for (const [policy, pattern] of cases) {
        const e = await rejection(keys.create({ name: 'k', ownerId: 'u', policy: policy as never }))
        expect(isConfigError(e), String(e)).to.equal(true)
        expect(e.message).to.match(pattern)
      }
    })
  })

  describe('compliance', () => {
    it('enforces requireExpiry, maxLifetime, requirePurpose and requireOwner at create', async () => {
      const { keys, audit, sink } = setup({
        compliance: {
          maxLifetime: '90d',
          requireExpiry: true,
          requirePurpose: true,
          requireOwner: true,
        },
      })
      const cases: Array<[Parameters<typeof keys.create>[0], string]> = [
        [{ name: 'k', ownerId: 'u', purpose: 'p' }, 'requireExpiry'],
        [{ name: 'k', ownerId: 'u', purpose: 'p', expiresIn: '91d' }, 'maxLifetime'],
        [{ name: 'k', ownerId: 'u', expiresIn: '30d' }, 'requirePurpose'],
        [{ name: 'k', ownerId: ' ', purpose: 'p', expiresIn: '30d' }, 'requireOwner'],
      ]
      for (const [input, rule] of cases) {
        const e = await rejection(keys.create(input))
        expect(e).to.be.instanceOf(ApiKeyComplianceError)
        expect(isAuthError(e)).to.equal(true)
        expect(e.code).to.equal('ERR_APIKEY_NONCOMPLIANT')
        expect(e.rule).to.equal(rule)
        expect(e.message).to.include(rule)
      }
      const ok = await keys.create({ name: 'k', ownerId: 'u', purpose: 'p', expiresIn: '90d' })
      expect(ok.record.expiresAt).to.equal(ok.record.createdAt + 90 * DAY)
      await audit.flush()
      const failures = sink.events.filter((e) => e.outcome === 'failure')
      expect(failures.map((e) => e.reason?.code)).to.deep.equal(
        Array(4).fill('ERR_APIKEY_NONCOMPLIANT'),
      )
    })

    it('enforces the rules at update against the stored key', async () => {
      const { keys, store } = setup({ compliance: { maxLifetime: '30d', requirePurpose: true } })
      const { record } = await keys.create({
        name: 'k',
        ownerId: 'u',
        purpose: 'p',
        expiresIn: '10d',
      })
      const tooLong = await rejection(
        keys.update(record.id, { expiresAt: record.createdAt + 31 * DAY }),
      )
      expect(tooLong).to.include({ code: 'ERR_APIKEY_NONCOMPLIANT', rule: 'maxLifetime' })
      const never = await rejection(keys.update(record.id, { expiresAt: null }))
      expect(never).to.include({ rule: 'maxLifetime' })
      const noPurpose = await rejection(keys.update(record.id, { purpose: null }))
      expect(noPurpose).to.include({ rule: 'requirePurpose' })
      expect(await store.get(record.id)).to.deep.equal(record)
      const ok = await keys.update(record.id, { expiresAt: record.createdAt + 30 * DAY })
      expect(ok?.expiresAt).to.equal(record.createdAt + 30 * DAY)
    })

    it('enforces the rules at import', async () => {
      const { keys } = setup({ compliance: { requireExpiry: true } })
      const e = await rejection(keys.import({ key: 'sk_live_abcdefgh', name: 'k', ownerId: 'u' }))
      expect(e).to.include({ code: 'ERR_APIKEY_NONCOMPLIANT', rule: 'requireExpiry' })
    })

    it('refuses bad compliance options at creation, naming them', () => {
      const store = createMemoryKeyStore()
      expect(() =>
        createApiKeyManager({ store, pepper: PEPPER, compliance: { maxLifetime: 'forever' } }),
      ).to.throw(/keys\.compliance\.maxLifetime/)
      expect(() =>
        createApiKeyManager({
          store,
          pepper: PEPPER,
          compliance: { requireExpiry: 'yes' as never },
        }),
      ).to.throw(/keys\.compliance\.requireExpiry/)
    })
  })

  describe('update, expire, rotate, list', () => {
    it('updates tags, purpose, policy and expiry, and clears the policy with null', async () => {
      const { keys, published } = setup()
      const { record } = await keys.create({ name: 'k', ownerId: 'u' })
      const updated = await keys.update(record.id, {
        tags: ['a'],
        purpose: 'why',
        policy: { allowedCidrs: ['192.0.2.0/24'], quota: { limit: 5, period: 'month' } },
        expiresAt: record.createdAt + DAY,
      })
      expect(updated).to.deep.include({
        tags: ['a'],
        purpose: 'why',
        policy: { allowedCidrs: ['192.0.2.0/24'], quota: { limit: 5, period: 'month' } },
        expiresAt: record.createdAt + DAY,
      })
      expect((await keys.update(record.id, { policy: null }))?.policy).to.deep.equal({})
      expect(published.filter((p) => p.startsWith('key.updated'))).to.have.length(2)
    })

    it('expires a key now: it reads expired and stops verifying', async () => {
      const { keys, clock, verifier, sink, audit } = setup()
      const { key, record } = await keys.create({ name: 'k', ownerId: 'u' })
      const v = verifier()
      expect((await v.verify(key)).ok).to.equal(true)
      const expired = (await keys.expire(record.id, { actorId: 'admin' })) as ApiKeyRecord
      expect(expired.expiresAt).to.equal(clock())
      expect(apiKeyStatus(expired, clock())).to.equal('expired')
      expect(apiKeyStatus(record, clock())).to.equal('active')
      const r = await v.verify(key)
      expect(r.ok).to.equal(false)
      if (!r.ok) expect(r.error.reason).to.equal('expired')
      await audit.flush()
      expect(sink.events.at(-1)).to.deep.include({ type: 'key.updated', action: 'key.expire' })
      expect(await keys.expire(generateApiKey({ prefix: 'ptcl' }).id)).to.equal(undefined)
    })

    it('sets rotatedAt on rotation', async () => {
      const { keys, clock } = setup()
      const { record } = await keys.create({ name: 'k', ownerId: 'u' })
      clock.advance(5000)
      const rotated = await keys.rotate(record.id, { grace: '1m' })
      expect(rotated?.record.rotatedAt).to.equal(clock())
      expect(rotated?.record.hashes).to.have.length(2)
    })

    it('lists by tag, owner and status, page by page', async () => {
      const { keys } = setup()
      const tagged: string[] = []
      for (let i = 0; i < 5; i++)
        tagged.push(
          (await keys.create({ name: `k${i}`, ownerId: 'alice', tags: ['ci'] })).record.id,
        )
      await keys.create({ name: 'other', ownerId: 'alice', tags: ['web'] })
      await keys.create({ name: 'bob', ownerId: 'bob', tags: ['ci'] })
      await keys.revoke(tagged[0] as never)
      const seen: string[] = []
      let cursor: string | undefined
      do {
        const page = await keys.list({
          ownerId: 'alice' as never,
          tag: 'ci',
          status: 'active',
          limit: 2,
          ...(cursor === undefined ? {} : { cursor }),
        })
        seen.push(...page.items.map((r) => r.id))
        cursor = page.nextCursor ?? undefined
      } while (cursor !== undefined)
      expect(seen).to.deep.equal(tagged.slice(1).sort())
    })
  })

  describe('dueForRotation', () => {
    it('reports active keys whose rotation period has passed since creation or last rotation', async () => {
      const { keys, clock } = setup({ compliance: { rotationPeriod: '30d' } })
      const old = await keys.create({ name: 'old', ownerId: 'u' })
      const rotated = await keys.create({ name: 'rotated', ownerId: 'u' })
      const revoked = await keys.create({ name: 'revoked', ownerId: 'u' })
      const expiring = await keys.create({ name: 'expiring', ownerId: 'u', expiresIn: '31d' })
      clock.advance(10 * DAY)
      const young = await keys.create({ name: 'young', ownerId: 'u' })
      await keys.rotate(rotated.record.id)
      await keys.revoke(revoked.record.id)
      clock.advance(25 * DAY)
      const due = await keys.dueForRotation()
      expect(due.map((r) => r.name)).to.deep.equal(['old'])
      expect(due[0]?.id).to.equal(old.record.id)
      const later = await keys.dueForRotation({ now: clock() + 10 * DAY })
      // Oldest due first; young and rotated share an instant.
      expect(later[0]?.name).to.equal('old')
      expect(later.map((r) => r.name)).to.have.members(['old', 'young', 'rotated'])
      expect(later.map((r) => r.id)).to.not.include(expiring.record.id)
      expect(young.record.id).to.be.a('string')
      expect((await keys.dueForRotation({ rotationPeriod: '1d' })).length).to.equal(3)
    })

    it('throws ConfigError without a rotation period', async () => {
      const { keys } = setup()
      expect(isConfigError(await rejection(keys.dueForRotation()))).to.equal(true)
    })
  })

  describe('import', () => {
    it('imports a plaintext key of another format, found by hash when importedKeys is on', async () => {
      const { keys, store, verifier, audit, sink } = setup()
      const legacy = 'sk_live_4eC39HqLyjWDarjtT1zdp7dc'
      const record = await keys.import(
        { key: legacy, name: 'stripe-era', ownerId: 'u', scopes: ['a:b'] },
        { actorId: 'migrator' },
      )
      expect(record.prefix).to.equal('')
      expect(JSON.stringify(await store.get(record.id))).to.not.include(legacy)
      const off = await verifier().verify(legacy)
      expect(off.ok).to.equal(false)
      if (!off.ok) expect(off.error.code).to.equal('ERR_APIKEY_MALFORMED')
      const on = verifier({ importedKeys: true })
      const r = await on.verify(legacy)
      expect(r.ok).to.equal(true)
      if (r.ok) expect(r.principal.scopes).to.deep.equal(['a:b'])
      const wrong = await on.verify('sk_live_4eC39HqLyjWDarjtT1zdp7dX')
      expect(wrong.ok).to.equal(false)
      if (!wrong.ok)
        expect(wrong.error).to.include({ code: 'ERR_APIKEY_INVALID', reason: 'unknown' })
      await audit.flush()
      expect(sink.events.at(-1)).to.deep.include({
        type: 'key.created',
        action: 'key.import',
        data: { name: 'stripe-era', ownerId: 'u', imported: 'plaintext' },
      })
    })

    it('keeps the id of a key already in Portcullis format, so it verifies on the fast path', async () => {
      const { keys, verifier } = setup()
      const generated = generateApiKey({ prefix: 'ptcl' })
      const record = await keys.import({ key: generated.key, name: 'k', ownerId: 'u' })
      expect(record).to.include({ id: generated.id, prefix: 'ptcl' })
      expect((await verifier().verify(generated.key)).ok).to.equal(true)
    })

    it('imports a bare SHA-256, then re-hashes it under the pepper at its first use', async () => {
      const { keys, store, verifier } = setup()
      const legacy = 'legacy-token-0123456789'
      const record = await keys.import({
        sha256: createHash('sha256').update(legacy).digest('hex').toUpperCase(),
        name: 'k',
        ownerId: 'u',
      })
      expect(record.hashes[0]).to.include({ algorithm: 'sha256', hash: sha256Hex(legacy) })
      const v = verifier({ importedKeys: true })
      expect((await v.verify(legacy)).ok).to.equal(true)
      await v.flush()
      const after = (await store.get(record.id)) as ApiKeyRecord
      expect(after.hashes).to.have.length(1)
      expect(after.hashes[0]?.algorithm).to.equal(undefined)
      expect(after.hashes[0]?.hash).to.not.equal(sha256Hex(legacy))
      expect(after.hashes[0]?.pepperId).to.equal('p1')
      // A fresh verifier (no cache) finds it by its HMAC now.
      expect((await verifier({ importedKeys: true }).verify(legacy)).ok).to.equal(true)
      expect(
        (await verifier({ importedKeys: true }).verify('legacy-token-0123456780')).ok,
      ).to.equal(false)
    })

    it('refuses bad input and a second import of the same key', async () => {
      const { keys } = setup()
      const cases: Array<[object, RegExp]> = [
        [{}, /exactly one of key/],
        [{ key: 'abcdefgh', sha256: 'a'.repeat(64) }, /exactly one of key/],
        [{ key: 'short' }, /key\.key/],
        [{ key: 'has space in it' }, /key\.key/],
        [{ sha256: 'xyz' }, /key\.sha256/],
      ]
      for (const [extra, pattern] of cases) {
        const e = await rejection(keys.import({ name: 'k', ownerId: 'u', ...extra }))
        expect(isConfigError(e)).to.equal(true)
        expect(e.message).to.match(pattern)
      }
      await keys.import({ key: 'abcdefgh-1', name: 'k', ownerId: 'u' })
      const again = await rejection(keys.import({ key: 'abcdefgh-1', name: 'k', ownerId: 'u' }))
      expect(again.message).to.match(/already imported/)
    })
  })

  it('audits and publishes import, expire and rotate with their actions', async () => {
    const { keys, audit, sink, published } = setup()
    const imported = await keys.import({ key: 'legacy-key-1', name: 'k', ownerId: 'u' })
    await keys.expire(imported.id)
    await keys.rotate(imported.id)
    await audit.flush()
    expect(sink.events.map((e) => e.action)).to.deep.equal([
      'key.import',
      'key.expire',
      'key.rotate',
    ])
    expect(published).to.deep.equal([
      `key.created ${imported.id}`,
      `key.updated ${imported.id}`,
      `key.rotated ${imported.id}`,
    ])
  })

  it('rotates an imported key into the Portcullis format under the same id', async () => {
    const { keys, verifier } = setup()
    const imported = await keys.import({ key: 'legacy-key-2', name: 'k', ownerId: 'u' })
    const rotated = await keys.rotate(imported.id, { grace: '1h' })
    expect(rotated?.key.startsWith('ptcl_')).to.equal(true)
    const v = verifier({ importedKeys: true })
    expect((await v.verify(rotated?.key as string)).ok).to.equal(true)
    expect((await v.verify('legacy-key-2')).ok).to.equal(true)
  })
})
