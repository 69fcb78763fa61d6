// The injected logger follows pino's argument order, (fields, message). These tests hand a REAL
// pino logger (writing to a stream they capture) to the components that log, and check that each
// JSON line keeps both the message (`msg`) and the structured fields: with the old
// (message, fields) order pino took the string as the message and dropped the fields.
import { Writable } from 'node:stream'
import { expect } from 'chai'
import pino from 'pino'
import {
  createApiKeyManager,
  createAuditTrail,
  createBrokerMessageGuard,
  createGate,
  createLruCache,
  createMemoryBroker,
  createMemoryKeyStore,
  createPolicyStore,
  createRateLimitStage,
  createTieredCache,
  type AuditSink,
  type CacheClient,
  type Logger,
} from '@portcullis/core'
import { createFailingBackend, fakeRequest } from '@portcullis/core/testing'

const PEPPER = 'pepper-for-tests-only-0123456789abcdef'

type Line = Record<string, unknown> & { level: number; msg: string }

/** A real pino logger writing JSON lines into `lines`. */
function capturedPino(): { logger: pino.Logger; lines: Line[] } {
  const lines: Line[] = []
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const l of chunk.toString().split('\n')) if (l !== '') lines.push(JSON.parse(l) as Line)
      done()
    },
  })
  return { logger: pino({ level: 'debug', base: undefined, timestamp: false }, stream), lines }
}

const WARN = 40
const ERROR = 50

describe('Logger (with a real pino)', () => {
  it('accepts a pino logger where a Logger is expected, with no cast', () => {
    const { logger } = capturedPino()
    // A compile-time check as much as a runtime one: `tsc -p test` type-checks this assignment.
    const asLogger: Logger = logger
    asLogger.warn({ answer: 42 }, 'plain call')
    expect(typeof asLogger.debug).to.equal('function')
  })

  it('keeps the fields of a rate limit store failure in fail-open mode', async () => {
    const { logger, lines } = capturedPino()
    const store = createMemoryKeyStore()
    const gate = createGate({
      apiKeys: { store, pepper: PEPPER },
      stages: [
        createRateLimitStage({
          backend: createFailingBackend(),
          onStoreError: 'open',
          limits: [{ name: 'per-key', limit: 5, windowMs: 60_000 }],
          logger,
        }),
      ],
      audit: false,
      logger,
    })
    const { key } = await createApiKeyManager({ store, pepper: PEPPER }).create({
      name: 'k',
      ownerId: 'u',
    })
    const decision = await gate.evaluate(fakeRequest({ headers: { 'x-api-key': key } }))
    expect(decision.status).to.equal(200)
    expect(lines).to.deep.equal([
      {
        level: WARN,
        limit: 'per-key',
        error: 'Error: ECONNREFUSED',
        msg: 'ratelimit: store failed; request allowed (fail open)',
      },
    ])
    await gate.close()
  })

  it('keeps the fields of a refused policy set', () => {
    const { logger, lines } = capturedPino()
    const policy = createPolicyStore({
      initial: { rules: [{ id: 'r', effect: 'allow', actions: ['documents:read'] }] },
      logger,
    })
    const result = policy.update({ roles: { a: { inherits: ['a'] } } })
    expect(result.ok).to.equal(false)
    expect(lines).to.deep.equal([
      {
        level: ERROR,
        version: policy.current.version,
        errors: ['roles.a.inherits: role cycle a → a'],
        msg: 'policy store: new policy set refused; the previous set stays in force',
      },
    ])
    policy.close()
  })

  it('keeps the fields of a tiered cache whose remote tier fails', async () => {
    const { logger, lines } = capturedPino()
    const remote: CacheClient<string> = {
      get: () => Promise.reject(new Error('remote down')),
      set: () => Promise.reject(new Error('remote down')),
      delete: () => Promise.reject(new Error('remote down')),
      clear: () => Promise.reject(new Error('remote down')),
    }
    const cache = createTieredCache<string>({
      local: createLruCache<string>(),
      remote,
      broker: createMemoryBroker(),
      namespace: 'profiles',
      logger,
    })
    expect(await cache.get('alice')).to.equal(undefined)
    expect(lines).to.deep.equal([
      {
        level: WARN,
        key: 'alice',
        error: 'remote down',
        msg: 'tiered cache profiles: remote cache read failed; treated as a miss',
      },
    ])
  })

  it('keeps the fields of an audit sink that fails a write', async () => {
    const { logger, lines } = capturedPino()
    let failures = 1
    const delivered: string[] = []
    const flaky: AuditSink = {
      name: 'flaky',
      async write(events) {
        if (failures-- > 0) throw new Error('disk full')
        // The trail's own sink-health events (audit.sink.*) travel with the request event.
        delivered.push(
          ...events.filter((e) => !e.type.startsWith('audit.')).map((e) => e.action ?? ''),
        )
      },
    }
    const trail = createAuditTrail({ sinks: [flaky], flushIntervalMs: 0, logger })
    trail.emit({ type: 'authz.allow', outcome: 'success', actor: { id: 'u' }, action: 'GET /1' })
    await trail.close()
    expect(delivered).to.deep.equal(['GET /1'])
    // The failed write, and the sink's health turning (degraded, then recovered), each with fields.
    expect(lines.map((l) => l.msg)).to.have.members([
      'audit sink write failed; will retry',
      'audit sink degraded',
      'audit sink recovered',
    ])
    const line = lines.find((l) => l.msg === 'audit sink write failed; will retry')
    expect(line).to.include({
      level: ERROR,
      sink: 'flaky',
      error: 'Error: disk full',
      spool: false,
    })
    expect(line?.retryInMs).to.be.a('number')
    expect(lines.find((l) => l.msg === 'audit sink degraded')).to.include({ sink: 'flaky' })
    expect(lines.find((l) => l.msg === 'audit sink recovered')).to.include({ sink: 'flaky' })
  })

  it('keeps the fields of a refused broker message, and of a 5xx the gate renders', () => {
    const { logger, lines } = capturedPino()
    createBrokerMessageGuard({ logger, name: 'redis broker' }).accept('key.deleted', {
      keyId: '../x',
    })
    const gate = createGate({
      logger,
      audit: false,
      apiKeys: { store: createMemoryKeyStore(), pepper: PEPPER },
    })
    expect(gate.errorResponse(new Error('db down'), 'req-1').status).to.equal(500)
    expect(lines).to.deep.equal([
      {
        level: WARN,
        topic: 'key.deleted',
        msg: 'redis broker: ignored a malformed or foreign message: keyId is not a key id',
      },
      {
        level: ERROR,
        requestId: 'req-1',
        code: 'ERR_INTERNAL_ERROR',
        error: 'Error: db down',
        msg: 'gate: request failed',
      },
    ])
  })

  it('logs an unknown-option warning as its message, with an empty fields object', () => {
    const { logger, lines } = capturedPino()
    createGate({
      realmm: 'x',
      apiKeys: { store: createMemoryKeyStore(), pepper: PEPPER },
      logger,
    } as never)
    expect(lines).to.deep.equal([
      { level: WARN, msg: 'realmm: unknown option "realmm"; did you mean "realm"?' },
    ])
  })
})
