import { expect } from 'chai'
import express from 'express'
import Koa from 'koa'
import Router from '@koa/router'
import Fastify from 'fastify'
import request from 'supertest'
import {
  createApiKeyManager,
  createGate,
  createMemoryKeyStore,
  createQuotaStage,
} from '@portcullis/core'
import * as ex from '@portcullis/express'
import * as ko from '@portcullis/koa'
import { portcullisPlugin } from '@portcullis/fastify'

// Issue 18: a request the route guard refuses (403) is not charged by default, on every adapter
// (the conformance fixture has no quota). Core's own gate.evaluate and split-path cases live in
// quota-stage.test.ts.
const PEPPER = 'p'.repeat(32)

/** A gate with a daily quota of 5 and a key holding `docs:read` only. */
async function setup() {
  const store = createMemoryKeyStore()
  const quotas = createQuotaStage({ quotas: [{ name: 'd', limit: 5, period: 'day' }] })
  const gate = createGate({ apiKeys: { store, pepper: PEPPER }, stages: [quotas], audit: false })
  const { key, record } = await createApiKeyManager({ store, pepper: PEPPER }).create({
    name: 'k',
    ownerId: 'u',
    scopes: ['docs:read'],
  })
  const used = async () => (await quotas.usage(record.id))[0]?.used
  return { gate, key, used }
}
describe('quota: a route guard denial gives the unit back on every adapter (chargeDenied: false)', () => {
  it('Express: 403 from requirePolicy, then a 200, count 1', async () => {
    const { gate, key, used } = await setup()
    const app = express()
    app.use(ex.authMiddleware({ gate }))
    app.get('/w', ex.requirePolicy('docs:write'), (_q, r) => {
      r.send('x')
    })
    app.get('/r', ex.requirePolicy('docs:read'), (_q, r) => {
      r.send('x')
    })
    expect((await request(app).get('/w').set('x-api-key', key)).status).to.equal(403)
    expect((await request(app).get('/r').set('x-api-key', key)).status).to.equal(200)
    expect(await used()).to.equal(1)
  })
  it('Koa: 403 from requirePolicy, then a 200, count 1', async () => {
    const { gate, key, used } = await setup()
    const app = new Koa()
    const router = new Router()
    router.get('/w', ko.requirePolicy('docs:write'), (ctx) => {
      ctx.body = 'x'
    })
    router.get('/r', ko.requirePolicy('docs:read'), (ctx) => {
      ctx.body = 'x'
    })
    app.use(ko.authMiddleware({ gate }))
    app.use(router.routes())
    expect((await request(app.callback()).get('/w').set('x-api-key', key)).status).to.equal(403)
    expect((await request(app.callback()).get('/r').set('x-api-key', key)).status).to.equal(200)
    expect(await used()).to.equal(1)
  })
  it('Fastify: 403 from config.portcullis, then a 200, count 1', async () => {
    const { gate, key, used } = await setup()
    const app = Fastify()
    await app.register(portcullisPlugin, { gate })
    app.get('/w', { config: { portcullis: 'docs:write' } }, async () => 'x')
    app.get('/r', { config: { portcullis: 'docs:read' } }, async () => 'x')
    expect((await app.inject({ url: '/w', headers: { 'x-api-key': key } })).statusCode).to.equal(
      403,
    )
    expect((await app.inject({ url: '/r', headers: { 'x-api-key': key } })).statusCode).to.equal(
      200,
    )
    expect(await used()).to.equal(1)
    await app.close()
  })
})
