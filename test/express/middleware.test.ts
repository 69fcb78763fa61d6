import { generateKeyPairSync } from 'node:crypto'
import { expect } from 'chai'
import express, { type Express } from 'express'
import request from 'supertest'
import {
  createApiKeyManager,
  createGate,
  createMemoryBroker,
  createMemoryKeyStore,
  getAccessContext,
  type AuditEvent,
  type Gate,
} from '@portcullis/core'
import {
  createFakeClock,
  createMemoryAuditSink,
  type MemoryAuditSink,
} from '@portcullis/core/testing'
import { authMiddleware, problemHandler, requirePolicy } from '@portcullis/express'
import { seconds, signAsymmetric, signHmac, unsigned } from '../helpers/jwt.js'

const PEPPER = 'pepper-for-tests-only-0123456789abcdef'
const SECRET = 'jwt-secret-for-tests-only-0123456789'
const ISSUER = 'https://id.example'
const AUDIENCE = 'documents-api'

interface Fixture {
  app: Express
  gate: Gate
  sink: MemoryAuditSink
  clock: ReturnType<typeof createFakeClock>
  readKey: string
  revokedKey: string
  expiringKey: string
  jwt(claims?: Record<string, unknown>): string
}

async function setup(
  options: { mirrorToUser?: boolean; trustProxy?: boolean } = {},
): Promise<Fixture> {
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

  const app = express()
  if (options.trustProxy === true) app.set('trust proxy', 'loopback')
  app.get('/health', (_req, res) => {
    res.json({ ok: true })
  })
  app.use(authMiddleware({ gate, mirrorToUser: options.mirrorToUser ?? false }))
  app.get('/me', requirePolicy({}), (req, res) => {
    res.json({
      id: req.auth?.principal?.id,
      method: req.auth?.principal?.method,
      user: (req as { user?: { id: string } }).user?.id ?? null,
      contextRequestId: getAccessContext()?.requestId,
      decisionRequestId: req.auth?.decision.requestId,
      ip: getAccessContext()?.ip,
    })
  })
  app.get('/docs/:id', requirePolicy('documents:read'), (req, res) => {
    res.json({ id: req.params.id })
  })
  app.post('/docs', express.json(), requirePolicy('documents:write'), (_req, res) => {
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
  app.use(problemHandler({ gate }))
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

describe('@portcullis/express authMiddleware', () => {
  let f: Fixture
  beforeEach(async () => {
    f = await setup()
  })

  describe('API keys', () => {
    it('lets a valid key through with req.auth set', async () => {
      const res = await request(f.app).get('/me').set('X-API-Key', f.readKey)
      expect(res.status).to.equal(200)
      expect(res.body).to.include({ id: 'alice', method: 'apikey', user: null })
    })

    it('accepts the same key as a Bearer token', async () => {
      const res = await request(f.app).get('/docs/1').set('Authorization', `Bearer ${f.readKey}`)
      expect(res.status).to.equal(200)
      expect(res.body).to.deep.equal({ id: '1' })
    })

    it('answers a request without credentials with 401 and a challenge without error code', async () => {
      const res = await request(f.app).get('/docs/1')
      expectProblem(res, 401, 'ERR_AUTH_REQUIRED')
      expect(res.headers['www-authenticate']).to.equal('Bearer realm="api"')
    })

    it('refuses a wrong key with 401 invalid_token', async () => {
      const wrong = f.readKey.slice(0, -10) + 'AAAAAAAAAA'
      const res = await request(f.app).get('/docs/1').set('X-API-Key', wrong)
      expect(res.status).to.equal(401)
      expect(res.headers['www-authenticate']).to.match(/^Bearer realm="api", error="invalid_token"/)
    })

    it('refuses a key with a bad checksum as malformed, before any store read', async () => {
      const last = f.readKey.at(-1) === 'A' ? 'B' : 'A'
      const res = await request(f.app)
        .get('/docs/1')
        .set('X-API-Key', f.readKey.slice(0, -1) + last)
      expectProblem(res, 401, 'ERR_APIKEY_MALFORMED')
      expect(res.headers['www-authenticate']).to.include('error="invalid_token"')
    })

    it('refuses a key whose secret does not match with ERR_APIKEY_INVALID', async () => {
      const other = (await setup()).readKey
      // Same shape and a valid checksum, but an id unknown to this store.
      const res = await request(f.app).get('/docs/1').set('X-API-Key', other)
      expectProblem(res, 401, 'ERR_APIKEY_INVALID')
    })

    it('refuses a revoked key with the same answer as an unknown key', async () => {
      const res = await request(f.app).get('/docs/1').set('X-API-Key', f.revokedKey)
      expectProblem(res, 401, 'ERR_APIKEY_INVALID')
      expect(res.body.detail).to.equal('The API key is invalid')
    })

    it('refuses an expired key once its lifetime has passed', async () => {
      const before = await request(f.app).get('/docs/1').set('X-API-Key', f.expiringKey)
      expect(before.status).to.equal(200)
      f.clock.advance(60 * 60 * 1000)
      const after = await request(f.app).get('/docs/1').set('X-API-Key', f.expiringKey)
      expectProblem(after, 401, 'ERR_APIKEY_INVALID')
      const events = await auditEvents(f)
      expect(events.at(-1)?.reason?.detail).to.equal('expired')
    })

    it('answers 403 insufficient_scope with scope= when the key lacks the permission', async () => {
      const res = await request(f.app)
        .post('/docs')
        .set('X-API-Key', f.readKey)
        .send({ title: 'x' })
      expectProblem(res, 403, 'ERR_SCOPE_INSUFFICIENT')
      expect(res.headers['www-authenticate']).to.match(
        /^Bearer realm="api", error="insufficient_scope", error_description="[^"]+", scope="documents:write"$/,
      )
      expect(res.body.requiredScopes).to.deep.equal(['documents:write'])
    })

    it('answers 403 ERR_POLICY_DENIED when a required role is missing', async () => {
      const res = await request(f.app).get('/admin').set('X-API-Key', f.readKey)
      expectProblem(res, 403, 'ERR_POLICY_DENIED')
    })

    it('requires every listed scope', async () => {
      const res = await request(f.app).get('/reports').set('X-API-Key', f.readKey)
      expectProblem(res, 403, 'ERR_SCOPE_INSUFFICIENT')
      expect(res.headers['www-authenticate']).to.include('scope="reports:read documents:read"')
    })
  })

  describe('JWTs', () => {
    it('lets a valid JWT through', async () => {
      const res = await request(f.app).get('/me').set('Authorization', `Bearer ${f.jwt()}`)
      expect(res.status).to.equal(200)
      expect(res.body).to.include({ id: 'dave', method: 'jwt' })
    })

    it('grants a permission through a role mapping', async () => {
      const token = f.jwt({ scope: '', roles: ['editor'] })
      const res = await request(f.app)
        .post('/docs')
        .set('Authorization', `Bearer ${token}`)
        .send({})
      expect(res.status).to.equal(201)
    })

    it('refuses an expired JWT with ERR_JWT_EXPIRED', async () => {
      const token = f.jwt({ exp: seconds(f.clock()) - 3600 })
      const res = await request(f.app).get('/docs/1').set('Authorization', `Bearer ${token}`)
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
        const res = await request(f.app)
          .get('/docs/1')
          .set('Authorization', `Bearer ${make(f)}`)
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
      const app = express()
      app.use(authMiddleware({ gate }))
      app.get('/x', (_req, res) => {
        res.json({ ok: true })
      })
      const claims = { sub: 'dave', aud: AUDIENCE, exp: seconds(Date.now()) + 60 }
      const good = await request(app)
        .get('/x')
        .set('Authorization', `Bearer ${signAsymmetric({ claims }, privateKey, 'RS256')}`)
      expect(good.status).to.equal(200)
      const forged = signHmac({ claims }, pem)
      const res = await request(app).get('/x').set('Authorization', `Bearer ${forged}`)
      expectProblem(res, 401, 'ERR_JWT_INVALID')
    })
  })

  describe('ambiguous and misplaced credentials', () => {
    it('refuses an API key and a JWT together with 400 invalid_request', async () => {
      const res = await request(f.app)
        .get('/docs/1')
        .set('X-API-Key', f.readKey)
        .set('Authorization', `Bearer ${f.jwt()}`)
      expectProblem(res, 400, 'ERR_AUTH_AMBIGUOUS')
      expect(res.headers['www-authenticate']).to.include('error="invalid_request"')
    })

    it('refuses two Authorization headers', async () => {
      const res = await request(f.app)
        .get('/docs/1')
        .set('Authorization', [`Bearer ${f.jwt()}`, `Bearer ${f.readKey}`] as unknown as string)
      expectProblem(res, 400, 'ERR_AUTH_AMBIGUOUS')
    })

    it('refuses credentials in the query string', async () => {
      const res = await request(f.app).get(`/docs/1?access_token=${f.jwt()}`)
      expectProblem(res, 400, 'ERR_AUTH_QUERY_CREDENTIALS')
    })

    it('refuses a Bearer scheme without a token', async () => {
      const res = await request(f.app).get('/docs/1').set('Authorization', 'Bearer ')
      expectProblem(res, 400, 'ERR_AUTH_MALFORMED')
    })

    it('treats an unsupported scheme as missing credentials', async () => {
      const res = await request(f.app).get('/docs/1').set('Authorization', 'Basic dXNlcjpwYXNz')
      expectProblem(res, 401, 'ERR_AUTH_REQUIRED')
      expect(res.headers['www-authenticate']).to.equal('Bearer realm="api"')
    })
  })

  describe('Express conventions', () => {
    it('serves routes mounted before the gate without credentials', async () => {
      const res = await request(f.app).get('/health')
      expect(res.status).to.equal(200)
    })

    it('mirrors the principal to req.user when asked', async () => {
      const g = await setup({ mirrorToUser: true })
      const res = await request(g.app).get('/me').set('X-API-Key', g.readKey)
      expect(res.body.user).to.equal('alice')
    })

    it('keeps the access context in AsyncLocalStorage for the handler', async () => {
      const res = await request(f.app)
        .get('/me')
        .set('X-API-Key', f.readKey)
        .set('X-Request-Id', 'req-123')
      expect(res.body.contextRequestId).to.equal('req-123')
      expect(res.body.decisionRequestId).to.equal('req-123')
    })

    it('never echoes a malformed request id', async () => {
      const res = await request(f.app)
        .get('/me')
        .set('X-API-Key', f.readKey)
        .set('X-Request-Id', 'bad id <script>')
      expect(res.body.contextRequestId).to.match(/^[0-9a-f-]{36}$/)
    })

    it('uses req.ip, honouring trust proxy only when the app sets it', async () => {
      const plain = await request(f.app)
        .get('/me')
        .set('X-API-Key', f.readKey)
        .set('X-Forwarded-For', '203.0.113.9')
      expect(plain.body.ip).to.not.equal('203.0.113.9')
      const g = await setup({ trustProxy: true })
      const proxied = await request(g.app)
        .get('/me')
        .set('X-API-Key', g.readKey)
        .set('X-Forwarded-For', '203.0.113.9')
      expect(proxied.body.ip).to.equal('203.0.113.9')
    })

    it('renders a body-parser failure as a 400 problem, not a 500', async () => {
      const res = await request(f.app)
        .post('/docs')
        .set('X-API-Key', f.readKey)
        .set('Content-Type', 'application/json')
        .send('{"title": "x", "__proto__": ')
      expectProblem(res, 400, 'ERR_REQUEST_MALFORMED')
    })

    it('renders a missing authMiddleware as a 500 that reveals nothing', async () => {
      const app = express()
      app.get('/x', requirePolicy('documents:read'), (_req, res) => {
        res.json({})
      })
      app.use(problemHandler())
      const res = await request(app).get('/x')
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
})

describe('@portcullis/express quota refunds', () => {
  it('settles the decision with the final status, refunding the unit of a 5xx', async () => {
    const { createQuotaStage } = await import('@portcullis/core')
    const store = createMemoryKeyStore()
    const quotas = createQuotaStage({
      refundOnServerError: true,
      quotas: [{ name: 'd', limit: 10, period: 'day' }],
    })
    const gate = createGate({ apiKeys: { store, pepper: PEPPER }, stages: [quotas], audit: false })
    const { key, record } = await createApiKeyManager({ store, pepper: PEPPER }).create({
      name: 'k',
      ownerId: 'u',
    })
    const app = express()
    app.use(authMiddleware({ gate }))
    app.get('/ok', (_req, res) => void res.json({}))
    app.get('/fail', (_req, res) => void res.status(500).json({}))
    await request(app).get('/ok').set('X-API-Key', key)
    await request(app).get('/fail').set('X-API-Key', key)
    await request(app).get('/fail').set('X-API-Key', key)
    // The server emits finish before the client reads the answer; one turn settles the refund.
    await new Promise((r) => setImmediate(r))
    expect((await quotas.usage(record.id))[0]?.used).to.equal(1)
  })
})

describe('@portcullis/express client IP for limits', () => {
  async function limitedApp(trustProxy: boolean) {
    const { createRateLimitStage } = await import('@portcullis/core')
    const gate = createGate({
      credentialsRequired: false,
      stages: [
        createRateLimitStage({ limits: [{ name: 'ip', limit: 1, windowMs: '1m', key: 'ip' }] }),
      ],
      audit: false,
    })
    const app = express()
    if (trustProxy) app.set('trust proxy', 'loopback')
    app.use(authMiddleware({ gate }))
    app.get('/x', (_req, res) => void res.json({}))
    return app
  }

  it('ignores forged X-Forwarded-For from an untrusted peer', async () => {
    const app = await limitedApp(false)
    expect((await request(app).get('/x').set('X-Forwarded-For', '198.51.100.1')).status).to.equal(
      200,
    )
    expect((await request(app).get('/x').set('X-Forwarded-For', '198.51.100.2')).status).to.equal(
      429,
    )
  })

  it('keys by the forwarded client when the app trusts its proxy', async () => {
    const app = await limitedApp(true)
    expect((await request(app).get('/x').set('X-Forwarded-For', '198.51.100.1')).status).to.equal(
      200,
    )
    expect((await request(app).get('/x').set('X-Forwarded-For', '198.51.100.2')).status).to.equal(
      200,
    )
    expect((await request(app).get('/x').set('X-Forwarded-For', '198.51.100.2')).status).to.equal(
      429,
    )
  })
})
