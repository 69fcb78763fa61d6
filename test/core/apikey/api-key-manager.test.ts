import { expect } from 'chai'
import {
  createApiKeyManager,
  createAuditTrail,
  createMemoryBroker,
  createMemoryKeyStore,
} from '@portcullis/core'
import { createMemoryAuditSink } from '@portcullis/core/testing'

const PEPPER = 'p'.repeat(32)

describe('createApiKeyManager', () => {
  function setup() {
    const store = createMemoryKeyStore()
    const broker = createMemoryBroker()
    const sink = createMemoryAuditSink()
    const audit = createAuditTrail({ sinks: [sink] })
    const published: string[] = []
    for (const t of [
      'key.created',
      'key.updated',
      'key.revoked',
      'key.rotated',
      'key.deleted',
    ] as const) {
      broker.subscribe(t, (m) => published.push(`${t} ${m.keyId}`))
    }
    return {
      keys: createApiKeyManager({ store, pepper: PEPPER, broker, audit }),
      store,
      audit,
      sink,
      published,
    }
  }

  it('returns the plaintext once and stores only its hash', async () => {
    const { keys, store } = setup()
    const { key, record } = await keys.create({
      name: 'ci',
      ownerId: 'svc',
      scopes: ['a:b'],
      metadata: { team: 'x' },
    })
    const stored = await store.get(record.id)
    expect(JSON.stringify(stored)).to.not.include(key)
    expect(stored?.hashes).to.have.length(1)
    expect(stored).to.include({ name: 'ci', ownerId: 'svc', status: 'active', expiresAt: null })
  })

  it('audits and publishes every management action', async () => {
    const { keys, audit, sink, published } = setup()
    const { record } = await keys.create({ name: 'k', ownerId: 'svc' }, { actorId: 'admin' })
    await keys.update(record.id, { scopes: ['x:y'] })
    await keys.rotate(record.id, { grace: '1m' })
    await keys.revoke(record.id)
    await keys.delete(record.id)
    await audit.flush()
    const expected = ['key.created', 'key.updated', 'key.rotated', 'key.revoked', 'key.deleted']
    expect(sink.events.map((e) => e.type)).to.deep.equal(expected)
    expect(sink.events[0]?.actor.id).to.equal('admin')
    expect(published).to.deep.equal(expected.map((t) => `${t} ${record.id}`))
  })

  it('updates only the given fields', async () => {
    const { keys } = setup()
    const { record } = await keys.create({
      name: 'k',
      ownerId: 'svc',
      scopes: ['a:b'],
      roles: ['r'],
    })
    const updated = await keys.update(record.id, { name: 'renamed' })
    expect(updated).to.include({ name: 'renamed', ownerId: 'svc' })
    expect(updated?.scopes).to.deep.equal(['a:b'])
    expect(updated?.roles).to.deep.equal(['r'])
  })

  it('refuses invalid input with the field named', async () => {
    const { keys } = setup()
    await expectRejects(
      keys.create({ name: 'k', ownerId: 'has space' }),
      /key.ownerId: invalid user id/,
    )
    await expectRejects(keys.create({ name: 'k', ownerId: 'u', expiresIn: '-1d' }), /key.expiresIn/)
    await expectRejects(
      keys.create({ name: 'k', ownerId: 'u', scopes: ['a b'] }),
      /key.scopes\[0\]/,
    )
    await expectRejects(
      keys.create({ name: 'k', ownerId: 'u', metadata: { at: new Date() } }),
      /key.metadata: must be plain JSON/,
    )
    await expectRejects(keys.create({ ownerId: 'u' } as never), /key.name: required/)
  })
})

async function expectRejects(p: Promise<unknown>, pattern: RegExp): Promise<void> {
  try {
    await p
  } catch (e) {
    expect((e as Error).message).to.match(pattern)
    return
  }
  expect.fail(`expected a rejection matching ${pattern}`)
}
