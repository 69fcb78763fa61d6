// Sinks that fail, queues that fill up and a shutdown while a sink does not answer (issue 18):
// the trail says so in its own events (audit.sink.degraded / audit.sink.recovered to every sink,
// audit.dropped with the count and time range), in the log (once per transition or episode) and
// in the metrics; close() settles within its deadline with a report of what it left behind.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect } from 'chai'
import sinon from 'sinon'
import {
  createAuditTrail,
  verifyAuditChain,
  type AuditEvent,
  type AuditEventInput,
  type AuditSink,
  type LogFields,
  type Logger,
} from '@portcullis/core'
import { createMemoryAuditSink } from '@portcullis/core/testing'
import { createSinkMetrics } from '../../helpers/recording-metrics.js'

const KEY = 'health-chain-key-0123456789abcdef0123'
const T0 = Date.parse('2026-12-01T10:00:00.000Z')

/** A real memory sink behind a switch: down rejects like a refused connection. */
function switchable(name: string): AuditSink & {
  down: boolean
  readonly target: ReturnType<typeof createMemoryAuditSink>
} {
  const target = createMemoryAuditSink({ name })
  const s = {
    name,
    down: false,
    target,
    async write(events: readonly AuditEvent[]): Promise<void> {
      if (s.down) throw new Error('ECONNREFUSED 127.0.0.1:9')
      await target.write(events)
    },
  }
  return s
}

/** A sink whose writes wait until `release()` (a collector that stalls). */
function blocking(name: string): AuditSink & {
  writes: number
  release(): void
  readonly target: ReturnType<typeof createMemoryAuditSink>
} {
  const target = createMemoryAuditSink({ name })
  let open!: () => void
  const promise = new Promise<void>((r) => (open = r))
  let gate: { promise: Promise<void>; open: () => void } | undefined = { promise, open }
  const s = {
    name,
    target,
    writes: 0,
    async write(events: readonly AuditEvent[]): Promise<void> {
      s.writes++
      if (gate !== undefined) await gate.promise
      await target.write(events)
    },
    release() {
      gate?.open()
      gate = undefined
    },
  }
  return s
}

const ev = (i: number, type: AuditEventInput['type'] = 'authz.deny'): AuditEventInput => ({
  type,
  outcome: type === 'authz.allow' ? 'success' : 'failure',
  actor: { id: `u${i}` },
  action: `GET /${i}`,
})

function recordingLogger(): Logger & { lines: Array<[string, LogFields, string]> } {
  const lines: Array<[string, LogFields, string]> = []
  return {
    lines,
    warn: (fields, message) => void lines.push(['warn', fields, message]),
    error: (fields, message) => void lines.push(['error', fields, message]),
  }
}

/** Waits until `cond` holds (bounded): the trail writes on its own timers. */
async function until(cond: () => boolean): Promise<void> {
  const end = performance.now() + 10_000
  while (!cond()) {
    if (performance.now() > end) throw new Error('timed out waiting')
    await new Promise((r) => setImmediate(r))
  }
}

const types = (events: readonly AuditEvent[]) =>
  events.filter((e) => e.type !== 'audit.checkpoint').map((e) => e.type)

describe('audit sink health', function () {
  this.timeout(30_000)

  it('emits audit.sink.degraded and audit.sink.recovered to every sink, logs each transition once and sets the health gauge', async () => {
    let now = T0
    const flaky = switchable('flaky')
    const steady = switchable('steady')
    const logger = recordingLogger()
    const metrics = createSinkMetrics()
    const trail = createAuditTrail({
      sinks: [flaky, steady],
      flushIntervalMs: 0,
      integrity: { key: KEY },
      logger,
      metrics,
      now: () => now,
    })
    flaky.down = true
    trail.emit(ev(1))
    // The steady sink hears of the failure at once, while the flaky one is still down.
    await until(() => types(steady.target.events).includes('audit.sink.degraded'))
    expect(types(steady.target.events)).to.deep.equal(['authz.deny', 'audit.sink.degraded'])
    const degraded = steady.target.events.find((e) => e.type === 'audit.sink.degraded')
    expect(degraded).to.deep.include({
      outcome: 'failure',
      target: { type: 'audit.sink', id: 'flaky' },
    })
    expect(degraded?.data).to.deep.include({ sink: 'flaky' })
    expect(String(degraded?.data?.error)).to.include('ECONNREFUSED')
    trail.emit(ev(2))
    trail.emit(ev(3))
    now += 30_000
    flaky.down = false
    await trail.flush(10_000)

    // The flaky sink gets its own story in order: what waited, then the recovery.
    expect(types(flaky.target.events)).to.deep.equal([
      'authz.deny',
      'audit.sink.degraded',
      'authz.deny',
      'authz.deny',
      'audit.sink.recovered',
    ])
    expect(types(steady.target.events)).to.deep.equal([
      'authz.deny',
      'audit.sink.degraded',
      'authz.deny',
      'authz.deny',
      'audit.sink.recovered',
    ])
    const recovered = flaky.target.events.find((e) => e.type === 'audit.sink.recovered')
    expect(recovered?.outcome).to.equal('success')
    expect(recovered?.data).to.deep.include({
      sink: 'flaky',
      since: new Date(T0).toISOString(),
      downMs: 30_000,
    })
    // The failed event, the degraded notice and the two emitted while down.
    expect(recovered?.data?.waited).to.equal(4)
    // The same events (same ids) on both sinks, and both chains verify.
    expect(steady.target.events.find((e) => e.type === 'audit.sink.recovered')?.id).to.equal(
      recovered?.id,
    )
    for (const sink of [flaky, steady])
      expect(verifyAuditChain(sink.target.events, { keys: KEY }).ok).to.equal(true)

    // Each retry logs its failure; the transitions are logged once each.
    const transitions = logger.lines.filter(
      ([, , m]) => m === 'audit sink degraded' || m === 'audit sink recovered',
    )
    expect(transitions.map(([level, , m]) => [level, m])).to.deep.equal([
      ['error', 'audit sink degraded'],
      ['warn', 'audit sink recovered'],
    ])
    expect(transitions[0]?.[1]).to.deep.equal({
      sink: 'flaky',
      error: 'Error: ECONNREFUSED 127.0.0.1:9',
    })
    expect(transitions[1]?.[1]).to.deep.include({ sink: 'flaky', downMs: 30_000, waited: 4 })
    expect(metrics.gauges.get('auditSinkHealthy{flaky}')).to.deep.equal([1, 0, 1])
    expect(metrics.gauges.get('auditSinkHealthy{steady}')).to.deep.equal([1])
    expect(metrics.counts.get('auditSinkErrors{flaky}')).to.be.at.least(1)
    await trail.close()
  })

  it('keeps the health events at level minimal', async () => {
    const flaky = switchable('flaky')
    const steady = switchable('steady')
    const trail = createAuditTrail({ sinks: [flaky, steady], flushIntervalMs: 0, level: 'minimal' })
    flaky.down = true
    trail.emit(ev(1))
    await until(() => types(steady.target.events).includes('audit.sink.degraded'))
    flaky.down = false
    await trail.flush(10_000)
    expect(types(steady.target.events)).to.include.members([
      'audit.sink.degraded',
      'audit.sink.recovered',
    ])
    await trail.close()
  })
})

describe('audit queue full (shedding)', function () {
  this.timeout(30_000)

  it('counts, logs once and records an audit.dropped event with the count and time range', async () => {
    let now = T0
    const sink = blocking('slow')
    const logger = recordingLogger()
    const metrics = createSinkMetrics()
    const trail = createAuditTrail({
      sinks: [sink],
      flushIntervalMs: 0,
      maxQueue: 2,
      integrity: { key: KEY },
      logger,
      metrics,
      now: () => now,
    })
    expect(trail.emit(ev(0, 'authz.allow'))).to.equal(true)
    // Let the first write start (and stall): it holds event 0.
    await until(() => sink.writes === 1)
    expect(trail.emit(ev(1, 'authz.allow'))).to.equal(true)
    expect(trail.emit(ev(2, 'authz.allow'))).to.equal(true)
    const refused: boolean[] = []
    for (let i = 3; i < 8; i++) {
      now += 1_000
      refused.push(trail.emit(ev(i, 'authz.allow')))
    }
    expect(refused).to.deep.equal([false, false, false, false, false])
    expect(metrics.counts.get('auditEventsDropped{slow}')).to.equal(5)
    const full = logger.lines.filter(([, , m]) => m.startsWith('audit queue full'))
    expect(full).to.have.length(1)
    expect(full[0]?.[0]).to.equal('error')
    sink.release()
    await trail.flush(10_000)
    const events = sink.target.events.filter((e) => e.type !== 'audit.checkpoint')
    expect(events.map((e) => e.actor.id ?? e.type)).to.deep.equal([
      'u0',
      'u1',
      'u2',
      'audit.dropped',
    ])
    expect(events.at(-1)).to.deep.include({ type: 'audit.dropped', outcome: 'failure' })
    expect(events.at(-1)?.data).to.deep.equal({
      sink: 'slow',
      count: 5,
      from: new Date(T0 + 1_000).toISOString(),
      to: new Date(T0 + 5_000).toISOString(),
    })
    expect(logger.lines.filter(([, , m]) => m.startsWith('audit queue has room'))).to.have.length(1)
    expect(verifyAuditChain(sink.target.events, { keys: KEY }).ok).to.equal(true)
    await trail.close()
  })
})

describe('audit trail close() with a sink that does not answer', function () {
  this.timeout(30_000)
  let clock: sinon.SinonFakeTimers | undefined
  let dir: string | undefined
  afterEach(async () => {
    clock?.restore()
    clock = undefined
    if (dir !== undefined) await rm(dir, { recursive: true, force: true })
    dir = undefined
  })

  it('settles within closeTimeoutMs and reports the events it left behind', async () => {
    clock = sinon.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] })
    const never = new Promise<void>(() => undefined)
    const sink: AuditSink = { name: 'unreachable', write: () => never, close: () => never }
    const logger = recordingLogger()
    const trail = createAuditTrail({
      sinks: [sink],
      flushIntervalMs: 0,
      writeTimeoutMs: 60_000,
      closeTimeoutMs: 2_000,
      logger,
    })
    for (let i = 0; i < 3; i++) trail.emit(ev(i))
    await clock.tickAsync(0)
    let report: unknown
    void trail.close().then((r) => (report = r))
    await clock.tickAsync(2_001)
    expect(report, 'close() settled').to.deep.equal({
      complete: false,
      timedOut: true,
      sinks: [{ sink: 'unreachable', unwritten: 3, spooled: false, spoolBytes: 0 }],
    })
    const line = logger.lines.find(([, , m]) => m.startsWith('audit trail close'))
    expect(line?.[0]).to.equal('error')
    expect(line?.[1]).to.deep.include({ timedOut: true })
  })

  it('reports what it left in the spool of a sink that is down', async () => {
    dir = await mkdtemp(join(tmpdir(), 'portcullis-health-'))
    const sink = switchable('down')
    sink.down = true
    const trail = createAuditTrail({
      sinks: [sink],
      flushIntervalMs: 0,
      spool: { dir, fsync: false },
      closeTimeoutMs: 1_000,
    })
    for (let i = 0; i < 3; i++) trail.emit(ev(i))
    // In the spool before close begins (a loaded machine may take a while to get there).
    await until(() => trail.pending === 0)
    const report = await trail.close()
    expect(report.complete).to.equal(false)
    expect(report.sinks).to.have.length(1)
    expect(report.sinks[0]).to.include({ sink: 'down', unwritten: 0, spooled: true })
    expect(report.sinks[0]?.spoolBytes).to.be.above(0)
  })

  it('reports a complete close when every sink took everything', async () => {
    const sink = switchable('up')
    const trail = createAuditTrail({ sinks: [sink], flushIntervalMs: 0 })
    trail.emit(ev(1))
    expect(await trail.close()).to.deep.equal({
      complete: true,
      timedOut: false,
      sinks: [{ sink: 'up', unwritten: 0, spooled: false, spoolBytes: 0 }],
    })
  })
})
