import { expect } from 'chai'
import {
  createJwtVerifier,
  createMemoryRevocationList,
  isConfigError,
  type JwtOptions,
  type JwtVerifier,
  type RevocationList,
} from '@portcullis/core'
import { signHmac } from '../../helpers/jwt.js'
import { manualClock, type ManualClock } from './helpers.js'

const NOW_MS = 1_700_000_000_000
const NOW = NOW_MS / 1000
const SECRET = 'portcullis-test-secret-0123456789abcd'

const token = (extra: Record<string, unknown> = {}): string =>
  signHmac({ claims: { sub: 'user-1', iat: NOW, exp: NOW + 600, jti: 'tok-1', ...extra } }, SECRET)

function verifier(clock: ManualClock, options: Partial<JwtOptions> = {}): JwtVerifier {
  return createJwtVerifier(
    { secret: SECRET, issuer: false, audience: false, ...options },
    { now: clock.now },
  )
}

function expectConfigError(fn: () => unknown, pattern: RegExp): void {
  try {
    fn()
  } catch (error) {
    expect(isConfigError(error)).to.equal(true)
    expect((error as Error).message).to.match(pattern)
    return
  }
  expect.fail('expected a ConfigError')
}

describe('JWT verifier with jwt.revocations', () => {
  let clock: ManualClock
  beforeEach(() => {
    clock = manualClock(NOW_MS)
  })

  it('refuses a token revoked by jti with ERR_JWT_REVOKED (401)', async () => {
    const revocations = createMemoryRevocationList({ now: clock.now })
    const v = verifier(clock, { revocations, cache: false })
    expect((await v.verify(token())).ok).to.equal(true)
    await revocations.revokeToken({ jti: 'tok-1' })
    const r = await v.verify(token())
    if (r.ok) return expect.fail('a revoked token verified')
    expect(r.error).to.include({ code: 'ERR_JWT_REVOKED', status: 401, reason: 'jti revoked' })
    expect((await v.verify(token({ jti: 'tok-2' }))).ok).to.equal(true)
  })

  it('refuses the tokens of a subject issued before the cut-off and accepts later ones', async () => {
    const revocations = createMemoryRevocationList({ now: clock.now })
    const v = verifier(clock, { revocations, cache: false })
    await revocations.revokeSubject({ subject: 'user-1', beforeMs: NOW_MS })
    const before = await v.verify(token({ iat: NOW - 60 }))
    if (before.ok) return expect.fail('a token issued before the cut-off verified')
    expect(before.error).to.include({ code: 'ERR_JWT_REVOKED' })
    expect((await v.verify(token({ iat: NOW }))).ok).to.equal(true)
    expect((await v.verify(token({ sub: 'user-2', iat: NOW - 60 }))).ok).to.equal(true)
    const noIat = await v.verify(token({ iat: undefined }))
    expect(noIat.ok ? undefined : noIat.error.code).to.equal('ERR_JWT_REVOKED')
  })

  it('never serves a cached token after its revocation, and evicts it', async () => {
    const revocations = createMemoryRevocationList({ now: clock.now })
    const v = verifier(clock, { revocations })
    const t = token()
    expect((await v.verify(t)).ok).to.equal(true)
    expect(v.cacheSize).to.equal(1)
    expect(v.verifyNow(t)).to.include({ ok: true })
    await revocations.revokeToken({ jti: 'tok-1' })
    const r = v.verifyNow(t)
    if (r instanceof Promise || r.ok) return expect.fail('the cached token was served')
    expect(r.error.code).to.equal('ERR_JWT_REVOKED')
    expect(v.cacheSize).to.equal(0)
  })

  it('does not cache a revoked token', async () => {
    const revocations = createMemoryRevocationList({ now: clock.now })
    await revocations.revokeToken({ jti: 'tok-1' })
    const v = verifier(clock, { revocations })
    expect((await v.verify(token())).ok).to.equal(false)
    expect(v.cacheSize).to.equal(0)
  })

  it('answers a token that is not revoked as it did without a list (same claims, cached)', async () => {
    const revocations = createMemoryRevocationList({ now: clock.now })
    await revocations.revokeToken({ jti: 'other' })
    await revocations.revokeSubject({ subject: 'other-user', beforeMs: NOW_MS })
    const withList = verifier(clock, { revocations })
    const without = verifier(clock)
    const a = await withList.verify(token())
    const b = await without.verify(token())
    expect(a).to.deep.equal(b)
    expect(withList.cacheSize).to.equal(1)
  })

  it('lets an expired token be refused as expired, not as revoked', async () => {
    const revocations = createMemoryRevocationList({ now: clock.now })
    await revocations.revokeToken({ jti: 'tok-1' })
    const v = verifier(clock, { revocations })
    clock.advance(700_000)
    const r = await v.verify(token())
    expect(r.ok ? undefined : r.error.code).to.equal('ERR_JWT_EXPIRED')
  })

  it('refuses an ill-typed jwt.revocations at creation', () => {
    expectConfigError(
      () => verifier(clock, { revocations: {} as RevocationList }),
      /jwt\.revocations: must be a revocation list/,
    )
    expectConfigError(
      () => verifier(clock, { revocations: 'redis' as never }),
      /jwt\.revocations: must be a revocation list/,
    )
  })

  it('refuses a list that forgets entries sooner than the verifier accepts tokens', () => {
    const short = createMemoryRevocationList({ maxTokenLifetimeSeconds: 3600 })
    expectConfigError(
      () => verifier(clock, { revocations: short }),
      /maxTokenLifetimeSeconds: 86400/,
    )
    // Matching bounds are accepted.
    verifier(clock, { revocations: short, maxTokenLifetimeSeconds: 3600 })
    // With the lifetime bound off, maxExpiresInSeconds is the bound.
    expectConfigError(
      () => verifier(clock, { revocations: short, maxTokenLifetimeSeconds: false }),
      /maxExpiresInSeconds/,
    )
    expectConfigError(
      () =>
        verifier(clock, {
          revocations: short,
          maxTokenLifetimeSeconds: false,
          maxExpiresInSeconds: false,
        }),
      /needs a bound on token lifetime/,
    )
  })
})
