// Policy scenarios on every framework: per-route policies (requirePolicy, Fastify route config,
// @Policy), resource ownership through a resource loader, and risk-based step-up and denial.
// Each framework (Express 4 and 5, Koa 2 and 3, Fastify) serves the same routes from its own gate;
// the answers must be identical.
import { once } from 'node:events'
import { request as httpRequest, type IncomingMessage, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { expect } from 'chai'
import express5 from 'express'
import express4 from 'express4'
import Fastify from 'fastify'
import Koa3 from 'koa'
import Koa2 from 'koa2'
import Router from '@koa/router'
import request from 'supertest'
import {
  Controller,
  createGate,
  Delete,
  Policy,
  type Gate,
  type PolicySetInput,
  type RouteRequirements,
} from '@portcullis/core'
import {
  createFakeClock,
  createMemoryAuditSink,
  type MemoryAuditSink,
} from '@portcullis/core/testing'
import * as gx from '@portcullis/express'
import * as gf from '@portcullis/fastify'
import * as gk from '@portcullis/koa'
import { seconds, signHmac } from '../helpers/jwt.js'

const SECRET = 'policy-conformance-secret-0123456789'
const ISSUER = 'https://id.example'
const AUDIENCE = 'documents-api'

const POLICY: PolicySetInput = {
  roles: {
    viewer: { permissions: ['documents:read'] },
    editor: { inherits: ['viewer'], permissions: ['documents:write'] },
  },
  resources: {
    document: {
      permission: 'documents',
      rules: [
        {
          id: 'owner-deletes',
          effect: 'allow',
          actions: ['delete'],
          when: { attr: 'resource.ownerId', op: 'eq', ref: 'principal.id' },
        },
      ],
    },
  },
  risk: {
    signals: { newIp: 60, recentFailures: 40 },
    failures: 2,
    stepUpAt: 50,
    denyAt: 90,
    actions: ['documents:write'],
  },
}

const DOCS = new Map([
  ['d1', { id: 'd1', ownerId: 'alice' }],
  ['d2', { id: 'd2', ownerId: 'bob' }],
])
const LOADERS = {
  document: ({ params }: { params: Readonly<Record<string, string>> }) => DOCS.get(params.id ?? ''),
}
const OWNED: RouteRequirements = { permission: 'documents:delete', resource: 'document' }

@Controller('/ctl')
class ArchiveController {
  @Policy(OWNED)
  @Delete('/docs/:id')
  remove(): { archived: boolean } {
    return { archived: true }
  }
}

type Make = (gate: Gate) => Promise<Server>

const listen = async (server: Server): Promise<Server> => {
  await once(server, 'listening')
  return server
}

const onExpress =
  (express: typeof express5): Make =>
  async (gate) => {
    const app = express()
    app.use(gx.authMiddleware({ gate }))
    app.get(
      '/docs/:id',
      gx.requirePolicy('documents:read'),
      (req, res) => void res.json({ id: req.params.id }),
    )
    app.delete(
      '/docs/:id',
      gx.requirePolicy(OWNED),
      (req, res) => void res.json({ deleted: req.params.id }),
    )
    app.post(
      '/docs',
      gx.requirePolicy('documents:write'),
      (_req, res) => void res.status(201).json({ created: true }),
    )
    gx.mountController(app, ArchiveController)
    app.use(gx.problemHandler({ gate }))
    return listen(app.listen(0, '127.0.0.1'))
  }

const onKoa =
  (Koa: typeof Koa3): Make =>
  async (gate) => {
    const app = new Koa()
    app.use(gk.problemHandler({ gate }))
    app.use(gk.authMiddleware({ gate }))
    const router = new Router()
    router.get('/docs/:id', gk.requirePolicy('documents:read'), (ctx) => {
      ctx.body = { id: ctx.params.id }
    })
    router.delete('/docs/:id', gk.requirePolicy(OWNED), (ctx) => {
      ctx.body = { deleted: ctx.params.id }
    })
    router.post('/docs', gk.requirePolicy('documents:write'), (ctx) => {
      ctx.status = 201
      ctx.body = { created: true }
    })
    gk.mountController(router, ArchiveController)
    app.use(router.routes())
    return listen(app.listen(0, '127.0.0.1'))
  }

const frameworks: Record<string, Make> = {
  express: onExpress(express5),
  'express 4': onExpress(express4),
  koa: onKoa(Koa3),
  'koa 2': onKoa(Koa2),
  fastify: async (gate) => {
    const app = Fastify()
    await app.register(gf.portcullisPlugin, { gate, problemErrors: true })
    app.get<{ Params: { id: string } }>(
      '/docs/:id',
      { config: { portcullis: 'documents:read' } },
      async (r) => ({ id: r.params.id }),
    )
    app.delete<{ Params: { id: string } }>(
      '/docs/:id',
      { onRequest: app.requirePolicy(OWNED) },
      async (r) => ({ deleted: r.params.id }),
    )
    app.post('/docs', { config: { portcullis: 'documents:write' } }, async (_r, reply) =>
      reply.code(201).send({ created: true }),
    )
    gf.mountController(app, ArchiveController)
    await app.listen({ port: 0, host: '127.0.0.1' })
    return app.server
  },
}

for (const [framework, make] of Object.entries(frameworks)) {
  describe(`policy conformance: ${framework}`, () => {
    let gate: Gate
    let sink: MemoryAuditSink
    let server: Server
    const clock = createFakeClock(Date.UTC(2026, 10, 24, 10))

    beforeEach(async () => {
      sink = createMemoryAuditSink()
      gate = createGate({
        jwt: { secret: SECRET, issuer: ISSUER, audience: AUDIENCE },
        policy: POLICY,
        resourceLoaders: LOADERS,
        audit: { sinks: [sink], flushIntervalMs: 0 },
        now: clock,
      })
      server = await make(gate)
    })
    afterEach(async () => {
      await new Promise<void>((resolve) => server.close(() => resolve()))
      await gate.close()
    })

    const bearer = (sub: string, claims: Record<string, unknown> = {}) =>
      `Bearer ${signHmac({ claims: { sub, iss: ISSUER, aud: AUDIENCE, exp: seconds(clock()) + 600, ...claims } }, SECRET)}`
    const http = () => request(server)

    function expectProblem(
      res: { status: number; headers: Record<string, unknown>; body: Record<string, unknown> },
      status: number,
      code: string,
    ): void {
      expect(res.status, JSON.stringify(res.body)).to.equal(status)
      expect(res.headers['content-type']).to.match(/^application\/problem\+json/)
      expect(res.body).to.include({ status, code })
    }

    it('applies per-route policies: a viewer reads, a principal without the role is refused', async () => {
      const ok = await http()
        .get('/docs/d1')
        .set('Authorization', bearer('vic', { roles: ['viewer'] }))
      expect(ok.status).to.equal(200)
      expect(ok.body).to.deep.equal({ id: 'd1' })
      const no = await http().get('/docs/d1').set('Authorization', bearer('nobody'))
      expectProblem(no, 403, 'ERR_POLICY_DENIED')
      expect(no.body.detail).to.equal('Access denied by policy')
      const write = await http()
        .post('/docs')
        .set('Authorization', bearer('vic', { roles: ['viewer'] }))
      expectProblem(write, 403, 'ERR_POLICY_DENIED')
    })

    it('checks resource ownership through the loader: owner 200, non-owner 403', async () => {
      const owner = await http().delete('/docs/d1').set('Authorization', bearer('alice'))
      expect(owner.status).to.equal(200)
      expect(owner.body).to.deep.equal({ deleted: 'd1' })
      expectProblem(
        await http().delete('/docs/d1').set('Authorization', bearer('bob')),
        403,
        'ERR_POLICY_DENIED',
      )
      expect((await http().delete('/docs/d2').set('Authorization', bearer('bob'))).status).to.equal(
        200,
      )
      // A missing record is not owned by anyone.
      expectProblem(
        await http().delete('/docs/nope').set('Authorization', bearer('alice')),
        403,
        'ERR_POLICY_DENIED',
      )
      // The same ownership rule through @Policy on a decorated controller.
      expect(
        (await http().delete('/ctl/docs/d1').set('Authorization', bearer('alice'))).status,
      ).to.equal(200)
      expectProblem(
        await http().delete('/ctl/docs/d1').set('Authorization', bearer('bob')),
        403,
        'ERR_POLICY_DENIED',
      )
      await gate.audit.flush()
      const deny = sink.events.find((e) => e.type === 'authz.deny')
      expect(deny?.reason?.trace?.at(-1)).to.deep.include({ by: 'policy', rules: ['default-deny'] })
    })

    it('demands step-up for a risky request, then denies when the risk is too high', async () => {
      const editor = bearer('eve', { roles: ['editor'] })
      const mfa = bearer('eve', { roles: ['editor'], amr: ['pwd', 'mfa'] })
      // First request from the usual address: no risk.
      expect((await http().post('/docs').set('Authorization', editor)).status).to.equal(201)
      // From a new address (score 60): step-up is required...
      const res = await postFrom(server, '127.0.0.2', editor)
      expectProblem(res, 401, 'ERR_AUTHZ_STEP_UP_REQUIRED')
      expect(res.headers['www-authenticate']).to.match(/error="insufficient_user_authentication"/)
      expect(res.body.type).to.equal('urn:portcullis:problem:step-up-required')
      // ...which MFA satisfies.
      expect((await postFrom(server, '127.0.0.2', mfa)).status).to.equal(201)
      // Two denials (not the owner) push the score over the deny threshold, MFA or not.
      await http().delete('/docs/d2').set('Authorization', editor)
      await http().delete('/docs/d2').set('Authorization', editor)
      expectProblem(await postFrom(server, '127.0.0.3', mfa), 403, 'ERR_POLICY_DENIED')
    })
  })
}

/** POSTs /docs from a given loopback address, so the gate sees a new client IP. */
async function postFrom(
  server: Server,
  localAddress: string,
  authorization: string,
): Promise<{
  status: number
  headers: Record<string, string | string[] | undefined>
  body: Record<string, unknown>
}> {
  const { port } = server.address() as AddressInfo
  const req = httpRequest({
    host: '127.0.0.1',
    port,
    method: 'POST',
    path: '/docs',
    localAddress,
    headers: { authorization },
  })
  req.end()
  const [res] = (await once(req, 'response')) as [IncomingMessage]
  let text = ''
  for await (const chunk of res) text += String(chunk)
  return {
    status: res.statusCode ?? 0,
    headers: res.headers,
    body: JSON.parse(text) as Record<string, unknown>,
  }
}
