import { expect } from 'chai'
import express from 'express'
import fc from 'fast-check'
import request from 'supertest'
import { createApiKeyManager, createGate, createMemoryKeyStore } from '@portcullis/core'
import { authMiddleware, problemHandler, requirePolicy } from '@portcullis/express'

const PEPPER = 'pepper-for-property-tests-0123456789'

describe('@portcullis/express under random headers and bodies', () => {
  const store = createMemoryKeyStore()
  const gate = createGate({
    apiKeys: { store, pepper: PEPPER },
    jwt: { secret: 'x'.repeat(32), issuer: false, audience: false },
    audit: false,
  })
  const app = express()
  app.use(authMiddleware({ gate }))
  app.post(
    '/docs',
    express.json({ limit: '1kb' }),
    requirePolicy('documents:write'),
    (_req, res) => {
      res.json({ ok: true })
    },
  )
  app.use(problemHandler({ gate }))
  let key = ''
  before(async () => {
    key = (
      await createApiKeyManager({ store, pepper: PEPPER }).create({
        name: 'w',
        ownerId: 'u',
        scopes: ['documents:write'],
      })
    ).key
  })

  // Header values Node lets through on the wire: visible ASCII, space and tab.
  const wireValue = fc.string({
    unit: fc.constantFrom(
      ...' \t!"#$%&\'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~'.split(
        '',
      ),
    ),
  })

  it('never answers 5xx to random Authorization, X-API-Key and X-Request-Id values', async () => {
    await fc.assert(
      fc.asyncProperty(
        wireValue,
        wireValue,
        wireValue,
        async (authorization, apiKey, requestId) => {
          const res = await request(app)
            .post('/docs')
            .set('Authorization', authorization)
            .set('X-API-Key', apiKey)
            .set('X-Request-Id', requestId)
            .send({})
          expect(res.status).to.be.within(400, 499)
          expect(res.headers['content-type']).to.match(/^application\/problem\+json/)
          expect(res.body.code).to.be.a('string')
        },
      ),
      { numRuns: 150 },
    )
  })

  it('answers hostile JSON bodies from an authenticated client with 2xx or a 4xx problem', async () => {
    const body = fc.oneof(
      fc.json(),
      fc.string(),
      fc.constant('{"__proto__":{"admin":true}}'),
      fc.constant('{"constructor":{"prototype":{"x":1}}}'),
      fc.constant('['.repeat(5000)),
      fc.constant('{"a":' + '"x"'.repeat(2000) + '}'),
    )
    await fc.assert(
      fc.asyncProperty(body, async (text) => {
        const res = await request(app)
          .post('/docs')
          .set('X-API-Key', key)
          .set('Content-Type', 'application/json')
          .send(text)
        expect([200, 400, 413]).to.include(res.status)
        if (res.status !== 200)
          expect(res.body.code).to.match(/^ERR_REQUEST_(MALFORMED|TOO_LARGE)$/)
        expect(({} as Record<string, unknown>).admin).to.equal(undefined)
      }),
      { numRuns: 150 },
    )
  })
})
