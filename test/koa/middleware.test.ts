import { generateKeyPairSync } from 'node:crypto'
import { bodyParser } from '@koa/bodyparser'
import Router from '@koa/router'
import { expect } from 'chai'
import Koa from 'koa'
import helmet from 'koa-helmet'
import request from 'supertest'
import {
  AuthError,
  Controller,
  createApiKeyManager,
  createGate,
  createMemoryBroker,
  createMemoryKeyStore,
  Get,
  getAccessContext,
  Policy,
  Public,
  type AuditEvent,
  type Gate,
  type GateOptions,
} from '@portcullis/core'
import {
  createFakeClock,
  createMemoryAuditSink,
  type MemoryAuditSink,
} from '@portcullis/core/testing'
import {
  authMiddleware,
  mountController,
  problemHandler,
  requirePolicy,
  type PortcullisAuth,
} from '@portcullis/koa'
import { seconds, signAsymmetric, signHmac, unsigned } from '../helpers/jwt.js'

const PEPPER = 'pepper-for-tests-only-0123456789abcdef'
const SECRET = 'jwt-secret-for-tests-only-0123456789'
const ISSUER = 'https://id.example'
const AUDIENCE = 'documents-api'
const LEAKY_MESSAGE = 'db password is hunter2'

interface Fixture {
  app: Koa
  gate: Gate
  sink: MemoryAuditSink
  clock: ReturnType<typeof createFakeClock>
  readKey: string
  revokedKey: string
  expiringKey: string
  jwt(claims?: Record<string, unknown>): string
}

interface SetupOptions {
  mirrorToUser?: boolean
  proxy?: boolean
  helmet?: boolean
  stages?: GateOptions['stages']
}

async function setup(options: SetupOptions = {}): Promise<Fixture> {
  const clock = createFakeClock()
  const store = createMemoryKeyStore()
  const broker = createMemoryBroker()
  const sink = createMemoryAuditSink()
  const gate = createGate({
    asyncContext: true,
    apiKeys: { store, pepper: PEPPER, broker },
    jwt: { secret: SECRET, issuer: ISSUER, audience: AUDIENCE },
    roles: { editor: ['documents:*'] },
    audit: { sinks: [sink], flushIntervalMs: 0 },
    stages: options.stages,
    now: clock,
  })
  const keys = createApiKeyManager({ store, pepper: PEPPER, broker, now: clock })
  const readKey = (
    await keys.create({ name: 'reader', ownerId: 'alice', scopes: ['documents:read'] })
  ).key
  const revoked = await keys.create({ name: 'old', ownerId: 'bob', scopes: ['documents:read'] })
  await keys.revoke(revoked.record.id)
  const expiring = await keys.create({
    name: 'temp',
    ownerId: 'carol',
    scopes: ['documents:read'],
    expiresIn: '1h',
  })

  const app = new Koa()
  app.proxy = options.proxy === true
  if (options.helmet === true) app.use(helmet())
  app.use(problemHandler({ gate }))
  const open = new Router()
  open.get('/health', (ctx) => {
    ctx.body = { ok: true }
  })
  app.use(open.routes())
  app.use(authMiddleware({ gate, mirrorToUser: options.mirrorToUser ?? false }))
  const router = new Router()
  router.get('/me', requirePolicy({}), (ctx) => {
    ctx.body = {
      id: ctx.state.auth?.principal?.id,
      method: ctx.state.auth?.principal?.method,
      user: (ctx.state.user as { id: string } | undefined)?.id ?? null,
      contextRequestId: getAccessContext()?.requestId,
      decisionRequestId: ctx.state.auth?.decision.requestId,
      ip: getAccessContext()?.ip,
    }
  })
  router.get('/docs/:id', requirePolicy('documents:read'), (ctx) => {
    ctx.body = { id: ctx.params.id }
  })
  // Authorize before reading the body: unauthorized callers never reach the parser.
  router.post(
    '/docs',
    requirePolicy('documents:write'),
    bodyParser({ jsonLimit: '1kb' }),
    (ctx) => {
      ctx.status = 201
      ctx.body = { created: true }
    },
  )
  router.get('/admin', requirePolicy({ roles: ['admin'] }), (ctx) => {
    ctx.body = { admin: true }
  })
  router.get('/reports', requirePolicy({ scopes: ['reports:read', 'documents:read'] }), (ctx) => {
    ctx.body = { ok: true }
  })
  router.get('/boom', requirePolicy({}), () => {
    throw new Error(LEAKY_MESSAGE)
  })
  app.use(router.routes()).use(router.allowedMethods())
  const jwt = (claims: Record<string, unknown> = {}): string =>
    signHmac(
      {
        claims: {
          sub: 'dave',
          iss: ISSUER,
          aud: AUDIENCE,
          exp: seconds(clock()) + 600,
          iat: seconds(clock()),
          scope: 'documents:read',
          ...claims,
        },
      },
      SECRET,
    )
  return {
    app,
    gate,
    sink,
    clock,
    readKey,
    revokedKey: revoked.key,
    expiringKey: expiring.key,
    jwt,
  }
}

const http = (app: Koa): ReturnType<typeof request> => request(app.callback())

async function auditEvents(f: Fixture): Promise<readonly AuditEvent[]> {
  await f.gate.audit.flush()
  return f.sink.events
}

function expectProblem(res: request.Response, status: number, code: string): void {
  expect(res.status).to.equal(status)
  expect(res.headers['content-type']).to.match(/^application\/problem\+json/)
  expect(res.body).to.include({ status, code })
  expect(res.body.type).to.be.a('string')
  expect(res.body.title).to.be.a('string')
  expect(res.body.requestId).to.be.a('string')
}

describe('@portcullis/koa authMiddleware', () => {
  let f: Fixture
  beforeEach(async () => {
    f = await setup()
  })

  describe('API keys', () => {
    it('lets a valid key through with ctx.state.auth set', async () => {
      const res = await http(f.app).get('/me').set('X-API-Key', f.readKey)
      expect(res.status).to.equal(200)
      expect(res.body).to.include({ id: 'alice', method: 'apikey', user: null })
    })

    it('accepts the same key as a Bearer token', async () => {
      const res = await http(f.app).get('/docs/1').set('Authorization', `Bearer ${f.readKey}`)
      expect(res.status).to.equal(200)
      expect(res.body).to.deep.equal({ id: '1' })
    })

    it('answers a request without credentials with 401 and a challenge without error code', async () => {
      const res = await http(f.app).get('/docs/1')
      expectProblem(res, 401, 'ERR_AUTH_REQUIRED')
      expect(res.headers['www-authenticate']).to.equal('Bearer realm="api"')
    })

    it('refuses a wrong key with 401 invalid_token', async () => {
      const wrong = f.readKey.slice(0, -10) + 'AAAAAAAAAA'
      const res = await http(f.app).get('/docs/1').set('X-API-Key', wrong)
      expect(res.status).to.equal(401)
      expect(res.headers['www-authenticate']).to.match(/^Bearer realm="api", error="invalid_token"/)
    })

    it('refuses a key with a bad checksum as malformed', async () => {
      const last = f.readKey.at(-1) === 'A' ? 'B' : 'A'
      const res = await http(f.app)
        .get('/docs/1')
        .set('X-API-Key', f.readKey.slice(0, -1) + last)
      expectProblem(res, 401, 'ERR_APIKEY_MALFORMED')
      expect(res.headers['www-authenticate']).to.include('error="invalid_token"')
    })

    it('refuses a well-formed key unknown to the store with ERR_APIKEY_INVALID', async () => {
      const other = (await setup()).readKey
      const res = await http(f.app).get('/docs/1').set('X-API-Key', other)
      expectProblem(res, 401, 'ERR_APIKEY_INVALID')
    })

    it('refuses a revoked key with the same answer as an unknown key', async () => {
      const res = await http(f.app).get('/docs/1').set('X-API-Key', f.revokedKey)
      expectProblem(res, 401, 'ERR_APIKEY_INVALID')
      expect(res.body.detail).to.equal('The API key is invalid')
    })

    it('refuses an expired key once its lifetime has passed', async () => {
      const before = await http(f.app).get('/docs/1').set('X-API-Key', f.expiringKey)
      expect(before.status).to.equal(200)
      f.clock.advance(60 * 60 * 1000)
      const after = await http(f.app).get('/docs/1').set('X-API-Key', f.expiringKey)
      expectProblem(after, 401, 'ERR_APIKEY_INVALID')
      const events = await auditEvents(f)
      expect(events.at(-1)?.reason?.detail).to.equal('expired')
    })

    it('answers 403 insufficient_scope with scope= when the key lacks the permission', async () => {
      const res = await http(f.app).post('/docs').set('X-API-Key', f.readKey).send({ title: 'x' })
      expectProblem(res, 403, 'ERR_SCOPE_INSUFFICIENT')
      expect(res.headers['www-authenticate']).to.match(
        /^Bearer realm="api", error="insufficient_scope", error_description="[^"]+", scope="documents:write"$/,
      )
      expect(res.body.requiredScopes).to.deep.equal(['documents:write'])
    })

    it('answers 403 ERR_POLICY_DENIED when a required role is missing', async () => {
      const res = await http(f.app).get('/admin').set('X-API-Key', f.readKey)
      expectProblem(res, 403, 'ERR_POLICY_DENIED')
    })

    it('requires every listed scope', async () => {
      const res = await http(f.app).get('/reports').set('X-API-Key', f.readKey)
      expectProblem(res, 403, 'ERR_SCOPE_INSUFFICIENT')
      expect(res.headers['www-authenticate']).to.include('scope="reports:read documents:read"')
    })
  })

  describe('JWTs', () => {
    it('lets a valid JWT through', async () => {
      const res = await http(f.app).get('/me').set('Authorization', `Bearer ${f.jwt()}`)
      expect(res.status).to.equal(200)
      expect(res.body).to.include({ id: 'dave', method: 'jwt' })
    })

    it('grants a permission through a role mapping', async () => {
      const token = f.jwt({ scope: '', roles: ['editor'] })
      const res = await http(f.app).post('/docs').set('Authorization', `Bearer ${token}`).send({})
      expect(res.status).to.equal(201)
    })

    it('refuses an expired JWT with ERR_JWT_EXPIRED', async () => {
      const token = f.jwt({ exp: seconds(f.clock()) - 3600 })
      const res = await http(f.app).get('/docs/1').set('Authorization', `Bearer ${token}`)
      expectProblem(res, 401, 'ERR_JWT_EXPIRED')
      expect(res.headers['www-authenticate']).to.include('error="invalid_token"')
    })

    const refused: Array<[string, (f: Fixture) => string, string]> = [
      ['a wrong audience', (f) => f.jwt({ aud: 'other-api' }), 'ERR_JWT_INVALID'],
      ['a wrong issuer', (f) => f.jwt({ iss: 'https://evil.example' }), 'ERR_JWT_INVALID'],
      [
        'alg none',
        (f) => unsigned({ sub: 'dave', iss: ISSUER, aud: AUDIENCE, exp: seconds(f.clock()) + 60 }),
        'ERR_JWT_INVALID',
      ],
      [
        'a tampered payload',
        (f) => {
          const [h, , s] = f.jwt().split('.')
          const forged = Buffer.from(
            JSON.stringify({
              sub: 'root',
              iss: ISSUER,
              aud: AUDIENCE,
              exp: seconds(f.clock()) + 60,
            }),
          ).toString('base64url')
          return `${h}.${forged}.${s}`
        },
        'ERR_JWT_INVALID',
      ],
      ['garbage', () => 'not-a-jwt-at-all', 'ERR_JWT_MALFORMED'],
      ['an oversized token', (f) => f.jwt({ pad: 'x'.repeat(9000) }), 'ERR_JWT_MALFORMED'],
      [
        'a token signed with another secret',
        () => signHmac({ claims: { sub: 'dave' } }, 'another-secret-0123456789abcdefghijkl'),
        'ERR_JWT_INVALID',
      ],
    ]
    for (const [what, make, code] of refused) {
      it(`refuses ${what} with 401 ${code}`, async () => {
        const res = await http(f.app)
          .get('/docs/1')
          .set('Authorization', `Bearer ${make(f)}`)
        expectProblem(res, 401, code)
        expect(res.headers['www-authenticate']).to.include('error="invalid_token"')
      })
    }

    it('refuses an HS256 token signed with the RS256 public key (algorithm confusion)', async () => {
      const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
      const pem = publicKey.export({ type: 'spki', format: 'pem' }).toString()
      const app = new Koa()
      app.use(
        authMiddleware({
          jwt: { keys: [{ alg: 'RS256', publicKey: pem }], issuer: false, audience: AUDIENCE },
          audit: false,
        }),
      )
      app.use((ctx) => {
        ctx.body = { ok: true }
      })
      const claims = { sub: 'dave', aud: AUDIENCE, exp: seconds(Date.now()) + 60 }
      const good = await http(app)
        .get('/x')
        .set('Authorization', `Bearer ${signAsymmetric({ claims }, privateKey, 'RS256')}`)
      expect(good.status).to.equal(200)
      const forged = signHmac({ claims }, pem)
      const res = await http(app).get('/x').set('Authorization', `Bearer ${forged}`)
      expectProblem(res, 401, 'ERR_JWT_INVALID')
    })
  })

  describe('ambiguous and misplaced credentials', () => {
    it('refuses an API key and a JWT together with 400 invalid_request', async () => {
      const res = await http(f.app)
        .get('/docs/1')
        .set('X-API-Key', f.readKey)
        .set('Authorization', `Bearer ${f.jwt()}`)
      expectProblem(res, 400, 'ERR_AUTH_AMBIGUOUS')
      expect(res.headers['www-authenticate']).to.include('error="invalid_request"')
    })

    it('refuses two Authorization headers', async () => {
      const res = await http(f.app)
        .get('/docs/1')
        .set('Authorization', [`Bearer ${f.jwt()}`, `Bearer ${f.readKey}`] as unknown as string)
      expectProblem(res, 400, 'ERR_AUTH_AMBIGUOUS')
    })

    it('refuses credentials in the query string', async () => {
      const res = await http(f.app).get(`/docs/1?access_token=${f.jwt()}`)
      expectProblem(res, 400, 'ERR_AUTH_QUERY_CREDENTIALS')
    })

    it('refuses a Bearer scheme without a token', async () => {
      const res = await http(f.app).get('/docs/1').set('Authorization', 'Bearer ')
      expectProblem(res, 400, 'ERR_AUTH_MALFORMED')
    })

    it('treats an unsupported scheme as missing credentials', async () => {
      const res = await http(f.app).get('/docs/1').set('Authorization', 'Basic dXNlcjpwYXNz')
      expectProblem(res, 401, 'ERR_AUTH_REQUIRED')
      expect(res.headers['www-authenticate']).to.equal('Bearer realm="api"')
    })
  })

  describe('Koa conventions', () => {
    it('serves routes mounted before the gate without credentials', async () => {
      const res = await http(f.app).get('/health')
      expect(res.status).to.equal(200)
    })

    it('mirrors the principal to ctx.state.user when asked', async () => {
      const g = await setup({ mirrorToUser: true })
      const res = await http(g.app).get('/me').set('X-API-Key', g.readKey)
      expect(res.body.user).to.equal('alice')
    })

    it('keeps the access context in AsyncLocalStorage for the handler', async () => {
      const res = await http(f.app)
        .get('/me')
        .set('X-API-Key', f.readKey)
        .set('X-Request-Id', 'req-123')
      expect(res.body.contextRequestId).to.equal('req-123')
      expect(res.body.decisionRequestId).to.equal('req-123')
    })

    it('never echoes a malformed request id', async () => {
      const res = await http(f.app)
        .get('/me')
        .set('X-API-Key', f.readKey)
        .set('X-Request-Id', 'bad id <script>')
      expect(res.body.contextRequestId).to.match(/^[0-9a-f-]{36}$/)
    })

    it('uses ctx.ip, honouring X-Forwarded-For only when app.proxy is set', async () => {
      const plain = await http(f.app)
        .get('/me')
        .set('X-API-Key', f.readKey)
        .set('X-Forwarded-For', '203.0.113.9')
      expect(plain.body.ip).to.be.a('string').and.not.equal('203.0.113.9')
      const g = await setup({ proxy: true })
      const proxied = await http(g.app)
        .get('/me')
        .set('X-API-Key', g.readKey)
        .set('X-Forwarded-For', '203.0.113.9')
      expect(proxied.body.ip).to.equal('203.0.113.9')
    })

    it('renders a hostile JSON body as a 400 problem, not a 500', async () => {
      const res = await http(f.app)
        .post('/docs')
        .set('Authorization', `Bearer ${f.jwt({ roles: ['editor'] })}`)
        .set('Content-Type', 'application/json')
        .send('{"title": "x", "__proto__": ')
      expectProblem(res, 400, 'ERR_REQUEST_MALFORMED')
    })

    it('renders an oversized body as a 413 problem', async () => {
      const res = await http(f.app)
        .post('/docs')
        .set('Authorization', `Bearer ${f.jwt({ roles: ['editor'] })}`)
        .send({ title: 'x'.repeat(4096) })
      expectProblem(res, 413, 'ERR_REQUEST_TOO_LARGE')
    })

    it('renders a throwing handler as a 500 problem that reveals nothing', async () => {
      const res = await http(f.app)
        .get('/boom')
        .set('X-API-Key', f.readKey)
        .set('X-Request-Id', 'r-1')
      expectProblem(res, 500, 'ERR_INTERNAL_ERROR')
      expect(res.body).to.not.have.property('detail')
      expect(res.body.requestId).to.equal('r-1')
      expect(res.text).to.not.include(LEAKY_MESSAGE)
    })

    it("keeps an application's own 4xx from ctx.throw, exposing its message as Koa does", async () => {
      const app = new Koa()
      const router = new Router()
      router.get('/missing', (ctx) => ctx.throw(404, 'no such document'))
      router.get('/conflict', (ctx) => ctx.throw(409, 'row locked', { expose: false }))
      app.use(problemHandler()).use(router.routes())
      const missing = await http(app).get('/missing')
      expect(missing.status).to.equal(404)
      expect(missing.body).to.include({
        code: 'ERR_REQUEST_REJECTED',
        status: 404,
        detail: 'no such document',
      })
      const conflict = await http(app).get('/conflict')
      expect(conflict.status).to.equal(409)
      expect(conflict.body.detail).to.equal('The request was rejected')
    })

    it('renders a missing authMiddleware as a 500 that reveals nothing', async () => {
      const app = new Koa()
      const router = new Router()
      router.get('/x', requirePolicy('documents:read'), (ctx) => {
        ctx.body = {}
      })
      app.use(problemHandler()).use(router.routes())
      const res = await http(app).get('/x')
      expectProblem(res, 500, 'ERR_CONFIG_INVALID')
      expect(res.body).to.not.have.property('detail')
    })

    it('throws ConfigError at creation for an invalid declaration', () => {
      expect(() => requirePolicy({ scopes: 'documents:read' as unknown as string[] })).to.throw(
        /requirements.scopes/,
      )
      expect(() => requirePolicy({ role: ['x'] } as never)).to.throw(/did you mean "roles"/)
    })
  })

  describe('headers on denials', () => {
    const limited = {
      name: 'ratelimit',
      run: () => ({
        ok: false as const,
        error: new AuthError('ERR_RATE_LIMITED', 'Too many requests'),
        headers: { ratelimit: '"default";r=0;t=30', 'retry-after': '30' },
      }),
    }

    it('keeps RateLimit and Retry-After on a denial, even without problemHandler', async () => {
      const gate = createGate({
        jwt: { secret: SECRET, issuer: ISSUER, audience: AUDIENCE },
        stages: [limited],
        audit: false,
        now: f.clock,
      })
      const app = new Koa()
      app.use(authMiddleware({ gate }))
      const res = await http(app).get('/x').set('Authorization', `Bearer ${f.jwt()}`)
      expectProblem(res, 429, 'ERR_RATE_LIMITED')
      expect(res.headers).to.include({ ratelimit: '"default";r=0;t=30', 'retry-after': '30' })
    })

    it('sends the headers of the route step too (route rate limits)', async () => {
      const routeLimit = {
        name: 'ratelimit',
        run: ({ requirements }: { requirements: unknown }) =>
          requirements === undefined
            ? { ok: true as const }
            : { ok: true as const, headers: { ratelimit: '"route";r=4;t=1' } },
      }
      const gate = createGate({
        jwt: { secret: SECRET, issuer: ISSUER, audience: AUDIENCE },
        stages: [routeLimit],
        audit: false,
        now: f.clock,
      })
      const router = new Router()
      router.get(
        '/limited',
        requirePolicy({ rateLimits: [{ limit: 5, windowMs: 1000, name: 'route' }] }),
        (ctx) => {
          ctx.body = { ok: true }
        },
      )
      const app = new Koa()
      app.use(authMiddleware({ gate })).use(router.routes())
      const res = await http(app).get('/limited').set('Authorization', `Bearer ${f.jwt()}`)
      expect(res.status).to.equal(200)
      expect(res.headers.ratelimit).to.equal('"route";r=4;t=1')
    })

    it('needs to: a thrown error loses the headers set before it (Koa default handler)', async () => {
      const app = new Koa()
      app.silent = true
      app.use(helmet())
      app.use((ctx) => {
        ctx.set('Retry-After', '30')
        ctx.throw(429)
      })
      const res = await http(app).get('/x')
      expect(res.status).to.equal(429)
      expect(res.headers).to.not.have.property('retry-after')
      expect(res.headers).to.not.have.property('x-content-type-options')
    })

    it('keeps koa-helmet headers on 401, 403 and 500 answers', async () => {
      const g = await setup({ helmet: true })
      const answers = [
        await http(g.app).get('/docs/1'),
        await http(g.app).get('/admin').set('X-API-Key', g.readKey),
        await http(g.app).get('/boom').set('X-API-Key', g.readKey),
      ]
      expect(answers.map((r) => r.status)).to.deep.equal([401, 403, 500])
      for (const res of answers) {
        expect(res.headers['x-content-type-options']).to.equal('nosniff')
        expect(res.headers['content-security-policy']).to.be.a('string')
        expect(res.headers['content-type']).to.match(/^application\/problem\+json/)
      }
      expect(answers[0]?.headers['www-authenticate']).to.equal('Bearer realm="api"')
    })
  })
})

describe('@portcullis/koa requirePolicy with { gate }', () => {
  let f: Fixture
  let app: Koa
  beforeEach(async () => {
    f = await setup()
    app = new Koa()
    const router = new Router()
    router.get('/public', requirePolicy({ public: true }, { gate: f.gate }), (ctx) => {
      ctx.body = {
        principal: ctx.state.auth?.principal?.id ?? null,
        contextRoute: getAccessContext()?.route,
      }
    })
    router.get(
      '/private',
      requirePolicy('documents:read', { gate: f.gate, mirrorToUser: true }),
      (ctx) => {
        ctx.body = { user: (ctx.state.user as { id: string } | undefined)?.id }
      },
    )
    app.use(problemHandler({ gate: f.gate })).use(router.routes())
  })

  it('serves anonymous callers on a public route', async () => {
    const res = await http(app).get('/public')
    expect(res.status).to.equal(200)
    expect(res.body).to.deep.equal({ principal: null, contextRoute: '/public' })
  })

  it('still verifies credentials sent to a public route', async () => {
    const ok = await http(app).get('/public').set('X-API-Key', f.readKey)
    expect(ok.body.principal).to.equal('alice')
    const bad = await http(app).get('/public').set('X-API-Key', f.revokedKey)
    expectProblem(bad, 401, 'ERR_APIKEY_INVALID')
  })

  it('requires credentials on the other routes, and audits both outcomes', async () => {
    expectProblem(await http(app).get('/private'), 401, 'ERR_AUTH_REQUIRED')
    const res = await http(app).get('/private').set('X-API-Key', f.readKey)
    expect(res.body).to.deep.equal({ user: 'alice' })
    const events = await auditEvents(f)
    expect(events[0]).to.include({ type: 'authn.failure' })
    expect(events.at(-1)).to.include({ type: 'authz.allow' })
    expect(events.at(-1)?.request?.route).to.equal('/private')
  })
})

describe('@portcullis/koa mountController', () => {
  @Controller('/docs')
  @Policy('documents:read')
  class DocumentsController {
    @Public()
    @Get('/count')
    count(): { count: number } {
      return { count: 2 }
    }

    @Get('/:id')
    show(ctx: Koa.ParameterizedContext & { params: Record<string, string> }): {
      id: string | undefined
      by: string | undefined
    } {
      return { id: ctx.params.id, by: ctx.state.auth?.principal?.id }
    }

    @Policy({ roles: ['admin'] })
    @Get('/:id/history')
    history(ctx: Koa.ParameterizedContext): void {
      ctx.status = 204
    }
  }

  let f: Fixture
  let app: Koa
  beforeEach(async () => {
    f = await setup()
    app = new Koa()
    const router = new Router()
    mountController(router, DocumentsController, { gate: f.gate })
    app.use(problemHandler({ gate: f.gate })).use(router.routes())
  })

  it('serves @Public routes to anonymous callers', async () => {
    const res = await http(app).get('/docs/count')
    expect(res.status).to.equal(200)
    expect(res.body).to.deep.equal({ count: 2 })
  })

  it('applies the class policy and returns the handler value as the body', async () => {
    expectProblem(await http(app).get('/docs/7'), 401, 'ERR_AUTH_REQUIRED')
    const res = await http(app).get('/docs/7').set('X-API-Key', f.readKey)
    expect(res.status).to.equal(200)
    expect(res.body).to.deep.equal({ id: '7', by: 'alice' })
  })

  it("applies a method's own policy instead of the class's", async () => {
    const res = await http(app).get('/docs/7/history').set('X-API-Key', f.readKey)
    expectProblem(res, 403, 'ERR_POLICY_DENIED')
    const admin = f.jwt({ roles: ['admin'] })
    const ok = await http(app).get('/docs/7/history').set('Authorization', `Bearer ${admin}`)
    expect(ok.status).to.equal(204)
  })

  it('works behind a global authMiddleware too, with an instance', async () => {
    const app2 = new Koa()
    const router = new Router()
    mountController(router, { instance: new DocumentsController() })
    app2
      .use(problemHandler())
      .use(authMiddleware({ gate: f.gate }))
      .use(router.routes())
    expect((await http(app2).get('/docs/1').set('X-API-Key', f.readKey)).body.by).to.equal('alice')
    expectProblem(await http(app2).get('/docs/count'), 401, 'ERR_AUTH_REQUIRED')
  })
})

describe('@portcullis/koa surface', () => {
  it('names every middleware it returns, for stack traces', () => {
    const gate = createGate({ audit: false })
    expect(authMiddleware({ gate }).name).to.equal('portcullisAuthMiddleware')
    expect(requirePolicy({}).name).to.equal('portcullisRequirePolicy')
    expect(problemHandler({ gate }).name).to.equal('portcullisProblemHandler')
  })

  it('types ctx.state.auth through Koa DefaultState', () => {
    const app = new Koa()
    app.use(async function probe(ctx) {
      const auth: PortcullisAuth | undefined = ctx.state.auth
      // @ts-expect-error ctx.state.auth is PortcullisAuth | undefined, not any
      const wrong: number = ctx.state.auth
      ctx.body = { auth, wrong }
    })
    expect(app.middleware).to.have.length(1)
  })
})
