// Path normalization on every framework: `/ADMIN`, `/admin/`, `//admin`, `/%61dmin`, `/admin;x`,
// `/admin/../admin` and friends never reach a protected handler without its requirements. For each
// variant the suite asks the framework which handler it routes to (with an admin key), then checks
// that a caller without the right (no key, a reader key) is refused whenever that handler would
// run: by the route's own requirements (`/admin`), and by a global path-prefix rule of the gate
// (`/ops`, a stage that sees `request.path`, normalized as the framework's router compares paths).
import { once } from 'node:events'
import { request as httpRequest, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { expect } from 'chai'
import express5 from 'express'
import express4 from 'express4'
import Fastify, { type FastifyServerOptions } from 'fastify'
import Koa3 from 'koa'
import Koa2 from 'koa2'
import Router from '@koa/router'
import {
  AuthError,
  createApiKeyManager,
  createGate,
  createMemoryKeyStore,
  type Gate,
  type GateStage,
} from '@portcullis/core'
import * as gx from '@portcullis/express'
import * as gk from '@portcullis/koa'
import { portcullisPlugin } from '@portcullis/fastify'

const PEPPER = 'path-normalization-pepper-0123456789abcdef'

interface Answer {
  readonly status: number
  readonly body: { handler?: string; code?: string }
}

interface RunningApp {
  readonly server: Server
  close(): Promise<void>
}

type MakeApp = (gate: Gate) => Promise<RunningApp>

/** The gate's global rule: every path under `/ops` needs the `admin` role. */
function opsPrefixRule(seen: string[]): GateStage {
  return {
    name: 'ops-prefix',
    run: ({ request, principal }) => {
      seen.push(request.path)
      const p = request.path
      const underOps = p === '/ops' || p.startsWith('/ops/')
      if (!underOps || principal?.roles.includes('admin' as never) === true) return { ok: true }
      return {
        ok: false,
        by: 'ops-prefix',
        error: new AuthError('ERR_POLICY_DENIED', 'Forbidden', { reason: 'ops prefix' }),
      }
    },
  }
}

// Node's http.request sends the path byte for byte (no dot-segment resolution, unlike URL-based
// clients), so the framework sees exactly the variant under test.
function get(server: Server, path: string, key?: string): Promise<Answer> {
  const { port } = server.address() as AddressInfo
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        host: '127.0.0.1',
        port,
        path,
        method: 'GET',
        headers: key === undefined ? {} : { 'x-api-key': key },
      },
      (res) => {
        let text = ''
        res.setEncoding('utf8')
        res.on('data', (chunk: string) => (text += chunk))
        res.on('end', () => {
          let body: Answer['body'] = {}
          try {
            body = JSON.parse(text) as Answer['body']
          } catch {
            // 404 pages of some frameworks are not JSON.
          }
          resolve({ status: res.statusCode as number, body })
        })
      },
    )
    req.on('error', reject)
    req.end()
  })
}

async function listen(server: Server): Promise<RunningApp> {
  if (!server.listening) {
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
  }
  return { server, close: () => new Promise<void>((resolve) => server.close(() => resolve())) }
}

const expressApp =
  (settings: { caseSensitive?: boolean } = {}, express: typeof express5 = express5): MakeApp =>
  async (gate) => {
    const app = express()
    if (settings.caseSensitive === true) app.set('case sensitive routing', true)
    app.use(gx.authMiddleware({ gate }))
    app.get('/admin', gx.requirePolicy({ roles: ['admin'] }), (_req, res) => {
      res.json({ handler: 'admin' })
    })
    app.get('/ops', (_req, res) => {
      res.json({ handler: 'ops' })
    })
    app.get('/ops/:id', (_req, res) => {
      res.json({ handler: 'ops/:id' })
    })
    app.use(gx.problemHandler({ gate }))
    return listen(app.listen(0, '127.0.0.1'))
  }

const koaApp =
  (Koa: typeof Koa3): MakeApp =>
  async (gate) => {
    const app = new Koa()
    app.use(gk.problemHandler({ gate }))
    app.use(gk.authMiddleware({ gate }))
    const router = new Router()
    router.get('/admin', gk.requirePolicy({ roles: ['admin'] }), (ctx) => {
      ctx.body = { handler: 'admin' }
    })
    router.get('/ops', (ctx) => {
      ctx.body = { handler: 'ops' }
    })
    router.get('/ops/:id', (ctx) => {
      ctx.body = { handler: 'ops/:id' }
    })
    app.use(router.routes())
    return listen(app.listen(0, '127.0.0.1'))
  }

const fastifyApp =
  (options: FastifyServerOptions = {}): MakeApp =>
  async (gate) => {
    const app = Fastify(options)
    await app.register(portcullisPlugin, { gate, problemErrors: true })
    app.get('/admin', { config: { portcullis: { roles: ['admin'] } } }, async () => ({
      handler: 'admin',
    }))
    app.get('/ops', async () => ({ handler: 'ops' }))
    app.get('/ops/:id', async () => ({ handler: 'ops/:id' }))
    await app.listen({ port: 0, host: '127.0.0.1' })
    return { server: app.server, close: () => app.close() }
  }

/** Route-level policy: `/admin` needs the admin role on the route itself. */
const ADMIN_VARIANTS = [
  '/admin',
  '/ADMIN',
  '/Admin',
  '/admin/',
  '//admin',
  '/%61dmin',
  '/%41DMIN',
  '/admin;x',
  '/admin/../admin',
  '/admin/.',
  '/admin?x=1',
]

/** The gate's global prefix rule: everything under `/ops` (the routes themselves declare nothing). */
const OPS_VARIANTS = [
  '/ops',
  '/OPS',
  '/Ops',
  '/ops/',
  '//ops',
  '/%6Fps',
  '/%6fps',
  '/ops;x',
  '/ops/../ops',
  '/ops/1',
  '/OPS/1',
  '/ops/1/',
  '/ops//1',
  '//ops/1',
  '/%6Fps/1',
  '/ops;x/1',
  '/ops/..',
  '/ops/.',
  '/ops/%2e%2e',
  '/ops/..;x',
  '/public/../ops',
]

interface Expectations {
  /** Variants this framework (in this configuration) must route to a protected handler. */
  readonly routed: readonly string[]
  /** Variants it must not route (answered 404 to an admin). */
  readonly unrouted: readonly string[]
}

function describePathNormalization(
  framework: string,
  makeApp: MakeApp,
  expectations: Expectations,
): void {
  describe(`path normalization: ${framework}`, function () {
    const seen: string[] = []
    let gate: Gate
    let app: RunningApp
    let adminKey: string
    let readerKey: string
    const routed = new Map<string, string>()

    before(async function () {
      const store = createMemoryKeyStore()
      gate = createGate({
        apiKeys: { store, pepper: PEPPER },
        stages: [opsPrefixRule(seen)],
        audit: false,
      })
      const keys = createApiKeyManager({ store, pepper: PEPPER })
      adminKey = (await keys.create({ name: 'admin', ownerId: 'root', roles: ['admin'] })).key
      readerKey = (
        await keys.create({ name: 'reader', ownerId: 'alice', scopes: ['documents:read'] })
      ).key
      app = await makeApp(gate)
    })
    after(async function () {
      await app?.close()
      await gate?.close()
    })

    for (const path of [...ADMIN_VARIANTS, ...OPS_VARIANTS]) {
      it(`never serves ${path} to a caller without the admin role`, async function () {
        const admin = await get(app.server, path, adminKey)
        expect(admin.status, `admin on ${path}`).to.be.oneOf([200, 404])
        if (admin.status === 200) routed.set(path, admin.body.handler as string)

        const anonymous = await get(app.server, path)
        expect(anonymous.status, `anonymous on ${path}`).to.be.oneOf([401, 404])

        const reader = await get(app.server, path, readerKey)
        if (admin.status === 200) {
          // The handler runs for this variant: the gate must have applied its requirements.
          expect(reader.status, `reader on ${path} (routed to ${admin.body.handler})`).to.equal(403)
          expect(reader.body.code).to.equal('ERR_POLICY_DENIED')
        } else {
          expect(reader.status, `reader on ${path} (not routed)`).to.be.oneOf([403, 404])
        }
      })
    }

    it('routes the variants this framework is known to route, and refuses the others', function () {
      for (const path of expectations.routed)
        expect(routed.has(path), `${framework} routes ${path}`).to.equal(true)
      for (const path of expectations.unrouted)
        expect(routed.has(path), `${framework} does not route ${path}`).to.equal(false)
    })

    it('gives global rules the normalized path, never the raw one', function () {
      expect(seen).to.not.include('/%6Fps')
      expect(seen).to.not.include('//ops')
      expect(seen).to.not.include('/ops;x')
      expect(seen).to.not.include('/ops/')
      // Dot segments stay: the router matched `..` as the `:id` of `/ops/:id`.
      expect(seen).to.include('/ops/..')
    })
  })
}

const EXPRESS_DEFAULT: Expectations = {
  routed: [
    '/admin',
    '/ADMIN',
    '/Admin',
    '/admin/',
    '/ops',
    '/OPS',
    '/ops/',
    '/ops/1',
    '/OPS/1',
    '/ops/..',
    '/ops/1/',
  ],
  unrouted: [
    '//admin',
    '/%61dmin',
    '/admin;x',
    '/admin/../admin',
    '//ops',
    '/%6Fps',
    '/public/../ops',
  ],
}
const EXPRESS_CASE_SENSITIVE: Expectations = {
  routed: ['/admin', '/admin/', '/ops', '/ops/..'],
  unrouted: ['/ADMIN', '/Admin', '/OPS', '/OPS/1', '/%6Fps'],
}
const KOA_DEFAULT: Expectations = {
  routed: ['/admin', '/ADMIN', '/admin/', '/ops', '/OPS', '/ops/..'],
  unrouted: ['//admin', '/%61dmin', '/admin;x', '/admin/../admin', '/%6Fps'],
}

describePathNormalization('express (default routing)', expressApp(), EXPRESS_DEFAULT)
describePathNormalization(
  'express (case sensitive routing)',
  expressApp({ caseSensitive: true }),
  EXPRESS_CASE_SENSITIVE,
)
describePathNormalization('express 4 (default routing)', expressApp({}, express4), EXPRESS_DEFAULT)
describePathNormalization(
  'express 4 (case sensitive routing)',
  expressApp({ caseSensitive: true }, express4),
  EXPRESS_CASE_SENSITIVE,
)
describePathNormalization('koa (@koa/router defaults)', koaApp(Koa3), KOA_DEFAULT)
describePathNormalization('koa 2 (@koa/router defaults)', koaApp(Koa2), KOA_DEFAULT)

describePathNormalization('fastify (default routing)', fastifyApp(), {
  routed: ['/admin', '/%61dmin', '/ops', '/%6Fps', '/%6fps', '/%6Fps/1', '/ops/1', '/ops/..'],
  unrouted: ['/ADMIN', '/admin/', '//admin', '/admin;x', '/admin/../admin', '/OPS', '//ops'],
})

describePathNormalization(
  'fastify (lenient router options)',
  fastifyApp({
    // `useSemicolonDelimiter` is honoured in routerOptions but missing from its type in Fastify 5.
    routerOptions: {
      caseSensitive: false,
      ignoreTrailingSlash: true,
      ignoreDuplicateSlashes: true,
      useSemicolonDelimiter: true,
    } as FastifyServerOptions['routerOptions'],
  }),
  {
    routed: [
      '/admin',
      '/ADMIN',
      '/admin/',
      '//admin',
      '/%61dmin',
      '/admin;x',
      '/OPS',
      '//ops',
      '/ops;x',
      '/ops/..',
    ],
    unrouted: ['/admin/../admin', '/public/../ops'],
  },
)
