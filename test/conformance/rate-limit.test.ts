// The drop-in rateLimit() answers alike on Express (4 and 5), Koa (2 and 3) and Fastify: same
// statuses, bodies, RateLimit headers and counting rules, from the same options.
import { once } from 'node:events'
import type { Server } from 'node:http'
import { expect } from 'chai'
import express5 from 'express'
import express4 from 'express4'
import Fastify from 'fastify'
import Koa3 from 'koa'
import Koa2 from 'koa2'
import sinon from 'sinon'
import request from 'supertest'
import * as gx from '@portcullis/express'
import * as gf from '@portcullis/fastify'
import * as gk from '@portcullis/koa'

type Options = Parameters<typeof gx.rateLimit>[0]
type Make = (options: Options) => Promise<Server>

const listen = async (server: Server): Promise<Server> => {
  await once(server, 'listening')
  return server
}

const onExpress =
  (express: typeof express5): Make =>
  async (options) => {
    const app = express()
    app.use(gx.rateLimit(options))
    app.get('/ok', (_req, res) => void res.json({ ok: true }))
    app.get('/fail', (_req, res) => void res.status(500).json({ ok: false }))
    return listen(app.listen(0, '127.0.0.1'))
  }

const onKoa =
  (Koa: typeof Koa3): Make =>
  async (options) => {
    const app = new Koa()
    app.use(gk.rateLimit(options as gk.KoaRateLimitOptions))
    app.use((ctx) => {
      ctx.status = ctx.path === '/fail' ? 500 : 200
      ctx.body = { ok: ctx.path !== '/fail' }
    })
    return listen(app.listen(0, '127.0.0.1'))
  }

const frameworks: Record<string, Make> = {
  express: onExpress(express5),
  'express 4': onExpress(express4),
  koa: onKoa(Koa3),
  'koa 2': onKoa(Koa2),
  fastify: async (options) => {
    const app = Fastify()
    app.addHook('onRequest', gf.rateLimit(options as gf.FastifyRateLimitOptions))
    app.get('/ok', async () => ({ ok: true }))
    app.get('/fail', async (_req, reply) => reply.code(500).send({ ok: false }))
    await app.listen({ port: 0, host: '127.0.0.1' })
    return app.server
  },
}

const HEADERS = [
  'ratelimit-policy',
  'ratelimit',
  'x-ratelimit-limit',
  'x-ratelimit-remaining',
  'x-ratelimit-reset',
  'retry-after',
]

async function transcript(make: Make, options: Options, paths: readonly string[]) {
  const server = await make(options)
  try {
    const out = []
    for (const p of paths) {
      const res = await request(server).get(p)
      out.push({
        status: res.status,
        text: res.text,
        headers: Object.fromEntries(HEADERS.map((h) => [h, res.headers[h]])),
      })
    }
    return out
  } finally {
    await new Promise<void>((resolve) => server.close(() => resolve()))
  }
}

describe('drop-in rateLimit() on every framework', () => {
  let clock: sinon.SinonFakeTimers
  beforeEach(() => {
    clock = sinon.useFakeTimers({ now: Date.UTC(2026, 10, 28, 12), toFake: ['Date'] })
  })
  afterEach(() => clock.restore())

  const scenarios: Array<[string, Options, string[]]> = [
    [
      'draft-7 and legacy headers, limited on the third request',
      { windowMs: 60_000, limit: 2, standardHeaders: 'draft-7', legacyHeaders: true },
      ['/ok', '/ok', '/ok'],
    ],
    [
      'draft-8 with an identifier and a custom message',
      {
        windowMs: 30_000,
        limit: 1,
        standardHeaders: 'draft-8',
        identifier: 'login',
        message: 'slow down',
      },
      ['/ok', '/ok'],
    ],
    [
      'skipFailedRequests gives failed requests back',
      { windowMs: 60_000, limit: 1, skipFailedRequests: true, standardHeaders: 'draft-6' },
      ['/fail', '/fail', '/ok', '/ok'],
    ],
  ]

  for (const [name, options, paths] of scenarios) {
    it(`answers alike: ${name}`, async () => {
      const results: Record<string, unknown> = {}
      for (const [framework, make] of Object.entries(frameworks))
        results[framework] = await transcript(make, options, paths)
      for (const framework of Object.keys(frameworks))
        expect(results[framework], `${framework} vs express`).to.deep.equal(results.express)
      const statuses = (results.express as Array<{ status: number }>).map((r) => r.status)
      expect(statuses.at(-1)).to.equal(429)
    })
  }
})
