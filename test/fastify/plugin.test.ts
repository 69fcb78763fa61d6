import { generateKeyPairSync } from 'node:crypto'
import { setImmediate as tick } from 'node:timers/promises'
import helmet from '@fastify/helmet'
import { expect } from 'chai'
import Fastify, { type FastifyInstance } from 'fastify'
import {
  Controller,
  createApiKeyManager,
  createGate,
  createMemoryBroker,
  createMemoryKeyStore,
  Get,
  getAccessContext,
  Policy,
  Post,
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
import { portcullisPlugin, mountController } from '@portcullis/fastify'
import { seconds, signAsymmetric, signHmac, unsigned } from '../helpers/jwt.js'
import { send, start, type Answer, type Call, type Transport } from './transport.js'

const PEPPER = 'pepper-for-tests-only-0123456789abcdef'
const SECRET = 'jwt-secret-for-tests-only-0123456789'
const ISSUER = 'https://id.example'
const AUDIENCE = 'documents-api'
const LEAKY_MESSAGE = 'kaboom: db password hunter2'

@Controller('/ctl')
@Policy('documents:read')
class DocsController {
  @Public()
  @Get('/open')
  open(): { open: boolean } {
    return { open: true }
  }

  @Get('/docs')
  async list(): Promise<{ docs: string[]; requestId: string | undefined }> {
    await tick()
    return { docs: ['1', '2'], requestId: getAccessContext()?.requestId }
  }

  @Policy('documents:write')
  @Post('/docs')
  create(): { created: boolean } {
    return { created: true }
  }
}

interface SetupOptions {
  readonly mirrorToUser?: boolean
  readonly trustProxy?: boolean
  readonly problemErrors?: boolean
  readonly gate?: Partial<GateOptions>
}

interface Fixture {
  app: FastifyInstance
  gate: Gate
  sink: MemoryAuditSink
  clock: ReturnType<typeof createFakeClock>
  logs: string[]
  readKey: string
  revokedKey: string
  expiringKey: string
  jwt(claims?: Record<string, unknown>): string
  call(call: Call | string): Promise<Answer>
}

function logCapture(): {
  logs: string[]
  logger: { level: string; stream: { write(line: string): void } }
} {
  const logs: string[] = []
  return { logs, logger: { level: 'info', stream: { write: (line) => void logs.push(line) } } }
}

async function setup(transport: Transport, options: SetupOptions = {}): Promise<Fixture> {
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
    now: clock,
    ...options.gate,
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

  const { logs, logger } = logCapture()
  const app = Fastify({ logger, trustProxy: options.trustProxy === true ? 'loopback' : false })
  // Registered first, so its headers are on denials too.
  await app.register(helmet)
  await app.register(portcullisPlugin, {
    gate,
    mirrorToUser: options.mirrorToUser ?? false,
    problemErrors: options.problemErrors ?? true,
  })
  app.get('/health', { config: { portcullis: { public: true } } }, async (request) => ({
    principal: request.auth?.principal?.id ?? null,
  }))
  app.get('/me', async (request) => {
    // Across an await, the access context must still be there.
    await tick()
    return {
      id: request.auth?.principal?.id,
      method: request.auth?.principal?.method,
      user: (request as { user?: { id: string } }).user?.id ?? null,
      contextRequestId: getAccessContext()?.requestId,
      decisionRequestId: request.auth?.decision.requestId,
      route: getAccessContext()?.route,
      ip: getAccessContext()?.ip,
    }
  })
  app.get<{ Params: { id: string } }>(
    '/docs/:id',
    { config: { portcullis: 'documents:read' } },
    async (request) => ({ id: request.params.id }),
  )
  app.post('/docs', { config: { portcullis: 'documents:write' } }, async (request, reply) => {
    await tick()
    return reply.code(201).send({
      created: true,
      title: (request.body as { title?: string } | null)?.title ?? null,
      contextRequestId: getAccessContext()?.requestId,
    })
  })
  app.get('/admin', { config: { portcullis: { roles: ['admin'] } } }, async () => ({ admin: true }))
  app.get(
    '/reports',
    { onRequest: app.requirePolicy({ scopes: ['reports:read', 'documents:read'] }) },
    async () => ({ ok: true }),
  )
  app.get('/open', { onRequest: app.requirePolicy({ public: true }) }, async (request) => ({
    principal: request.auth?.principal?.id ?? null,
  }))
  app.get(
    '/combined',
    {
      config: { portcullis: 'documents:read' },
      preHandler: app.requirePolicy({ roles: ['admin'] }),
    },
    async () => ({ ok: true }),
  )
  app.get('/boom', async () => {
    throw new Error(LEAKY_MESSAGE)
  })
  app.post('/small', { bodyLimit: 16, config: { portcullis: {} } }, async () => ({ ok: true }))
  mountController(app, DocsController)
  await start(app, transport)

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
    logs,
    readKey,
    revokedKey: revoked.key,
    expiringKey: expiring.key,
    jwt,
    call: (c) => send(app, transport, typeof c === 'string' ? { url: c } : c),
  }
}

async function auditEvents(f: Fixture): Promise<readonly AuditEvent[]> {
  await f.gate.audit.flush()
  return f.sink.events
}

function expectProblem(res: Answer, status: number, code: string): void {
  expect(res.status, res.text).to.equal(status)
  expect(res.headers['content-type']).to.match(/^application\/problem\+json/)
  expect(res.body).to.include({ status, code })
  expect(res.body.type).to.be.a('string')
  expect(res.body.title).to.be.a('string')
  expect(res.body.requestId).to.be.a('string')
}

const key = (k: string): Record<string, string> => ({ 'x-api-key': k })
const bearer = (t: string): Record<string, string> => ({ authorization: `Bearer ${t}` })

for (const transport of ['inject', 'socket'] as const) {
  describe(`@portcullis/fastify portcullisPlugin (${transport})`, () => {
    const fixtures: Fixture[] = []
    let f: Fixture
    const make = async (options?: SetupOptions): Promise<Fixture> => {
      const made = await setup(transport, options)
      fixtures.push(made)
      return made
    }
    beforeEach(async () => {
      f = await make()
    })
    afterEach(async () => {
      for (const made of fixtures.splice(0)) {
        await made.app.close()
        await made.gate.close()
        // Exactly one answer per request: Fastify logs a second send as FST_ERR_REP_ALREADY_SENT.
        expect(made.logs.join('')).to.not.match(/FST_ERR_REP_ALREADY_SENT|already sent/i)
      }
    })

    describe('API keys', () => {
      it('lets a valid key through with request.auth set', async () => {
        const res = await f.call({ url: '/me', headers: key(f.readKey) })
        expect(res.status).to.equal(200)
        expect(res.body).to.include({ id: 'alice', method: 'apikey', user: null, route: '/me' })
      })

      it('accepts the same key as a Bearer token', async () => {
        const res = await f.call({ url: '/docs/1', headers: bearer(f.readKey) })
        expect(res.status).to.equal(200)
        expect(res.body).to.deep.equal({ id: '1' })
      })

      it('answers a request without credentials with 401 and a challenge without error code', async () => {
        const res = await f.call('/docs/1')
        expectProblem(res, 401, 'ERR_AUTH_REQUIRED')
        expect(res.headers['www-authenticate']).to.equal('Bearer realm="api"')
      })

      it('requires credentials on a route without config.portcullis', async () => {
        expectProblem(await f.call('/me'), 401, 'ERR_AUTH_REQUIRED')
      })

      it('refuses a wrong key with 401 invalid_token', async () => {
        const wrong = f.readKey.slice(0, -10) + 'AAAAAAAAAA'
        const res = await f.call({ url: '/docs/1', headers: key(wrong) })
        expect(res.status).to.equal(401)
        expect(res.headers['www-authenticate']).to.match(
          /^Bearer realm="api", error="invalid_token"/,
        )
      })

      it('refuses a key with a bad checksum as malformed', async () => {
        const last = f.readKey.at(-1) === 'A' ? 'B' : 'A'
        const res = await f.call({ url: '/docs/1', headers: key(f.readKey.slice(0, -1) + last) })
        expectProblem(res, 401, 'ERR_APIKEY_MALFORMED')
        expect(res.headers['www-authenticate']).to.include('error="invalid_token"')
      })

      it('refuses a key unknown to the store with ERR_APIKEY_INVALID', async () => {
        const other = await make()
        const res = await f.call({ url: '/docs/1', headers: key(other.readKey) })
        expectProblem(res, 401, 'ERR_APIKEY_INVALID')
      })

      it('refuses a revoked key with the same answer as an unknown key', async () => {
        const res = await f.call({ url: '/docs/1', headers: key(f.revokedKey) })
        expectProblem(res, 401, 'ERR_APIKEY_INVALID')
        expect(res.body.detail).to.equal('The API key is invalid')
      })

      it('refuses an expired key once its lifetime has passed', async () => {
        expect((await f.call({ url: '/docs/1', headers: key(f.expiringKey) })).status).to.equal(200)
        f.clock.advance(60 * 60 * 1000)
        const after = await f.call({ url: '/docs/1', headers: key(f.expiringKey) })
        expectProblem(after, 401, 'ERR_APIKEY_INVALID')
        expect((await auditEvents(f)).at(-1)?.reason?.detail).to.equal('expired')
      })

      it('answers 403 insufficient_scope with scope= when the key lacks the permission', async () => {
        const res = await f.call({
          method: 'POST',
          url: '/docs',
          headers: key(f.readKey),
          payload: { title: 'x' },
        })
        expectProblem(res, 403, 'ERR_SCOPE_INSUFFICIENT')
        expect(res.headers['www-authenticate']).to.match(
          /^Bearer realm="api", error="insufficient_scope", error_description="[^"]+", scope="documents:write"$/,
        )
        expect(res.body.requiredScopes).to.deep.equal(['documents:write'])
      })

      it('answers 403 ERR_POLICY_DENIED when a required role is missing', async () => {
        expectProblem(
          await f.call({ url: '/admin', headers: key(f.readKey) }),
          403,
          'ERR_POLICY_DENIED',
        )
      })

      it('requires every scope listed by fastify.requirePolicy()', async () => {
        const res = await f.call({ url: '/reports', headers: key(f.readKey) })
        expectProblem(res, 403, 'ERR_SCOPE_INSUFFICIENT')
        expect(res.headers['www-authenticate']).to.include('scope="reports:read documents:read"')
      })
    })

    describe('JWTs', () => {
      it('lets a valid JWT through', async () => {
        const res = await f.call({ url: '/me', headers: bearer(f.jwt()) })
        expect(res.status).to.equal(200)
        expect(res.body).to.include({ id: 'dave', method: 'jwt' })
      })

      it('grants a permission through a role mapping', async () => {
        const res = await f.call({
          method: 'POST',
          url: '/docs',
          headers: bearer(f.jwt({ scope: '', roles: ['editor'] })),
          payload: { title: 'x' },
        })
        expect(res.status).to.equal(201)
        expect(res.body).to.include({ created: true, title: 'x' })
      })

      it('refuses an expired JWT with ERR_JWT_EXPIRED', async () => {
        const res = await f.call({
          url: '/docs/1',
          headers: bearer(f.jwt({ exp: seconds(f.clock()) - 3600 })),
        })
        expectProblem(res, 401, 'ERR_JWT_EXPIRED')
        expect(res.headers['www-authenticate']).to.include('error="invalid_token"')
      })

      const refused: Array<[string, (f: Fixture) => string, string]> = [
        ['a wrong audience', (f) => f.jwt({ aud: 'other-api' }), 'ERR_JWT_INVALID'],
        ['a wrong issuer', (f) => f.jwt({ iss: 'https://evil.example' }), 'ERR_JWT_INVALID'],
        [
          'alg none',
          (f) =>
            unsigned({ sub: 'dave', iss: ISSUER, aud: AUDIENCE, exp: seconds(f.clock()) + 60 }),
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
          const res = await f.call({ url: '/docs/1', headers: bearer(make(f)) })
          expectProblem(res, 401, code)
          expect(res.headers['www-authenticate']).to.include('error="invalid_token"')
        })
      }

      it('refuses an HS256 token signed with the RS256 public key (algorithm confusion)', async () => {
        const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
        const pem = publicKey.export({ type: 'spki', format: 'pem' }).toString()
        const gate = createGate({
          jwt: { keys: [{ alg: 'RS256', publicKey: pem }], issuer: false, audience: AUDIENCE },
          audit: false,
        })
        const app = Fastify()
        await app.register(portcullisPlugin, { gate })
        app.get('/x', async () => ({ ok: true }))
        await start(app, transport)
        try {
          const claims = { sub: 'dave', aud: AUDIENCE, exp: seconds(Date.now()) + 60 }
          const good = await send(app, transport, {
            url: '/x',
            headers: bearer(signAsymmetric({ claims }, privateKey, 'RS256')),
          })
          expect(good.status).to.equal(200)
          const res = await send(app, transport, {
            url: '/x',
            headers: bearer(signHmac({ claims }, pem)),
          })
          expectProblem(res, 401, 'ERR_JWT_INVALID')
        } finally {
          await app.close()
        }
      })
    })

    describe('ambiguous and misplaced credentials', () => {
      it('refuses an API key and a JWT together with 400 invalid_request', async () => {
        const res = await f.call({
          url: '/docs/1',
          headers: { ...key(f.readKey), ...bearer(f.jwt()) },
        })
        expectProblem(res, 400, 'ERR_AUTH_AMBIGUOUS')
        expect(res.headers['www-authenticate']).to.include('error="invalid_request"')
      })

      it('refuses two Authorization headers (read from rawHeaders)', async () => {
        const res = await f.call({
          url: '/docs/1',
          headers: { authorization: [`Bearer ${f.jwt()}`, `Bearer ${f.readKey}`] },
        })
        expectProblem(res, 400, 'ERR_AUTH_AMBIGUOUS')
      })

      it('refuses credentials in the query string', async () => {
        expectProblem(
          await f.call(`/docs/1?access_token=${f.jwt()}`),
          400,
          'ERR_AUTH_QUERY_CREDENTIALS',
        )
      })

      it('refuses a Bearer scheme without a token', async () => {
        const res = await f.call({ url: '/docs/1', headers: { authorization: 'Bearer ' } })
        expectProblem(res, 400, 'ERR_AUTH_MALFORMED')
      })

      it('treats an unsupported scheme as missing credentials', async () => {
        const res = await f.call({
          url: '/docs/1',
          headers: { authorization: 'Basic dXNlcjpwYXNz' },
        })
        expectProblem(res, 401, 'ERR_AUTH_REQUIRED')
        expect(res.headers['www-authenticate']).to.equal('Bearer realm="api"')
      })
    })

    describe('public routes, 404s and requirePolicy', () => {
      it('serves config.portcullis { public: true } to anonymous callers', async () => {
        const res = await f.call('/health')
        expect(res.status).to.equal(200)
        expect(res.body).to.deep.equal({ principal: null })
      })

      it('still verifies credentials sent to a public route', async () => {
        expect((await f.call({ url: '/health', headers: key(f.readKey) })).body).to.deep.equal({
          principal: 'alice',
        })
        expectProblem(
          await f.call({ url: '/health', headers: key(f.revokedKey) }),
          401,
          'ERR_APIKEY_INVALID',
        )
      })

      it('opens a route with onRequest: fastify.requirePolicy({ public: true })', async () => {
        expect((await f.call('/open')).body).to.deep.equal({ principal: null })
        const events = await auditEvents(f)
        expect(events.map((e) => e.type)).to.deep.equal(['authz.allow'])
      })

      it('adds a requirePolicy() used in another hook to the route config (one more authorization)', async () => {
        expectProblem(
          await f.call({ url: '/combined', headers: key(f.readKey) }),
          403,
          'ERR_POLICY_DENIED',
        )
        const admin = f.jwt({ roles: ['admin'] })
        expect((await f.call({ url: '/combined', headers: bearer(admin) })).status).to.equal(200)
        expectProblem(await f.call('/combined'), 401, 'ERR_AUTH_REQUIRED')
        const events = await auditEvents(f)
        // The plugin's one event per request, and the extra hook's own authorization event.
        expect(events.map((e) => e.type)).to.deep.equal([
          'authz.allow',
          'authz.deny',
          'authz.allow',
          'authz.allow',
          'authn.failure',
        ])
      })

      it('requires credentials before answering 404 for an unknown route', async () => {
        expectProblem(await f.call('/nowhere'), 401, 'ERR_AUTH_REQUIRED')
        const res = await f.call({ url: '/nowhere', headers: key(f.readKey) })
        expect(res.status).to.equal(404)
        const events = await auditEvents(f)
        expect(events.map((e) => e.type)).to.deep.equal(['authn.failure', 'authn.success'])
      })

      it('answers 404 to anonymous callers when the gate does not require credentials', async () => {
        const g = await make({ gate: { credentialsRequired: false } })
        expect((await g.call('/nowhere')).status).to.equal(404)
        // A route without config.portcullis still needs a principal.
        expectProblem(await g.call('/me'), 401, 'ERR_AUTH_REQUIRED')
        expect((await g.call('/health')).status).to.equal(200)
      })

      it('serves an automatic HEAD route with the GET route requirements', async () => {
        expect((await f.call({ method: 'HEAD', url: '/docs/1' })).status).to.equal(401)
        const res = await f.call({ method: 'HEAD', url: '/docs/1', headers: key(f.readKey) })
        expect(res.status).to.equal(200)
      })
    })

    describe('Fastify conventions', () => {
      it('mirrors the principal to request.user when asked', async () => {
        const g = await make({ mirrorToUser: true })
        const res = await g.call({ url: '/me', headers: key(g.readKey) })
        expect(res.body.user).to.equal('alice')
      })

      it('keeps the access context in AsyncLocalStorage inside an async handler', async () => {
        const res = await f.call({
          url: '/me',
          headers: { ...key(f.readKey), 'x-request-id': 'req-123' },
        })
        expect(res.body.contextRequestId).to.equal('req-123')
        expect(res.body.decisionRequestId).to.equal('req-123')
      })

      it('keeps the access context after the body was parsed', async () => {
        const res = await f.call({
          method: 'POST',
          url: '/docs',
          headers: { ...bearer(f.jwt({ roles: ['editor'] })), 'x-request-id': 'req-456' },
          payload: { title: 'x' },
        })
        expect(res.status).to.equal(201)
        expect(res.body.contextRequestId).to.equal('req-456')
      })

      it('never echoes a malformed request id', async () => {
        const res = await f.call({
          url: '/me',
          headers: { ...key(f.readKey), 'x-request-id': 'bad id <script>' },
        })
        expect(res.body.contextRequestId).to.match(/^[0-9a-f-]{36}$/)
      })

      it('uses request.ip, honouring trustProxy only when the app sets it', async () => {
        const xff = { 'x-forwarded-for': '203.0.113.9' }
        const plain = await f.call({ url: '/me', headers: { ...key(f.readKey), ...xff } })
        expect(plain.body.ip).to.equal('127.0.0.1')
        const g = await make({ trustProxy: true })
        const proxied = await g.call({ url: '/me', headers: { ...key(g.readKey), ...xff } })
        expect(proxied.body.ip).to.equal('203.0.113.9')
      })

      it('sets @fastify/helmet headers on 200, 401 and 403 answers', async () => {
        const answers = [
          await f.call({ url: '/docs/1', headers: key(f.readKey) }),
          await f.call('/docs/1'),
          await f.call({ url: '/admin', headers: key(f.readKey) }),
        ]
        expect(answers.map((a) => a.status)).to.deep.equal([200, 401, 403])
        for (const a of answers) {
          expect(a.headers['x-content-type-options']).to.equal('nosniff')
          expect(a.headers['x-frame-options']).to.equal('SAMEORIGIN')
          expect(a.headers['content-security-policy']).to.be.a('string')
        }
      })
    })

    describe('errors (problemErrors: true)', () => {
      const editor = (f: Fixture): Record<string, string> => bearer(f.jwt({ roles: ['editor'] }))

      it('renders an unterminated JSON body as a 400 problem, not a 500', async () => {
        const res = await f.call({
          method: 'POST',
          url: '/docs',
          headers: { ...editor(f), 'content-type': 'application/json' },
          payload: '{"title": "x", "__proto__": ',
        })
        expectProblem(res, 400, 'ERR_REQUEST_MALFORMED')
      })

      it('renders a prototype-poisoning JSON body as a 400 problem', async () => {
        const res = await f.call({
          method: 'POST',
          url: '/docs',
          headers: { ...editor(f), 'content-type': 'application/json' },
          payload: '{"title": "x", "__proto__": {"admin": true}}',
        })
        expectProblem(res, 400, 'ERR_REQUEST_MALFORMED')
      })

      it('renders a body over the route bodyLimit as a 413 problem', async () => {
        const res = await f.call({
          method: 'POST',
          url: '/small',
          headers: key(f.readKey),
          payload: { title: 'x'.repeat(64) },
        })
        expectProblem(res, 413, 'ERR_REQUEST_TOO_LARGE')
      })

      it('renders a throwing handler as a 500 problem that reveals nothing, and logs it', async () => {
        const res = await f.call({ url: '/boom', headers: key(f.readKey) })
        expectProblem(res, 500, 'ERR_INTERNAL_ERROR')
        expect(res.body).to.not.have.property('detail')
        expect(res.text).to.not.include('hunter2')
        expect(f.logs.join('')).to.include(LEAKY_MESSAGE)
      })

      it('keeps the problem requestId equal to the decision request id', async () => {
        const res = await f.call({
          url: '/boom',
          headers: { ...key(f.readKey), 'x-request-id': 'req-boom' },
        })
        expect(res.body.requestId).to.equal('req-boom')
      })

      it('leaves Fastify error handling alone without problemErrors', async () => {
        const g = await make({ problemErrors: false })
        const res = await g.call({ url: '/boom', headers: key(g.readKey) })
        expect(res.status).to.equal(500)
        expect(res.headers['content-type']).to.match(/^application\/json/)
      })
    })

    describe('mountController', () => {
      it('serves a @Public() method anonymously', async () => {
        const res = await f.call('/ctl/open')
        expect(res.status).to.equal(200)
        expect(res.body).to.deep.equal({ open: true })
      })

      it('enforces the class-level @Policy, with the access context in async methods', async () => {
        const res = await f.call({
          url: '/ctl/docs',
          headers: { ...key(f.readKey), 'x-request-id': 'ctl-1' },
        })
        expect(res.body).to.deep.equal({ docs: ['1', '2'], requestId: 'ctl-1' })
        expectProblem(await f.call('/ctl/docs'), 401, 'ERR_AUTH_REQUIRED')
      })

      it('lets a method-level @Policy replace the class one', async () => {
        expectProblem(
          await f.call({ method: 'POST', url: '/ctl/docs', headers: key(f.readKey), payload: {} }),
          403,
          'ERR_SCOPE_INSUFFICIENT',
        )
        const res = await f.call({
          method: 'POST',
          url: '/ctl/docs',
          headers: bearer(f.jwt({ scope: '', roles: ['editor'] })),
          payload: {},
        })
        expect(res.body).to.deep.equal({ created: true })
      })
    })
  })
}

describe('@portcullis/fastify configuration', () => {
  const gate = createGate({ audit: false })

  async function app(): Promise<FastifyInstance> {
    const instance = Fastify()
    await instance.register(portcullisPlugin, { gate })
    return instance
  }

  it('throws ConfigError when a route declares invalid requirements', async () => {
    const a = await app()
    expect(() =>
      a.get(
        '/x',
        { config: { portcullis: { scopes: 'documents:read' as unknown as string[] } } },
        async () => ({}),
      ),
    ).to.throw(/requirements.scopes/)
    expect(() =>
      a.get('/y', { config: { portcullis: 'not a permission' } }, async () => ({})),
    ).to.throw(/permission/)
    await a.close()
  })

  it('throws ConfigError for an invalid requirePolicy() declaration', async () => {
    const a = await app()
    expect(() => a.requirePolicy({ role: ['x'] } as never)).to.throw(/did you mean "roles"/)
    await a.close()
  })

  it('refuses config.portcullis and requirePolicy() on the same route', async () => {
    const a = await app()
    expect(() =>
      a.get(
        '/x',
        {
          config: { portcullis: 'documents:read' },
          onRequest: [a.requirePolicy({ public: true })],
        },
        async () => ({}),
      ),
    ).to.throw(/declare requirements once/)
    await a.close()
  })

  it('rejects registration with a bad gate option', async () => {
    const a = Fastify()
    let error: unknown
    try {
      await a.register(portcullisPlugin, { realm: 42 as unknown as string })
    } catch (e) {
      error = e
    }
    expect(error).to.include({ code: 'ERR_CONFIG_INVALID' })
    await a.close()
  })

  it('sends the headers of a requirePolicy() step in preHandler too (route rate limits)', async () => {
    const store = createMemoryKeyStore()
    // A stage that answers with its own header on the route step only (as a route limit does).
    const routeLimit = {
      name: 'ratelimit',
      run: ({ requirements }: { requirements: unknown }) =>
        requirements === undefined
          ? { ok: true as const, headers: { ratelimit: '"global";r=9;t=1' } }
          : { ok: true as const, headers: { ratelimit: '"route";r=4;t=1' } },
    }
    const g = createGate({ apiKeys: { store, pepper: PEPPER }, stages: [routeLimit], audit: false })
    const { key: k } = await createApiKeyManager({ store, pepper: PEPPER }).create({
      name: 'r',
      ownerId: 'alice',
      scopes: ['documents:read'],
    })
    const a = Fastify()
    await a.register(portcullisPlugin, { gate: g })
    a.get(
      '/limited',
      {
        config: { portcullis: 'documents:read' },
        preHandler: a.requirePolicy({ rateLimits: [{ limit: 5, windowMs: 1000, name: 'route' }] }),
      },
      async () => ({ ok: true }),
    )
    const res = await a.inject({ url: '/limited', headers: { 'x-api-key': k } })
    expect(res.statusCode).to.equal(200)
    // Both steps' RateLimit fields, merged into one header as Express and Koa send them.
    expect(res.headers.ratelimit).to.equal('"global";r=9;t=1, "route";r=4;t=1')
    await a.close()
    await g.close()
  })

  it('enforces config.portcullis on routes added before the plugin finished loading', async () => {
    const sink = createMemoryAuditSink()
    const store = createMemoryKeyStore()
    const g = createGate({
      apiKeys: { store, pepper: PEPPER },
      audit: { sinks: [sink], flushIntervalMs: 0 },
    })
    const { key: k } = await createApiKeyManager({ store, pepper: PEPPER }).create({
      name: 'r',
      ownerId: 'alice',
      scopes: ['documents:read'],
    })
    const a = Fastify()
    // No `await`: the route is added before the plugin's onRoute hook exists.
    void a.register(portcullisPlugin, { gate: g })
    a.get('/x', { config: { portcullis: 'documents:write' } }, async () => ({ ok: true }))
    await a.ready()
    const res = await a.inject({ url: '/x', headers: { 'x-api-key': k } })
    expect(res.statusCode).to.equal(403)
    expect(res.json()).to.include({ code: 'ERR_SCOPE_INSUFFICIENT' })
    await a.close()
    await g.close()
  })
})
