import { createHash } from 'node:crypto'
import { expect } from 'chai'
import sinon from 'sinon'
import {
  createGate,
  createJwtVerifier,
  isConfigError,
  type AuthError,
  type AuthErrorCode,
  type ConfigError,
  type JwsAlgorithm,
  type JwtClaims,
  type JwtKeyInput,
  type JwtOptions,
  type JwtVerifier,
  type Principal,
} from '@portcullis/core'
import {
  b64url,
  encodeSegment,
  manualClock,
  rawSignature,
  signEncoded,
  signJws,
  signJwt,
  splitToken,
  testKeys,
  type ManualClock,
  type SigningKey,
} from './helpers.js'

const NOW_MS = 1_700_000_000_000
const NOW = NOW_MS / 1000
/** 36 bytes: long enough for HS256. */
const SECRET = 'portcullis-test-secret-0123456789abcd'
const OTHER_SECRET = 'another-test-secret-0123456789abcdef'

const claims = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  sub: 'user-1',
  iat: NOW,
  exp: NOW + 600,
  ...extra,
})

/** `issuer` and `audience` default to `false` here (said explicitly) unless a test sets them. */
function verifier(options: JwtOptions, clock: ManualClock = manualClock(NOW_MS)): JwtVerifier {
  return createJwtVerifier({ issuer: false, audience: false, ...options }, { now: clock.now })
}

const hs256 = (options: Partial<JwtOptions> = {}, clock?: ManualClock): JwtVerifier =>
  verifier({ secret: SECRET, ...options }, clock)

async function expectOk(
  v: JwtVerifier,
  token: string,
): Promise<{ principal: Principal; claims: JwtClaims }> {
  const r = await v.verify(token)
  if (!r.ok)
    return expect.fail(`expected the token to verify, got ${r.error.code} (${r.error.reason})`)
  return r
}

async function expectDenied(
  v: JwtVerifier,
  token: string,
  code: AuthErrorCode,
  reason?: string | RegExp,
): Promise<AuthError> {
  const r = await v.verify(token)
  if (r.ok) return expect.fail(`expected ${code}, but the token verified`)
  expect(r.error.code, String(r.error.reason)).to.equal(code)
  if (typeof reason === 'string') expect(r.error.reason).to.equal(reason)
  else if (reason !== undefined) expect(r.error.reason).to.match(reason)
  return r.error
}

function configErrorOf(fn: () => unknown): ConfigError {
  try {
    fn()
  } catch (error) {
    expect(isConfigError(error), String(error)).to.equal(true)
    return error as ConfigError
  }
  return expect.fail('expected a ConfigError')
}

/** The token with one bit of its signature's first byte flipped (length unchanged). */
function flipSignatureBit(token: string): string {
  const [h, p, s] = splitToken(token)
  const sig = Buffer.from(s, 'base64url')
  sig[0] = (sig[0] as number) ^ 0x01
  return `${h}.${p}.${b64url(sig)}`
}

const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'

/** Same bytes, but the unused low bits of the last character set: non-canonical base64url. */
function withTrailingBits(segment: string): string {
  expect(segment.length % 4, 'segment must end in a partial group').to.be.oneOf([2, 3])
  const last = B64URL.indexOf(segment.slice(-1))
  const changed = segment.slice(0, -1) + B64URL[last | 1]
  expect(changed).to.not.equal(segment)
  expect(Buffer.from(changed, 'base64url').equals(Buffer.from(segment, 'base64url'))).to.equal(true)
  return changed
}

describe('createJwtVerifier', () => {
  describe('supported algorithms', () => {
    interface AlgSetup {
      readonly signKey: SigningKey
      readonly key: JwtKeyInput
      readonly how: string
    }
    const setups: Record<string, () => AlgSetup> = {
      HS256: () => ({
        signKey: SECRET,
        key: { alg: 'HS256', secret: SECRET },
        how: 'a string secret',
      }),
      HS384: () => {
        const secret = Buffer.alloc(48, 7)
        return { signKey: secret, key: { alg: 'HS384', secret }, how: 'a 48-byte secret' }
      },
      HS512: () => {
        const secret = new Uint8Array(64).fill(9)
        return { signKey: secret, key: { alg: 'HS512', secret }, how: 'a 64-byte secret' }
      },
      RS256: () => {
        const { privateKey, publicKey } = testKeys().rsa
        const pem = publicKey.export({ type: 'spki', format: 'pem' }) as string
        return { signKey: privateKey, key: { alg: 'RS256', publicKey: pem }, how: 'a PEM key' }
      },
      PS256: () => {
        const { privateKey, publicKey } = testKeys().rsa
        const jwk = { ...publicKey.export({ format: 'jwk' }), alg: 'PS256', use: 'sig' }
        return { signKey: privateKey, key: { jwk }, how: 'a JWK with alg and use' }
      },
      ES256: () => {
        const { privateKey, publicKey } = testKeys().p256
        const jwk = publicKey.export({ format: 'jwk' })
        return { signKey: privateKey, key: { alg: 'ES256', jwk }, how: 'a JWK without alg' }
      },
      ES384: () => {
        const { privateKey, publicKey } = testKeys().p384
        return { signKey: privateKey, key: { alg: 'ES384', publicKey }, how: 'a public KeyObject' }
      },
      EdDSA: () => {
        const { privateKey } = testKeys().ed25519
        // A private KeyObject is accepted; only its public half is kept.
        return {
          signKey: privateKey,
          key: { alg: 'EdDSA', publicKey: privateKey },
          how: 'a private KeyObject',
        }
      },
    }

    for (const [name, setup] of Object.entries(setups)) {
      const alg = name as JwsAlgorithm
      it(`verifies a ${alg} token with the key given as configured`, async () => {
        const { signKey, key } = setup()
        const { principal, claims: verified } = await expectOk(
          verifier({ keys: [key] }),
          signJwt(alg, signKey, claims({ jti: 'token-1' })),
        )
        expect(principal.id).to.equal('user-1')
        expect(principal.method).to.equal('jwt')
        expect(principal.tokenId).to.equal('token-1')
        expect(verified.exp).to.equal(NOW + 600)
      })

      it(`denies a ${alg} token whose signature has one flipped bit`, async () => {
        const { signKey, key } = setup()
        const token = signJwt(alg, signKey, claims())
        await expectDenied(
          verifier({ keys: [key] }),
          flipSignatureBit(token),
          'ERR_JWT_INVALID',
          'signature mismatch',
        )
      })
    }

    it('denies a PS256 token whose PSS salt is not as long as the hash (RFC 7518 §3.5)', async () => {
      const { privateKey, publicKey } = testKeys().rsa
      const v = verifier({ keys: [{ alg: 'PS256', publicKey }] })
      const encoded = `${encodeSegment({ alg: 'PS256' })}.${encodeSegment(claims())}`
      for (const saltLength of [0, 20, 64]) {
        const sig = rawSignature('PS256', privateKey, encoded, { saltLength })
        await expectDenied(v, `${encoded}.${b64url(sig)}`, 'ERR_JWT_INVALID', 'signature mismatch')
      }
      await expectOk(v, `${encoded}.${b64url(rawSignature('PS256', privateKey, encoded))}`)
    })

    it('denies an ES256 token whose signature is DER-encoded instead of R || S', async () => {
      const { privateKey, publicKey } = testKeys().p256
      const v = verifier({ keys: [{ alg: 'ES256', publicKey }] })
      const encoded = `${encodeSegment({ alg: 'ES256' })}.${encodeSegment(claims())}`
      const der = rawSignature('ES256', privateKey, encoded, { dsaEncoding: 'der' })
      await expectDenied(v, `${encoded}.${b64url(der)}`, 'ERR_JWT_INVALID', 'signature mismatch')
    })

    it('denies an RS256 token presented to a verifier that only knows the key for PS256', async () => {
      const { privateKey, publicKey } = testKeys().rsa
      const v = verifier({ keys: [{ alg: 'PS256', publicKey }] })
      await expectDenied(
        v,
        signJwt('RS256', privateKey, claims()),
        'ERR_JWT_INVALID',
        'algorithm RS256 is not allowed',
      )
    })
  })

  describe('time claims', () => {
    it('denies an expired JWT with ERR_JWT_EXPIRED', async () => {
      await expectDenied(
        hs256(),
        signJwt('HS256', SECRET, claims({ exp: NOW - 31 })),
        'ERR_JWT_EXPIRED',
        'exp passed',
      )
    })

    it('accepts a JWT expired by less than the clock tolerance (30 s by default)', async () => {
      await expectOk(hs256(), signJwt('HS256', SECRET, claims({ exp: NOW - 29 })))
    })

    it('denies a JWT once now reaches exp plus the tolerance exactly', async () => {
      await expectDenied(
        hs256(),
        signJwt('HS256', SECRET, claims({ exp: NOW - 30 })),
        'ERR_JWT_EXPIRED',
      )
    })

    it('with clockToleranceSeconds 0, denies a JWT at its exp and accepts it one second before', async () => {
      const v = hs256({ clockToleranceSeconds: 0, cache: false })
      await expectDenied(v, signJwt('HS256', SECRET, claims({ exp: NOW })), 'ERR_JWT_EXPIRED')
      await expectOk(v, signJwt('HS256', SECRET, claims({ exp: NOW + 1 })))
    })

    it('reads the injected clock on every verification', async () => {
      const clock = manualClock(NOW_MS)
      const v = hs256({ clockToleranceSeconds: 0, cache: false }, clock)
      const token = signJwt('HS256', SECRET, claims({ exp: NOW + 60 }))
      await expectOk(v, token)
      clock.advance(59_999)
      await expectOk(v, token)
      clock.advance(1)
      await expectDenied(v, token, 'ERR_JWT_EXPIRED')
    })

    it('denies a JWT whose nbf is further in the future than the tolerance', async () => {
      await expectDenied(
        hs256(),
        signJwt('HS256', SECRET, claims({ nbf: NOW + 31 })),
        'ERR_JWT_INVALID',
        'not yet valid (nbf)',
      )
    })

    it('accepts a JWT whose nbf is in the future by less than the tolerance', async () => {
      await expectOk(hs256(), signJwt('HS256', SECRET, claims({ nbf: NOW + 29 })))
    })

    it('denies a JWT issued in the future (iat beyond the tolerance)', async () => {
      await expectDenied(
        hs256(),
        signJwt('HS256', SECRET, claims({ iat: NOW + 31 })),
        'ERR_JWT_INVALID',
        'issued in the future (iat)',
      )
      await expectOk(hs256(), signJwt('HS256', SECRET, claims({ iat: NOW + 29 })))
    })

    it('denies a JWT older than maxTokenAgeSeconds (plus tolerance) and one without iat', async () => {
      const v = hs256({ maxTokenAgeSeconds: 300 })
      await expectDenied(
        v,
        signJwt('HS256', SECRET, claims({ iat: NOW - 331 })),
        'ERR_JWT_INVALID',
        'too old (iat)',
      )
      await expectOk(v, signJwt('HS256', SECRET, claims({ iat: NOW - 329 })))
      await expectDenied(
        v,
        signJwt('HS256', SECRET, claims({ iat: undefined })),
        'ERR_JWT_INVALID',
        'too old (iat)',
      )
    })

    it('requires exp by default', async () => {
      await expectDenied(
        hs256(),
        signJwt('HS256', SECRET, claims({ exp: undefined })),
        'ERR_JWT_INVALID',
        'exp is required',
      )
    })

    it('accepts a JWT without exp when requireExpiration is false, but still checks a present exp', async () => {
      const v = hs256({ requireExpiration: false })
      await expectOk(v, signJwt('HS256', SECRET, claims({ exp: undefined })))
      await expectDenied(v, signJwt('HS256', SECRET, claims({ exp: NOW - 60 })), 'ERR_JWT_EXPIRED')
    })

    it('denies non-numeric exp, nbf and iat even when requireExpiration is false', async () => {
      const v = hs256({ requireExpiration: false })
      for (const exp of [String(NOW + 600), null, true, [NOW + 600], { t: NOW + 600 }]) {
        await expectDenied(
          v,
          signJwt('HS256', SECRET, claims({ exp })),
          'ERR_JWT_INVALID',
          'exp is not a NumericDate',
        )
      }
      await expectDenied(
        v,
        signJwt('HS256', SECRET, claims({ nbf: String(NOW) })),
        'ERR_JWT_INVALID',
        'nbf is not a NumericDate',
      )
      await expectDenied(
        v,
        signJwt('HS256', SECRET, claims({ iat: String(NOW) })),
        'ERR_JWT_INVALID',
        'iat is not a NumericDate',
      )
    })
  })

  describe('token lifetime bounds', () => {
    const DAY = 86_400
    const YEAR = 31_536_000

    it('accepts exp − iat of exactly 24 h by default and refuses one second more with ERR_JWT_LIFETIME_TOO_LONG', async () => {
      const v = hs256()
      await expectOk(v, signJwt('HS256', SECRET, claims({ iat: NOW, exp: NOW + DAY })))
      await expectDenied(
        v,
        signJwt('HS256', SECRET, claims({ iat: NOW, exp: NOW + DAY + 1 })),
        'ERR_JWT_LIFETIME_TOO_LONG',
        'exp - iat over maxTokenLifetimeSeconds',
      )
      // Measured between the issuer's own times: an old iat with a near exp is still too long.
      await expectDenied(
        v,
        signJwt('HS256', SECRET, claims({ iat: NOW - DAY, exp: NOW + 60 })),
        'ERR_JWT_LIFETIME_TOO_LONG',
      )
    })

    it('applies a configured maxTokenLifetimeSeconds with no clock tolerance', async () => {
      const v = hs256({ maxTokenLifetimeSeconds: 900, clockToleranceSeconds: 300 })
      await expectOk(v, signJwt('HS256', SECRET, claims({ iat: NOW, exp: NOW + 900 })))
      await expectDenied(
        v,
        signJwt('HS256', SECRET, claims({ iat: NOW, exp: NOW + 901 })),
        'ERR_JWT_LIFETIME_TOO_LONG',
      )
    })

    it('requires iat once maxTokenLifetimeSeconds is set, with its own reason', async () => {
      const error = await expectDenied(
        hs256({ maxTokenLifetimeSeconds: 3600 }),
        signJwt('HS256', SECRET, claims({ iat: undefined })),
        'ERR_JWT_INVALID',
        'iat is required',
      )
      expect(error.status).to.equal(401)
      // A non-numeric iat keeps its own reason.
      await expectDenied(
        hs256(),
        signJwt('HS256', SECRET, claims({ iat: '1700000000' })),
        'ERR_JWT_INVALID',
        'iat is not a NumericDate',
      )
    })

    it('with the default bound, accepts a token without iat (RFC 7519 keeps it optional) but still bounds its exp', async () => {
      await expectOk(hs256(), signJwt('HS256', SECRET, claims({ iat: undefined, exp: NOW + 600 })))
      await expectDenied(
        hs256(),
        signJwt('HS256', SECRET, claims({ iat: undefined, exp: NOW + 2 * YEAR })),
        'ERR_JWT_EXPIRY_TOO_FAR',
      )
    })

    it('with maxTokenLifetimeSeconds false, accepts a token without iat and a long lifetime', async () => {
      const v = hs256({ maxTokenLifetimeSeconds: false })
      await expectOk(v, signJwt('HS256', SECRET, claims({ iat: undefined })))
      await expectOk(v, signJwt('HS256', SECRET, claims({ iat: NOW, exp: NOW + 30 * DAY })))
    })

    it('refuses an exp written in milliseconds with ERR_JWT_EXPIRY_TOO_FAR, before the lifetime check', async () => {
      await expectDenied(
        hs256(),
        signJwt('HS256', SECRET, claims({ iat: NOW, exp: (NOW + 600) * 1000 })),
        'ERR_JWT_EXPIRY_TOO_FAR',
        'exp too far ahead',
      )
      await expectDenied(
        hs256({ maxTokenLifetimeSeconds: false }),
        signJwt('HS256', SECRET, claims({ iat: undefined, exp: (NOW + 600) * 1000 })),
        'ERR_JWT_EXPIRY_TOO_FAR',
      )
    })

    it('bounds exp − now at 365 days plus the tolerance by default', async () => {
      const v = hs256({ maxTokenLifetimeSeconds: false })
      await expectOk(v, signJwt('HS256', SECRET, claims({ exp: NOW + YEAR + 30 })))
      await expectDenied(
        v,
        signJwt('HS256', SECRET, claims({ exp: NOW + YEAR + 31 })),
        'ERR_JWT_EXPIRY_TOO_FAR',
      )
    })

    it('applies a configured maxExpiresInSeconds against the injected clock', async () => {
      const clock = manualClock(NOW_MS)
      const v = hs256({ maxExpiresInSeconds: 3600, clockToleranceSeconds: 0, cache: false }, clock)
      const token = signJwt('HS256', SECRET, claims({ iat: NOW, exp: NOW + 3601 }))
      await expectDenied(v, token, 'ERR_JWT_EXPIRY_TOO_FAR')
      clock.advance(1000)
      await expectOk(v, token)
    })

    it('with maxExpiresInSeconds false, accepts a far exp when the lifetime bound is off too', async () => {
      const v = hs256({ maxExpiresInSeconds: false, maxTokenLifetimeSeconds: false })
      await expectOk(v, signJwt('HS256', SECRET, claims({ exp: NOW + 10 * YEAR })))
    })
  })

  describe('issuer and audience', () => {
    it('denies a JWT from another issuer, or without iss, when issuer is set', async () => {
      const v = hs256({ issuer: 'https://id.example' })
      await expectDenied(
        v,
        signJwt('HS256', SECRET, claims({ iss: 'https://evil.example' })),
        'ERR_JWT_INVALID',
        'issuer mismatch',
      )
      await expectDenied(
        v,
        signJwt('HS256', SECRET, claims()),
        'ERR_JWT_INVALID',
        'issuer mismatch',
      )
      await expectDenied(
        v,
        signJwt('HS256', SECRET, claims({ iss: ['https://id.example'] })),
        'ERR_JWT_INVALID',
        'issuer mismatch',
      )
      await expectOk(v, signJwt('HS256', SECRET, claims({ iss: 'https://id.example' })))
    })

    it('accepts any issuer of an issuer list', async () => {
      const v = hs256({ issuer: ['https://a.example', 'https://b.example'] })
      await expectOk(v, signJwt('HS256', SECRET, claims({ iss: 'https://b.example' })))
      await expectDenied(
        v,
        signJwt('HS256', SECRET, claims({ iss: 'https://c.example' })),
        'ERR_JWT_INVALID',
      )
    })

    it('denies a JWT whose string aud is another audience', async () => {
      const v = hs256({ audience: 'api' })
      await expectDenied(
        v,
        signJwt('HS256', SECRET, claims({ aud: 'other' })),
        'ERR_JWT_INVALID',
        'audience mismatch',
      )
      await expectDenied(
        v,
        signJwt('HS256', SECRET, claims({ aud: 'API' })),
        'ERR_JWT_INVALID',
        'audience mismatch',
      )
      await expectDenied(
        v,
        signJwt('HS256', SECRET, claims()),
        'ERR_JWT_INVALID',
        'audience mismatch',
      )
      await expectOk(v, signJwt('HS256', SECRET, claims({ aud: 'api' })))
    })

    it('accepts an aud array naming the audience and denies one that does not', async () => {
      const v = hs256({ audience: ['api', 'admin'] })
      await expectOk(v, signJwt('HS256', SECRET, claims({ aud: ['web', 'admin'] })))
      await expectOk(v, signJwt('HS256', SECRET, claims({ aud: [1, null, { aud: 'api' }, 'api'] })))
      await expectDenied(
        v,
        signJwt('HS256', SECRET, claims({ aud: ['web', 'mobile'] })),
        'ERR_JWT_INVALID',
        'audience mismatch',
      )
      await expectDenied(
        v,
        signJwt('HS256', SECRET, claims({ aud: [['api']] })),
        'ERR_JWT_INVALID',
        'audience mismatch',
      )
      await expectDenied(
        v,
        signJwt('HS256', SECRET, claims({ aud: [] })),
        'ERR_JWT_INVALID',
        'audience mismatch',
      )
    })
  })

  describe('algorithm attacks', () => {
    const noneToken = (header: Record<string, unknown>, signature: string): string =>
      `${encodeSegment(header)}.${encodeSegment(claims())}.${signature}`

    // A well-formed header naming a refused algorithm is invalid, not malformed.
    it('denies alg "none" with an empty signature', async () => {
      await expectDenied(
        hs256(),
        noneToken({ alg: 'none' }, ''),
        'ERR_JWT_INVALID',
        'algorithm "none" is not supported',
      )
    })

    it('denies alg "none" carrying a signature, whatever its case', async () => {
      const v = hs256()
      for (const alg of ['none', 'None', 'NONE', 'nOnE']) {
        const encoded = `${encodeSegment({ alg, typ: 'JWT' })}.${encodeSegment(claims())}`
        const sig = b64url(rawSignature('HS256', SECRET, encoded))
        await expectDenied(
          v,
          `${encoded}.${sig}`,
          'ERR_JWT_INVALID',
          `algorithm "${alg}" is not supported`,
        )
      }
    })

    it('denies a header without alg, or with a non-string alg', async () => {
      const v = hs256()
      await expectDenied(
        v,
        signJws('HS256', SECRET, { typ: 'JWT' }, claims()),
        'ERR_JWT_INVALID',
        'algorithm undefined is not supported',
      )
      await expectDenied(
        v,
        signJws('HS256', SECRET, { alg: ['HS256'] }, claims()),
        'ERR_JWT_INVALID',
        'algorithm ["HS256"] is not supported',
      )
      await expectDenied(
        v,
        signJws('HS256', SECRET, { alg: 'HS257' }, claims()),
        'ERR_JWT_INVALID',
        'algorithm "HS257" is not supported',
      )
    })

    it('denies an HS256 token whose HMAC secret is the RSA public key PEM (key confusion)', async () => {
      const { publicKey } = testKeys().rsa
      const pem = publicKey.export({ type: 'spki', format: 'pem' }) as string
      const forged = signJwt('HS256', pem, claims())
      // Only the RS256 key is configured: HS256 is not even an accepted algorithm.
      await expectDenied(
        verifier({ keys: [{ alg: 'RS256', publicKey: pem }] }),
        forged,
        'ERR_JWT_INVALID',
        'algorithm HS256 is not allowed',
      )
      // Even with HS256 allowed, the RSA key is bound to RS256 and never serves as an HMAC secret.
      const both = verifier({
        keys: [{ kid: 'rsa', alg: 'RS256', publicKey: pem }],
        algorithms: ['RS256', 'HS256'],
      })
      await expectDenied(both, forged, 'ERR_JWT_INVALID', 'no key for algorithm')
      await expectDenied(
        both,
        signJwt('HS256', pem, claims(), { kid: 'rsa' }),
        'ERR_JWT_INVALID',
        'unknown kid',
      )
    })

    it('ignores a jwk embedded in the header: a token signed by the attacker key is denied', async () => {
      const { p256, p256Attacker } = testKeys()
      const v = verifier({ keys: [{ kid: 'ec-1', alg: 'ES256', publicKey: p256.publicKey }] })
      const jwk = { ...p256Attacker.publicKey.export({ format: 'jwk' }), kid: 'ec-1' }
      for (const header of [{ jwk }, { jwk, kid: 'ec-1' }]) {
        const forged = signJwt('ES256', p256Attacker.privateKey, claims(), header)
        await expectDenied(v, forged, 'ERR_JWT_INVALID', 'signature mismatch')
      }
    })

    it('ignores jku and x5u: an attacker token pointing at its key set is denied, a genuine one verifies', async () => {
      const v = hs256()
      const pointers = { jku: 'http://127.0.0.1:9/jwks.json', x5u: 'http://127.0.0.1:9/cert.pem' }
      await expectDenied(
        v,
        signJwt('HS256', OTHER_SECRET, claims(), pointers),
        'ERR_JWT_INVALID',
        'signature mismatch',
      )
      await expectOk(v, signJwt('HS256', SECRET, claims(), pointers))
    })

    it('denies a token with a crit header, and with b64, zip or enc', async () => {
      const v = hs256()
      const cases: [Record<string, unknown>, string][] = [
        [{ crit: ['exp'], exp: NOW + 600 }, 'crit'],
        [{ crit: [] }, 'crit'],
        [{ b64: false }, 'b64'],
        [{ zip: 'DEF' }, 'zip'],
        [{ enc: 'A128GCM' }, 'enc'],
      ]
      for (const [header, name] of cases) {
        await expectDenied(
          v,
          signJwt('HS256', SECRET, claims(), header),
          'ERR_JWT_INVALID',
          `header parameter "${name}" is not supported`,
        )
      }
    })
  })

  describe('malformed tokens', () => {
    it('denies a token whose payload was changed after signing', async () => {
      const [h, , s] = splitToken(signJwt('HS256', SECRET, claims()))
      const tampered = `${h}.${encodeSegment(claims({ sub: 'admin' }))}.${s}`
      await expectDenied(hs256(), tampered, 'ERR_JWT_INVALID', 'signature mismatch')
    })

    it('denies garbage strings as malformed', async () => {
      const v = hs256()
      const valid = signJwt('HS256', SECRET, claims())
      const garbage = [
        '',
        'garbage',
        'a.b',
        'a.b.c.d',
        '..',
        '...',
        `.${encodeSegment(claims())}.c2ln`,
        `Bearer ${valid}`,
        ` ${valid}`,
        `${valid} `,
        `${valid}.`,
        `${valid}\n`,
        '\u0000.\u0000.\u0000',
        '😀.😀.😀',
        'eyJhbGciOiJIUzI1NiJ9.e30',
        `${encodeSegment('not json')}.${encodeSegment(claims())}.c2ln`,
      ]
      for (const token of garbage) {
        await expectDenied(v, token, 'ERR_JWT_MALFORMED').catch((e: Error) => {
          throw new Error(`${JSON.stringify(token)}: ${e.message}`)
        })
      }
    })

    it('denies a correctly signed token with an empty payload as malformed (not JSON)', async () => {
      const token = signEncoded('HS256', SECRET, encodeSegment({ alg: 'HS256' }), '')
      expect(splitToken(token)[1]).to.equal('')
      await expectDenied(hs256(), token, 'ERR_JWT_MALFORMED', /^claims are not strict JSON/)
    })

    it('denies a 10 kB token as malformed (token too long), although it is correctly signed', async () => {
      const token = signJwt('HS256', SECRET, claims({ pad: 'x'.repeat(10_000) }))
      expect(token.length).to.be.greaterThan(10_000)
      await expectDenied(hs256(), token, 'ERR_JWT_MALFORMED', 'token too long')
      await expectOk(hs256({ maxTokenLength: 16_384 }), token)
    })

    describe('non-canonical base64url (each token correctly signed over its exact text)', () => {
      /** Claims whose payload segment contains both "-" and "_". */
      function payloadWithDashAndUnderscore(): string {
        for (let i = 0; i < 3; i++) {
          const segment = encodeSegment(claims({ note: `${'x'.repeat(i)}>>>???` }))
          if (segment.includes('-') && segment.includes('_')) return segment
        }
        return expect.fail('no payload segment with both - and _')
      }
      const header = encodeSegment({ alg: 'HS256', typ: 'JWT' })

      it('accepts the canonical control token', async () => {
        await expectOk(
          hs256(),
          signEncoded('HS256', SECRET, header, payloadWithDashAndUnderscore()),
        )
      })

      it("denies a payload written with '+' and '/' instead of '-' and '_'", async () => {
        const segment = payloadWithDashAndUnderscore().replaceAll('-', '+').replaceAll('_', '/')
        const token = signEncoded('HS256', SECRET, header, segment)
        await expectDenied(
          hs256(),
          token,
          'ERR_JWT_MALFORMED',
          'payload is not canonical base64url',
        )
      })

      it("denies '=' padding in the payload, the header and the signature", async () => {
        const partial = (make: (i: number) => string): string =>
          [0, 1, 2].map(make).find((s) => s.length % 4 !== 0) as string
        const payload = partial((i) => encodeSegment(claims({ p: 'a'.repeat(i) })))
        const header2 = partial((i) =>
          encodeSegment({ alg: 'HS256', typ: 'JWT', x: 'a'.repeat(i) }),
        )
        const padded = (s: string): string => s + '='.repeat((4 - (s.length % 4)) % 4)
        expect(padded(payload)).to.not.equal(payload)
        expect(padded(header2)).to.not.equal(header2)
        await expectOk(hs256(), signEncoded('HS256', SECRET, header2, payload))
        await expectDenied(
          hs256(),
          signEncoded('HS256', SECRET, header, padded(payload)),
          'ERR_JWT_MALFORMED',
          'payload is not canonical base64url',
        )
        await expectDenied(
          hs256(),
          signEncoded('HS256', SECRET, padded(header2), payload),
          'ERR_JWT_MALFORMED',
          'header is not canonical base64url',
        )
        const token = signEncoded('HS256', SECRET, header, payload)
        // A 32-byte HMAC is 43 characters: one '=' of padding.
        await expectDenied(
          hs256(),
          `${token}=`,
          'ERR_JWT_MALFORMED',
          'signature is not canonical base64url',
        )
      })

      it('denies non-zero unused trailing bits in the payload, the header and the signature', async () => {
        const payload = [0, 1, 2]
          .map((i) => encodeSegment(claims({ p: 'a'.repeat(i) })))
          .find((s) => s.length % 4 !== 0) as string
        await expectDenied(
          hs256(),
          signEncoded('HS256', SECRET, header, withTrailingBits(payload)),
          'ERR_JWT_MALFORMED',
          'payload is not canonical base64url',
        )
        const header2 = [0, 1, 2]
          .map((i) => encodeSegment({ alg: 'HS256', typ: 'JWT', x: 'a'.repeat(i) }))
          .find((s) => s.length % 4 !== 0) as string
        await expectDenied(
          hs256(),
          signEncoded('HS256', SECRET, withTrailingBits(header2), payload),
          'ERR_JWT_MALFORMED',
          'header is not canonical base64url',
        )
        const [h, p, s] = splitToken(signEncoded('HS256', SECRET, header, payload))
        await expectDenied(
          hs256(),
          `${h}.${p}.${withTrailingBits(s)}`,
          'ERR_JWT_MALFORMED',
          'signature is not canonical base64url',
        )
      })

      it("denies a signature written with '+' or '/'", async () => {
        // Find a (deterministic) HMAC signature that contains '-' or '_'.
        let token = signJwt('HS256', SECRET, claims({ jti: 't0' }))
        for (let i = 1; !/[-_]/.test(splitToken(token)[2]); i++) {
          token = signJwt('HS256', SECRET, claims({ jti: `t${i}` }))
        }
        const [h, p, s] = splitToken(token)
        const mangled = s.replaceAll('-', '+').replaceAll('_', '/')
        expect(Buffer.from(mangled, 'base64').equals(Buffer.from(s, 'base64url'))).to.equal(true)
        await expectOk(hs256(), token)
        await expectDenied(
          hs256(),
          `${h}.${p}.${mangled}`,
          'ERR_JWT_MALFORMED',
          'signature is not canonical base64url',
        )
      })
    })

    it('denies duplicate claim names in the payload', async () => {
      const json = `{"sub":"user-1","exp":${NOW + 600},"sub":"admin"}`
      await expectDenied(
        hs256(),
        signJws('HS256', SECRET, { alg: 'HS256' }, json),
        'ERR_JWT_MALFORMED',
        'claims are not strict JSON (duplicate member name)',
      )
      // Also when the duplicate is spelled with an escape.
      const escaped = `{"sub":"user-1","exp":${NOW + 600},"\\u0073ub":"admin"}`
      await expectDenied(
        hs256(),
        signJws('HS256', SECRET, { alg: 'HS256' }, escaped),
        'ERR_JWT_MALFORMED',
        /duplicate member name/,
      )
    })

    it('denies duplicate parameter names in the header', async () => {
      for (const json of [
        '{"alg":"HS256","typ":"JWT","typ":"JWT"}',
        '{"alg":"none","alg":"HS256"}',
      ]) {
        await expectDenied(
          hs256(),
          signJws('HS256', SECRET, json, claims()),
          'ERR_JWT_MALFORMED',
          'header is not strict JSON (duplicate member name)',
        )
      }
    })

    it('denies a byte-order mark at the start of the payload or header', async () => {
      const bom = Buffer.from([0xef, 0xbb, 0xbf])
      const payload = Buffer.concat([bom, Buffer.from(JSON.stringify(claims()))])
      await expectDenied(
        hs256(),
        signJws('HS256', SECRET, { alg: 'HS256' }, payload),
        'ERR_JWT_MALFORMED',
        'claims are not strict JSON (byte-order mark)',
      )
      const header = Buffer.concat([bom, Buffer.from('{"alg":"HS256"}')])
      await expectDenied(
        hs256(),
        signJws('HS256', SECRET, header, claims()),
        'ERR_JWT_MALFORMED',
        'header is not strict JSON (byte-order mark)',
      )
    })

    it('denies invalid UTF-8 in the payload', async () => {
      const invalid = [
        [0xff], // never valid
        [0xc0, 0xaf], // overlong "/"
        [0xed, 0xa0, 0x80], // encoded surrogate U+D800
        [0xe2, 0x82], // truncated sequence
      ]
      for (const bytes of invalid) {
        const payload = Buffer.concat([
          Buffer.from(`{"sub":"user-1","exp":${NOW + 600},"name":"`),
          Buffer.from(bytes),
          Buffer.from('"}'),
        ])
        await expectDenied(
          hs256(),
          signJws('HS256', SECRET, { alg: 'HS256' }, payload),
          'ERR_JWT_MALFORMED',
          'claims are not strict JSON (invalid UTF-8)',
        )
      }
    })

    it('denies a payload that is JSON but not an object, and a header that is not an object', async () => {
      for (const json of ['[]', '"user-1"', 'null', '1']) {
        await expectDenied(
          hs256(),
          signJws('HS256', SECRET, { alg: 'HS256' }, json),
          'ERR_JWT_MALFORMED',
          'claims are not a JSON object',
        )
      }
      await expectDenied(
        hs256(),
        signJws('HS256', SECRET, '["HS256"]', claims()),
        'ERR_JWT_MALFORMED',
        'header is not an object',
      )
    })

    it('accepts JSON whitespace around the payload object', async () => {
      await expectOk(
        hs256(),
        signJws('HS256', SECRET, { alg: 'HS256' }, ` \n\t${JSON.stringify(claims())}\r\n`),
      )
    })

    it('denies a non-string typ and a kid that is not a non-empty string of at most 256 characters', async () => {
      const v = hs256()
      await expectDenied(
        v,
        signJwt('HS256', SECRET, claims(), { typ: 1 }),
        'ERR_JWT_MALFORMED',
        'typ must be a string',
      )
      for (const kid of [1, '', 'k'.repeat(257), null]) {
        await expectDenied(
          v,
          signJwt('HS256', SECRET, claims(), { kid }),
          'ERR_JWT_MALFORMED',
          'kid must be a non-empty string',
        )
      }
    })
  })

  describe('kid lookup', () => {
    const twoKeys = (): JwtVerifier =>
      verifier({
        keys: [
          { kid: 'key-a', alg: 'HS256', secret: SECRET },
          { kid: 'key-b', alg: 'HS256', secret: OTHER_SECRET },
        ],
      })

    it('verifies with the key named by kid and reports that kid', async () => {
      const { principal } = await expectOk(
        twoKeys(),
        signJwt('HS256', OTHER_SECRET, claims(), { kid: 'key-b' }),
      )
      expect(principal.attributes.kid).to.equal('key-b')
    })

    it('denies a token naming an unknown kid', async () => {
      await expectDenied(
        twoKeys(),
        signJwt('HS256', SECRET, claims(), { kid: 'key-c' }),
        'ERR_JWT_INVALID',
        'unknown kid',
      )
    })

    it('denies a token signed with another configured key than the one its kid names', async () => {
      await expectDenied(
        twoKeys(),
        signJwt('HS256', OTHER_SECRET, claims(), { kid: 'key-a' }),
        'ERR_JWT_INVALID',
        'signature mismatch',
      )
    })

    it('tries the keys of the algorithm when the token has no kid', async () => {
      const { principal } = await expectOk(twoKeys(), signJwt('HS256', OTHER_SECRET, claims()))
      expect(principal.attributes.kid).to.equal('key-b')
    })

    it('never resolves kid "__proto__", "constructor", "toString" or other Object.prototype names', async () => {
      const v = twoKeys()
      for (const kid of [
        '__proto__',
        'constructor',
        'toString',
        'hasOwnProperty',
        'valueOf',
        '__defineGetter__',
      ]) {
        const error = await expectDenied(
          v,
          signJwt('HS256', SECRET, claims(), { kid }),
          'ERR_JWT_INVALID',
        )
        expect(error.reason, kid).to.equal('unknown kid')
      }
    })
  })

  describe('typ header', () => {
    it('accepts JWT, at+jwt and their media-type forms, case-insensitively, and no typ', async () => {
      const v = hs256({ cache: false })
      for (const typ of [
        'JWT',
        'jwt',
        'at+jwt',
        'AT+JWT',
        'application/jwt',
        'application/at+jwt',
        undefined,
      ]) {
        await expectOk(v, signJwt('HS256', SECRET, claims(), { typ }))
      }
    })

    it('denies an unexpected typ such as "foo" or "JOSE"', async () => {
      for (const typ of ['foo', 'JOSE', 'secevent+jwt', '']) {
        await expectDenied(
          hs256(),
          signJwt('HS256', SECRET, claims(), { typ }),
          'ERR_JWT_INVALID',
          'unexpected typ',
        )
      }
    })

    it('with requireType, denies a token without typ', async () => {
      const v = hs256({ requireType: true })
      await expectDenied(
        v,
        signJws('HS256', SECRET, { alg: 'HS256' }, claims()),
        'ERR_JWT_INVALID',
        'unexpected typ',
      )
      await expectOk(v, signJwt('HS256', SECRET, claims()))
    })

    it('accepts only the configured types', async () => {
      const v = hs256({ types: ['secevent+jwt'] })
      await expectOk(v, signJwt('HS256', SECRET, claims(), { typ: 'SecEvent+JWT' }))
      await expectDenied(
        v,
        signJwt('HS256', SECRET, claims(), { typ: 'JWT' }),
        'ERR_JWT_INVALID',
        'unexpected typ',
      )
    })
  })

  describe('claims to principal', () => {
    it('splits a scope string on spaces', async () => {
      const { principal } = await expectOk(
        hs256(),
        signJwt('HS256', SECRET, claims({ scope: 'read write  admin:all' })),
      )
      expect(principal.scopes).to.deep.equal(['read', 'write', 'admin:all'])
    })

    it('reads an scp array and ignores entries that are not scope-token strings', async () => {
      const scp = [
        'read',
        1,
        { scope: 'admin' },
        ['admin'],
        null,
        true,
        'write',
        'has space',
        'quo"te',
        '',
      ]
      const { principal } = await expectOk(hs256(), signJwt('HS256', SECRET, claims({ scp })))
      expect(principal.scopes).to.deep.equal(['read', 'write'])
    })

    it('reads an scp string, and prefers scope over scp', async () => {
      const v = hs256({ cache: false })
      expect(
        (await expectOk(v, signJwt('HS256', SECRET, claims({ scp: 'a b' })))).principal.scopes,
      ).to.deep.equal(['a', 'b'])
      const both = await expectOk(v, signJwt('HS256', SECRET, claims({ scope: 'a', scp: ['b'] })))
      expect(both.principal.scopes).to.deep.equal(['a'])
    })

    it('grants no scope for a type-confused scope claim', async () => {
      const { principal } = await expectOk(
        hs256(),
        signJwt('HS256', SECRET, claims({ scope: { read: true } })),
      )
      expect(principal.scopes).to.deep.equal([])
    })

    it('keeps only well-formed role strings and ignores type-confused entries', async () => {
      const roles = [
        'admin',
        1,
        { role: 'root' },
        ['root'],
        null,
        'ops/eu-1',
        '',
        ' spaced',
        'x'.repeat(129),
      ]
      const { principal } = await expectOk(hs256(), signJwt('HS256', SECRET, claims({ roles })))
      expect(principal.roles).to.deep.equal(['admin', 'ops/eu-1'])
    })

    it('grants no role when the roles claim is a string rather than an array', async () => {
      const { principal } = await expectOk(
        hs256(),
        signJwt('HS256', SECRET, claims({ roles: 'admin' })),
      )
      expect(principal.roles).to.deep.equal([])
    })

    it('reads roles from rolesClaim', async () => {
      const token = signJwt('HS256', SECRET, claims({ roles: ['ignored'], groups: ['editors'] }))
      const { principal } = await expectOk(hs256({ rolesClaim: 'groups' }), token)
      expect(principal.roles).to.deep.equal(['editors'])
    })

    it('denies a token without a usable sub', async () => {
      for (const sub of [undefined, 42, '', 'has space', ['user-1']]) {
        await expectDenied(
          hs256(),
          signJwt('HS256', SECRET, claims({ sub })),
          'ERR_JWT_INVALID',
          'no usable subject',
        )
      }
    })

    it('omits tokenId when jti is not a usable id', async () => {
      const { principal } = await expectOk(hs256(), signJwt('HS256', SECRET, claims({ jti: 12 })))
      expect(principal).to.not.have.property('tokenId')
    })

    it('uses toPrincipal, and denies the token when it returns undefined', async () => {
      const custom: Principal = {
        id: 'svc' as Principal['id'],
        method: 'jwt',
        scopes: [],
        roles: [],
        attributes: {},
      }
      const toPrincipal = sinon.stub<[JwtClaims], Principal | undefined>()
      toPrincipal.onFirstCall().returns(custom).onSecondCall().returns(undefined)
      const v = hs256({ toPrincipal, cache: false })
      const token = signJwt('HS256', SECRET, claims({ client_id: 'svc' }))
      expect((await expectOk(v, token)).principal).to.equal(custom)
      expect(toPrincipal.firstCall.args[0].client_id).to.equal('svc')
      await expectDenied(v, token, 'ERR_JWT_INVALID', 'no usable subject')
    })

    it('returns frozen claims where "__proto__" is an own, ordinary key', async () => {
      const json = `{"sub":"user-1","exp":${NOW + 600},"__proto__":{"isAdmin":true}}`
      const { claims: verified, principal } = await expectOk(
        hs256(),
        signJws('HS256', SECRET, { alg: 'HS256' }, json),
      )
      expect(Object.getPrototypeOf(verified)).to.equal(Object.prototype)
      expect(Object.isFrozen(verified)).to.equal(true)
      expect(Object.hasOwn(verified, '__proto__')).to.equal(true)
      expect((verified.__proto__ as Record<string, unknown>).isAdmin).to.equal(true)
      expect(({} as Record<string, unknown>).isAdmin).to.equal(undefined)
      expect(principal.attributes.claims).to.equal(verified)
    })
  })

  describe('cache of verified tokens', () => {
    it('serves the second verification of the same token from the cache', async () => {
      const toPrincipal = sinon.spy((c: JwtClaims): Principal => ({
        id: c.sub as Principal['id'],
        method: 'jwt',
        scopes: [],
        roles: [],
        attributes: {},
      }))
      const v = hs256({ toPrincipal })
      const token = signJwt('HS256', SECRET, claims())
      expect(v.cacheSize).to.equal(0)
      const first = await expectOk(v, token)
      expect(v.cacheSize).to.equal(1)
      const second = await expectOk(v, token)
      expect(v.cacheSize).to.equal(1)
      expect(toPrincipal.callCount).to.equal(1)
      expect(second.principal).to.equal(first.principal)
    })

    it('refuses a cached token once exp (plus tolerance) passes', async () => {
      const clock = manualClock(NOW_MS)
      const v = hs256({}, clock)
      const token = signJwt('HS256', SECRET, claims({ exp: NOW + 60 }))
      await expectOk(v, token)
      expect(v.cacheSize).to.equal(1)
      clock.advance(89_999)
      await expectOk(v, token)
      clock.advance(1)
      await expectDenied(v, token, 'ERR_JWT_EXPIRED')
      expect(v.cacheSize).to.equal(0)
    })

    it('refuses a cached token once it is older than maxTokenAgeSeconds', async () => {
      const clock = manualClock(NOW_MS)
      const v = hs256({ maxTokenAgeSeconds: 60, clockToleranceSeconds: 0 }, clock)
      const token = signJwt('HS256', SECRET, claims({ iat: NOW, exp: NOW + 3600 }))
      await expectOk(v, token)
      clock.advance(120_000)
      // A fresh verifier refuses the token at this time...
      await expectDenied(
        hs256({ maxTokenAgeSeconds: 60, clockToleranceSeconds: 0 }, clock),
        token,
        'ERR_JWT_INVALID',
        'too old (iat)',
      )
      // ...and so must the one that cached it.
      await expectDenied(v, token, 'ERR_JWT_INVALID', 'too old (iat)')
    })

    it('agrees with a fresh verification at the maxTokenAgeSeconds boundary', async () => {
      const clock = manualClock(NOW_MS)
      const options = { maxTokenAgeSeconds: 60, clockToleranceSeconds: 5 }
      const cached = hs256(options, clock)
      const token = signJwt('HS256', SECRET, claims({ iat: NOW, exp: NOW + 3600 }))
      await expectOk(cached, token)
      clock.advance(65_000) // iat + maxAge + tolerance: still accepted
      await expectOk(hs256(options, clock), token)
      await expectOk(cached, token)
      clock.advance(1)
      await expectDenied(hs256(options, clock), token, 'ERR_JWT_INVALID', 'too old (iat)')
      await expectDenied(cached, token, 'ERR_JWT_INVALID', 'too old (iat)')
    })

    it('re-verifies a token after cache.ttlMs', async () => {
      const clock = manualClock(NOW_MS)
      const toPrincipal = sinon.spy((c: JwtClaims): Principal => ({
        id: c.sub as Principal['id'],
        method: 'jwt',
        scopes: [],
        roles: [],
        attributes: {},
      }))
      const v = hs256({ toPrincipal, cache: { ttlMs: 1000 } }, clock)
      const token = signJwt('HS256', SECRET, claims())
      await expectOk(v, token)
      clock.advance(999)
      await expectOk(v, token)
      expect(toPrincipal.callCount).to.equal(1)
      clock.advance(1)
      await expectOk(v, token)
      expect(toPrincipal.callCount).to.equal(2)
    })

    it('caches nothing when cache is false, and never caches a denial', async () => {
      const off = hs256({ cache: false })
      await expectOk(off, signJwt('HS256', SECRET, claims()))
      expect(off.cacheSize).to.equal(0)
      const on = hs256()
      const denied = signJwt('HS256', OTHER_SECRET, claims())
      await expectDenied(on, denied, 'ERR_JWT_INVALID')
      await expectDenied(on, denied, 'ERR_JWT_INVALID')
      expect(on.cacheSize).to.equal(0)
    })

    it('holds at most cache.max tokens', async () => {
      const v = hs256({ cache: { max: 1 } })
      await expectOk(v, signJwt('HS256', SECRET, claims({ jti: 'a' })))
      await expectOk(v, signJwt('HS256', SECRET, claims({ jti: 'b' })))
      expect(v.cacheSize).to.equal(1)
    })

    it('does not serve a cached entry for a different token with the same claims', async () => {
      const v = hs256()
      const token = signJwt('HS256', SECRET, claims())
      await expectOk(v, token)
      const [h, p] = splitToken(token)
      const forged = `${h}.${p}.${b64url(createHash('sha256').update('x').digest())}`
      await expectDenied(v, forged, 'ERR_JWT_INVALID', 'signature mismatch')
    })
  })

  describe('options', () => {
    it('rejects algorithms containing "none" with the path jwt.algorithms[1]', () => {
      const error = configErrorOf(() => hs256({ algorithms: ['HS256', 'none' as JwsAlgorithm] }))
      expect(error.code).to.equal('ERR_CONFIG_INVALID')
      expect(error.issues).to.deep.equal(['jwt.algorithms[1]: algorithm "none" is never accepted'])
    })

    it('rejects an unknown algorithm "HS257" with the path jwt.algorithms[1]', () => {
      const error = configErrorOf(() => hs256({ algorithms: ['HS256', 'HS257' as JwsAlgorithm] }))
      expect(error.message).to.equal(
        'jwt.algorithms[1]: unknown algorithm "HS257"; expected one of HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA, Ed25519',
      )
    })

    it('rejects an empty algorithm list', () => {
      expect(configErrorOf(() => hs256({ algorithms: [] })).issues).to.deep.equal([
        'jwt.algorithms: must not be empty',
      ])
    })

    it('rejects an HS256 secret shorter than 32 bytes, and accepts 32 bytes', () => {
      expect(configErrorOf(() => verifier({ secret: 'x'.repeat(31) })).message).to.equal(
        'jwt.secret: HS256 needs a secret of at least 32 bytes, got 31',
      )
      expect(() => verifier({ secret: 'x'.repeat(32) })).to.not.throw()
      // Bytes, not characters: 16 two-byte characters are 32 bytes.
      expect(() => verifier({ secret: 'é'.repeat(16) })).to.not.throw()
      expect(
        configErrorOf(() => verifier({ keys: [{ alg: 'HS512', secret: Buffer.alloc(63) }] }))
          .message,
      ).to.equal('jwt.keys[0]: HS512 needs a secret of at least 64 bytes, got 63')
    })

    it('rejects an RSA key smaller than 2048 bits', () => {
      const { publicKey } = testKeys().rsa1024
      expect(
        configErrorOf(() => verifier({ keys: [{ alg: 'RS256', publicKey }] })).message,
      ).to.equal('jwt.keys[0]: RS256 needs an RSA key of at least 2048 bits, got 1024')
    })

    it('rejects a JWK whose alg disagrees with the configured alg', () => {
      const jwk = { ...testKeys().rsa.publicKey.export({ format: 'jwk' }), alg: 'RS384' }
      expect(configErrorOf(() => verifier({ keys: [{ alg: 'RS256', jwk }] })).message).to.equal(
        "jwt.keys[0].alg: RS256 disagrees with the JWK's own alg RS384",
      )
    })

    it('rejects a JWK with use "enc" or key_ops without "verify", and one with neither alg', () => {
      const jwk = testKeys().rsa.publicKey.export({ format: 'jwk' })
      expect(
        configErrorOf(() => verifier({ keys: [{ alg: 'RS256', jwk: { ...jwk, use: 'enc' } }] }))
          .message,
      ).to.equal('jwt.keys[0].jwk.use: must be "sig" for a verification key, received "enc"')
      expect(
        configErrorOf(() =>
          verifier({ keys: [{ alg: 'RS256', jwk: { ...jwk, key_ops: ['encrypt'] } }] }),
        ).message,
      ).to.equal('jwt.keys[0].jwk.key_ops: must include "verify"')
      expect(configErrorOf(() => verifier({ keys: [{ jwk }] })).message).to.equal(
        'jwt.keys[0].alg: required when the JWK has no "alg"',
      )
    })

    it('rejects a key of the wrong family or curve for its algorithm', () => {
      const { rsa, p384 } = testKeys()
      expect(
        configErrorOf(() => verifier({ keys: [{ alg: 'HS256', publicKey: rsa.publicKey }] }))
          .message,
      ).to.equal('jwt.keys[0]: HS256 needs a secret key, got a public key')
      expect(
        configErrorOf(() => verifier({ keys: [{ alg: 'ES256', publicKey: p384.publicKey }] }))
          .message,
      ).to.equal('jwt.keys[0]: ES256 needs an EC key on prime256v1, got ec secp384r1')
    })

    it('rejects a configuration without any key', () => {
      for (const options of [{}, { keys: [] }, { algorithms: ['HS256'] as JwsAlgorithm[] }]) {
        expect(configErrorOf(() => verifier(options)).issues).to.deep.equal([
          'jwt.keys: give at least one of "secret", "keys" or "jwks"',
        ])
      }
    })

    it('requires algorithms when keys come only from a JWKS', () => {
      expect(
        configErrorOf(() => verifier({ jwks: 'https://id.example/jwks.json' })).issues,
      ).to.deep.equal(['jwt.algorithms: required when keys come from a JWKS'])
    })

    it('lists every issue at once', () => {
      const error = configErrorOf(() =>
        hs256({
          algorithms: ['none' as JwsAlgorithm],
          clockToleranceSeconds: 301,
          maxTokenLength: 10,
        }),
      )
      expect(error.issues).to.deep.equal([
        'jwt.algorithms[0]: algorithm "none" is never accepted',
        'jwt.clockToleranceSeconds: must be an integer <= 300, received 301',
        'jwt.maxTokenLength: must be an integer >= 64, received 10',
      ])
    })

    it('warns about an unknown option, suggesting the close one', () => {
      const warn = sinon.spy()
      createJwtVerifier(
        { secret: SECRET, issuers: 'x', issuer: false, audience: 'api' } as JwtOptions,
        {
          now: () => NOW_MS,
          warn,
        },
      )
      expect(
        warn.calledOnceWithExactly('jwt.issuers: unknown option "issuers"; did you mean "issuer"?'),
      ).to.equal(true)
    })

    it('refuses a misspelt issuer option, since issuer is then missing', () => {
      const warn = sinon.spy()
      const error = configErrorOf(() =>
        createJwtVerifier({ secret: SECRET, issuers: 'x', audience: 'api' } as JwtOptions, {
          now: () => NOW_MS,
          warn,
        }),
      )
      expect(error.issues).to.have.length(1)
      expect(error.issues[0]).to.match(/^jwt\.issuer: is required \(RFC 8725 §3\.8\)/)
    })

    it('refuses a configuration without issuer or audience, naming each and the fix', () => {
      const error = configErrorOf(() =>
        createJwtVerifier({ secret: SECRET }, { now: () => NOW_MS }),
      )
      expect(error.code).to.equal('ERR_CONFIG_INVALID')
      expect(error.issues).to.deep.equal([
        `jwt.issuer: is required (RFC 8725 §3.8): set the accepted "iss" value(s), e.g. issuer: 'https://id.example', or issuer: false to accept any issuer on purpose`,
        `jwt.audience: is required (RFC 8725 §3.9): set the accepted "aud" value(s), e.g. audience: 'my-api', or audience: false to accept any audience on purpose`,
      ])
      expect(
        configErrorOf(() =>
          createJwtVerifier({ secret: SECRET, issuer: 'https://id' }, { now: () => NOW_MS }),
        ).issues,
      ).to.have.length(1)
      expect(
        configErrorOf(() =>
          createJwtVerifier({ secret: SECRET, audience: 'api' }, { now: () => NOW_MS }),
        ).issues[0],
      ).to.match(/^jwt\.issuer: /)
    })

    it('makes createGate refuse a jwt option without issuer at start-up', () => {
      const error = configErrorOf(() =>
        createGate({ jwt: { secret: SECRET, audience: 'api' }, audit: false }),
      )
      expect(error.issues).to.have.length(1)
      expect(error.issues[0]).to.match(
        /^jwt\.issuer: is required \(RFC 8725 §3\.8\).*issuer: false/,
      )
      expect(() =>
        createGate({ jwt: { secret: SECRET, issuer: false, audience: 'api' }, audit: false }),
      ).to.not.throw()
    })

    it('accepts issuer: false and audience: false, said explicitly, and then checks neither', async () => {
      const v = createJwtVerifier(
        { secret: SECRET, issuer: false, audience: false },
        { now: () => NOW_MS },
      )
      await expectOk(v, signJwt('HS256', SECRET, claims({ iss: 'https://any', aud: 'other' })))
      await expectOk(v, signJwt('HS256', SECRET, claims()))
      // false for one still checks the other.
      const audOnly = createJwtVerifier(
        { secret: SECRET, issuer: false, audience: 'api' },
        { now: () => NOW_MS },
      )
      await expectOk(audOnly, signJwt('HS256', SECRET, claims({ iss: 'https://any', aud: 'api' })))
      await expectDenied(
        audOnly,
        signJwt('HS256', SECRET, claims({ aud: 'other' })),
        'ERR_JWT_INVALID',
        'audience mismatch',
      )
    })

    it('rejects issuer: true, an empty issuer list and a non-string audience', () => {
      expect(configErrorOf(() => hs256({ issuer: true as never })).issues[0]).to.match(
        /^jwt\.issuer: /,
      )
      expect(configErrorOf(() => hs256({ issuer: [] })).issues).to.deep.equal([
        'jwt.issuer: must not be empty',
      ])
      expect(configErrorOf(() => hs256({ audience: 42 as never })).issues[0]).to.match(
        /^jwt\.audience: /,
      )
    })

    it('validates maxTokenLifetimeSeconds and maxExpiresInSeconds: positive integers or false', () => {
      for (const field of ['maxTokenLifetimeSeconds', 'maxExpiresInSeconds'] as const) {
        for (const bad of [0, -1, 1.5, '3600', true, null]) {
          const error = configErrorOf(() => hs256({ [field]: bad as never }))
          expect(error.issues, `${field}: ${String(bad)}`).to.have.length(1)
          expect(error.issues[0]).to.match(new RegExp(`^jwt\\.${field}: `))
        }
        expect(() => hs256({ [field]: 1 })).to.not.throw()
        expect(() => hs256({ [field]: false })).to.not.throw()
      }
    })
  })
})
