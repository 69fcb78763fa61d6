import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect } from 'chai'
import express from 'express'
import request from 'supertest'
import {
  createApiKeyManager,
  createGate,
  createMemoryBroker,
  type Gate,
  type KeyStore,
} from '@portcullis/core'
import { createFakeClock } from '@portcullis/core/testing'
import { authMiddleware, problemHandler, requirePolicy } from '@portcullis/express'
import { createSqliteKeyStore } from '@portcullis/sqlite'

const PEPPER = 'rotation-pepper-for-tests-0123456789abcdef'
const MINUTE = 60_000

describe('API-key lifecycle over HTTP (Express, SQLite key store)', () => {
  let dir: string
  let store: KeyStore & { close(): Promise<void> }
  let gate: Gate

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'portcullis-rotation-'))
    store = createSqliteKeyStore({ database: join(dir, 'keys.db') })
  })

  afterEach(async () => {
    await gate?.close()
    await store.close()
    await rm(dir, { recursive: true, force: true })
  })

  function app(clock: () => number, pepper: string | { id: string; secret: string }[] = PEPPER) {
    const broker = createMemoryBroker()
    gate = createGate({ apiKeys: { store, pepper, broker }, broker, audit: false, now: clock })
    const a = express()
    a.use(authMiddleware({ gate }))
    a.get('/docs/:id', requirePolicy('documents:read'), (req, res) => {
      res.json({ id: req.params.id, owner: req.auth?.principal?.id })
    })
    a.use(problemHandler({ gate }))
    return { app: a, keys: createApiKeyManager({ store, pepper, broker, now: clock }) }
  }

  it('keeps the old key working through the grace period, then answers 401; the new key works', async () => {
    const clock = createFakeClock()
    const { app: a, keys } = app(clock)
    const old = await keys.create({ name: 'ci', ownerId: 'svc-ci', scopes: ['documents:read'] })
    expect((await request(a).get('/docs/1').set('X-API-Key', old.key)).status).to.equal(200)

    const rotated = await keys.rotate(old.record.id, { grace: '10m' })
    const fresh = rotated?.key as string
    expect(fresh).to.not.equal(old.key)
    const during = await request(a).get('/docs/1').set('X-API-Key', old.key)
    expect(during.status).to.equal(200)
    expect(during.body).to.deep.equal({ id: '1', owner: 'svc-ci' })
    expect(
      (await request(a).get('/docs/2').set('Authorization', `Bearer ${fresh}`)).status,
    ).to.equal(200)

    clock.advance(10 * MINUTE)
    const after = await request(a).get('/docs/1').set('X-API-Key', old.key)
    expect(after.status).to.equal(401)
    expect(after.headers['content-type']).to.match(/^application\/problem\+json/)
    expect(after.body.code).to.equal('ERR_APIKEY_INVALID')
    expect((await request(a).get('/docs/1').set('X-API-Key', fresh)).status).to.equal(200)
  })

  it('answers unknown, revoked and expired keys with the same status, headers and body', async () => {
    const clock = createFakeClock()
    const { app: a, keys } = app(clock)
    const revoked = await keys.create({ name: 'r', ownerId: 'u', scopes: ['documents:read'] })
    await keys.revoke(revoked.record.id)
    const expired = await keys.create({ name: 'e', ownerId: 'u', expiresIn: '1m' })
    const unknown = (await keys.create({ name: 'x', ownerId: 'u' })).key
    await keys.delete((await keys.list()).items.find((r) => r.name === 'x')!.id)
    clock.advance(MINUTE)
    const answers = []
    for (const key of [unknown, revoked.key, expired.key]) {
      const res = await request(a).get('/docs/1').set('X-API-Key', key)
      const {
        instance: _instance,
        requestId: _requestId,
        ...body
      } = res.body as Record<string, unknown>
      answers.push({ status: res.status, challenge: res.headers['www-authenticate'], body })
    }
    expect(answers[0]?.status).to.equal(401)
    expect(answers[1]).to.deep.equal(answers[0])
    expect(answers[2]).to.deep.equal(answers[0])
  })

  it('re-hashes a key under the new pepper after rotation of the pepper, once', async () => {
    const clock = createFakeClock()
    const oldPepper = { id: 'p2025', secret: 'old-pepper-0123456789abcdef0123456789' }
    const newPepper = { id: 'p2026', secret: 'new-pepper-0123456789abcdef0123456789' }
    const before = app(clock, [oldPepper])
    const { key, record } = await before.keys.create({
      name: 'k',
      ownerId: 'u',
      scopes: ['documents:read'],
    })
    await gate.close()
    const { app: a } = app(clock, [newPepper, oldPepper])
    expect((await request(a).get('/docs/1').set('X-API-Key', key)).status).to.equal(200)
    await gate.close()
    const stored = await store.get(record.id)
    expect(stored?.hashes.map((h) => h.pepperId)).to.deep.equal(['p2026'])
    // The old pepper can now be retired.
    const { app: b } = app(clock, [newPepper])
    expect((await request(b).get('/docs/1').set('X-API-Key', key)).status).to.equal(200)
  })
})
