import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect } from 'chai'
import {
  createAuditTrail,
  createJsonLinesFileSink,
  runWithAccessContext,
  type AuditEvent,
  type AuditSink,
  type RequestID,
} from '@portcullis/core'
import { createMemoryAuditSink } from '@portcullis/core/testing'

const event = (i: number) => ({
  type: 'authn.failure' as const,
  outcome: 'failure' as const,
  actor: { id: null },
  action: `GET /${i}`,
})

describe('createAuditTrail', () => {
  it('writes every event, in order, in batches', async () => {
    const batches: number[] = []
    const sink = createMemoryAuditSink()
    const counting: AuditSink = {
      name: 'c',
      write: async (e) => (batches.push(e.length), sink.write(e)),
    }
    const trail = createAuditTrail({ sinks: [counting], batchSize: 100 })
    for (let i = 0; i < 250; i++) trail.emit(event(i))
    await trail.flush()
    expect(sink.events.map((e) => e.action)).to.deep.equal(
      Array.from({ length: 250 }, (_, i) => `GET /${i}`),
    )
    expect(batches.reduce((a, b) => a + b, 0)).to.equal(250)
    expect(Math.max(...batches)).to.be.at.most(100)
    expect(new Set(sink.events.map((e) => e.id)).size).to.equal(250)
  })

  it('fills batches under steady load instead of writing what arrived during the last write', async () => {
    // A slow sink and a steady stream for longer than the interval: about half a batch arrives
    // during each write. After a write the queue waits for a full batch (or for its oldest event
    // to have waited flushIntervalMs) instead of writing the half batch at once, which under load
    // meant a write per handful of events.
    const batches: number[] = []
    const sink = createMemoryAuditSink()
    const slow: AuditSink = {
      name: 'slow',
      write: async (e) => {
        batches.push(e.length)
        await new Promise((resolve) => setTimeout(resolve, 2))
        return sink.write(e)
      },
    }
    const trail = createAuditTrail({ sinks: [slow], batchSize: 100, flushIntervalMs: 100 })
    for (let i = 0; i < 4000; i += 25) {
      for (let j = i; j < i + 25; j++) trail.emit(event(j))
      await new Promise((resolve) => setTimeout(resolve, 1))
    }
    await trail.flush()
    expect(sink.events.map((e) => e.action)).to.deep.equal(
      Array.from({ length: 4000 }, (_, i) => `GET /${i}`),
    )
    expect(batches.slice(0, -1).filter((n) => n !== 100)).to.deep.equal([])
    expect(batches.length).to.equal(40)
    await trail.close()
  })

  it('writes a partial batch once its oldest event has waited flushIntervalMs', async () => {
    const sink = createMemoryAuditSink()
    const trail = createAuditTrail({ sinks: [sink], batchSize: 100, flushIntervalMs: 20 })
    trail.emit(event(0))
    await new Promise((resolve) => setTimeout(resolve, 5))
    trail.emit(event(1))
    expect(sink.events).to.have.length(0)
    // No flush(): the interval alone writes both, counted from the first.
    for (let i = 0; i < 200 && sink.events.length < 2; i++)
      await new Promise((resolve) => setTimeout(resolve, 5))
    expect(sink.events.map((e) => e.action)).to.deep.equal(['GET /0', 'GET /1'])
    await trail.close()
  })
  it('retries a failing sink and loses nothing', async () => {
    let failures = 2
    const written: AuditEvent[] = []
    const flaky: AuditSink = {
      name: 'flaky',
      async write(events) {
        if (failures-- > 0) throw new Error('disk full')
        written.push(...events)
      },
    }
    const errors: [Readonly<Record<string, unknown>>, string][] = []
    const trail = createAuditTrail({
      sinks: [flaky],
      logger: { warn() {}, error: (f, m) => errors.push([f, m]) },
    })
    for (let i = 0; i < 10; i++) trail.emit(event(i))
    await trail.flush(5_000)
    // The requests' events, then the trail's own account of the outage.
    expect(written.map((e) => e.action)).to.deep.equal([
      ...Array.from({ length: 10 }, (_, i) => `GET /${i}`),
      'audit.sink.degraded',
      'audit.sink.recovered',
    ])
    expect(errors.map(([, m]) => m)).to.deep.equal([
      'audit sink write failed; will retry',
      'audit sink degraded',
      'audit sink write failed; will retry',
    ])
    expect(errors[0]?.[1]).to.equal('audit sink write failed; will retry')
    expect(errors[0]?.[0]).to.include({ sink: flaky.name, error: 'Error: disk full' })
  })

  it('retries a failing sink even when the injected clock stands still', async () => {
    let failures = 3
    const written: AuditEvent[] = []
    const flaky: AuditSink = {
      name: 'flaky',
      async write(events) {
        if (failures-- > 0) throw new Error('down')
        written.push(...events)
      },
    }
    const trail = createAuditTrail({ sinks: [flaky], now: () => 1_000 })
    trail.emit(event(1))
    await trail.flush(5_000)
    expect(written.map((e) => e.type)).to.deep.equal([
      'authn.failure',
      'audit.sink.degraded',
      'audit.sink.recovered',
    ])
  })

  it('reports backpressure when a queue is full', () => {
    const stuck: AuditSink = { name: 'stuck', write: () => new Promise(() => {}) }
    const trail = createAuditTrail({ sinks: [stuck], maxQueue: 3 })
    expect([1, 2, 3, 4].map((i) => trail.emit(event(i)))).to.deep.equal([true, true, true, false])
  })

  it('keeps only failures and changes at the minimal level', async () => {
    const sink = createMemoryAuditSink()
    const trail = createAuditTrail({ sinks: [sink], level: 'minimal' })
    trail.emit({ ...event(1), type: 'authn.success', outcome: 'success' })
    trail.emit(event(2))
    trail.emit({ ...event(3), type: 'key.revoked', outcome: 'success' })
    await trail.flush()
    expect(sink.events.map((e) => e.type)).to.deep.equal(['authn.failure', 'key.revoked'])
  })

  it('records handler events with the request context from AsyncLocalStorage', async () => {
    const sink = createMemoryAuditSink()
    const trail = createAuditTrail({ sinks: [sink] })
    const context = {
      requestId: 'req-9' as RequestID,
      method: 'POST',
      path: '/docs',
      route: '/docs',
      ip: '10.0.0.1',
      userAgent: undefined,
      startedAt: 0,
      principal: null,
    }
    await runWithAccessContext(context, async () => {
      await Promise.resolve()
      trail.record('document.created', { target: { type: 'document', id: '7' } })
    })
    trail.record('key.revoked')
    await trail.flush()
    expect(sink.events[0]).to.deep.include({
      type: 'custom',
      customType: 'document.created',
      target: { type: 'document', id: '7' },
    })
    expect(sink.events[0]?.request).to.deep.equal({
      id: 'req-9',
      method: 'POST',
      path: '/docs',
      route: '/docs',
      ip: '10.0.0.1',
    })
    expect(sink.events[1]).to.include({ type: 'key.revoked' })
    expect(sink.events[1]).to.not.have.property('request')
  })

  it('appends JSON lines that control characters cannot break', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'portcullis-audit-'))
    try {
      const path = join(dir, 'nested', 'audit.jsonl')
      const trail = createAuditTrail({ sinks: [createJsonLinesFileSink({ path })] })
      trail.emit({ ...event(1), action: 'GET /a\n{"forged":true}\r\u2028' })
      trail.emit(event(2))
      await trail.close()
      const lines = (await readFile(path, 'utf8')).trimEnd().split('\n')
      expect(lines).to.have.length(2)
      expect(JSON.parse(lines[0] as string).action).to.equal('GET /a\n{"forged":true}\r\u2028')
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('acknowledges commit() once every sink has the event, and refuses it when full', async () => {
    const a = createMemoryAuditSink({ name: 'a' })
    const b = createMemoryAuditSink({ name: 'b' })
    const trail = createAuditTrail({ sinks: [a, b] })
    const written = await trail.commit(event(1))
    expect(a.events.map((e) => e.id)).to.deep.equal([written.id])
    expect(b.events.map((e) => e.id)).to.deep.equal([written.id])
    const stuck: AuditSink = { name: 'stuck', write: () => new Promise(() => {}) }
    const full = createAuditTrail({ sinks: [stuck], maxQueue: 1 })
    full.emit({ ...event(1), type: 'authn.success', outcome: 'success' })
    const error = await full.commit({ ...event(2), type: 'authz.allow', outcome: 'success' }).then(
      () => undefined,
      (e: unknown) => e,
    )
    expect(error).to.include({ code: 'ERR_AUDIT_UNAVAILABLE' })
  })

  it('refuses bad audit options, naming them', () => {
    expect(() => createAuditTrail({ compliance: ['SOX' as never] })).to.throw(
      /audit.compliance\[0\]: unknown compliance profile "SOX"/,
    )
    expect(() => createAuditTrail({ spool: { dir: 7 as never } })).to.throw(/audit.spool.dir/)
    expect(() =>
      createAuditTrail({
        sinks: [createMemoryAuditSink(), createMemoryAuditSink()],
        spool: { dir: '/tmp/x' },
      }),
    ).to.throw(/sink names must be unique/)
    expect(() => createAuditTrail({ redaction: { ip: 'hide' as never } })).to.throw(
      /audit.redaction.ip/,
    )
  })

  it('refuses bad options', () => {
    expect(() => createAuditTrail({ level: 'loud' as never })).to.throw(
      /audit.level: unknown audit level "loud"/,
    )
    expect(() => createAuditTrail({ sinks: [{}] as never })).to.throw(/audit.sinks\[0\]/)
  })
})
