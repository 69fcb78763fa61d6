import { once } from 'node:events'
import { createRequire } from 'node:module'
import { expect } from 'chai'
import express5 from 'express'
import express4 from 'express4'
import helmet from 'helmet'
import {
  authMiddleware,
  mountController,
  notFoundHandler,
  problemHandler,
  requirePolicy,
} from '@portcullis/express'
import { getAccessContext } from '@portcullis/core'
import {
  describeAdapterConformance,
  ROUTE_LIMIT,
  type MakeApp,
} from '../helpers/adapter-conformance.js'

/** The `express` export of either major: the app below uses only what both share. */
type ExpressFactory = typeof express5

/** The conformance app, built with the given Express major. */
export const expressApp =
  (express: ExpressFactory): MakeApp =>
  async ({ gate, DocsController }) => {
    const app = express()
    app.use(helmet())
    // Routes that serve anonymous callers guard themselves with the gate (both steps), so they are
    // mounted before the global middleware, which requires credentials.
    app.get('/public', requirePolicy({ public: true }, { gate }), (req, res) => {
      res.json({ principal: req.auth?.principal?.id ?? null })
    })
    mountController(app, DocsController, { gate })
    app.use(authMiddleware({ gate }))
    app.use(express.json())
    app.get('/me', (req, res) => {
      res.json({
        id: req.auth?.principal?.id,
        method: req.auth?.principal?.method,
        requestId: getAccessContext()?.requestId,
      })
    })
    app.get('/docs/:id', requirePolicy('documents:read'), (req, res) => {
      res.json({ id: req.params.id })
    })
    app.post('/docs', requirePolicy('documents:write'), (_req, res) => {
      res.status(201).json({ created: true })
    })
    app.get('/admin', requirePolicy({ roles: ['admin'] }), (_req, res) => {
      res.json({ admin: true })
    })
    app.get(
      '/reports',
      requirePolicy({ scopes: ['reports:read', 'documents:read'] }),
      (_req, res) => {
        res.json({ ok: true })
      },
    )
    app.get('/boom', () => {
      throw new Error('kaboom: db password hunter2')
    })
    app.get('/limited', (_req, res) => {
      res.json({ ok: true })
    })
    app.get(
      '/route-limited',
      requirePolicy({ permission: 'documents:read', rateLimits: [ROUTE_LIMIT] }),
      (_req, res) => {
        res.json({ ok: true })
      },
    )
    app.get('/record', requirePolicy('documents:read'), (_req, res) => {
      gate.audit.record('document.viewed')
      res.json({ ok: true })
    })
    app.use(notFoundHandler(), problemHandler({ gate }))
    const server = app.listen(0, '127.0.0.1')
    await once(server, 'listening')
    return { server, close: () => new Promise<void>((resolve) => server.close(() => resolve())) }
  }

const MAJORS = { 'express 5': express5, 'express 4': express4 } as const

describe('express majors under test', () => {
  it('loads Express 5 as express and Express 4 as express4, two distinct copies', () => {
    const require = createRequire(import.meta.url)
    const version = (name: string) =>
      (require(`${name}/package.json`) as { version: string }).version
    expect(version('express')).to.match(/^5\./)
    expect(version('express4')).to.match(/^4\./)
    expect(express4).to.not.equal(express5)
    expect(express4.Router).to.not.equal(express5.Router)
  })
})

for (const [name, express] of Object.entries(MAJORS))
  describeAdapterConformance(name, expressApp(express))
