import { expect } from 'chai'
import express, { type Express } from 'express'
import { BasicStrategy } from 'passport-http'
import { ExtractJwt, Strategy as JwtStrategy } from 'passport-jwt'
import { Strategy as PassportStrategy } from 'passport-strategy'
import sinon from 'sinon'
import request from 'supertest'
import {
  createApiKeyManager,
  createGate,
  createMemoryKeyStore,
  type Authenticator,
  type Gate,
  type GateOptions,
  type Logger,
} from '@portcullis/core'
import { createMemoryAuditSink, type MemoryAuditSink } from '@portcullis/core/testing'
import { authMiddleware, problemHandler } from '@portcullis/express'
import {
  detectAuthorizationScheme,
  detectHeader,
  passportAuthenticator,
  type PassportRequest,
} from '@portcullis/passport'
import { seconds, signHmac } from '../helpers/jwt.js'

const PEPPER = 'pepper-for-tests-only-0123456789abcdef'
const SECRET = 'legacy-jwt-secret-for-tests-0123456789'
const PASSWORD = 'open-sesame-42'

const sandbox = sinon.createSandbox()

interface DemoUser {
  readonly username: string
  readonly roles: readonly string[]
}

const USERS: ReadonlyMap<string, { password: string; roles: string[] }> = new Map([
  ['ada', { password: PASSWORD, roles: ['editor'] }],
])

function basicStrategy(): BasicStrategy {
  return new BasicStrategy((username, password, done) => {
    const user = USERS.get(username)
    done(null, user?.password === password ? { username, roles: user.roles } : false)
  })
}

const userToPrincipal = (user: DemoUser): { id: string; roles: readonly string[] } => ({
  id: user.username,
  roles: user.roles,
})

const basicHeader = (user: string, password: string): string =>
  `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`

/** A strategy whose `authenticate` is the given function (run with passport's actions as `this`). */
function strategyOf(
  name: string,
  authenticate: (this: PassportStrategy, req: PassportRequest) => unknown,
): PassportStrategy {
  const strategy = new PassportStrategy() as PassportStrategy & { name: string }
  strategy.name = name
  strategy.authenticate = authenticate as PassportStrategy['authenticate']
  return strategy
}

interface Fixture {
  readonly app: Express
  readonly gate: Gate
  readonly sink: MemoryAuditSink
  readonly key: string
  readonly logger: { warn: sinon.SinonSpy; error: sinon.SinonSpy }
}

async function setup(
  authenticators: readonly Authenticator[],
  options: Partial<GateOptions> = {},
): Promise<Fixture> {
  const store = createMemoryKeyStore()
  const sink = createMemoryAuditSink()
  const logger = { warn: sandbox.spy(), error: sandbox.spy() }
  const gate = createGate({
    apiKeys: { store, pepper: PEPPER },
    authenticators,
    audit: { sinks: [sink], flushIntervalMs: 0 },
    logger: logger as Logger,
    ...options,
  })
  const { key } = await createApiKeyManager({ store, pepper: PEPPER }).create({
    name: 'svc',
    ownerId: 'service-1',
    scopes: ['reports:read'],
  })
  const app = express()
  app.use(authMiddleware({ gate }))
  app.get('/me', (req, res) => {
    res.json(req.auth?.principal ?? null)
  })
  app.use(problemHandler({ gate }))
  return { app, gate, sink, key, logger }
}

function expectProblem(res: request.Response, status: number, code: string): void {
  expect(res.status).to.equal(status)
  expect(res.headers['content-type']).to.match(/^application\/problem\+json/)
  expect(res.body).to.include({ status, code })
}

async function auditReasons(f: Fixture): Promise<string[]> {
  await f.gate.audit.flush()
  return f.sink.events.map((e) => JSON.stringify(e.reason ?? {}))
}

describe('@portcullis/passport passportAuthenticator', () => {
  afterEach(() => {
    sandbox.restore()
  })

  describe('passport-http BasicStrategy through the Express adapter', () => {
    let f: Fixture
    beforeEach(async () => {
      f = await setup([
        passportAuthenticator(basicStrategy(), {
          detect: detectAuthorizationScheme('basic'),
          toPrincipal: userToPrincipal,
        }),
      ])
    })

    it('lets the right password through with req.auth.principal', async () => {
      const res = await request(f.app).get('/me').set('Authorization', basicHeader('ada', PASSWORD))
      expect(res.status).to.equal(200)
      expect(res.body).to.deep.equal({
        id: 'ada',
        method: 'basic',
        scopes: [],
        roles: ['editor'],
        attributes: {},
      })
    })

    it('denies a wrong password with 401 ERR_AUTH_INVALID and keeps the password out of the audit', async () => {
      const res = await request(f.app)
        .get('/me')
        .set('Authorization', basicHeader('ada', 'wrong-pw'))
      expectProblem(res, 401, 'ERR_AUTH_INVALID')
      // The Basic strategy's own challenge follows the Bearer one.
      expect(res.headers['www-authenticate']).to.equal('Bearer realm="api", Basic realm="api"')
      const reasons = await auditReasons(f)
      expect(reasons.join()).to.include('basic: challenge Basic')
      expect(reasons.join()).not.to.include('wrong-pw')
      expect(reasons.join()).not.to.include(Buffer.from('ada:wrong-pw').toString('base64'))
    })

    it('denies an unknown user with 401 ERR_AUTH_INVALID', async () => {
      const res = await request(f.app).get('/me').set('Authorization', basicHeader('eve', PASSWORD))
      expectProblem(res, 401, 'ERR_AUTH_INVALID')
    })

    it('answers a request without credentials with 401 ERR_AUTH_REQUIRED and a challenge', async () => {
      const res = await request(f.app).get('/me')
      expectProblem(res, 401, 'ERR_AUTH_REQUIRED')
      expect(res.headers['www-authenticate']).to.equal('Bearer realm="api", Basic realm="api"')
    })

    it('answers a malformed Basic credential (the strategy fails with 400) with 400 ERR_AUTH_MALFORMED', async () => {
      const res = await request(f.app)
        .get('/me')
        .set('Authorization', `Basic ${Buffer.from('no-colon').toString('base64')}`)
      expectProblem(res, 400, 'ERR_AUTH_MALFORMED')
    })

    it('still accepts API keys (built-in authenticators come first)', async () => {
      const res = await request(f.app).get('/me').set('X-API-Key', f.key)
      expect(res.status).to.equal(200)
      expect(res.body).to.include({ id: 'service-1', method: 'apikey' })
    })

    it('refuses Basic and X-API-Key together with 400 ERR_AUTH_AMBIGUOUS', async () => {
      const res = await request(f.app)
        .get('/me')
        .set('Authorization', basicHeader('ada', PASSWORD))
        .set('X-API-Key', f.key)
      expectProblem(res, 400, 'ERR_AUTH_AMBIGUOUS')
    })

    it('does not leave passport actions on the shared strategy object', async () => {
      const strategy = basicStrategy()
      const g = await setup([passportAuthenticator(strategy, { toPrincipal: userToPrincipal })])
      await request(g.app).get('/me').set('Authorization', basicHeader('ada', PASSWORD)).expect(200)
      for (const action of ['success', 'fail', 'error', 'pass', 'redirect'])
        expect(Object.hasOwn(strategy, action), action).to.equal(false)
    })
  })

  it('with rejectAmbiguousCredentials: false, uses Basic and ignores the X-API-Key header', async () => {
    const f = await setup(
      [passportAuthenticator(basicStrategy(), { toPrincipal: userToPrincipal })],
      { rejectAmbiguousCredentials: false },
    )
    const res = await request(f.app)
      .get('/me')
      .set('Authorization', basicHeader('ada', PASSWORD))
      .set('X-API-Key', 'not-even-a-key')
    expect(res.status).to.equal(200)
    expect(res.body).to.include({ id: 'ada', method: 'basic' })
  })

  describe('strategy failures', () => {
    it('answers 503 ERR_STORE_UNAVAILABLE when the strategy throws', async () => {
      const f = await setup([
        passportAuthenticator(
          strategyOf('thrower', () => {
            throw new Error('boom')
          }),
          { detect: detectHeader('x-token'), toPrincipal: userToPrincipal },
        ),
      ])
      const res = await request(f.app).get('/me').set('X-Token', 't0ken-value')
      expectProblem(res, 503, 'ERR_STORE_UNAVAILABLE')
      expect(res.body).not.to.have.property('detail')
      expect(f.logger.error.calledOnce).to.equal(true)
      const [fields, message] = f.logger.error.firstCall.args as [{ error: string }, string]
      expect(message).to.match(/^gate: /)
      expect(fields.error).to.include('boom')
    })

    it('answers 503 when an async authenticate rejects, without an unhandled rejection', async () => {
      const unhandled = sandbox.spy()
      process.on('unhandledRejection', unhandled)
      try {
        const f = await setup([
          passportAuthenticator(
            strategyOf('async-thrower', async () => {
              throw new Error('async boom')
            }),
            { detect: detectHeader('x-token'), toPrincipal: userToPrincipal },
          ),
        ])
        const res = await request(f.app).get('/me').set('X-Token', 't0ken-value')
        expectProblem(res, 503, 'ERR_STORE_UNAVAILABLE')
        await new Promise((resolve) => setImmediate(resolve))
        expect(unhandled.called).to.equal(false)
      } finally {
        process.off('unhandledRejection', unhandled)
      }
    })

    it('answers 503 when the verify callback reports an error, and redacts the credential from the log', async () => {
      const f = await setup([
        passportAuthenticator(
          new BasicStrategy((username, password, done) =>
            done(new Error(`directory down while checking ${username}:${password}`)),
          ),
          { toPrincipal: userToPrincipal },
        ),
      ])
      const res = await request(f.app)
        .get('/me')
        .set('Authorization', basicHeader('ada', 'hunter2-secret'))
      expectProblem(res, 503, 'ERR_STORE_UNAVAILABLE')
      const logged = JSON.stringify(f.logger.error.args)
      expect(logged).to.include('directory down')
      expect(logged).not.to.include('hunter2-secret')
    })

    it('answers 503 after timeoutMs when the strategy never calls back', async () => {
      const f = await setup([
        passportAuthenticator(
          strategyOf('silent', () => undefined),
          { detect: detectHeader('x-token'), toPrincipal: userToPrincipal, timeoutMs: 50 },
        ),
      ])
      const res = await request(f.app).get('/me').set('X-Token', 't0ken-value')
      expectProblem(res, 503, 'ERR_STORE_UNAVAILABLE')
      expect(JSON.stringify(f.logger.error.args)).to.include('did not answer within 50 ms')
    })

    it('answers 401 ERR_AUTH_REQUIRED when the strategy passes or redirects', async () => {
      for (const action of ['pass', 'redirect'] as const) {
        const f = await setup([
          passportAuthenticator(
            strategyOf(action, function (this: PassportStrategy) {
              if (action === 'pass') this.pass()
              else this.redirect('https://idp.example/authorize?state=x')
            }),
            { detect: detectHeader('x-token'), toPrincipal: userToPrincipal },
          ),
        ])
        const res = await request(f.app).get('/me').set('X-Token', 't0ken-value')
        expectProblem(res, 401, 'ERR_AUTH_REQUIRED')
      }
    })

    it('keeps the first answer of a strategy that calls back twice', async () => {
      const f = await setup([
        passportAuthenticator(
          strategyOf('twice', function (this: PassportStrategy) {
            this.fail('Token', 401)
            this.success({ username: 'ada', roles: [] })
          }),
          { detect: detectHeader('x-token'), toPrincipal: userToPrincipal },
        ),
      ])
      const res = await request(f.app).get('/me').set('X-Token', 't0ken-value')
      expectProblem(res, 401, 'ERR_AUTH_INVALID')
    })

    it('redacts the credential from a failure message', async () => {
      const token = 'tok-1234567890-secret'
      const f = await setup([
        passportAuthenticator(
          strategyOf('leaky', function (this: PassportStrategy, req: PassportRequest) {
            this.fail({ message: `no such token ${String(req.headers['x-token'])}` }, 401)
          }),
          { detect: detectHeader('x-token'), toPrincipal: userToPrincipal },
        ),
      ])
      const res = await request(f.app).get('/me').set('X-Token', token)
      expectProblem(res, 401, 'ERR_AUTH_INVALID')
      const reasons = (await auditReasons(f)).join()
      expect(reasons).to.include('leaky: no such token [redacted] (status 401)')
      expect(reasons).not.to.include(token)
    })

    it('answers 503 (and logs) when toPrincipal returns an invalid id', async () => {
      const f = await setup([
        passportAuthenticator(basicStrategy(), {
          toPrincipal: (user: DemoUser) => ({ id: `${user.username} with spaces` }),
        }),
      ])
      const res = await request(f.app).get('/me').set('Authorization', basicHeader('ada', PASSWORD))
      expectProblem(res, 503, 'ERR_STORE_UNAVAILABLE')
      expect(JSON.stringify(f.logger.error.args)).to.include('returned an id that is not')
    })
  })

  describe('passport-jwt for tokens in X-Legacy-Token', () => {
    let f: Fixture
    const token = (claims: Record<string, unknown> = {}): string =>
      signHmac(
        {
          claims: {
            sub: 'legacy-user',
            iss: 'legacy-idp',
            aud: 'legacy-api',
            jti: 'jti-1',
            scope: 'reports:read reports:write',
            iat: seconds(Date.now()),
            exp: seconds(Date.now()) + 600,
            ...claims,
          },
        },
        SECRET,
      )
    beforeEach(async () => {
      const strategy = new JwtStrategy(
        {
          jwtFromRequest: ExtractJwt.fromHeader('x-legacy-token'),
          secretOrKey: SECRET,
          issuer: 'legacy-idp',
          audience: 'legacy-api',
          algorithms: ['HS256'],
        },
        (payload: Record<string, unknown>, done: (err: unknown, user?: unknown) => void) =>
          done(null, payload),
      )
      f = await setup([
        passportAuthenticator(strategy, {
          name: 'legacy-jwt',
          detect: detectHeader('x-legacy-token'),
          toPrincipal: (claims: { sub: string; scope: string; jti: string }) => ({
            id: claims.sub,
            scopes: claims.scope.split(' '),
            tokenId: claims.jti,
          }),
        }),
      ])
    })

    it('authenticates a valid token', async () => {
      const res = await request(f.app).get('/me').set('X-Legacy-Token', token())
      expect(res.status).to.equal(200)
      expect(res.body).to.deep.include({
        id: 'legacy-user',
        method: 'legacy-jwt',
        tokenId: 'jti-1',
        scopes: ['reports:read', 'reports:write'],
      })
    })

    it('denies an expired token with 401 ERR_AUTH_INVALID, the reason naming the jwt error', async () => {
      const expired = token({ exp: seconds(Date.now()) - 60 })
      const res = await request(f.app).get('/me').set('X-Legacy-Token', expired)
      expectProblem(res, 401, 'ERR_AUTH_INVALID')
      const reasons = (await auditReasons(f)).join()
      expect(reasons).to.include('legacy-jwt: TokenExpiredError: jwt expired')
      expect(reasons).not.to.include(expired)
    })

    it('denies a token signed with another secret', async () => {
      const forged = signHmac(
        { claims: { sub: 'x', iss: 'legacy-idp', aud: 'legacy-api' } },
        'other',
      )
      const res = await request(f.app).get('/me').set('X-Legacy-Token', forged)
      expectProblem(res, 401, 'ERR_AUTH_INVALID')
    })

    it('refuses X-Legacy-Token and X-API-Key together with 400 ERR_AUTH_AMBIGUOUS', async () => {
      const res = await request(f.app)
        .get('/me')
        .set('X-Legacy-Token', token())
        .set('X-API-Key', f.key)
      expectProblem(res, 400, 'ERR_AUTH_AMBIGUOUS')
    })
  })
})
