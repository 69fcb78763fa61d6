import { expect } from 'chai'
import express, { type Express } from 'express'
import passport from 'passport'
import { BasicStrategy } from 'passport-http'
import request from 'supertest'
import {
  AuthError,
  createApiKeyManager,
  createGate,
  createMemoryKeyStore,
  isConfigError,
  type Gate,
  type GateOptions,
  type Principal,
  type StageResult,
} from '@portcullis/core'
import { createMemoryAuditSink } from '@portcullis/core/testing'
import { problemHandler } from '@portcullis/express'
import { PortcullisStrategy, type PortcullisAuthInfo } from '@portcullis/passport'
import { seconds, signHmac } from '../helpers/jwt.js'

const PEPPER = 'pepper-for-tests-only-0123456789abcdef'
const SECRET = 'jwt-secret-for-tests-only-0123456789'
const ISSUER = 'https://id.example'
const AUDIENCE = 'documents-api'

interface Fixture {
  readonly app: Express
  readonly gate: Gate
  readonly key: string
  jwt(claims?: Record<string, unknown>): string
}

/** A plain passport app: no Portcullis middleware, only `passport.authenticate('portcullis')`. */
async function setup(options: Partial<GateOptions> = {}): Promise<Fixture> {
  const store = createMemoryKeyStore()
  const gate = createGate({
    apiKeys: { store, pepper: PEPPER },
    jwt: { secret: SECRET, issuer: ISSUER, audience: AUDIENCE },
    audit: false,
    ...options,
  })
  const { key } = await createApiKeyManager({ store, pepper: PEPPER }).create({
    name: 'reader',
    ownerId: 'alice',
    scopes: ['documents:read'],
  })
  const authenticator = new passport.Passport()
  authenticator.use(new PortcullisStrategy({ gate }))
  authenticator.use(
    new BasicStrategy((username, password, done) =>
      done(
        null,
        username === 'ada' && password === 'pw-ada' ? { id: 'ada', method: 'basic' } : false,
      ),
    ),
  )
  const app = express()
  app.use(authenticator.initialize())
  app.get('/x', authenticator.authenticate('portcullis', { session: false }), (req, res) => {
    const info = req.authInfo as PortcullisAuthInfo | undefined
    res.json({ user: req.user, requestId: info?.decision.requestId })
  })
  app.get(
    '/either',
    authenticator.authenticate(['portcullis', 'basic'], { session: false }),
    (req, res) => {
      res.json({ id: (req.user as Principal).id })
    },
  )
  app.use(problemHandler({ gate }))
  const jwt = (claims: Record<string, unknown> = {}): string =>
    signHmac(
      {
        claims: {
          sub: 'dave',
          iss: ISSUER,
          aud: AUDIENCE,
          iat: seconds(Date.now()),
          exp: seconds(Date.now()) + 600,
          scope: 'documents:read',
          ...claims,
        },
      },
      SECRET,
    )
  return { app, gate, key, jwt }
}

describe('@portcullis/passport PortcullisStrategy', () => {
  let f: Fixture
  beforeEach(async () => {
    f = await setup()
  })

  it('is named portcullis', () => {
    expect(new PortcullisStrategy({ gate: f.gate }).name).to.equal('portcullis')
  })

  it('refuses to be created without a gate (ConfigError)', () => {
    expect(() => new PortcullisStrategy({} as { gate: Gate }))
      .to.throw()
      .that.satisfies(isConfigError)
  })

  it('authenticates a valid API key: 200 with req.user = the principal', async () => {
    const res = await request(f.app).get('/x').set('X-API-Key', f.key)
    expect(res.status).to.equal(200)
    expect(res.body.user).to.include({ id: 'alice', method: 'apikey' })
    expect(res.body.user.scopes).to.deep.equal(['documents:read'])
    expect(res.body.requestId).to.be.a('string')
  })

  it("names passport as the adapter in the gate's audit events", async () => {
    const sink = createMemoryAuditSink()
    const g = await setup({ audit: { sinks: [sink], flushIntervalMs: 0 } })
    expect((await request(g.app).get('/x').set('X-API-Key', g.key)).status).to.equal(200)
    expect((await request(g.app).get('/x')).status).to.equal(401)
    await g.gate.audit.flush()
    expect(sink.events.map((e) => [e.type, e.request?.adapter])).to.deep.equal([
      ['authn.success', 'passport'],
      ['authn.failure', 'passport'],
    ])
  })

  it('denies an invalid API key with 401 and an invalid_token challenge', async () => {
    const res = await request(f.app)
      .get('/x')
      .set('X-API-Key', `${f.key.slice(0, -4)}AAAA`)
    expect(res.status).to.equal(401)
    expect(res.headers['www-authenticate']).to.match(/^Bearer realm="api", error="invalid_token"/)
  })

  it('authenticates a valid JWT: 200 with req.user = the principal', async () => {
    const res = await request(f.app).get('/x').set('Authorization', `Bearer ${f.jwt()}`)
    expect(res.status).to.equal(200)
    expect(res.body.user).to.include({ id: 'dave', method: 'jwt' })
  })

  it('denies an expired JWT with 401', async () => {
    const res = await request(f.app)
      .get('/x')
      .set('Authorization', `Bearer ${f.jwt({ exp: seconds(Date.now()) - 3600 })}`)
    expect(res.status).to.equal(401)
    expect(res.headers['www-authenticate']).to.include('error="invalid_token"')
  })

  it('answers a request without credentials with 401 and the gate challenge', async () => {
    const res = await request(f.app).get('/x')
    expect(res.status).to.equal(401)
    expect(res.headers['www-authenticate']).to.equal('Bearer realm="api"')
  })

  it('answers ambiguous credentials with the gate status (400)', async () => {
    const res = await request(f.app)
      .get('/x')
      .set('X-API-Key', f.key)
      .set('Authorization', `Bearer ${f.jwt()}`)
    expect(res.status).to.equal(400)
  })

  it('fails anonymous requests with 401 even when the gate does not require credentials', async () => {
    const open = await setup({ credentialsRequired: false })
    const res = await request(open.app).get('/x')
    expect(res.status).to.equal(401)
    expect(res.headers['www-authenticate']).to.equal('Bearer realm="api"')
  })

  it('lets passport fall through to the next strategy when the gate fails', async () => {
    const basic = `Basic ${Buffer.from('ada:pw-ada').toString('base64')}`
    const res = await request(f.app).get('/either').set('Authorization', basic)
    expect(res.status).to.equal(200)
    expect(res.body).to.deep.equal({ id: 'ada' })
    const key = await request(f.app).get('/either').set('X-API-Key', f.key)
    expect(key.body).to.deep.equal({ id: 'alice' })
  })

  it('copies the decision headers (RateLimit, Retry-After) to the response', async () => {
    let remaining = 1
    const limited = await setup({
      stages: [
        {
          name: 'limits',
          run: (): StageResult =>
            remaining-- > 0
              ? { ok: true, headers: { ratelimit: '"default";r=0;t=60' } }
              : {
                  ok: false,
                  error: new AuthError('ERR_RATE_LIMITED', 'Too many requests'),
                  headers: { 'retry-after': '60' },
                },
        },
      ],
    })
    const first = await request(limited.app).get('/x').set('X-API-Key', limited.key)
    expect(first.status).to.equal(200)
    expect(first.headers.ratelimit).to.equal('"default";r=0;t=60')
    const second = await request(limited.app).get('/x').set('X-API-Key', limited.key)
    expect(second.status).to.equal(429)
    expect(second.headers['retry-after']).to.equal('60')
  })

  it('passes a 5xx decision to next(err): the problem handler answers 503', async () => {
    const broken = await setup({
      authenticators: [
        {
          name: 'broken',
          detect: (r) => r.header('x-token') !== undefined,
          authenticate: () =>
            Promise.reject(new AuthError('ERR_KEYSTORE_UNAVAILABLE', 'The key store is down')),
        },
      ],
    })
    const res = await request(broken.app).get('/x').set('X-Token', 'abc')
    expect(res.status).to.equal(503)
    expect(res.body).to.include({ code: 'ERR_KEYSTORE_UNAVAILABLE' })
  })
})
