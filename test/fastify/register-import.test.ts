// `app.register(import('@portcullis/fastify'), options)`, as Fastify's docs register plugins: the
// module's default export is the plugin (and `require()` of the package works the same way).
import { createRequire } from 'node:module'
import { expect } from 'chai'
import Fastify, { type FastifyInstance } from 'fastify'
import { createApiKeyManager, createMemoryKeyStore } from '@portcullis/core'
import * as portcullis from '@portcullis/fastify'

const PEPPER = 'pepper-for-tests-only-0123456789abcdef'

async function serve(register: (app: FastifyInstance, options: object) => PromiseLike<unknown>) {
  const store = createMemoryKeyStore()
  const { key } = await createApiKeyManager({ store, pepper: PEPPER }).create({
    name: 'reader',
    ownerId: 'alice',
    scopes: ['documents:read'],
  })
  const app = Fastify()
  await register(app, { apiKeys: { store, pepper: PEPPER }, problemErrors: true })
  app.get('/docs/:id', { config: { portcullis: 'documents:read' } }, async (request) => ({
    reader: request.auth?.principal?.id,
  }))
  await app.ready()
  return { app, key }
}

describe('@portcullis/fastify default export', () => {
  it('default-exports portcullisPlugin', () => {
    expect(portcullis.default).to.equal(portcullis.portcullisPlugin)
  })

  it('registers from the import() promise: 401 without credentials, 200 with a key', async () => {
    const { app, key } = await serve((a, options) =>
      a.register(import('@portcullis/fastify'), options),
    )
    try {
      const anonymous = await app.inject({ url: '/docs/1' })
      expect(anonymous.statusCode).to.equal(401)
      expect(anonymous.headers['content-type']).to.match(/^application\/problem\+json/)
      expect(anonymous.json()).to.include({ code: 'ERR_AUTH_REQUIRED' })
      const reader = await app.inject({ url: '/docs/1', headers: { 'x-api-key': key } })
      expect(reader.statusCode).to.equal(200)
      expect(reader.json()).to.deep.equal({ reader: 'alice' })
    } finally {
      await app.close()
    }
  })

  it("registers from require('@portcullis/fastify') in CommonJS code", async () => {
    const required = createRequire(import.meta.url)('@portcullis/fastify') as typeof portcullis
    // Fastify's types take no module namespace; at run time Fastify registers its `default`.
    const { app, key } = await serve((a, options) => a.register(required as never, options))
    try {
      expect((await app.inject({ url: '/docs/1' })).statusCode).to.equal(401)
      const reader = await app.inject({ url: '/docs/1', headers: { 'x-api-key': key } })
      expect(reader.statusCode).to.equal(200)
    } finally {
      await app.close()
    }
  })
})
