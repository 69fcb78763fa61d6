// A collector's Retry-After (issue 18): the webhook sink and the trail leave the collector alone
// for as long as it asks, past the sink's back-off cap (maxDelayMs) and the trail's own, up to the
// sink's maxRetryAfterMs. A real local HTTP collector; time is sinon's fake timers (only
// setTimeout, clearTimeout and Date: nextTick and microtasks stay real, so does the socket I/O).
import { once } from 'node:events'
import { createServer, type Server } from 'node:http'
import { expect } from 'chai'
import sinon from 'sinon'
import {
  createAuditTrail,
  createWebhookAuditSink,
  silentLogger,
  type AuditEvent,
} from '@portcullis/core'

/** A collector answering the first requests with `failures` (status, Retry-After), then 204. */
class Collector {
  readonly server: Server
  port = 0
  failures: Array<[number, string]> = []
  readonly events: AuditEvent[] = []

  constructor() {
    this.server = createServer((req, res) => {
      let body = ''
      req.on('data', (c: Buffer) => (body += c.toString()))
      req.on('end', () => {
        const failure = this.failures.shift()
        if (failure !== undefined) {
          res.writeHead(failure[0], { 'retry-after': failure[1] }).end()
          return
        }
        this.events.push(...(JSON.parse(body) as { events: AuditEvent[] }).events)
        res.writeHead(204).end()
      })
    })
  }

  async start(): Promise<void> {
    this.server.listen(0, '127.0.0.1')
    await once(this.server, 'listening')
    this.port = (this.server.address() as { port: number }).port
  }

  /** The request events received: the trail's own `audit.*` events (sink health; a clock jump,
   * since only Date is faked) travel in the same batches. */
  requestEvents(): AuditEvent[] {
    return this.events.filter((e) => !e.type.startsWith('audit.'))
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections()
    await new Promise((r) => this.server.close(r))
  }
}

/** Waits (real time, bounded) until `cond` holds: the socket I/O runs on real time. */
async function until(cond: () => boolean, what: string): Promise<void> {
  const end = performance.now() + 10_000
  while (!cond()) {
    if (performance.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setImmediate(r))
  }
}

describe('webhook audit sink: Retry-After', function () {
  this.timeout(30_000)
  let collector: Collector
  let clock: sinon.SinonFakeTimers
  beforeEach(async () => {
    collector = new Collector()
    await collector.start()
    clock = sinon.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] })
  })
  afterEach(async () => {
    clock.restore()
    await collector.stop()
  })

  /** A trail over a webhook sink whose fetch calls are counted (when they start, synchronously). */
  function trailWith(sinkOptions: { maxDelayMs: number; maxRetryAfterMs?: number }) {
    const calls = { n: 0 }
    const sink = createWebhookAuditSink({
      url: `http://127.0.0.1:${collector.port}/ingest`,
      baseDelayMs: 100,
      ...sinkOptions,
      fetch: (input, init) => {
        calls.n++
        return globalThis.fetch(input, init)
      },
    })
    const failed: unknown[] = []
    const logger = {
      ...silentLogger,
      error: (fields: unknown, message: string) => {
        if (message === 'audit sink write failed; will retry') failed.push(fields)
      },
    }
    const trail = createAuditTrail({ sinks: [sink], flushIntervalMs: 0, logger })
    trail.emit({ type: 'authz.deny', outcome: 'failure', actor: { id: 'a' }, action: 'GET /x' })
    return { trail, calls, failed }
  }

  it('waits a 503 Retry-After of 120 s even though the back-off cap is 30 s', async () => {
    collector.failures.push([503, '120'])
    const { calls, failed } = trailWith({ maxDelayMs: 30_000 })
    await clock.tickAsync(0)
    // The answer reaches the sink over real I/O: the trail logs the failed write, then waits.
    await until(() => failed.length === 1, 'the failed write')
    expect(failed[0]).to.include({ retryInMs: 120_000 })
    await clock.tickAsync(119_000)
    expect(calls.n, 'no POST before the 120 s are up').to.equal(1)
    await clock.tickAsync(1_500)
    await until(() => collector.requestEvents().length === 1, 'the retried POST')
    expect(calls.n).to.equal(2)
    expect(collector.requestEvents().map((e) => e.actor.id)).to.deep.equal(['a'])
  })

  it('clamps a 429 Retry-After beyond maxRetryAfterMs to it', async () => {
    collector.failures.push([429, '3600'])
    const { calls, failed } = trailWith({ maxDelayMs: 30_000, maxRetryAfterMs: 300_000 })
    await clock.tickAsync(0)
    await until(() => failed.length === 1, 'the failed write')
    expect(failed[0]).to.include({ retryInMs: 300_000 })
    await clock.tickAsync(299_000)
    expect(calls.n, 'no POST before maxRetryAfterMs').to.equal(1)
    await clock.tickAsync(1_500)
    await until(() => collector.requestEvents().length === 1, 'the retried POST after the clamp')
    expect(calls.n).to.equal(2)
  })

  it('makes a write fail at once with retryAfterMs when the wait exceeds maxDelayMs', async () => {
    collector.failures.push([503, '120'])
    const sink = createWebhookAuditSink({
      url: `http://127.0.0.1:${collector.port}/ingest`,
      maxDelayMs: 30_000,
    })
    const error = await sink
      .write([
        {
          id: 'e1',
          time: new Date(0).toISOString(),
          type: 'authz.deny',
          outcome: 'failure',
          actor: { id: 'a' },
          action: 'GET /x',
        },
      ])
      .then(
        () => undefined,
        (e: unknown) => e,
      )
    expect(error).to.include({ status: 503, retryAfterMs: 120_000 })
  })

  it('refuses a negative maxRetryAfterMs', () => {
    expect(() =>
      createWebhookAuditSink({ url: 'http://127.0.0.1:1/x', maxRetryAfterMs: -1 }),
    ).to.throw(/maxRetryAfterMs/)
  })
})
