import { once } from 'node:events'
import { createRequire } from 'node:module'
import { bodyParser } from '@koa/bodyparser'
import Router from '@koa/router'
import { expect } from 'chai'
import Koa3 from 'koa'
import Koa2 from 'koa2'
import helmet from 'koa-helmet'
import { getAccessContext } from '@portcullis/core'
import { authMiddleware, mountController, problemHandler, requirePolicy } from '@portcullis/koa'
import {
  describeAdapterConformance,
  ROUTE_LIMIT,
  type MakeApp,
} from '../helpers/adapter-conformance.js'

/** The `Koa` class of either major: the app below uses only what both share. */
type KoaClass = typeof Koa3

/** The conformance app, built with the given Koa major. */
export const koaApp =
  (Koa: KoaClass): MakeApp =>
  async ({ gate, DocsController }) => {
    const app = new Koa()
    app.use(problemHandler({ gate }))
    app.use(helmet())
    // Anonymous-capable routes guard themselves with the gate, ahead of the global middleware.
    const open = new Router()
    open.get('/public', requirePolicy({ public: true }, { gate }), (ctx) => {
      ctx.body = { principal: ctx.state.auth?.principal?.id ?? null }
    })
    mountController(open, DocsController, { gate })
    app.use(open.routes())
    app.use(authMiddleware({ gate }))
    app.use(bodyParser())
    const router = new Router()
    router.get('/me', (ctx) => {
      const p = ctx.state.auth?.principal
      ctx.body = { id: p?.id, method: p?.method, requestId: getAccessContext()?.requestId }
    })
    router.get('/docs/:id', requirePolicy('documents:read'), (ctx) => {
      ctx.body = { id: ctx.params.id }
    })
    router.post('/docs', requirePolicy('documents:write'), (ctx) => {
      ctx.status = 201
      ctx.body = { created: true }
    })
    router.get('/admin', requirePolicy({ roles: ['admin'] }), (ctx) => {
      ctx.body = { admin: true }
    })
    router.get('/reports', requirePolicy({ scopes: ['reports:read', 'documents:read'] }), (ctx) => {
      ctx.body = { ok: true }
    })
    router.get('/boom', () => {
      throw new Error('kaboom: db password hunter2')
    })
    router.get(
      '/route-limited',
      requirePolicy({ permission: 'documents:read', rateLimits: [ROUTE_LIMIT] }),
      (ctx) => {
        ctx.body = { ok: true }
      },
    )
    router.get('/limited', (ctx) => {
      ctx.body = { ok: true }
    })
    router.get('/record', requirePolicy('documents:read'), (ctx) => {
      gate.audit.record('document.viewed')
      ctx.body = { ok: true }
    })
    app.use(router.routes())
    const server = app.listen(0, '127.0.0.1')
    await once(server, 'listening')
    return { server, close: () => new Promise<void>((resolve) => server.close(() => resolve())) }
  }

const MAJORS = { 'koa 3': Koa3, 'koa 2': Koa2 } as const

describe('koa majors under test', () => {
  it('loads Koa 3 as koa and Koa 2 as koa2, two distinct copies', () => {
    const require = createRequire(import.meta.url)
    const version = (name: string) =>
      (require(`${name}/package.json`) as { version: string }).version
    expect(version('koa')).to.match(/^3\./)
    expect(version('koa2')).to.match(/^2\./)
    expect(Koa2).to.not.equal(Koa3)
  })
})

for (const [name, Koa] of Object.entries(MAJORS)) describeAdapterConformance(name, koaApp(Koa))
