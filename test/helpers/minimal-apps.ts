// A minimal app per framework and major, built with each adapter's public API only: a global
// middleware (or Fastify's plugin) and two routes: `GET /me`, answering the principal's id, and
// `GET /docs/:id`, answering the id. Used by
// the conformance files that need their own gate per test.
import { once } from 'node:events'
import type { Server } from 'node:http'
import express5 from 'express'
import express4 from 'express4'
import Fastify from 'fastify'
import Koa3 from 'koa'
import Koa2 from 'koa2'
import Router from '@koa/router'
import type { Gate } from '@portcullis/core'
import {
  authMiddleware as expressAuth,
  notFoundHandler,
  problemHandler as expressProblems,
} from '@portcullis/express'
import { portcullisPlugin } from '@portcullis/fastify'
import { authMiddleware as koaAuth, problemHandler as koaProblems } from '@portcullis/koa'

/** A started app. */
export interface App {
  readonly server: Server
  close(): Promise<void>
}

/** Builds and starts the app around a gate. */
export type MakeApp = (gate: Gate) => Promise<App>

const listening = async (server: Server): Promise<App> => {
  await once(server, 'listening')
  return { server, close: () => new Promise<void>((resolve) => server.close(() => resolve())) }
}

const expressApp =
  (express: typeof express5): MakeApp =>
  async (gate) => {
    const app = express()
    app.use(expressAuth({ gate }))
    app.get('/me', (req, res) => {
      res.json({ id: req.auth?.principal?.id })
    })
    app.get('/docs/:id', (req, res) => {
      res.json({ doc: req.params.id })
    })
    app.use(notFoundHandler(), expressProblems({ gate }))
    return listening(app.listen(0, '127.0.0.1'))
  }

const koaApp =
  (Koa: typeof Koa3): MakeApp =>
  async (gate) => {
    const app = new Koa()
    app.use(koaProblems({ gate }))
    app.use(koaAuth({ gate }))
    const router = new Router()
    router.get('/me', (ctx) => {
      ctx.body = { id: ctx.state.auth?.principal?.id }
    })
    router.get('/docs/:id', (ctx) => {
      ctx.body = { doc: ctx.params.id }
    })
    app.use(router.routes())
    return listening(app.listen(0, '127.0.0.1'))
  }

const fastifyApp: MakeApp = async (gate) => {
  const app = Fastify()
  await app.register(portcullisPlugin, { gate, problemErrors: true })
  app.get('/me', async (request) => ({ id: request.auth?.principal?.id }))
  app.get<{ Params: { id: string } }>('/docs/:id', async (request) => ({ doc: request.params.id }))
  await app.listen({ port: 0, host: '127.0.0.1' })
  return { server: app.server, close: () => app.close() }
}

/** Every adapter and framework major. */
export const FRAMEWORKS: Record<string, MakeApp> = {
  'express 5': expressApp(express5),
  'express 4': expressApp(express4),
  'koa 3': koaApp(Koa3),
  'koa 2': koaApp(Koa2 as unknown as typeof Koa3),
  fastify: fastifyApp,
}

/** `GET path` on the app; the status, content type and JSON body. */
export async function call(
  app: App,
  path: string,
  headers: Record<string, string> = {},
): Promise<{
  status: number
  type: string | null
  headers: Headers
  body: Record<string, unknown>
}> {
  const { port } = app.server.address() as { port: number }
  const res = await fetch(`http://127.0.0.1:${port}${path}`, { headers })
  return {
    status: res.status,
    type: res.headers.get('content-type'),
    headers: res.headers,
    body: (await res.json()) as Record<string, unknown>,
  }
}
