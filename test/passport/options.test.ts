import { expect } from 'chai'
import { BasicStrategy } from 'passport-http'
import { Strategy as PassportStrategy } from 'passport-strategy'
import sinon from 'sinon'
import { AuthError, isConfigError, type GateRequest, type Logger } from '@portcullis/core'
import { fakeRequest } from '@portcullis/core/testing'
import {
  DEFAULT_STRATEGY_TIMEOUT_MS,
  detectAuthorizationScheme,
  detectHeader,
  passportAuthenticator,
  resolvePassportAuthenticatorOptions,
  type PassportRequest,
} from '@portcullis/passport'

const sandbox = sinon.createSandbox()

const toPrincipal = (user: { id: string }): { id: string } => ({ id: user.id })

/** A strategy that records the request it saw and succeeds with `user`. */
function recorder(
  name: string,
  user: unknown = { id: 'u1' },
): PassportStrategy & { seen: PassportRequest[] } {
  const strategy = new PassportStrategy() as PassportStrategy & {
    name: string
    seen: PassportRequest[]
  }
  strategy.name = name
  strategy.seen = []
  strategy.authenticate = function (this: PassportStrategy, req: PassportRequest): void {
    strategy.seen.push(req)
    this.success(user)
  } as PassportStrategy['authenticate']
  return strategy
}

function configError(fn: () => unknown): string {
  try {
    fn()
  } catch (error) {
    expect(isConfigError(error), String(error)).to.equal(true)
    return (error as Error).message
  }
  expect.fail('expected a ConfigError')
}

describe('@portcullis/passport options and helpers', () => {
  afterEach(() => {
    sandbox.restore()
  })

  describe('detectAuthorizationScheme', () => {
    const basic = detectAuthorizationScheme('basic')
    const auth = (value?: string): GateRequest =>
      fakeRequest(value === undefined ? {} : { headers: { authorization: value } })

    it('matches the scheme case-insensitively when credentials follow', () => {
      expect(basic(auth('Basic YWRhOnB3'))).to.equal(true)
      expect(basic(auth('basic YWRhOnB3'))).to.equal(true)
      expect(basic(auth('BASIC YWRhOnB3'))).to.equal(true)
    })

    it('does not match other schemes, a bare scheme or no header', () => {
      expect(basic(auth('Bearer abc'))).to.equal(false)
      expect(basic(auth('Basicx abc'))).to.equal(false)
      expect(basic(auth('Basic'))).to.equal(false)
      expect(basic(auth())).to.equal(false)
    })

    it('throws ConfigError for a scheme that is not a token', () => {
      expect(configError(() => detectAuthorizationScheme('two words'))).to.include('scheme')
    })
  })

  describe('detectHeader', () => {
    it('matches a non-empty header, whatever the case of the name', () => {
      const legacy = detectHeader('X-Legacy-Token')
      expect(legacy(fakeRequest({ headers: { 'x-legacy-token': 'abc' } }))).to.equal(true)
      expect(legacy(fakeRequest({ headers: { 'x-legacy-token': '  ' } }))).to.equal(false)
      expect(legacy(fakeRequest())).to.equal(false)
    })

    it('throws ConfigError for an invalid header name', () => {
      expect(configError(() => detectHeader('x token'))).to.include('name')
    })
  })

  describe('resolvePassportAuthenticatorOptions', () => {
    const strategy = recorder('custom')

    it('fills defaults: name from the strategy, timeoutMs 5000', () => {
      const detect = detectHeader('x-token')
      const config = resolvePassportAuthenticatorOptions(strategy, { detect, toPrincipal })
      expect(config).to.include({ name: 'custom', detect, timeoutMs: DEFAULT_STRATEGY_TIMEOUT_MS })
      expect(DEFAULT_STRATEGY_TIMEOUT_MS).to.equal(5000)
    })

    it('derives detect for passport-http BasicStrategy', () => {
      const basic = new BasicStrategy((_u, _p, done) => done(null, false))
      const auth = passportAuthenticator(basic, { toPrincipal })
      expect(auth.name).to.equal('basic')
      expect(auth.detect(fakeRequest({ headers: { authorization: 'Basic YTpi' } }))).to.equal(true)
      expect(auth.detect(fakeRequest({ headers: { authorization: 'Bearer x' } }))).to.equal(false)
    })

    it('requires detect for other strategies, naming the option', () => {
      expect(configError(() => passportAuthenticator(strategy, { toPrincipal }))).to.match(
        /^detect: is required for strategy "custom"/,
      )
    })

    it('requires toPrincipal', () => {
      const message = configError(() =>
        passportAuthenticator(strategy, { detect: detectHeader('x-token') } as never),
      )
      expect(message).to.include('toPrincipal: must be a function')
    })

    it('refuses a timeoutMs that is not a positive integer', () => {
      const message = configError(() =>
        passportAuthenticator(strategy, {
          detect: detectHeader('x-token'),
          toPrincipal,
          timeoutMs: 0,
        }),
      )
      expect(message).to.include('timeoutMs: must be a positive integer, received 0')
    })

    it('refuses something that is not a strategy', () => {
      const message = configError(() =>
        passportAuthenticator({} as never, { detect: detectHeader('x-token'), toPrincipal }),
      )
      expect(message).to.include('strategy: must be a passport strategy')
    })

    it('warns about unknown options through the logger', () => {
      const logger = { warn: sandbox.spy(), error: sandbox.spy() }
      passportAuthenticator(strategy, {
        detect: detectHeader('x-token'),
        toPrincipal,
        timeout: 10,
        logger: logger as Logger,
      } as never)
      expect(logger.warn.firstCall.args[0]).to.deep.equal({})
      expect(logger.warn.firstCall.args[1]).to.include('did you mean "timeoutMs"?')
    })
  })

  describe('the request a strategy sees', () => {
    it('has lower-case headers, method, url, parsed query and no body', async () => {
      const strategy = recorder('seen')
      const auth = passportAuthenticator(strategy, { detect: () => true, toPrincipal })
      const result = await auth.authenticate(
        fakeRequest({
          method: 'post',
          url: '/docs/1?a=1&b=2&b=3',
          headers: { 'X-Token': 'abc', Accept: 'application/json' },
          ip: '10.0.0.1',
        }),
      )
      expect(result.ok).to.equal(true)
      const req = strategy.seen[0]!
      expect(req).to.include({
        method: 'POST',
        url: '/docs/1?a=1&b=2&b=3',
        path: '/docs/1',
        ip: '10.0.0.1',
        body: undefined,
      })
      expect({ ...req.headers }).to.deep.equal({ 'x-token': 'abc', accept: 'application/json' })
      expect({ ...req.query }).to.deep.equal({ a: '1', b: ['2', '3'] })
      expect(req.get('X-TOKEN')).to.equal('abc')
    })

    it('answers header lookups when the gate request has no rawHeaders', async () => {
      const strategy = recorder('proxy')
      const auth = passportAuthenticator(strategy, { detect: () => true, toPrincipal })
      const base = fakeRequest({ headers: { 'x-token': 'abc' } })
      await auth.authenticate({ ...base, rawHeaders: undefined, header: base.header })
      expect(strategy.seen[0]!.headers['x-token']).to.equal('abc')
      expect('x-token' in strategy.seen[0]!.headers).to.equal(true)
      expect(strategy.seen[0]!.headers['x-other']).to.equal(undefined)
    })

    it('builds a frozen principal with the authenticator name as default method', async () => {
      const auth = passportAuthenticator(recorder('seen', { id: 'u1' }), {
        name: 'legacy',
        detect: () => true,
        toPrincipal: (user: { id: string }) => ({
          id: user.id,
          scopes: ['a:read'],
          roles: ['reader'],
          tokenId: 't-1',
          attributes: { plan: 'pro' },
        }),
      })
      const result = await auth.authenticate(fakeRequest())
      if (!result.ok) expect.fail(result.error.message)
      expect(result.principal).to.deep.equal({
        id: 'u1',
        method: 'legacy',
        scopes: ['a:read'],
        roles: ['reader'],
        tokenId: 't-1',
        attributes: { plan: 'pro' },
      })
      expect(Object.isFrozen(result.principal)).to.equal(true)
      expect(Object.isFrozen(result.principal.attributes)).to.equal(true)
    })

    it('rejects a toPrincipal result with an invalid role', async () => {
      const auth = passportAuthenticator(recorder('seen'), {
        detect: () => true,
        toPrincipal: () => ({ id: 'u1', roles: ['not a role'] }),
      })
      let caught: unknown
      await auth.authenticate(fakeRequest()).catch((e: unknown) => (caught = e))
      expect(String(caught)).to.include('returned an invalid role id')
    })

    it('keeps a Portcullis error a strategy fails with', async () => {
      const strategy = new PassportStrategy()
      strategy.authenticate = function (this: PassportStrategy): void {
        this.fail(new AuthError('ERR_JWT_EXPIRED', 'Token expired'), 401)
      } as PassportStrategy['authenticate']
      const auth = passportAuthenticator(strategy, {
        name: 'mine',
        detect: () => true,
        toPrincipal,
      })
      const result = await auth.authenticate(fakeRequest())
      expect(result.ok).to.equal(false)
      if (!result.ok) expect(result.error.code).to.equal('ERR_JWT_EXPIRED')
    })
  })
})
