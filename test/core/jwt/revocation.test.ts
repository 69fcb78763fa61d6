import { expect } from 'chai'
import {
  createMemoryRevocationList,
  isConfigError,
  revocationEntry,
  resolveRevocationListOptions,
} from '@portcullis/core'
import { manualClock } from './helpers.js'

const NOW_MS = 1_700_000_000_000
const DAY_MS = 86_400_000
const SLACK_MS = 300_000

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

async function expectRejectedConfig(promise: Promise<unknown>, pattern: RegExp): Promise<void> {
  try {
    await promise
  } catch (error) {
    expect(isConfigError(error)).to.equal(true)
    expect((error as Error).message).to.match(pattern)
    return
  }
  expect.fail('expected a ConfigError')
}

describe('createMemoryRevocationList', () => {
  it('denies a token by jti and leaves other jtis alone', async () => {
    const list = createMemoryRevocationList({ now: manualClock(NOW_MS).now })
    await list.revokeToken({ jti: 't-1' })
    expect(list.check({ sub: 'u', jti: 't-1', iat: NOW_MS / 1000 })).to.equal('jti')
    expect(list.check({ sub: 'u', jti: 't-2', iat: NOW_MS / 1000 })).to.equal(undefined)
    expect(list.check({ sub: 'u', iat: NOW_MS / 1000 })).to.equal(undefined)
  })

  it('denies tokens of a subject issued strictly before the cut-off', async () => {
    const list = createMemoryRevocationList({ now: manualClock(NOW_MS).now })
    await list.revokeSubject({ subject: 'u-1', beforeMs: NOW_MS })
    expect(list.check({ sub: 'u-1', iat: NOW_MS / 1000 - 1 })).to.equal('subject')
    expect(list.check({ sub: 'u-1', iat: NOW_MS / 1000 - 0.001 })).to.equal('subject')
    expect(list.check({ sub: 'u-1', iat: NOW_MS / 1000 })).to.equal(undefined)
    expect(list.check({ sub: 'u-1', iat: NOW_MS / 1000 + 1 })).to.equal(undefined)
    expect(list.check({ sub: 'u-2', iat: NOW_MS / 1000 - 1 })).to.equal(undefined)
  })

  it('denies a token without iat (or with a non-numeric iat) under a subject cut-off', async () => {
    const list = createMemoryRevocationList({ now: manualClock(NOW_MS).now })
    await list.revokeSubject({ subject: 'u-1', beforeMs: NOW_MS })
    expect(list.check({ sub: 'u-1' })).to.equal('subject')
    expect(list.check({ sub: 'u-1', iat: '1700000000' })).to.equal('subject')
    expect(list.check({ sub: 'u-1', iat: null })).to.equal('subject')
  })

  it('ignores claims of the wrong type (a numeric jti or sub never matches a string entry)', async () => {
    const list = createMemoryRevocationList({ now: manualClock(NOW_MS).now })
    await list.revokeToken({ jti: '42' })
    await list.revokeSubject({ subject: '7', beforeMs: NOW_MS })
    expect(list.check({ jti: 42, sub: 7, iat: 1 })).to.equal(undefined)
  })

  it('keeps the later cut-off when a subject is revoked twice', async () => {
    const clock = manualClock(NOW_MS)
    const list = createMemoryRevocationList({ now: clock.now })
    await list.revokeSubject({ subject: 'u-1', beforeMs: NOW_MS })
    await list.revokeSubject({ subject: 'u-1', beforeMs: NOW_MS - 60_000 })
    expect(list.size).to.equal(1)
    expect(list.check({ sub: 'u-1', iat: NOW_MS / 1000 - 30 })).to.equal('subject')
  })

  it('keeps a jti entry until the token expires (plus 300 s) when exp is given', async () => {
    const clock = manualClock(NOW_MS)
    const list = createMemoryRevocationList({ now: clock.now })
    const entry = await list.revokeToken({ jti: 't-1', expiresAtMs: NOW_MS + 600_000 })
    expect(entry).to.deep.equal({
      kind: 'jti',
      jti: 't-1',
      retainUntilMs: NOW_MS + 600_000 + SLACK_MS,
    })
    clock.advance(600_000 + SLACK_MS - 1)
    expect(list.check({ jti: 't-1' })).to.equal('jti')
    clock.advance(1)
    expect(list.check({ jti: 't-1' })).to.equal(undefined)
    expect(list.size).to.equal(0)
  })

  it('keeps a jti entry without exp for maxTokenLifetimeSeconds (default 24 h) plus 300 s', async () => {
    const clock = manualClock(NOW_MS)
    const list = createMemoryRevocationList({ now: clock.now })
    const entry = await list.revokeToken({ jti: 't-1' })
    expect(entry.retainUntilMs).to.equal(NOW_MS + DAY_MS + SLACK_MS)
    expect(list.maxTokenLifetimeSeconds).to.equal(86_400)
    const short = createMemoryRevocationList({ now: clock.now, maxTokenLifetimeSeconds: 3600 })
    expect((await short.revokeToken({ jti: 't-1' })).retainUntilMs).to.equal(
      NOW_MS + 3_600_000 + SLACK_MS,
    )
  })

  it('keeps a subject entry until its cut-off plus the longest lifetime (plus 300 s)', async () => {
    const clock = manualClock(NOW_MS)
    const list = createMemoryRevocationList({ now: clock.now, maxTokenLifetimeSeconds: 3600 })
    const entry = await list.revokeSubject({ subject: 'u-1', beforeMs: NOW_MS - 1000 })
    expect(entry).to.deep.equal({
      kind: 'subject',
      subject: 'u-1',
      beforeMs: NOW_MS - 1000,
      retainUntilMs: NOW_MS - 1000 + 3_600_000 + SLACK_MS,
    })
    clock.advance(3_600_000 + SLACK_MS - 1001)
    expect(list.check({ sub: 'u-1', iat: NOW_MS / 1000 - 2 })).to.equal('subject')
    clock.advance(1)
    expect(list.check({ sub: 'u-1', iat: NOW_MS / 1000 - 2 })).to.equal(undefined)
  })

  it('prunes expired entries on writes, without a timer, and on prune()', async () => {
    const clock = manualClock(NOW_MS)
    const list = createMemoryRevocationList({ now: clock.now, maxTokenLifetimeSeconds: 60 })
    for (let i = 0; i < 5; i++) await list.revokeToken({ jti: `old-${i}` })
    await list.revokeSubject({ subject: 'u-old', beforeMs: NOW_MS })
    expect(list.size).to.equal(6)
    clock.advance(60_000 + SLACK_MS)
    // Nothing looked the expired entries up; the next write drops all of them.
    await list.revokeToken({ jti: 'new' })
    expect(list.size).to.equal(1)
    clock.advance(60_000 + SLACK_MS)
    expect(list.prune()).to.equal(1)
    expect(list.size).to.equal(0)
  })

  it('does not add an entry made elsewhere that already expired', () => {
    const list = createMemoryRevocationList({ now: manualClock(NOW_MS).now })
    expect(list.add({ kind: 'jti', jti: 'gone', retainUntilMs: NOW_MS })).to.equal(false)
    expect(list.add({ kind: 'jti', jti: 'here', retainUntilMs: NOW_MS + 1 })).to.equal(true)
    expect(list.size).to.equal(1)
    expect(list.check({ jti: 'here' })).to.equal('jti')
  })

  it('refuses an ill-formed jti or subject, a non-finite time and a future cut-off', async () => {
    const list = createMemoryRevocationList({ now: manualClock(NOW_MS).now })
    await expectRejectedConfig(list.revokeToken({ jti: '' }), /jti must be/)
    await expectRejectedConfig(list.revokeToken({ jti: 'a b' }), /jti must be/)
    await expectRejectedConfig(
      list.revokeToken({ jti: 'x', expiresAtMs: Number.NaN }),
      /expiresAtMs must be a finite number/,
    )
    await expectRejectedConfig(
      list.revokeSubject({ subject: 'x'.repeat(257), beforeMs: NOW_MS }),
      /subject must be/,
    )
    await expectRejectedConfig(
      list.revokeSubject({ subject: 'u', beforeMs: NOW_MS + SLACK_MS + 1 }),
      /must not be in the future/,
    )
    expect(list.size).to.equal(0)
  })

  it('refuses unknown and ill-typed options with a ConfigError at creation', () => {
    expectConfigError(
      () => createMemoryRevocationList({ maxTokenLifetime: 60 } as never),
      /maxTokenLifetime/,
    )
    expectConfigError(
      () => createMemoryRevocationList({ maxTokenLifetimeSeconds: 0 }),
      /maxTokenLifetimeSeconds/,
    )
    expectConfigError(
      () => createMemoryRevocationList({ maxTokenLifetimeSeconds: '60' as never }),
      /maxTokenLifetimeSeconds/,
    )
    expectConfigError(() => createMemoryRevocationList({ now: 5 as never }), /now/)
  })

  it('builds the same entry through revocationEntry() as the list stores', () => {
    const options = resolveRevocationListOptions({ now: () => NOW_MS, maxTokenLifetimeSeconds: 10 })
    expect(revocationEntry({ kind: 'jti', jti: 'j' }, options)).to.deep.equal({
      kind: 'jti',
      jti: 'j',
      retainUntilMs: NOW_MS + 10_000 + SLACK_MS,
    })
  })
})
