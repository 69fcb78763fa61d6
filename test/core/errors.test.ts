import { expect } from 'chai'
import {
  AuthError,
  ConfigError,
  ERROR_CODE_LIST,
  ERROR_CODES,
  httpStatusFor,
  isAuthError,
  isAuthErrorCode,
  isConfigError,
  isExposable,
  toAuthError,
  toProblemDetails,
  type AuthErrorCode,
} from '@portcullis/core'

// The published table: a change here is a breaking change and must be deliberate.
const EXPECTED: Record<AuthErrorCode, number> = {
  ERR_AUTH_REQUIRED: 401,
  ERR_AUTH_INVALID: 401,
  ERR_AUTH_AMBIGUOUS: 400,
  ERR_AUTH_MALFORMED: 400,
  ERR_AUTH_QUERY_CREDENTIALS: 400,
  ERR_REQUEST_MALFORMED: 400,
  ERR_REQUEST_TOO_LARGE: 413,
  ERR_REQUEST_REJECTED: 400,
  ERR_ROUTE_NOT_FOUND: 404,
  ERR_APIKEY_MALFORMED: 401,
  ERR_APIKEY_INVALID: 401,
  ERR_APIKEY_NONCOMPLIANT: 422,
  ERR_JWT_MALFORMED: 401,
  ERR_JWT_INVALID: 401,
  ERR_JWT_EXPIRED: 401,
  ERR_JWT_LIFETIME_TOO_LONG: 401,
  ERR_JWT_EXPIRY_TOO_FAR: 401,
  ERR_JWT_REVOKED: 401,
  ERR_SCOPE_INSUFFICIENT: 403,
  ERR_POLICY_DENIED: 403,
  ERR_AUTHZ_STEP_UP_REQUIRED: 401,
  ERR_RATE_LIMITED: 429,
  ERR_QUOTA_EXCEEDED: 429,
  ERR_CONFIG_INVALID: 500,
  ERR_KEYSTORE_UNAVAILABLE: 503,
  ERR_JWKS_UNAVAILABLE: 503,
  ERR_STORE_UNAVAILABLE: 503,
  ERR_RATELIMIT_UNAVAILABLE: 503,
  ERR_QUOTA_UNAVAILABLE: 503,
  ERR_AUDIT_UNAVAILABLE: 503,
  ERR_DEPENDENCY_TIMEOUT: 503,
  ERR_INTERNAL_ERROR: 500,
  ERR_AUTH_THROTTLED: 429,
}

describe('error codes', () => {
  it('lists exactly the published codes', () => {
    expect([...ERROR_CODE_LIST].sort()).to.deep.equal(Object.keys(EXPECTED).sort())
  })

  for (const code of Object.keys(EXPECTED) as AuthErrorCode[]) {
    it(`maps ${code} to ${EXPECTED[code]} from the one table`, () => {
      expect(httpStatusFor(code)).to.equal(EXPECTED[code])
      expect(new AuthError(code, 'm').status).to.equal(EXPECTED[code])
      expect(isExposable(code)).to.equal(EXPECTED[code] < 500)
      expect(code).to.match(/^ERR_[A-Z]+_[A-Z_]+$/)
      const problem = toProblemDetails(new AuthError(code, 'secret detail'), 'r1', 'urn:x:')
      expect(problem.status).to.equal(EXPECTED[code])
      expect(problem.type).to.equal(`urn:x:${ERROR_CODES[code].slug}`)
      if (EXPECTED[code] >= 500) expect(problem).to.not.have.property('detail')
      else expect(problem.detail).to.equal('secret detail')
    })
  }

  it('gives challenges an error value only where RFC 6750 defines one', () => {
    expect(ERROR_CODES.ERR_AUTH_REQUIRED.bearerError).to.equal(null)
    expect(ERROR_CODES.ERR_JWT_EXPIRED.bearerError).to.equal('invalid_token')
    expect(ERROR_CODES.ERR_AUTH_AMBIGUOUS.bearerError).to.equal('invalid_request')
    expect(ERROR_CODES.ERR_SCOPE_INSUFFICIENT.bearerError).to.equal('insufficient_scope')
  })

  it('recognises errors by brand, not by instanceof', () => {
    const foreign = Object.create({ [Symbol.for('@portcullis/core/error')]: true })
    expect(isAuthError(foreign)).to.equal(true)
    expect(isAuthError(new Error('x'))).to.equal(false)
    expect(isAuthError(null)).to.equal(false)
    expect(isConfigError(new ConfigError('x'))).to.equal(true)
    expect(isAuthErrorCode('ERR_JWT_INVALID')).to.equal(true)
    expect(isAuthErrorCode('toString')).to.equal(false)
  })

  it('names the subclass and keeps the cause and reason', () => {
    const cause = new Error('db down')
    const e = new AuthError('ERR_KEYSTORE_UNAVAILABLE', 'unavailable', {
      cause,
      reason: 'store error',
    })
    expect(e.name).to.equal('AuthError')
    expect(e.cause).to.equal(cause)
    expect(e.reason).to.equal('store error')
    const c = new ConfigError(['a: bad', 'b: worse'])
    expect(c.name).to.equal('ConfigError')
    expect(c.issues).to.deep.equal(['a: bad', 'b: worse'])
    expect(c.message).to.include('- a: bad')
  })

  it('maps foreign errors by their status without exposing them', () => {
    expect(
      toAuthError(Object.assign(new SyntaxError('Unexpected token'), { status: 400 })).code,
    ).to.equal('ERR_REQUEST_MALFORMED')
    expect(toAuthError(Object.assign(new Error('too big'), { statusCode: 413 })).code).to.equal(
      'ERR_REQUEST_TOO_LARGE',
    )
    expect(toAuthError(new TypeError('bug')).code).to.equal('ERR_INTERNAL_ERROR')
    expect(toAuthError('a string').code).to.equal('ERR_INTERNAL_ERROR')
  })

  it("keeps an application's own 4xx status and shows its message only when exposed", () => {
    const exposed = toAuthError(
      Object.assign(new Error('no such doc'), { status: 404, expose: true }),
    )
    expect(exposed).to.include({
      code: 'ERR_REQUEST_REJECTED',
      status: 404,
      message: 'no such doc',
    })
    expect(toProblemDetails(exposed, 'r', 'urn:x:')).to.include({
      status: 404,
      detail: 'no such doc',
    })
    const hidden = toAuthError(
      Object.assign(new Error('row 7 locked by pid 4242'), { statusCode: 409 }),
    )
    expect(hidden).to.include({
      code: 'ERR_REQUEST_REJECTED',
      status: 409,
      message: 'The request was rejected',
    })
    expect(new AuthError('ERR_JWT_INVALID', 'x', { status: 404 }).status).to.equal(401)
  })
})
