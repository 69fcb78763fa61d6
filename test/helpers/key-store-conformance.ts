/**
 * The behaviours every `KeyStore` must show, as one mocha suite that each store's test file runs:
 * `describeKeyStoreConformance('createMemoryKeyStore', async () => ({ store, cleanup }))`.
 */
import { expect } from 'chai'
import { createHash } from 'node:crypto'
import {
  generateApiKey,
  hashApiKey,
  type ApiKeyHash,
  type ApiKeyRecord,
  type ApiKeySecretHash,
  type KeyStore,
  type Pepper,
  type UserID,
} from '@portcullis/core'

/** A fresh, empty store and how to dispose of it. */
export interface KeyStoreFixture {
  readonly store: KeyStore
  cleanup(): Promise<void>
}

/** The pepper the conformance records are hashed under. */
export const CONFORMANCE_PEPPER: Pepper = Object.freeze({
  id: 'p1',
  secret: 'conformance-pepper-0123456789abcdef',
})

/** 2026-01-01T00:00:00Z: records carry fixed instants, never the real clock. */
const T0 = Date.UTC(2026, 0, 1)
const DAY_MS = 86_400_000

/** Deeply mutable version of a record, for the tests that mutate the inserted object. */
export type MutableKeyRecord = {
  -readonly [K in keyof ApiKeyRecord]: ApiKeyRecord[K] extends readonly (infer TItem)[]
    ? TItem[]
    : ApiKeyRecord[K] extends Readonly<Record<string, unknown>>
      ? Record<string, unknown>
      : ApiKeyRecord[K]
}

/** The fields added after the first stores; a store returns their defaults when they are absent. */
export const OPTIONAL_DEFAULTS = {
  tags: [],
  purpose: null,
  environment: 'live',
  policy: {},
  rotatedAt: null,
  lastUsedAt: null,
  usageCount: 0,
} as const

/**
 * A valid key record with a fresh id and a real hash (built with core's `generateApiKey` and
 * `hashApiKey`), with `overrides` applied.
 */
export function buildKeyRecord(overrides: Partial<MutableKeyRecord> = {}): MutableKeyRecord {
  const generated = generateApiKey({ prefix: 'ptcl' })
  return {
    id: generated.id,
    prefix: generated.prefix,
    name: 'ci deploy key',
    ownerId: 'user-1' as UserID,
    scopes: ['documents:read', 'documents:write'],
    roles: ['editor'],
    status: 'active',
    hashes: [
      {
        hash: hashApiKey(generated.key, CONFORMANCE_PEPPER),
        pepperId: CONFORMANCE_PEPPER.id,
        notAfter: null,
      },
    ],
    createdAt: T0,
    expiresAt: null,
    revokedAt: null,
    metadata: { plan: 'pro' },
    ...OPTIONAL_DEFAULTS,
    tags: [],
    policy: {},
    ...overrides,
  }
}

const byId = (a: { readonly id: string }, b: { readonly id: string }): number =>
  a.id < b.id ? -1 : a.id > b.id ? 1 : 0

/** What `promise` rejects with; fails the test when it resolves. */
export async function rejection(promise: Promise<unknown>): Promise<Error & { code?: string }> {
  try {
    await promise
  } catch (error) {
    return error as Error & { code?: string }
  }
  throw new Error('expected the promise to reject, but it resolved')
}

/** What `fn` throws; fails the test when it returns. */
export function thrown(fn: () => unknown): Error & { code?: string } {
  try {
    fn()
  } catch (error) {
    return error as Error & { code?: string }
  }
  throw new Error('expected the function to throw, but it returned')
}

/**
 * Registers the key-store conformance suite for one implementation. `makeStore` is called before
 * each test and must return an empty store; `cleanup` runs after it.
 */
export function describeKeyStoreConformance(
  name: string,
  makeStore: () => Promise<KeyStoreFixture>,
): void {
  describe(`KeyStore conformance: ${name}`, function () {
    let fixture: KeyStoreFixture
    let store: KeyStore

    beforeEach(async function () {
      fixture = await makeStore()
      store = fixture.store
    })

    afterEach(async function () {
      await fixture.cleanup()
    })

    async function insertAll(records: readonly ApiKeyRecord[]): Promise<void> {
      for (const record of records) await store.insert(record)
    }

    describe('get and insert', function () {
      it('resolves undefined for an unknown id', async function () {
        expect(await store.get(buildKeyRecord().id)).to.equal(undefined)
      })

      it('returns an inserted record deep-equal to what was inserted', async function () {
        const record = buildKeyRecord()
        await store.insert(record)
        expect(await store.get(record.id)).to.deep.equal(record)
      })

      it('returns frozen records', async function () {
        const record = buildKeyRecord()
        await store.insert(record)
        const got = (await store.get(record.id)) as ApiKeyRecord
        expect(Object.isFrozen(got)).to.equal(true)
        expect(Object.isFrozen(got.scopes)).to.equal(true)
        expect(Object.isFrozen(got.roles)).to.equal(true)
        expect(Object.isFrozen(got.hashes)).to.equal(true)
        expect(got.hashes.every((h) => Object.isFrozen(h))).to.equal(true)
        expect(Object.isFrozen(got.metadata)).to.equal(true)
      })

      it('is not affected by later changes to the inserted object', async function () {
        const record = buildKeyRecord()
        const snapshot = structuredClone(record)
        await store.insert(record)
        record.scopes.push('admin:*')
        record.roles.length = 0
        record.hashes.pop()
        record.metadata['plan'] = 'free'
        record.name = 'renamed behind the store’s back'
        expect(await store.get(record.id)).to.deep.equal(snapshot)
      })

      it('rejects a second insert with the same id and keeps the first record', async function () {
        const first = buildKeyRecord()
        await store.insert(first)
        const error = await rejection(
          store.insert({ ...buildKeyRecord({ id: first.id }), name: 'x' }),
        )
        expect(error).to.be.instanceOf(Error)
        expect(await store.get(first.id)).to.deep.equal(first)
      })

      it('round-trips a unicode name', async function () {
        const record = buildKeyRecord({ name: 'Clé d’API — 鍵 🔑 مفتاح e\u0301' })
        await store.insert(record)
        expect((await store.get(record.id))?.name).to.equal(record.name)
      })

      it('round-trips metadata with nested objects, arrays and unicode', async function () {
        const metadata = {
          plan: 'enterprise',
          limits: { rpm: 600, burst: 0, ratio: 0.25, negative: -1, big: 2 ** 53 - 1 },
          tags: ['ci', 'deploy', { nested: [1, [2, [3]]] }],
          flags: { enabled: true, disabled: false, none: null },
          empty: { object: {}, array: [] },
          text: 'naïve café — 日本語 — 🔑🚀 — עברית — \u0000\t\n"\\',
          'key with spaces and émoji 🔑': 'value',
        }
        const record = buildKeyRecord({ metadata })
        await store.insert(record)
        expect((await store.get(record.id))?.metadata).to.deep.equal(metadata)
      })

      it('keeps a __proto__ key in metadata as data without polluting Object.prototype', async function () {
        const metadata = JSON.parse(
          '{"plan":"pro","__proto__":{"polluted":"yes","isAdmin":true}}',
        ) as Record<string, unknown>
        const record = buildKeyRecord({ metadata })
        await store.insert(record)
        const got = (await store.get(record.id)) as ApiKeyRecord
        expect(Object.hasOwn(got.metadata, '__proto__')).to.equal(true)
        expect(got.metadata['__proto__']).to.deep.equal({ polluted: 'yes', isAdmin: true })
        expect(got.metadata['plan']).to.equal('pro')
        expect((got.metadata as { polluted?: unknown }).polluted).to.equal(undefined)
        expect(({} as { polluted?: unknown }).polluted).to.equal(undefined)
        expect(Object.hasOwn(Object.prototype, 'polluted')).to.equal(false)
        const listed = await store.list()
        expect(Object.hasOwn(listed.items[0]?.metadata ?? {}, '__proto__')).to.equal(true)
        expect(({} as { isAdmin?: unknown }).isAdmin).to.equal(undefined)
      })

      it('round-trips several hashes, with notAfter null and a number, in order', async function () {
        const other = generateApiKey({ prefix: 'ptcl' })
        const hashes: ApiKeySecretHash[] = [
          { hash: hashApiKey(other.key, CONFORMANCE_PEPPER), pepperId: 'p1', notAfter: null },
          {
            hash: hashApiKey(other.key, CONFORMANCE_PEPPER),
            pepperId: 'p0',
            notAfter: T0 + DAY_MS,
          },
        ]
        const record = buildKeyRecord({ hashes })
        await store.insert(record)
        const got = (await store.get(record.id)) as ApiKeyRecord
        expect(got.hashes).to.deep.equal(hashes)
        expect(got.hashes[0]?.notAfter).to.equal(null)
        expect(got.hashes[1]?.notAfter).to.equal(T0 + DAY_MS)
      })

      it('tells expiresAt null from a number, and revokedAt likewise', async function () {
        const never = buildKeyRecord({ expiresAt: null })
        const soon = buildKeyRecord({
          expiresAt: T0 + 30 * DAY_MS,
          status: 'revoked',
          revokedAt: T0 + 1,
        })
        await insertAll([never, soon])
        const a = (await store.get(never.id)) as ApiKeyRecord
        const b = (await store.get(soon.id)) as ApiKeyRecord
        expect(a.expiresAt).to.equal(null)
        expect(a.revokedAt).to.equal(null)
        expect(b.expiresAt).to.equal(T0 + 30 * DAY_MS)
        expect(b.revokedAt).to.equal(T0 + 1)
        expect(b.status).to.equal('revoked')
      })
    })

    describe('update', function () {
      it('changes only the given fields and returns the new record', async function () {
        const record = buildKeyRecord()
        await store.insert(record)
        const updated = await store.update(record.id, { name: 'renamed', scopes: ['a:b'] })
        const expected = { ...record, name: 'renamed', scopes: ['a:b'] }
        expect(updated).to.deep.equal(expected)
        expect(await store.get(record.id)).to.deep.equal(expected)
      })

      it('ignores fields whose value is undefined', async function () {
        const record = buildKeyRecord({ expiresAt: T0 + DAY_MS })
        await store.insert(record)
        const updated = await store.update(record.id, {
          name: undefined,
          expiresAt: undefined,
          metadata: undefined,
          roles: ['viewer'],
        })
        expect(updated).to.deep.equal({ ...record, roles: ['viewer'] })
      })

      it('sets nullable fields to null and back to a number', async function () {
        const record = buildKeyRecord({ expiresAt: T0 + DAY_MS })
        await store.insert(record)
        expect((await store.update(record.id, { expiresAt: null }))?.expiresAt).to.equal(null)
        expect((await store.get(record.id))?.expiresAt).to.equal(null)
        const revoked = await store.update(record.id, { status: 'revoked', revokedAt: T0 + 5 })
        expect(revoked).to.include({ status: 'revoked', revokedAt: T0 + 5, expiresAt: null })
        expect((await store.update(record.id, { expiresAt: T0 + 7 }))?.expiresAt).to.equal(T0 + 7)
      })

      it('replaces metadata as a whole rather than merging it', async function () {
        const record = buildKeyRecord({ metadata: { plan: 'pro', region: 'eu' } })
        await store.insert(record)
        const updated = await store.update(record.id, { metadata: { tier: 2 } })
        expect(updated?.metadata).to.deep.equal({ tier: 2 })
      })

      it('resolves undefined for an unknown id and creates nothing', async function () {
        const ghost = buildKeyRecord()
        expect(await store.update(ghost.id, { name: 'x' })).to.equal(undefined)
        expect(await store.get(ghost.id)).to.equal(undefined)
        expect((await store.list()).items).to.deep.equal([])
      })

      it('loses no field when patches to different fields run concurrently', async function () {
        const record = buildKeyRecord()
        await store.insert(record)
        await Promise.all([
          store.update(record.id, { name: 'concurrent' }),
          store.update(record.id, { scopes: ['x:read'] }),
          store.update(record.id, { roles: ['auditor'] }),
          store.update(record.id, { expiresAt: T0 + DAY_MS }),
          store.update(record.id, { metadata: { touched: true } }),
        ])
        expect(await store.get(record.id)).to.deep.equal({
          ...record,
          name: 'concurrent',
          scopes: ['x:read'],
          roles: ['auditor'],
          expiresAt: T0 + DAY_MS,
          metadata: { touched: true },
        })
      })

      it('returns a frozen record', async function () {
        const record = buildKeyRecord()
        await store.insert(record)
        const updated = (await store.update(record.id, { name: 'n' })) as ApiKeyRecord
        expect(Object.isFrozen(updated)).to.equal(true)
        expect(Object.isFrozen(updated.scopes)).to.equal(true)
      })
    })

    describe('delete', function () {
      it('resolves true for an existing key, then false, and removes only that key', async function () {
        const doomed = buildKeyRecord()
        const kept = buildKeyRecord()
        await insertAll([doomed, kept])
        expect(await store.delete(doomed.id)).to.equal(true)
        expect(await store.delete(doomed.id)).to.equal(false)
        expect(await store.get(doomed.id)).to.equal(undefined)
        expect(await store.get(kept.id)).to.deep.equal(kept)
      })

      it('resolves false for an id never stored', async function () {
        expect(await store.delete(buildKeyRecord().id)).to.equal(false)
      })

      it('frees the id for a new insert', async function () {
        const record = buildKeyRecord()
        await store.insert(record)
        await store.delete(record.id)
        const again = buildKeyRecord({ id: record.id, name: 'second life' })
        await store.insert(again)
        expect(await store.get(record.id)).to.deep.equal(again)
      })
    })

    describe('list', function () {
      it('returns an empty last page for an empty store', async function () {
        expect(await store.list()).to.deep.equal({ items: [], nextCursor: null })
      })

      it('orders records by id whatever the insertion order', async function () {
        const records = Array.from({ length: 8 }, () => buildKeyRecord())
        await insertAll(records)
        const page = await store.list()
        expect(page.items.map((r) => r.id)).to.deep.equal([...records].sort(byId).map((r) => r.id))
        expect(page.items).to.deep.equal([...records].sort(byId))
        expect(page.nextCursor).to.equal(null)
      })

      it('pages through three pages with the cursor, without duplicates or gaps', async function () {
        const records = Array.from({ length: 7 }, () => buildKeyRecord())
        await insertAll(records)
        const first = await store.list({ limit: 3 })
        expect(first.items).to.have.length(3)
        expect(first.nextCursor).to.be.a('string')
        const second = await store.list({ limit: 3, cursor: first.nextCursor as string })
        expect(second.items).to.have.length(3)
        expect(second.nextCursor).to.be.a('string')
        const third = await store.list({ limit: 3, cursor: second.nextCursor as string })
        expect(third.items).to.have.length(1)
        expect(third.nextCursor).to.equal(null)
        const seen = [...first.items, ...second.items, ...third.items].map((r) => r.id)
        expect(seen).to.deep.equal([...records].sort(byId).map((r) => r.id))
      })

      it('ends with nextCursor null when the last page is exactly full', async function () {
        await insertAll(Array.from({ length: 4 }, () => buildKeyRecord()))
        const first = await store.list({ limit: 2 })
        const second = await store.list({ limit: 2, cursor: first.nextCursor as string })
        expect(second.items).to.have.length(2)
        expect(second.nextCursor).to.equal(null)
      })

      it('returns 100 records per page by default', async function () {
        await insertAll(Array.from({ length: 101 }, () => buildKeyRecord()))
        const first = await store.list()
        expect(first.items).to.have.length(100)
        const rest = await store.list({ cursor: first.nextCursor as string })
        expect(rest.items).to.have.length(1)
        expect(rest.nextCursor).to.equal(null)
      })

      it('filters by ownerId', async function () {
        const alice = Array.from({ length: 3 }, () =>
          buildKeyRecord({ ownerId: 'alice' as UserID }),
        )
        const bob = Array.from({ length: 2 }, () => buildKeyRecord({ ownerId: 'bob' as UserID }))
        await insertAll([...bob, ...alice])
        const page = await store.list({ ownerId: 'alice' as UserID })
        expect(page.items).to.deep.equal([...alice].sort(byId))
        expect((await store.list({ ownerId: 'carol' as UserID })).items).to.deep.equal([])
      })

      it('filters by status', async function () {
        const active = Array.from({ length: 2 }, () => buildKeyRecord())
        const revoked = Array.from({ length: 3 }, () =>
          buildKeyRecord({ status: 'revoked', revokedAt: T0 + 1 }),
        )
        await insertAll([...active, ...revoked])
        expect((await store.list({ status: 'revoked' })).items).to.deep.equal(
          [...revoked].sort(byId),
        )
        expect((await store.list({ status: 'active' })).items).to.deep.equal([...active].sort(byId))
      })

      it('combines ownerId, status and the cursor', async function () {
        const mine = Array.from({ length: 5 }, () =>
          buildKeyRecord({ ownerId: 'alice' as UserID, status: 'revoked', revokedAt: T0 }),
        )
        const noise = [
          buildKeyRecord({ ownerId: 'alice' as UserID }),
          buildKeyRecord({ ownerId: 'bob' as UserID, status: 'revoked', revokedAt: T0 }),
        ]
        await insertAll([...noise, ...mine])
        const query = { ownerId: 'alice' as UserID, status: 'revoked' as const, limit: 2 }
        const seen: string[] = []
        let cursor: string | undefined
        for (let pages = 0; pages < 10; pages++) {
          const page = await store.list(cursor === undefined ? query : { ...query, cursor })
          seen.push(...page.items.map((r) => r.id))
          if (page.nextCursor === null) break
          cursor = page.nextCursor
        }
        expect(seen).to.deep.equal([...mine].sort(byId).map((r) => r.id))
      })

      it('reflects updates and deletes', async function () {
        const sorted = Array.from({ length: 3 }, () => buildKeyRecord()).sort(byId)
        const [a, b, c] = sorted as [MutableKeyRecord, MutableKeyRecord, MutableKeyRecord]
        await insertAll(sorted)
        await store.delete(b.id)
        await store.update(c.id, { status: 'revoked', revokedAt: T0 + 9 })
        const all = await store.list()
        expect(all.items.map((r) => r.id)).to.deep.equal([a.id, c.id])
        expect((await store.list({ status: 'active' })).items.map((r) => r.id)).to.deep.equal([
          a.id,
        ])
      })

      it('filters by tag, alone and with ownerId and status, paging with the cursor', async function () {
        const tagged = Array.from({ length: 5 }, (_, i) =>
          buildKeyRecord({ tags: i % 2 === 0 ? ['ci', 'deploy'] : ['deploy', 'ci'] }),
        )
        const noise = [
          buildKeyRecord({ tags: ['cix'] }),
          buildKeyRecord({ tags: [] }),
          buildKeyRecord({ tags: ['CI'] }),
          buildKeyRecord({ tags: ['c'] }),
        ]
        await insertAll([...noise, ...tagged])
        const seen: string[] = []
        let cursor: string | undefined
        for (let pages = 0; pages < 10; pages++) {
          const page = await store.list({
            tag: 'ci',
            limit: 2,
            ...(cursor === undefined ? {} : { cursor }),
          })
          expect(page.items.length).to.be.at.most(2)
          seen.push(...page.items.map((r) => r.id))
          if (page.nextCursor === null) break
          cursor = page.nextCursor
        }
        expect(seen).to.deep.equal([...tagged].sort(byId).map((r) => r.id))
        expect((await store.list({ tag: 'nope' })).items).to.deep.equal([])
        const mine = buildKeyRecord({
          ownerId: 'alice' as UserID,
          status: 'revoked',
          revokedAt: T0,
          tags: ['ci'],
        })
        await store.insert(mine)
        const combined = await store.list({
          tag: 'ci',
          ownerId: 'alice' as UserID,
          status: 'revoked',
        })
        expect(combined.items.map((r) => r.id)).to.deep.equal([mine.id])
        expect(
          (await store.list({ tag: 'ci', ownerId: 'alice' as UserID, status: 'active' })).items,
        ).to.deep.equal([])
      })

      it('follows tag changes made by update', async function () {
        const record = buildKeyRecord({ tags: ['old'] })
        await store.insert(record)
        await store.update(record.id, { tags: ['new'] })
        expect((await store.list({ tag: 'old' })).items).to.deep.equal([])
        expect((await store.list({ tag: 'new' })).items.map((r) => r.id)).to.deep.equal([record.id])
      })
    })

    describe('lifecycle fields', function () {
      it('round-trips every field set to a non-default value', async function () {
        const record = buildKeyRecord({
          tags: ['ci', 'déploiement 🔑'],
          purpose: 'nightly deploy from CI',
          environment: 'test',
          policy: {
            allowedCidrs: ['10.0.0.0/8', '2001:db8::/32', '192.0.2.7'],
            allowedOrigins: ['https://app.example', '*.example.org'],
            rateLimits: [
              { limit: 10, windowMs: 1000 },
              { limit: 1000, windowMs: 3_600_000 },
            ],
            quota: { limit: 50_000, period: 'month' },
          },
          rotatedAt: T0 + 3,
          lastUsedAt: T0 + 4,
          usageCount: 17,
          hashes: [
            {
              hash: hashApiKey(generateApiKey({ prefix: 'ptcl' }).key, CONFORMANCE_PEPPER),
              pepperId: 'p1',
              notAfter: null,
              algorithm: 'hmac-sha256',
            },
            {
              hash: createHash('sha256').update('legacy-key').digest('hex') as ApiKeyHash,
              pepperId: 'p1',
              notAfter: T0 + DAY_MS,
              algorithm: 'sha256',
            },
          ],
        })
        await store.insert(record)
        const got = (await store.get(record.id)) as ApiKeyRecord
        expect(got).to.deep.equal(record)
        expect(Object.isFrozen(got.policy)).to.equal(true)
        expect(Object.isFrozen(got.tags)).to.equal(true)
        expect((await store.list()).items).to.deep.equal([record])
      })

      it('gives a record inserted without the optional fields their documented defaults', async function () {
        const full = buildKeyRecord()
        const bare: Record<string, unknown> = { ...full }
        for (const key of Object.keys(OPTIONAL_DEFAULTS)) delete bare[key]
        await store.insert(bare as unknown as ApiKeyRecord)
        expect(await store.get(full.id)).to.deep.equal({ ...bare, ...OPTIONAL_DEFAULTS })
      })

      it('updates tags, purpose, policy and rotatedAt, and leaves environment and usage alone', async function () {
        const record = buildKeyRecord({ environment: 'test', usageCount: 3, lastUsedAt: T0 })
        await store.insert(record)
        const patch = {
          tags: ['a'],
          purpose: 'why',
          policy: {
            allowedOrigins: ['https://x.example'],
            quota: { limit: 5, period: 'day' as const },
          },
          rotatedAt: T0 + 9,
        }
        const expected = { ...record, ...patch }
        expect(await store.update(record.id, patch)).to.deep.equal(expected)
        expect(await store.get(record.id)).to.deep.equal(expected)
        expect((await store.update(record.id, { purpose: null }))?.purpose).to.equal(null)
      })
    })

    describe('findByHash', function () {
      it('finds a key by its current hash and by a hash in its grace period', async function () {
        const current = hashApiKey(generateApiKey({ prefix: 'ptcl' }).key, CONFORMANCE_PEPPER)
        const grace = hashApiKey(generateApiKey({ prefix: 'ptcl' }).key, CONFORMANCE_PEPPER)
        const record = buildKeyRecord({
          hashes: [
            { hash: current, pepperId: 'p1', notAfter: null },
            { hash: grace, pepperId: 'p1', notAfter: T0 + DAY_MS },
          ],
        })
        const other = buildKeyRecord()
        await insertAll([other, record])
        expect(store.findByHash).to.be.a('function')
        expect(await store.findByHash?.(current)).to.deep.equal(record)
        expect(await store.findByHash?.(grace)).to.deep.equal(record)
        expect((await store.findByHash?.(other.hashes[0]?.hash as ApiKeyHash))?.id).to.equal(
          other.id,
        )
      })

      it('resolves undefined for an unknown hash', async function () {
        await store.insert(buildKeyRecord())
        const unknown = hashApiKey(generateApiKey({ prefix: 'ptcl' }).key, CONFORMANCE_PEPPER)
        expect(await store.findByHash?.(unknown)).to.equal(undefined)
      })

      it('follows hash changes made by update, and forgets a deleted key', async function () {
        const record = buildKeyRecord()
        const before = record.hashes[0]?.hash as ApiKeyHash
        await store.insert(record)
        const after = hashApiKey(generateApiKey({ prefix: 'ptcl' }).key, CONFORMANCE_PEPPER)
        await store.update(record.id, { hashes: [{ hash: after, pepperId: 'p1', notAfter: null }] })
        expect(await store.findByHash?.(before)).to.equal(undefined)
        expect((await store.findByHash?.(after))?.id).to.equal(record.id)
        await store.update(record.id, { name: 'renamed' })
        expect((await store.findByHash?.(after))?.name).to.equal('renamed')
        await store.delete(record.id)
        expect(await store.findByHash?.(after)).to.equal(undefined)
      })
    })

    describe('recordUsage', function () {
      it('adds counts and keeps the latest lastUsedAt across one batch and the next', async function () {
        const a = buildKeyRecord()
        const b = buildKeyRecord({ usageCount: 10, lastUsedAt: T0 + 500 })
        await insertAll([a, b])
        expect(store.recordUsage).to.be.a('function')
        await store.recordUsage?.([
          { id: a.id, lastUsedAt: T0 + 100, count: 3 },
          { id: b.id, lastUsedAt: T0 + 200, count: 2 },
          { id: a.id, lastUsedAt: T0 + 50, count: 1 },
        ])
        expect(await store.get(a.id)).to.include({ usageCount: 4, lastUsedAt: T0 + 100 })
        // An older instant never moves lastUsedAt back (batches from several instances interleave).
        expect(await store.get(b.id)).to.include({ usageCount: 12, lastUsedAt: T0 + 500 })
        await store.recordUsage?.([{ id: b.id, lastUsedAt: T0 + 900, count: 1 }])
        expect(await store.get(b.id)).to.include({ usageCount: 13, lastUsedAt: T0 + 900 })
      })

      it('ignores unknown ids and accepts an empty batch', async function () {
        const a = buildKeyRecord()
        await store.insert(a)
        const ghost = buildKeyRecord()
        await store.recordUsage?.([])
        await store.recordUsage?.([
          { id: ghost.id, lastUsedAt: T0, count: 5 },
          { id: a.id, lastUsedAt: T0 + 1, count: 1 },
        ])
        expect(await store.get(ghost.id)).to.equal(undefined)
        expect(await store.get(a.id)).to.include({ usageCount: 1, lastUsedAt: T0 + 1 })
      })

      it('keeps usage through later updates and changes no other field', async function () {
        const a = buildKeyRecord()
        await store.insert(a)
        await store.recordUsage?.([{ id: a.id, lastUsedAt: T0 + 7, count: 2 }])
        await store.update(a.id, { name: 'after', tags: ['t'] })
        expect(await store.get(a.id)).to.deep.equal({
          ...a,
          name: 'after',
          tags: ['t'],
          usageCount: 2,
          lastUsedAt: T0 + 7,
        })
      })
    })
  })
}
