// One set of HTTP scenarios, run unchanged against every framework adapter. An adapter is done
// when it passes this suite. Each framework supplies `makeApp`, which must serve the route table
// below from the shared gate; everything else (keys, tokens, expectations) lives here.
import { readFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { request as httpRequest, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect } from 'chai'
import request from 'supertest'
import {
  AuthError,
  Controller,
  createApiKeyManager,
  createGate,
  createJsonLinesFileSink,
  createMemoryBroker,
  createMemoryKeyStore,
  createRateLimitStage,
  Get,
  Policy,
  Post,
  Public,
  type AuditEvent,
  type AuditSink,
  type Authenticator,
  type Gate,
  type GateStage,
  type StageResult,
} from '@portcullis/core'
import {
  createFailingBackend,
  createFakeClock,
  createMemoryAuditSink,
  type FakeClock,
  type MemoryAuditSink,
} from '@portcullis/core/testing'
import { passportAuthenticator } from '@portcullis/passport'
import { BasicStrategy } from 'passport-http'
import { seconds, signHmac, unsigned } from './jwt.js'

export const PEPPER = 'conformance-pepper-0123456789abcdef'
export const JWT_SECRET = 'conformance-jwt-secret-0123456789abcd'
export const ISSUER = 'https://id.example'
export const AUDIENCE = 'documents-api'

/** The decorated controller every adapter mounts (standard TC39 decorators). */
@Controller('/ctl')
@Policy('documents:read')
export class DocsController {
  @Public()
  @Get('/open')
  open(): { open: boolean } {
    return { open: true }
  }

  @Get('/docs')
  list(): { docs: string[] } {
    return { docs: ['1', '2'] }
  }

  @Policy('documents:write')
  @Post('/docs')
  create(): { created: boolean } {
    return { created: true }
  }

  // Express 4 ignores a promise a handler returns: the adapter must pass its rejection on itself.
  @Get('/fail')
  async fail(): Promise<never> {
    await Promise.resolve()
    throw new Error('kaboom: db password hunter2')
  }
}

/** The route limit of GET /route-limited (the test stage answers for it; the figures are not used). */
export const ROUTE_LIMIT = { name: 'route', limit: 5, windowMs: 1000 } as const

/**
 * What each framework's app must serve, all through the given gate, with helmet in front:
 *
 * | route | requirements | answer |
 * | --- | --- | --- |
 * | GET /public | `{ public: true }` | `{ principal: id or null }` |
 * | GET /me | none (authenticated) | `{ id, method, requestId }`, requestId read from AsyncLocalStorage |
 * | GET /docs/:id | `'documents:read'` | `{ id }` |
 * | POST /docs | `'documents:write'`, JSON body parser | 201 `{ created: true }` |
 * | GET /admin | `{ roles: ['admin'] }` | `{ admin: true }` |
 * | GET /reports | `{ scopes: ['reports:read', 'documents:read'] }` | `{ ok: true }` |
 * | GET /boom | none | the handler throws `new Error('kaboom: db password hunter2')` |
 * | GET /limited | none | `{ ok: true }` (the gate's test stage answers 429 first) |
 * | GET /route-limited | `'documents:read'`, then in a later step `{ rateLimits: [ROUTE_LIMIT] }` | `{ ok: true }` |
 * | GET /record | `'documents:read'` | calls `env.gate.audit.record('document.viewed')`, answers `{ ok: true }` |
 * | DocsController | decorators | mounted with the adapter's `mountController` |
 *
 * Errors must render as RFC 9457 problems through the adapter's problem handler, and so must the
 * framework's own 404 (a route nobody declared) and its body parser's 400 and 413.
 */
export interface ConformanceEnv {
  readonly gate: Gate
  readonly DocsController: typeof DocsController
}

/** A running app: a Node server on a loopback port, and how to stop it. */
export interface ConformanceApp {
  readonly server: Server
  close(): Promise<void>
}

export type MakeApp = (env: ConformanceEnv) => Promise<ConformanceApp>

interface Fixture {
  gate: Gate
  sink: MemoryAuditSink
  clock: FakeClock
  readKey: string
  revokedKey: string
  expiringKey: string
  jwt(claims?: Record<string, unknown>): string
}

// A stage standing in for the limits stage, so 429 answers and their headers are covered now. On
// /route-limited it allows, with one RateLimit field on the global step and another on the route
// step (as a route's own `rateLimits` do), which every adapter must send merged.
// With `x-test-bad-header`, the header it answers carries a line break, which Node refuses to
// send: the adapter must turn that into a 500 problem on every framework, never a hung request.
// On /store-down it hands the request to a real limits stage whose counter store fails (issue 17).
const storeDown = createRateLimitStage({
  backend: createFailingBackend(),
  limits: [{ name: 'down', limit: 5, windowMs: '1m' }],
})
const testLimiter: GateStage = {
  name: 'ratelimit',
  run: (context): StageResult | Promise<StageResult> => {
    const { request: r, requirements } = context
    if (r.path === '/store-down') return storeDown.run(context)
    const tail = r.header('x-test-bad-header') === undefined ? '' : '\r\nx-injected: 1'
    if (r.path === '/route-limited') {
      const routeStep = requirements !== undefined && requirements.rateLimits.length > 0
      if (!routeStep) return { ok: true, headers: { ratelimit: '"burst";r=9;t=1' } }
      return { ok: true, headers: { ratelimit: `"route";r=4;t=1${tail}` } }
    }
    if (r.path !== '/limited') return { ok: true }
    return {
      ok: false,
      by: 'burst',
      error: new AuthError('ERR_RATE_LIMITED', 'Too many requests', { reason: 'burst 1/1s' }),
      headers: {
        'retry-after': `7${tail}`,
        'ratelimit-policy': '"burst";q=1;w=1',
        ratelimit: '"burst";r=0;t=7',
      },
    }
  },
}

// Any passport strategy works as an authenticator; passport-http's Basic is the classic one.
const USERS = new Map([['ada', { id: 'ada', password: 'correct horse', roles: ['admin'] }]])
const basic = passportAuthenticator(
  new BasicStrategy((name, password, done) => {
    const user = USERS.get(name)
    done(null, user !== undefined && user.password === password ? user : false)
  }),
  { toPrincipal: (user: { id: string; roles: string[] }) => ({ id: user.id, roles: user.roles }) },
)
const basicHeader = (user: string, password: string): string =>
  `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`
const CHALLENGE = 'Bearer realm="api", Basic realm="api"'

async function fixture(extraAuthenticators: readonly Authenticator[]): Promise<Fixture> {
  const clock = createFakeClock()
  const store = createMemoryKeyStore()
  const broker = createMemoryBroker()
  const sink = createMemoryAuditSink()
  const gate = createGate({
    asyncContext: true,
    apiKeys: { store, pepper: PEPPER, broker },
    jwt: { secret: JWT_SECRET, issuer: ISSUER, audience: AUDIENCE },
    authenticators: [basic, ...extraAuthenticators],
    roles: { editor: ['documents:*'] },
    stages: [testLimiter],
    audit: { sinks: [sink], flushIntervalMs: 0 },
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
  const jwt = (claims: Record<string, unknown> = {}): string =>
    signHmac(
      {
        claims: {
          sub: 'dave',
          iss: ISSUER,
          aud: AUDIENCE,
          exp: seconds(clock()) + 600,
          scope: 'documents:read',
          ...claims,
        },
      },
      JWT_SECRET,
    )
  return { gate, sink, clock, readKey, revokedKey: revoked.key, expiringKey: expiring.key, jwt }
}

const HELMET_HEADER = 'x-content-type-options'

/** The members of a 4xx problem, the same on every framework. */
const PROBLEM_KEYS = ['code', 'detail', 'requestId', 'status', 'title', 'type']

function expectProblem(res: request.Response, status: number, code: string): void {
  expect(res.status, JSON.stringify(res.body)).to.equal(status)
  expect(res.headers['content-type']).to.equal('application/problem+json')
  expect(res.body).to.include({ status, code })
  expect(res.body.type).to.be.a('string')
  expect(res.body.requestId).to.be.a('string')
  // Security headers from helmet survive every denial.
  expect(res.headers[HELMET_HEADER], 'helmet header').to.equal('nosniff')
}

/**
 * Spellings of a path that routers may or may not send to the same handler (see
 * test/conformance/path-normalization.test.ts for the full matrix).
 */
const SPELLINGS = (p: string): string[] => [
  p.toUpperCase(),
  `${p}/`,
  `/${p}`,
  `/%${p.charCodeAt(1).toString(16)}${p.slice(2)}`,
  `${p};x`,
  `${p}/..${p}`,
  `${p}/..`,
]

// A GET sent byte for byte: URL-based clients would resolve `..` before sending.
function rawStatus(server: Server, path: string, key: string): Promise<number> {
  const { port } = server.address() as AddressInfo
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      { host: '127.0.0.1', port, path, headers: { 'x-api-key': key } },
      (res) => {
        res.resume()
        res.on('end', () => resolve(res.statusCode as number))
      },
    )
    req.on('error', reject)
    req.end()
  })
}

/** Options of the suite. */
export interface ConformanceOptions {
  /** Extra authenticators given to the gate (e.g. a passport strategy), with their scenarios. */
  readonly authenticators?: readonly Authenticator[]
  /** Scenarios for those authenticators. */
  readonly extraScenarios?: (ctx: { app(): request.Agent | ReturnType<typeof request> }) => void
}

/** Runs the shared HTTP scenarios against one framework. */
export function describeAdapterConformance(
  framework: string,
  makeApp: MakeApp,
  options: ConformanceOptions = {},
): void {
  describe(`adapter conformance: ${framework}`, () => {
    let f: Fixture
    let app: ConformanceApp
    const http = () => request(app.server)

    beforeEach(async () => {
      f = await fixture(options.authenticators ?? [])
      app = await makeApp({ gate: f.gate, DocsController })
    })
    afterEach(async () => {
      await app.close()
      await f.gate.close()
    })

    async function events(): Promise<readonly AuditEvent[]> {
      await f.gate.audit.flush()
      return f.sink.events
    }

    describe('authentication outcomes', () => {
      it('lets a valid API key through (X-API-Key)', async () => {
        const res = await http().get('/me').set('X-API-Key', f.readKey)
        expect(res.status).to.equal(200)
        expect(res.body).to.include({ id: 'alice', method: 'apikey' })
        expect(res.headers[HELMET_HEADER]).to.equal('nosniff')
      })

      it('lets a valid API key through as a Bearer token', async () => {
        const res = await http().get('/docs/7').set('Authorization', `Bearer ${f.readKey}`)
        expect(res.status).to.equal(200)
        expect(res.body).to.deep.equal({ id: '7' })
      })

      it('answers no credentials with 401 and a challenge without error', async () => {
        const res = await http().get('/docs/7')
        expectProblem(res, 401, 'ERR_AUTH_REQUIRED')
        expect(res.headers['www-authenticate']).to.equal(CHALLENGE)
      })

      it('lets a passport strategy (HTTP Basic) authenticate', async () => {
        const res = await http()
          .get('/me')
          .set('Authorization', basicHeader('ada', 'correct horse'))
        expect(res.status).to.equal(200)
        expect(res.body).to.include({ id: 'ada', method: 'basic' })
        expect(
          (await http().get('/admin').set('Authorization', basicHeader('ada', 'correct horse')))
            .status,
        ).to.equal(200)
      })

      it('refuses a wrong password from the passport strategy with 401 ERR_AUTH_INVALID', async () => {
        const res = await http().get('/me').set('Authorization', basicHeader('ada', 'wrong'))
        expectProblem(res, 401, 'ERR_AUTH_INVALID')
        expect(res.headers['www-authenticate']).to.equal(CHALLENGE)
        expect(JSON.stringify(await events())).to.not.include('wrong')
      })

      it('refuses a key with a bad checksum as malformed', async () => {
        const last = f.readKey.at(-1) === 'A' ? 'B' : 'A'
        const res = await http()
          .get('/me')
          .set('X-API-Key', f.readKey.slice(0, -1) + last)
        expectProblem(res, 401, 'ERR_APIKEY_MALFORMED')
        expect(res.headers['www-authenticate']).to.match(
          /^Bearer realm="api", error="invalid_token", error_description="[^"]+", Basic realm="api"$/,
        )
      })

      it('refuses an unknown key', async () => {
        const other = (await fixture([])).readKey
        expectProblem(await http().get('/me').set('X-API-Key', other), 401, 'ERR_APIKEY_INVALID')
      })

      it('refuses a revoked key with the same answer as an unknown one', async () => {
        const res = await http().get('/me').set('X-API-Key', f.revokedKey)
        expectProblem(res, 401, 'ERR_APIKEY_INVALID')
        expect(res.body.detail).to.equal('The API key is invalid')
      })

      it('refuses an expired key', async () => {
        expect((await http().get('/me').set('X-API-Key', f.expiringKey)).status).to.equal(200)
        f.clock.advance(3_600_000)
        expectProblem(
          await http().get('/me').set('X-API-Key', f.expiringKey),
          401,
          'ERR_APIKEY_INVALID',
        )
      })

      it('lets a valid JWT through', async () => {
        const res = await http().get('/me').set('Authorization', `Bearer ${f.jwt()}`)
        expect(res.status).to.equal(200)
        expect(res.body).to.include({ id: 'dave', method: 'jwt' })
      })

      it('refuses an expired JWT with ERR_JWT_EXPIRED', async () => {
        const res = await http()
          .get('/me')
          .set('Authorization', `Bearer ${f.jwt({ exp: seconds(f.clock()) - 120 })}`)
        expectProblem(res, 401, 'ERR_JWT_EXPIRED')
      })

      it('refuses a JWT living longer than maxTokenLifetimeSeconds (24 h) with ERR_JWT_LIFETIME_TOO_LONG', async () => {
        const iat = seconds(f.clock())
        const ok = await http()
          .get('/me')
          .set('Authorization', `Bearer ${f.jwt({ iat, exp: iat + 86_400 })}`)
        expect(ok.status).to.equal(200)
        const res = await http()
          .get('/me')
          .set('Authorization', `Bearer ${f.jwt({ iat, exp: iat + 86_401 })}`)
        expectProblem(res, 401, 'ERR_JWT_LIFETIME_TOO_LONG')
        expect(res.headers['www-authenticate']).to.match(
          /^Bearer realm="api", error="invalid_token", error_description="[^"]+", Basic realm="api"$/,
        )
      })

      it('refuses a JWT whose exp is far in the future (milliseconds) with ERR_JWT_EXPIRY_TOO_FAR', async () => {
        const res = await http()
          .get('/me')
          .set('Authorization', `Bearer ${f.jwt({ exp: f.clock() + 600_000 })}`)
        expectProblem(res, 401, 'ERR_JWT_EXPIRY_TOO_FAR')
        expect(res.headers['www-authenticate']).to.match(
          /^Bearer realm="api", error="invalid_token", error_description="[^"]+", Basic realm="api"$/,
        )
      })

      it('refuses a JWT for another audience', async () => {
        expectProblem(
          await http()
            .get('/me')
            .set('Authorization', `Bearer ${f.jwt({ aud: 'other' })}`),
          401,
          'ERR_JWT_INVALID',
        )
      })

      it('refuses an unsigned alg=none token', async () => {
        const token = unsigned({
          sub: 'dave',
          iss: ISSUER,
          aud: AUDIENCE,
          exp: seconds(f.clock()) + 60,
        })
        expectProblem(
          await http().get('/me').set('Authorization', `Bearer ${token}`),
          401,
          'ERR_JWT_INVALID',
        )
      })

      it('refuses garbage and oversized tokens as malformed', async () => {
        expectProblem(
          await http().get('/me').set('Authorization', 'Bearer not-a-token'),
          401,
          'ERR_JWT_MALFORMED',
        )
        const big = f.jwt({ pad: 'x'.repeat(9000) })
        expectProblem(
          await http().get('/me').set('Authorization', `Bearer ${big}`),
          401,
          'ERR_JWT_MALFORMED',
        )
      })
    })

    describe('ambiguous and misplaced credentials', () => {
      it('refuses an API key together with a JWT', async () => {
        const res = await http()
          .get('/me')
          .set('X-API-Key', f.readKey)
          .set('Authorization', `Bearer ${f.jwt()}`)
        expectProblem(res, 400, 'ERR_AUTH_AMBIGUOUS')
        expect(res.headers['www-authenticate']).to.include('error="invalid_request"')
      })

      it('refuses two Authorization headers', async () => {
        const res = await http()
          .get('/me')
          .set('Authorization', [`Bearer ${f.jwt()}`, `Bearer ${f.readKey}`] as unknown as string)
        expectProblem(res, 400, 'ERR_AUTH_AMBIGUOUS')
      })

      it('refuses credentials in the query string', async () => {
        expectProblem(
          await http().get(`/me?api_key=${f.readKey}`),
          400,
          'ERR_AUTH_QUERY_CREDENTIALS',
        )
      })
    })

    describe('authorization', () => {
      it('answers a missing permission with 403 insufficient_scope and scope=', async () => {
        const res = await http().post('/docs').set('X-API-Key', f.readKey).send({ title: 't' })
        expectProblem(res, 403, 'ERR_SCOPE_INSUFFICIENT')
        expect(res.headers['www-authenticate']).to.match(
          /error="insufficient_scope", .*scope="documents:write"$/,
        )
      })

      it('answers a missing role with 403 ERR_POLICY_DENIED', async () => {
        expectProblem(
          await http().get('/admin').set('X-API-Key', f.readKey),
          403,
          'ERR_POLICY_DENIED',
        )
      })

      it('never serves a spelling of /admin or /limited around their rules', async () => {
        // Route requirements (/admin needs a role) and a path rule of the gate (the /limited
        // stage) hold for every spelling the framework routes; the rest are 404s.
        for (const path of SPELLINGS('/admin'))
          expect(await rawStatus(app.server, path, f.readKey), path).to.be.oneOf([403, 404])
        for (const path of SPELLINGS('/limited'))
          expect(await rawStatus(app.server, path, f.readKey), path).to.be.oneOf([404, 429])
      })

      it('requires every listed scope', async () => {
        const res = await http().get('/reports').set('X-API-Key', f.readKey)
        expectProblem(res, 403, 'ERR_SCOPE_INSUFFICIENT')
        expect(res.headers['www-authenticate']).to.include('scope="reports:read documents:read"')
      })

      it('grants a permission through a role mapping', async () => {
        const res = await http()
          .post('/docs')
          .set('Authorization', `Bearer ${f.jwt({ scope: '', roles: ['editor'] })}`)
          .send({ title: 't' })
        expect(res.status).to.equal(201)
      })

      it('serves a route without requirements to any authenticated caller', async () => {
        expect(
          (
            await http()
              .get('/me')
              .set('Authorization', `Bearer ${f.jwt({ scope: '' })}`)
          ).status,
        ).to.equal(200)
      })

      it('serves a public route to anonymous callers', async () => {
        const res = await http().get('/public')
        expect(res.status).to.equal(200)
        expect(res.body).to.deep.equal({ principal: null })
      })

      it('still verifies credentials sent to a public route', async () => {
        expect((await http().get('/public').set('X-API-Key', f.readKey)).body).to.deep.equal({
          principal: 'alice',
        })
        expectProblem(
          await http().get('/public').set('X-API-Key', f.revokedKey),
          401,
          'ERR_APIKEY_INVALID',
        )
      })
    })

    describe('decorated controller', () => {
      it('serves a @Public() method anonymously', async () => {
        const res = await http().get('/ctl/open')
        expect(res.status).to.equal(200)
        expect(res.body).to.deep.equal({ open: true })
      })

      it('enforces the class-level @Policy', async () => {
        expect((await http().get('/ctl/docs').set('X-API-Key', f.readKey)).body).to.deep.equal({
          docs: ['1', '2'],
        })
        expectProblem(await http().get('/ctl/docs'), 401, 'ERR_AUTH_REQUIRED')
      })

      it('lets a method-level @Policy replace the class one', async () => {
        expectProblem(
          await http().post('/ctl/docs').set('X-API-Key', f.readKey).send({}),
          403,
          'ERR_SCOPE_INSUFFICIENT',
        )
        const editor = f.jwt({ scope: '', roles: ['editor'] })
        expect(
          (await http().post('/ctl/docs').set('Authorization', `Bearer ${editor}`).send({})).body,
        ).to.deep.equal({ created: true })
      })
    })

    describe('limits, errors and bad input', () => {
      it('answers a limit stage denial with 429, Retry-After and RateLimit headers', async () => {
        const res = await http().get('/limited').set('X-API-Key', f.readKey)
        expectProblem(res, 429, 'ERR_RATE_LIMITED')
        expect(res.headers['retry-after']).to.equal('7')
        expect(res.headers['ratelimit-policy']).to.equal('"burst";q=1;w=1')
        expect(res.headers.ratelimit).to.equal('"burst";r=0;t=7')
        expect(res.headers).to.not.have.property('www-authenticate')
      })

      it('answers a limit store outage with 503 and Retry-After: 1, audited as ratelimit.unavailable (issue 17)', async () => {
        const res = await http().get('/store-down').set('X-API-Key', f.readKey).timeout(2000)
        expectProblem(res, 503, 'ERR_RATELIMIT_UNAVAILABLE')
        expect(res.headers['retry-after']).to.equal('1')
        const failures = (await events()).filter((e) => e.outcome === 'failure')
        expect(failures.map((e) => [e.type, e.reason?.code])).to.deep.equal([
          ['ratelimit.unavailable', 'ERR_RATELIMIT_UNAVAILABLE'],
        ])
      })

      it("sends a route step's RateLimit field with the global step's on success", async () => {
        const res = await http().get('/route-limited').set('X-API-Key', f.readKey)
        expect(res.status, JSON.stringify(res.body)).to.equal(200)
        expect(res.body).to.deep.equal({ ok: true })
        expect(res.headers.ratelimit).to.equal('"burst";r=9;t=1, "route";r=4;t=1')
      })

      it('renders a handler error as a 500 problem that reveals nothing', async () => {
        const res = await http().get('/boom').set('X-API-Key', f.readKey)
        expectProblem(res, 500, 'ERR_INTERNAL_ERROR')
        expect(res.body).to.not.have.property('detail')
        expect(res.text).to.not.include('hunter2')
      })

      it('answers a stage header that Node refuses to send with a 500 problem', async () => {
        // The global step's denial (/limited) and the route step's allowance (/route-limited).
        for (const path of ['/limited', '/route-limited']) {
          const res = await http()
            .get(path)
            .set('X-API-Key', f.readKey)
            .set('X-Test-Bad-Header', '1')
            .timeout(2000)
          expectProblem(res, 500, 'ERR_INTERNAL_ERROR')
          expect(res.headers, path).to.not.have.property('x-injected')
        }
      })

      it("renders a controller method's rejected promise as the same 500 problem", async () => {
        const res = await http().get('/ctl/fail').set('X-API-Key', f.readKey).timeout(2000)
        expectProblem(res, 500, 'ERR_INTERNAL_ERROR')
        expect(res.text).to.not.include('hunter2')
      })

      it('renders a hostile JSON body as a 400 problem', async () => {
        const editor = f.jwt({ roles: ['editor'] })
        const res = await http()
          .post('/docs')
          .set('Authorization', `Bearer ${editor}`)
          .set('Content-Type', 'application/json')
          .send('{"title": "x", "__proto__": {"admin": true')
        expectProblem(res, 400, 'ERR_REQUEST_MALFORMED')
        expect(Object.keys(res.body).sort()).to.deep.equal(PROBLEM_KEYS)
      })

      it('renders an oversized JSON body as a 413 problem', async () => {
        const editor = f.jwt({ roles: ['editor'] })
        const res = await http()
          .post('/docs')
          .set('Authorization', `Bearer ${editor}`)
          .set('Content-Type', 'application/json')
          .send(JSON.stringify({ title: 'x'.repeat(2 * 1024 * 1024) }))
        expectProblem(res, 413, 'ERR_REQUEST_TOO_LARGE')
        expect(Object.keys(res.body).sort()).to.deep.equal(PROBLEM_KEYS)
      })

      it('answers an unknown route with a 404 ERR_ROUTE_NOT_FOUND problem', async () => {
        const res = await http().get('/no-such-route').set('X-API-Key', f.readKey)
        expectProblem(res, 404, 'ERR_ROUTE_NOT_FOUND')
        expect(res.body).to.deep.include({
          type: 'urn:portcullis:problem:route-not-found',
          title: 'Not found',
          detail: 'No route matches the request',
        })
        expect(Object.keys(res.body).sort()).to.deep.equal(PROBLEM_KEYS)
        // Without credentials the gate answers first: a 404 reveals nothing to anonymous callers.
        expectProblem(await http().get('/no-such-route'), 401, 'ERR_AUTH_REQUIRED')
      })
    })

    describe('context and audit', () => {
      it('gives the handler the access context through AsyncLocalStorage', async () => {
        const res = await http()
          .get('/me')
          .set('X-API-Key', f.readKey)
          .set('X-Request-Id', 'conf-123')
        expect(res.body.requestId).to.equal('conf-123')
      })

      it('writes one access event per request, the same on every adapter, without secrets', async () => {
        const token = f.jwt()
        await http().get('/docs/1').set('X-API-Key', f.readKey)
        await http().get('/docs/1')
        await http().post('/docs').set('Authorization', `Bearer ${token}`).send({})
        await http().get('/me').set('X-API-Key', f.revokedKey)
        await http().get('/limited').set('X-API-Key', f.readKey)
        await http().get('/me').set('X-API-Key', f.readKey).expect(200)
        const list = await events()
        // One event per request: the route's decision carries the authentication and the trace.
        // A route that declares nothing is decided as "authenticated" by Fastify's one hook, and
        // recorded as authenticated once its answer is sent behind Express's and Koa's global
        // middleware (docs/operations.md, "Not the same on every framework yet").
        const undeclared = framework.startsWith('fastify') ? 'authz.allow' : 'authn.success'
        expect(list.map((e) => [e.type, e.actor.id, e.reason?.code ?? null])).to.deep.equal([
          ['authz.allow', 'alice', null],
          ['authn.failure', null, 'ERR_AUTH_REQUIRED'],
          ['authz.deny', 'dave', 'ERR_SCOPE_INSUFFICIENT'],
          ['authn.failure', null, 'ERR_APIKEY_INVALID'],
          ['ratelimit.exceeded', 'alice', 'ERR_RATE_LIMITED'],
          [undeclared, 'alice', null],
        ])
        expect(list.find((e) => e.type === 'authz.deny')?.request?.route).to.equal('/docs')
        expect(list[0]?.request?.route).to.equal('/docs/:id')
        expect(list.at(-1)?.request?.path).to.equal('/me')
        const text = JSON.stringify(list)
        for (const secret of [f.readKey, f.revokedKey, token, PEPPER, JWT_SECRET])
          expect(text).to.not.include(secret)
      })

      it('names the adapter that answered in every request event (request.adapter)', async () => {
        // Each conformance file names its runs after the adapter, with the major ('express 4').
        const adapter = framework.split(' ')[0]
        await http().get('/docs/1').set('X-API-Key', f.readKey)
        await http().get('/docs/1')
        await http().get('/ctl/docs').set('X-API-Key', f.readKey)
        await http().get('/limited').set('X-API-Key', f.readKey)
        const list = await events()
        expect(list).to.have.length.of.at.least(4)
        expect(list.map((e) => [e.type, e.request?.adapter])).to.deep.equal(
          list.map((e) => [e.type, adapter]),
        )
      })

      it('records handler events with the request context', async () => {
        await http().get('/record').set('X-API-Key', f.readKey).set('X-Request-Id', 'rec-1')
        const custom = (await events()).find((e) => e.type === 'custom')
        expect(custom).to.deep.include({ customType: 'document.viewed' })
        expect(custom?.request?.id).to.equal('rec-1')
        expect(custom?.actor.id).to.equal('alice')
      })
    })

    describe('durable audit (audit.durable)', () => {
      let dir: string
      let file: string
      let down: boolean
      let durable: { gate: Gate; app: ConformanceApp }
      const jsonl = () => request(durable.app.server)

      beforeEach(async () => {
        dir = await mkdtemp(join(tmpdir(), 'portcullis-conformance-durable-'))
        file = join(dir, 'audit.jsonl')
        down = false
        const real = createJsonLinesFileSink({ path: file })
        const sink: AuditSink = {
          name: 'jsonl-file',
          write: (batch) =>
            down ? Promise.reject(new Error('EIO: i/o error, write')) : real.write(batch),
          close: () => real.close?.() ?? Promise.resolve(),
        }
        const gate = createGate({
          jwt: { secret: JWT_SECRET, issuer: ISSUER, audience: AUDIENCE },
          // Without durable mode nothing would reach the file for a minute.
          audit: { sinks: [sink], flushIntervalMs: 60_000, durable: true },
          now: f.clock,
        })
        durable = { gate, app: await makeApp({ gate, DocsController }) }
      })
      afterEach(async () => {
        down = false
        await durable.app.close()
        await durable.gate.close()
        await rm(dir, { recursive: true, force: true })
      })

      it("answers only once the request's audit events are in the file", async () => {
        const res = await jsonl()
          .get('/docs/7')
          .set('Authorization', `Bearer ${f.jwt()}`)
          .set('X-Request-Id', 'durable-1')
        expect(res.status, JSON.stringify(res.body)).to.equal(200)
        const lines = readFileSync(file, 'utf8').trimEnd().split('\n')
        const mine = lines
          .map((l) => JSON.parse(l) as AuditEvent)
          .filter((e) => e.request?.id === 'durable-1')
        expect(mine.map((e) => e.type)).to.deep.equal(['authn.success', 'authz.allow'])
      })

      it('answers 503 ERR_AUDIT_UNAVAILABLE with Retry-After when the event cannot be written', async () => {
        down = true
        const res = await jsonl().get('/docs/7').set('Authorization', `Bearer ${f.jwt()}`)
        expectProblem(res, 503, 'ERR_AUDIT_UNAVAILABLE')
        expect(res.headers['retry-after']).to.equal('1')
      })
    })

    describe('full audit queue (maxQueue, a sink that stalls)', () => {
      let release: () => void
      let target: MemoryAuditSink
      let dropped: number
      let full: { gate: Gate; app: ConformanceApp }
      const jam = () => request(full.app.server)

      /** A gate whose audit queue holds one event while its sink's first write stalls. */
      async function stalled(failClosedOnAuditBackpressure: boolean): Promise<void> {
        target = createMemoryAuditSink({ name: 'stalled' })
        dropped = 0
        let open!: () => void
        const stall = new Promise<void>((r) => (open = r))
        release = open
        const sink: AuditSink = {
          name: 'stalled',
          write: async (batch) => {
            await stall
            await target.write(batch)
          },
        }
        const gate = createGate({
          jwt: { secret: JWT_SECRET, issuer: ISSUER, audience: AUDIENCE },
          audit: {
            sinks: [sink],
            maxQueue: 1,
            flushIntervalMs: 0,
            metrics: {
              increment: (metric, _labels, value = 1) => {
                if (metric === 'auditEventsDropped') dropped += value
              },
              set() {},
              observe() {},
            },
          },
          failClosedOnAuditBackpressure,
          now: f.clock,
        })
        full = { gate, app: await makeApp({ gate, DocsController }) }
      }
      afterEach(async () => {
        release()
        await full.app.close()
        await full.gate.close()
      })

      it('fails closed with 503 ERR_AUDIT_UNAVAILABLE and Retry-After', async () => {
        await stalled(true)
        const statuses: number[] = []
        for (let i = 0; i < 3; i++) {
          const res = await jam().get('/docs/7').set('Authorization', `Bearer ${f.jwt()}`)
          statuses.push(res.status)
          if (res.status === 503) {
            expectProblem(res, 503, 'ERR_AUDIT_UNAVAILABLE')
            expect(res.headers['retry-after']).to.equal('1')
          }
        }
        expect(statuses).to.include(503)
      })

      it('sheds when failClosedOnAuditBackpressure is false, and records audit.dropped once the queue has room', async () => {
        await stalled(false)
        for (let i = 0; i < 3; i++) {
          const res = await jam().get('/docs/7').set('Authorization', `Bearer ${f.jwt()}`)
          expect(res.status).to.equal(200)
        }
        expect(dropped).to.be.greaterThan(0)
        release()
        await full.gate.audit.flush()
        // One event per episode of a full queue; together they account for every dropped event.
        const drops = target.events.filter((e) => e.type === 'audit.dropped')
        expect(drops).to.have.length.greaterThan(0)
        let counted = 0
        for (const d of drops) {
          expect(d.data).to.include({ sink: 'stalled' })
          expect(Date.parse(String(d.data?.to))).to.be.at.least(Date.parse(String(d.data?.from)))
          counted += d.data?.count as number
        }
        expect(counted).to.equal(dropped)
      })
    })

    options.extraScenarios?.({ app: () => http() })
  })
}
