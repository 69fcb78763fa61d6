import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { KeyObject } from 'node:crypto'
import { expect } from 'chai'
import sinon from 'sinon'
import { createJwtVerifier, type JwtOptions, type JwtVerifier } from '@portcullis/core'
import { manualClock, signJwt, testKeys } from './helpers.js'

const NOW_MS = 1_700_000_000_000
const NOW = NOW_MS / 1000
const claims = { sub: 'user-1', iat: NOW, exp: NOW + 600 }

type Jwk = Record<string, unknown>

const jwkOf = (key: KeyObject, extra: Jwk): Jwk => ({ ...key.export({ format: 'jwk' }), ...extra })

/** A local JWKS endpoint whose answer the tests change, counting the requests it gets. */
class JwksServer {
  readonly server: Server
  requests = 0
  keys: Jwk[] = []
  mode: 'serve' | 'error' | 'garbage' | 'hang' = 'serve'

  constructor() {
    this.server = createServer((req: IncomingMessage, res: ServerResponse) => {
      this.requests++
      if (this.mode === 'hang') return
      if (this.mode === 'error') {
        res.writeHead(500).end('oops')
        return
      }
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(this.mode === 'garbage' ? '{"keys": [' : JSON.stringify({ keys: this.keys }))
    })
  }

  async listen(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve))
    const { port } = this.server.address() as AddressInfo
    return `http://127.0.0.1:${port}/.well-known/jwks.json`
  }

  async close(): Promise<void> {
    this.server.closeAllConnections()
    await new Promise<void>((resolve) => this.server.close(() => resolve()))
  }
}

describe('createJwtVerifier with a remote JWKS', () => {
  const jwks = new JwksServer()
  let url = ''

  const rsaJwk = (): Jwk =>
    jwkOf(testKeys().rsa.publicKey, { kid: 'rsa-1', alg: 'RS256', use: 'sig' })
  const ecJwk = (): Jwk => jwkOf(testKeys().p256.publicKey, { kid: 'ec-1', use: 'sig' })

  const verifier = (options: Partial<JwtOptions> = {}): JwtVerifier =>
    createJwtVerifier(
      {
        jwks: { url, cooldownMs: 30_000, cacheMaxAgeMs: 600_000, timeoutMs: 2000 },
        algorithms: ['RS256', 'ES256'],
        cache: false,
        issuer: false,
        audience: false,
        ...options,
      },
      { now: manualClock(NOW_MS).now },
    )

  before(async () => {
    testKeys()
    url = await jwks.listen()
  })

  after(async () => {
    await jwks.close()
  })

  beforeEach(() => {
    jwks.requests = 0
    jwks.mode = 'serve'
    jwks.keys = [rsaJwk(), ecJwk()]
  })

  it('verifies an RS256 token whose kid is in the JWKS, fetching the set once', async () => {
    const v = verifier()
    const token = signJwt('RS256', testKeys().rsa.privateKey, claims, { kid: 'rsa-1' })
    const first = await v.verify(token)
    expect(first.ok, first.ok ? '' : first.error.reason).to.equal(true)
    if (first.ok) expect(first.principal.attributes.kid).to.equal('rsa-1')
    expect((await v.verify(token)).ok).to.equal(true)
    expect(jwks.requests).to.equal(1)
  })

  it('verifies an ES256 token from the same JWKS', async () => {
    const result = await verifier().verify(
      signJwt('ES256', testKeys().p256.privateKey, claims, { kid: 'ec-1' }),
    )
    expect(result.ok, result.ok ? '' : result.error.reason).to.equal(true)
  })

  it('verifies with the JWKS when algorithms allows only RS256, and denies ES256 then', async () => {
    const v = verifier({ algorithms: ['RS256'] })
    const rs = await v.verify(signJwt('RS256', testKeys().rsa.privateKey, claims, { kid: 'rsa-1' }))
    expect(rs.ok).to.equal(true)
    const es = await v.verify(signJwt('ES256', testKeys().p256.privateKey, claims, { kid: 'ec-1' }))
    expect(es.ok).to.equal(false)
    if (!es.ok) expect(es.error.reason).to.equal('algorithm ES256 is not allowed')
  })

  it('denies a token signed by a key that is not in the JWKS under a known kid', async () => {
    const forged = signJwt('RS256', testKeys().rsaAttacker.privateKey, claims, { kid: 'rsa-1' })
    const result = await verifier().verify(forged)
    expect(result.ok).to.equal(false)
    if (!result.ok) {
      expect(result.error.code).to.equal('ERR_JWT_INVALID')
      expect(result.error.reason).to.equal('signature mismatch')
    }
  })

  it('refetches at most once within the cooldown, however many unknown kids arrive', async () => {
    const v = verifier()
    const { privateKey } = testKeys().rsa
    expect((await v.verify(signJwt('RS256', privateKey, claims, { kid: 'rsa-1' }))).ok).to.equal(
      true,
    )
    expect(jwks.requests).to.equal(1)
    for (let i = 0; i < 5; i++) {
      const result = await v.verify(signJwt('RS256', privateKey, claims, { kid: `unknown-${i}` }))
      expect(result.ok).to.equal(false)
      if (!result.ok) {
        expect(result.error.code).to.equal('ERR_JWT_INVALID')
        expect(result.error.reason).to.equal('unknown kid')
      }
    }
    expect(jwks.requests).to.be.at.most(2)
  })

  it('picks up a rotated key through one refetch once the cooldown has passed', async () => {
    // Only Date is faked: jose reads Date.now() for its cooldown; sockets and timers stay real.
    const clock = sinon.useFakeTimers({ now: Date.now(), toFake: ['Date'] })
    try {
      const v = verifier()
      const { rsa, rsaAttacker: rotated } = testKeys()
      expect(
        (await v.verify(signJwt('RS256', rsa.privateKey, claims, { kid: 'rsa-1' }))).ok,
      ).to.equal(true)
      jwks.keys = [...jwks.keys, jwkOf(rotated.publicKey, { kid: 'rsa-2', alg: 'RS256' })]
      const token = signJwt('RS256', rotated.privateKey, claims, { kid: 'rsa-2' })
      clock.tick(10_000)
      expect((await v.verify(token)).ok, 'within the cooldown').to.equal(false)
      expect(jwks.requests).to.equal(1)
      clock.tick(20_001)
      const result = await v.verify(token)
      expect(result.ok, result.ok ? '' : result.error.reason).to.equal(true)
      expect(jwks.requests).to.equal(2)
    } finally {
      clock.restore()
    }
  })

  it('with cooldownMs 0, refetches once for a new kid and verifies it', async () => {
    const v = verifier({ jwks: { url, cooldownMs: 0, cacheMaxAgeMs: 600_000 } })
    const { rsa, rsaAttacker: rotated } = testKeys()
    expect(
      (await v.verify(signJwt('RS256', rsa.privateKey, claims, { kid: 'rsa-1' }))).ok,
    ).to.equal(true)
    jwks.keys = [...jwks.keys, jwkOf(rotated.publicKey, { kid: 'rsa-2', alg: 'RS256' })]
    const result = await v.verify(signJwt('RS256', rotated.privateKey, claims, { kid: 'rsa-2' }))
    expect(result.ok, result.ok ? '' : result.error.reason).to.equal(true)
    expect(jwks.requests).to.equal(2)
  })

  it('answers ERR_JWKS_UNAVAILABLE when the JWKS server is down', async () => {
    const down = new JwksServer()
    const downUrl = await down.listen()
    await down.close()
    const v = verifier({ jwks: { url: downUrl, cooldownMs: 30_000, cacheMaxAgeMs: 600_000 } })
    const result = await v.verify(
      signJwt('RS256', testKeys().rsa.privateKey, claims, { kid: 'rsa-1' }),
    )
    expect(result.ok).to.equal(false)
    if (!result.ok) {
      expect(result.error.code).to.equal('ERR_JWKS_UNAVAILABLE')
      expect(result.error.status).to.equal(503)
    }
  })

  for (const mode of ['error', 'garbage'] as const) {
    it(`answers ERR_JWKS_UNAVAILABLE when the JWKS endpoint returns ${mode === 'error' ? 'HTTP 500' : 'invalid JSON'}`, async () => {
      jwks.mode = mode
      const result = await verifier().verify(
        signJwt('RS256', testKeys().rsa.privateKey, claims, { kid: 'rsa-1' }),
      )
      expect(result.ok).to.equal(false)
      if (!result.ok) expect(result.error.code).to.equal('ERR_JWKS_UNAVAILABLE')
      expect(jwks.requests).to.be.greaterThan(0)
    })
  }

  it('answers ERR_JWKS_UNAVAILABLE when the JWKS endpoint does not answer within timeoutMs', async () => {
    jwks.mode = 'hang'
    const v = verifier({ jwks: { url, cooldownMs: 30_000, cacheMaxAgeMs: 600_000, timeoutMs: 50 } })
    const result = await v.verify(
      signJwt('RS256', testKeys().rsa.privateKey, claims, { kid: 'rsa-1' }),
    )
    expect(result.ok).to.equal(false)
    if (!result.ok) expect(result.error.code).to.equal('ERR_JWKS_UNAVAILABLE')
  })

  it('never uses a JWKS key smaller than 2048 bits, with or without kid', async () => {
    const weak = testKeys().rsa1024
    jwks.keys = [jwkOf(weak.publicKey, { kid: 'weak', alg: 'RS256', use: 'sig' })]
    const v = verifier({ algorithms: ['RS256'] })
    const cases: [Record<string, string>, string][] = [
      [{ kid: 'weak' }, 'unknown kid'],
      [{}, 'no key for algorithm'],
    ]
    for (const [header, reason] of cases) {
      const result = await v.verify(signJwt('RS256', weak.privateKey, claims, header))
      expect(result.ok, JSON.stringify(header)).to.equal(false)
      if (!result.ok) {
        expect(result.error.code).to.equal('ERR_JWT_INVALID')
        expect(result.error.reason).to.equal(reason)
      }
    }
    // Control: the same set with a 2048-bit key under another kid verifies.
    jwks.keys = [...jwks.keys, rsaJwk()]
    const control = verifier({ algorithms: ['RS256'] })
    const ok = await control.verify(
      signJwt('RS256', testKeys().rsa.privateKey, claims, { kid: 'rsa-1' }),
    )
    expect(ok.ok).to.equal(true)
  })

  it('prefers a matching static key and does not fetch the JWKS for it', async () => {
    const secret = 'static-secret-of-at-least-32-bytes!!'
    const v = verifier({ keys: [{ alg: 'HS256', secret }], algorithms: ['RS256', 'HS256'] })
    expect((await v.verify(signJwt('HS256', secret, claims))).ok).to.equal(true)
    expect(jwks.requests).to.equal(0)
  })
})
