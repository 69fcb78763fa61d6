import { expect } from 'chai'
import {
  AUDIT_EVENT_TYPES,
  authThrottledError,
  authThrottledHeaders,
  createAuthFailureThrottle,
  DEFAULT_AUTH_FAILURE_ADDRESS_THRESHOLD,
  DEFAULT_AUTH_FAILURE_CREDENTIAL_THRESHOLD,
  errorCodeInfo,
  isConfigError,
  resolveAuthFailureThrottleOptions,
  type AuthFailureLockout,
  type AuthFailureSubject,
  type AuthFailureThrottle,
  type AuthFailureThrottleOptions,
} from '@portcullis/core'
import { createFakeClock, type FakeClock } from '@portcullis/core/testing'

const SECOND = 1000

function make(options: AuthFailureThrottleOptions = {}): {
  throttle: AuthFailureThrottle
  clock: FakeClock
} {
  const clock = createFakeClock()
  return { throttle: createAuthFailureThrottle({ now: clock, ...options }), clock }
}

/** Sync results of the memory throttle (its contract allows promises for custom throttles). */
function check(t: AuthFailureThrottle, s: AuthFailureSubject): AuthFailureLockout | undefined {
  const r = t.check(s)
  if (r instanceof Promise) throw new Error('the memory throttle answers synchronously')
  return r
}
function fail(t: AuthFailureThrottle, s: AuthFailureSubject): AuthFailureLockout | undefined {
  const r = t.failed(s)
  if (r instanceof Promise) throw new Error('the memory throttle answers synchronously')
  return r
}
function failTimes(t: AuthFailureThrottle, s: AuthFailureSubject, n: number): void {
  for (let i = 0; i < n; i++) fail(t, s)
}

describe('createAuthFailureThrottle (memory)', () => {
  it('declares ERR_AUTH_THROTTLED as 429 and authn.throttled as an audit event type', () => {
    expect(errorCodeInfo('ERR_AUTH_THROTTLED')).to.include({
      status: 429,
      slug: 'authentication-throttled',
      bearerError: null,
    })
    expect(AUDIT_EVENT_TYPES).to.include('authn.throttled')
  })

  it('builds the 429 denial and its Retry-After from a lock-out, naming only the counter', () => {
    const lock = { key: 'credential', retryAfterSeconds: 8, failures: 7 } as const
    const error = authThrottledError(lock)
    expect(error).to.include({
      code: 'ERR_AUTH_THROTTLED',
      status: 429,
      reason: 'throttled: credential',
    })
    expect(authThrottledHeaders(lock)).to.deep.equal({ 'retry-after': '8' })
  })

  it('answers nothing for an address without failures', () => {
    const { throttle } = make()
    expect(check(throttle, { ip: '192.0.2.1', credentialId: 'k1' })).to.equal(undefined)
  })

  it('locks an address at its threshold, for baseLockSeconds', () => {
    const { throttle } = make({ addressThreshold: 3, credentialThreshold: false })
    const s = { ip: '192.0.2.1' }
    expect(fail(throttle, s)).to.equal(undefined)
    expect(fail(throttle, s)).to.equal(undefined)
    expect(check(throttle, s)).to.equal(undefined)
    expect(fail(throttle, s)).to.deep.equal({ key: 'ip', retryAfterSeconds: 1, failures: 3 })
    expect(check(throttle, s)).to.deep.equal({ key: 'ip', retryAfterSeconds: 1, failures: 3 })
    expect(check(throttle, { ip: '192.0.2.2' })).to.equal(undefined)
  })

  it('uses 10 failures per address and 5 per credential by default', () => {
    expect(DEFAULT_AUTH_FAILURE_ADDRESS_THRESHOLD).to.equal(10)
    expect(DEFAULT_AUTH_FAILURE_CREDENTIAL_THRESHOLD).to.equal(5)
    const { throttle } = make()
    // Ten different ids from one address: the address locks at the tenth.
    for (let i = 0; i < 9; i++)
      expect(fail(throttle, { ip: '192.0.2.9', credentialId: `k${i}` })).to.equal(undefined)
    expect(fail(throttle, { ip: '192.0.2.9', credentialId: 'k9' })).to.include({
      key: 'ip',
      failures: 10,
    })
    // One id from another address: it locks at the fifth.
    failTimes(throttle, { ip: '198.51.100.1', credentialId: 'victim' }, 4)
    expect(check(throttle, { ip: '198.51.100.1', credentialId: 'victim' })).to.equal(undefined)
    expect(fail(throttle, { ip: '198.51.100.1', credentialId: 'victim' })).to.include({
      key: 'credential',
      failures: 5,
    })
  })

  it('doubles the lock on each further failure, up to maxLockSeconds', () => {
    const { throttle, clock } = make({
      addressThreshold: false,
      credentialThreshold: 2,
      baseLockSeconds: 2,
      maxLockSeconds: 10,
    })
    const s = { ip: '192.0.2.1', credentialId: 'k' }
    fail(throttle, s)
    const seen: number[] = []
    for (let i = 0; i < 5; i++) {
      const lock = fail(throttle, s)
      seen.push(lock?.retryAfterSeconds ?? 0)
      clock.advance((lock?.retryAfterSeconds ?? 0) * SECOND)
      expect(check(throttle, s)).to.equal(undefined)
    }
    expect(seen).to.deep.equal([2, 4, 8, 10, 10])
  })

  it('ends a lock when its time is up and forgets the counter a window after', () => {
    const { throttle, clock } = make({
      addressThreshold: 2,
      credentialThreshold: false,
      windowMs: 60 * SECOND,
      baseLockSeconds: 5,
    })
    const s = { ip: '203.0.113.7' }
    failTimes(throttle, s, 2)
    clock.advance(4 * SECOND)
    expect(check(throttle, s)).to.include({ key: 'ip', retryAfterSeconds: 1 })
    clock.advance(1 * SECOND)
    expect(check(throttle, s)).to.equal(undefined)
    // Still within the window after the lock: the next failure locks again, for twice as long.
    expect(fail(throttle, s)).to.include({ retryAfterSeconds: 10, failures: 3 })
    clock.advance(10 * SECOND + 60 * SECOND)
    // Forgotten: counting starts over.
    expect(fail(throttle, s)).to.equal(undefined)
    expect(fail(throttle, s)).to.include({ retryAfterSeconds: 5, failures: 2 })
  })

  it('counts an IPv6 client per /64 by default: one /64 shares a counter, another /64 does not', () => {
    const { throttle } = make({ addressThreshold: 2, credentialThreshold: false })
    fail(throttle, { ip: '2001:db8:1:2::1' })
    expect(fail(throttle, { ip: '2001:db8:1:2:ffff:ffff:ffff:fffe' })).to.include({ key: 'ip' })
    expect(check(throttle, { ip: '2001:db8:1:2:abcd::9' })).to.include({ key: 'ip' })
    expect(check(throttle, { ip: '2001:db8:1:3::1' })).to.equal(undefined)
    expect(check(throttle, { ip: '2001:db8:1:2::1%eth0' })).to.include({ key: 'ip' })
  })

  it('groups IPv6 by a configured prefix, and IPv4 per address', () => {
    const { throttle } = make({ addressThreshold: 1, credentialThreshold: false, ipv6Prefix: 48 })
    fail(throttle, { ip: '2001:db8:1:2::1' })
    expect(check(throttle, { ip: '2001:db8:1:ffff::1' })).to.include({ key: 'ip' })
    expect(check(throttle, { ip: '2001:db8:2::1' })).to.equal(undefined)
    fail(throttle, { ip: '192.0.2.1' })
    expect(check(throttle, { ip: '192.0.2.1' })).to.include({ key: 'ip' })
    // IPv4-mapped IPv6 is the same IPv4 client.
    expect(check(throttle, { ip: '::ffff:192.0.2.1' })).to.include({ key: 'ip' })
    expect(check(throttle, { ip: '192.0.2.2' })).to.equal(undefined)
  })

  it('locks a credential id from one address only by default (credentialScope address)', () => {
    const { throttle } = make({ addressThreshold: false, credentialThreshold: 2 })
    failTimes(throttle, { ip: '192.0.2.1', credentialId: 'k1' }, 2)
    expect(check(throttle, { ip: '192.0.2.1', credentialId: 'k1' })).to.include({
      key: 'credential',
      failures: 2,
    })
    // The owner elsewhere, and another id from the same address, are not locked.
    expect(check(throttle, { ip: '192.0.2.50', credentialId: 'k1' })).to.equal(undefined)
    expect(check(throttle, { ip: '192.0.2.1', credentialId: 'k2' })).to.equal(undefined)
  })

  it('locks a credential id from every address with credentialScope global', () => {
    const { throttle } = make({
      addressThreshold: false,
      credentialThreshold: 2,
      credentialScope: 'global',
    })
    fail(throttle, { ip: '192.0.2.1', credentialId: 'k1' })
    expect(fail(throttle, { ip: '198.51.100.1', credentialId: 'k1' })).to.include({
      key: 'credential',
    })
    expect(check(throttle, { ip: '203.0.113.1', credentialId: 'k1' })).to.include({
      key: 'credential',
    })
    expect(check(throttle, { credentialId: 'k1' })).to.include({ key: 'credential' })
  })

  it('does not count repeats of a credential already at its threshold on the address', () => {
    const { throttle, clock } = make({ addressThreshold: 6, credentialThreshold: 2 })
    const s = { ip: '192.0.2.1', credentialId: 'revoked' }
    for (let i = 0; i < 8; i++) {
      fail(throttle, s)
      clock.advance(100 * SECOND)
    }
    // Eight failures of one id: the address counted only the first two.
    expect(check(throttle, { ip: '192.0.2.1', credentialId: 'other' })).to.equal(undefined)
    failTimes(throttle, { ip: '192.0.2.1', credentialId: 'x' }, 1)
    failTimes(throttle, { ip: '192.0.2.1', credentialId: 'y' }, 1)
    failTimes(throttle, { ip: '192.0.2.1', credentialId: 'z' }, 1)
    expect(check(throttle, { ip: '192.0.2.1', credentialId: 'other' })).to.equal(undefined)
    expect(fail(throttle, { ip: '192.0.2.1', credentialId: 'w' })).to.include({
      key: 'ip',
      failures: 6,
    })
  })

  it('answers the longer lock when the address and the credential are both locked', () => {
    const { throttle } = make({ addressThreshold: 1, credentialThreshold: 1, baseLockSeconds: 1 })
    const s = { ip: '192.0.2.1', credentialId: 'k' }
    fail(throttle, s)
    // The second failure: the credential counter is past its threshold (2 s), the address not counted.
    expect(fail(throttle, s)).to.include({ key: 'credential', retryAfterSeconds: 2 })
    expect(check(throttle, s)).to.include({ key: 'credential', retryAfterSeconds: 2 })
  })

  it('forgets the credential counter after a success, but not the address counter', () => {
    const { throttle } = make({ addressThreshold: 5, credentialThreshold: 3 })
    const s = { ip: '192.0.2.1', credentialId: 'k' }
    failTimes(throttle, s, 2)
    throttle.succeeded(s)
    failTimes(throttle, s, 2)
    // Without the reset, the credential would be at 4 failures (threshold 3).
    expect(check(throttle, s)).to.equal(undefined)
    // The address counted all four: the fifth failure locks it.
    expect(fail(throttle, { ip: '192.0.2.1', credentialId: 'other' })).to.include({
      key: 'ip',
      failures: 5,
    })
  })

  it('counts no address for a request without one', () => {
    const { throttle } = make({ addressThreshold: 1, credentialThreshold: false })
    expect(fail(throttle, {})).to.equal(undefined)
    expect(fail(throttle, { ip: '' })).to.equal(undefined)
    expect(check(throttle, {})).to.equal(undefined)
  })

  it('hashes very long credential ids, so attacker-chosen ids do not grow keys', () => {
    const { throttle } = make({ addressThreshold: false, credentialThreshold: 1 })
    const long = 'x'.repeat(5000)
    fail(throttle, { ip: '192.0.2.1', credentialId: long })
    expect(check(throttle, { ip: '192.0.2.1', credentialId: long })).to.include({
      key: 'credential',
    })
    expect(check(throttle, { ip: '192.0.2.1', credentialId: `${long}y` })).to.equal(undefined)
  })

  it('keeps at most maxKeys counters: a flood of addresses evicts the least recently failed', () => {
    const { throttle } = make({ addressThreshold: 1, credentialThreshold: false, maxKeys: 100 })
    fail(throttle, { ip: '10.0.0.1' })
    expect(check(throttle, { ip: '10.0.0.1' })).to.include({ key: 'ip' })
    for (let i = 0; i < 20_000; i++) fail(throttle, { ip: `10.1.${i >> 8}.${i & 255}` })
    expect(check(throttle, { ip: '10.0.0.1' })).to.equal(undefined)
    expect(check(throttle, { ip: '10.1.78.31' })).to.include({ key: 'ip' })
    expect(check(throttle, { ip: '10.1.77.0' })).to.equal(undefined)
  })
})

describe('resolveAuthFailureThrottleOptions', () => {
  it('fills the documented defaults', () => {
    const c = resolveAuthFailureThrottleOptions({})
    expect(c).to.include({
      addressThreshold: 10,
      credentialThreshold: 5,
      credentialScope: 'address',
      windowMs: 900_000,
      baseLockSeconds: 1,
      maxLockSeconds: 900,
      ipv6Prefix: 64,
      maxKeys: 100_000,
    })
  })

  const bad: [string, AuthFailureThrottleOptions, string][] = [
    ['a zero threshold', { addressThreshold: 0 }, 'authFailureThrottle.addressThreshold'],
    ['a fractional threshold', { credentialThreshold: 1.5 }, 'credentialThreshold'],
    ['both thresholds off', { addressThreshold: false, credentialThreshold: false }, 'nothing'],
    ['an unknown scope', { credentialScope: 'everywhere' as 'global' }, 'credentialScope'],
    ['a window under a second', { windowMs: 10 }, 'windowMs'],
    ['a zero base lock', { baseLockSeconds: 0 }, 'baseLockSeconds'],
    ['a max lock under the base', { baseLockSeconds: 60, maxLockSeconds: 30 }, 'maxLockSeconds'],
    ['an IPv6 prefix over 128', { ipv6Prefix: 129 }, 'ipv6Prefix'],
    ['a zero maxKeys', { maxKeys: 0 }, 'maxKeys'],
    ['a clock that is not a function', { now: 5 as unknown as () => number }, 'now'],
  ]
  for (const [what, options, field] of bad) {
    it(`throws ERR_CONFIG_INVALID for ${what}`, () => {
      let thrown: unknown
      try {
        createAuthFailureThrottle(options)
      } catch (e) {
        thrown = e
      }
      expect(isConfigError(thrown)).to.equal(true)
      expect((thrown as Error).message).to.include(field)
    })
  }

  it('warns once about an unknown option, naming the closest one', () => {
    const warnings: string[] = []
    resolveAuthFailureThrottleOptions({
      maxLockSecond: 5,
      logger: { warn: (_f, m) => warnings.push(m), error: () => {} },
    } as AuthFailureThrottleOptions)
    expect(warnings).to.have.length(1)
    expect(warnings[0]).to.include('"maxLockSeconds"')
  })
})
