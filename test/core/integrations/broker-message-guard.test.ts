import { expect } from 'chai'
import {
  BROKER_TOPICS,
  checkBrokerMessage,
  createBrokerMessageGuard,
  generateApiKey,
  isBrokerTopic,
} from '@portcullis/core'
import { createRecordingMetrics } from '../../helpers/recording-metrics.js'

const KEY_ID = generateApiKey({ prefix: 'ptcl' }).id

describe('checkBrokerMessage', () => {
  it('accepts a key message with a key id and keeps only the known fields', () => {
    const check = checkBrokerMessage('key.revoked', { keyId: KEY_ID, extra: 'x'.repeat(10) })
    expect(check).to.deep.equal({ ok: true, message: { keyId: KEY_ID } })
    if (check.ok) expect(Object.isFrozen(check.message)).to.equal(true)
  })

  for (const [what, message] of [
    ['a short id', { keyId: 'abc' }],
    ['a non-base62 id', { keyId: 'abcdefgh-jklmnop' }],
    ['a number', { keyId: 1234567890123456 }],
    ['no id', {}],
    ['null', null],
    ['an array', [KEY_ID]],
    ['a string', KEY_ID],
  ] as const) {
    it(`refuses key.revoked with ${what}`, () => {
      expect(checkBrokerMessage('key.revoked', message).ok).to.equal(false)
    })
  }

  it('checks versions of policy.changed and config.changed', () => {
    expect(checkBrokerMessage('policy.changed', { version: 'v42' }).ok).to.equal(true)
    expect(checkBrokerMessage('config.changed', { version: 'sha256:abc def' }).ok).to.equal(true)
    expect(checkBrokerMessage('policy.changed', { version: '' }).ok).to.equal(false)
    expect(checkBrokerMessage('policy.changed', { version: 'x'.repeat(129) }).ok).to.equal(false)
    expect(checkBrokerMessage('policy.changed', { version: 'a\nb' }).ok).to.equal(false)
    expect(checkBrokerMessage('config.changed', { version: 7 }).ok).to.equal(false)
  })

  it('checks cache.invalidated namespaces, keys and origins', () => {
    const ok = { namespace: 'keys', key: 'k:1', origin: 'a1-b2' }
    expect(checkBrokerMessage('cache.invalidated', ok).ok).to.equal(true)
    expect(checkBrokerMessage('cache.invalidated', { ...ok, key: null }).ok).to.equal(true)
    expect(checkBrokerMessage('cache.invalidated', { ...ok, key: '' }).ok).to.equal(false)
    expect(checkBrokerMessage('cache.invalidated', { ...ok, key: 'x'.repeat(1025) }).ok).to.equal(
      false,
    )
    expect(checkBrokerMessage('cache.invalidated', { ...ok, namespace: 'a b' }).ok).to.equal(false)
    expect(checkBrokerMessage('cache.invalidated', { ...ok, origin: undefined }).ok).to.equal(false)
  })

  it('refuses unknown topics', () => {
    expect(checkBrokerMessage('nope' as never, { keyId: KEY_ID })).to.deep.equal({
      ok: false,
      reason: 'unknown topic',
    })
    expect(isBrokerTopic('nope')).to.equal(false)
    expect(BROKER_TOPICS.every(isBrokerTopic)).to.equal(true)
  })
})

describe('createBrokerMessageGuard', () => {
  it('counts and logs rejected messages by topic, and returns accepted ones', () => {
    const metrics = createRecordingMetrics()
    const warnings: [Readonly<Record<string, unknown>>, string][] = []
    const guard = createBrokerMessageGuard({
      metrics,
      logger: { warn: (f, m) => warnings.push([f, m]), error: () => {} },
      name: 'test broker',
    })
    expect(guard.accept('key.deleted', { keyId: KEY_ID })).to.deep.equal({ keyId: KEY_ID })
    expect(guard.accept('key.deleted', { keyId: 'x' })).to.equal(undefined)
    expect(metrics.count('brokerMessagesRejected', { topic: 'key.deleted' })).to.equal(1)
    expect(warnings).to.deep.equal([
      [
        { topic: 'key.deleted' },
        'test broker: ignored a malformed or foreign message: keyId is not a key id',
      ],
    ])
  })

  it('counts foreign topics under one label, so strangers cannot grow the label set', () => {
    const metrics = createRecordingMetrics()
    const guard = createBrokerMessageGuard({ metrics })
    guard.reject('random.topic.1', 'unknown topic')
    guard.reject('random.topic.2', 'unknown topic')
    expect(metrics.count('brokerMessagesRejected', { topic: 'unknown' })).to.equal(2)
  })

  it('never throws, even when the metrics client or logger does', () => {
    const guard = createBrokerMessageGuard({
      metrics: {
        increment: () => {
          throw new Error('boom')
        },
        set: () => {},
        observe: () => {},
      },
      logger: {
        warn: () => {
          throw new Error('boom')
        },
        error: () => {},
      },
    })
    expect(guard.accept('key.revoked', 'garbage')).to.equal(undefined)
  })
})
