import helmet from '@fastify/helmet'
import Fastify from 'fastify'
import { getAccessContext } from '@portcullis/core'
import { portcullisPlugin, mountController } from '@portcullis/fastify'
import {
  describeAdapterConformance,
  ROUTE_LIMIT,
  type MakeApp,
} from '../helpers/adapter-conformance.js'

export const makeFastifyApp: MakeApp = async ({ gate, DocsController }) => {
  const app = Fastify()
  await app.register(helmet)
  await app.register(portcullisPlugin, { gate, problemErrors: true })
  app.get('/public', { config: { portcullis: { public: true } } }, async (request) => ({
    principal: request.auth?.principal?.id ?? null,
  }))
  mountController(app, DocsController)
  app.get('/me', async (request) => ({
    id: request.auth?.principal?.id,
    method: request.auth?.principal?.method,
    requestId: getAccessContext()?.requestId,
  }))
  app.get<{ Params: { id: string } }>(
    '/docs/:id',
    { config: { portcullis: 'documents:read' } },
    async (request) => ({ id: request.params.id }),
  )
  app.post('/docs', { config: { portcullis: 'documents:write' } }, async (_request, reply) =>
    reply.code(201).send({ created: true }),
  )
  app.get('/admin', { config: { portcullis: { roles: ['admin'] } } }, async () => ({ admin: true }))
  app.get(
    '/reports',
    { onRequest: app.requirePolicy({ scopes: ['reports:read', 'documents:read'] }) },
    async () => ({ ok: true }),
  )
  app.get('/boom', async () => {
    throw new Error('kaboom: db password hunter2')
  })
  app.get('/limited', async () => ({ ok: true }))
  // The route limit in a later step (preHandler), after the plugin's decision.
  app.get(
    '/route-limited',
    {
      config: { portcullis: 'documents:read' },
      preHandler: app.requirePolicy({ rateLimits: [ROUTE_LIMIT] }),
    },
    async () => ({ ok: true }),
  )
  app.get('/record', { config: { portcullis: 'documents:read' } }, async () => {
    gate.audit.record('document.viewed')
    return { ok: true }
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  return { server: app.server, close: () => app.close() }
}

describeAdapterConformance('fastify', makeFastifyApp)
