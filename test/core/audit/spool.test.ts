import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { readFile, stat } from 'node:fs/promises'
import { createServer, type Server } from 'node:http'
import { join, resolve } from 'node:path'
import { expect } from 'chai'
import {
  compileRequirements,
  createAuditTrail,
  createGate,
  verifyAuditChain,
  type AuditEvent,
  type AuditEventInput,
  type AuditSink,
} from '@portcullis/core'
import { createMemoryAuditSink, fakeRequest } from '@portcullis/core/testing'
import { useTempDir } from '../../helpers/temp-dir.js'
import { createSinkMetrics } from '../../helpers/recording-metrics.js'

const KEY = 'spool-chain-key-0123456789abcdef0123'

/** A real memory sink behind a switch: down throws like a refused connection. */
function switchable(name = 'main'): AuditSink & {
  down: boolean
  hang: boolean
  readonly target: ReturnType<typeof createMemoryAuditSink>
  calls: number
} {
  const target = createMemoryAuditSink({ name })
  const s = {
    name,
    down: false,
    hang: false,
    calls: 0,
    target,
    async write(events: readonly AuditEvent[]): Promise<void> {
      s.calls++
      if (s.down) throw new Error('ECONNREFUSED')
      if (s.hang) await new Promise((r) => setTimeout(r, 300))
      await target.write(events)
    },
  }
  return s
}

const ev = (i: number, type: AuditEventInput['type'] = 'authn.failure'): AuditEventInput => ({
  type,
  outcome: 'failure',
  actor: { id: `u${i}` },
  action: `GET /${i}`,
})

describe('audit disk spool', function () {
  this.timeout(30_000)
  let dir: string
  useTempDir('portcullis-spool-', (d) => (dir = d))

  it('spools while the sink is down and replays in order, exactly once, chain intact', async () => {
    const sink = switchable()
    sink.down = true
    const metrics = createSinkMetrics()
    const trail = createAuditTrail({
      sinks: [sink],
      spool: { dir },
      integrity: { key: KEY, checkpointEvery: 100 },
      flushIntervalMs: 1,
      batchSize: 50,
      metrics,
    })
    for (let i = 0; i < 300; i++) trail.emit(ev(i))
    // Everything moves to disk while the sink is down.
    await waitFor(() => trail.pending === 0)
    const { size } = await stat(join(dir, 'main.spool.jsonl'))
    expect(size).to.be.greaterThan(300 * 100)
    expect(metrics.gauges.get('auditSpoolBytes{main}')?.at(-1)).to.equal(size)
    expect(metrics.counts.get('auditSinkErrors{main}')).to.be.greaterThan(0)
    sink.down = false
    for (let i = 300; i < 400; i++) trail.emit(ev(i))
    await trail.flush(20_000)
    const got = sink.target.events.filter((e) => !e.type.startsWith('audit.'))
    expect(got.map((e) => e.action)).to.deep.equal(
      Array.from({ length: 400 }, (_, i) => `GET /${i}`),
    )
    expect(verifyAuditChain(sink.target.events, { keys: KEY }).ok).to.equal(true)
    expect((await stat(join(dir, 'main.spool.jsonl'))).size).to.equal(0)
    expect(metrics.gauges.get('auditSpoolBytes{main}')?.at(-1)).to.equal(0)
    expect(metrics.counts.get('auditEvents{main}')).to.be.at.least(400)
    await trail.close()
  })

  it('resolves commit() once the event is fsync-ed in the spool', async () => {
    const sink = switchable()
    sink.down = true
    const trail = createAuditTrail({ sinks: [sink], spool: { dir }, flushIntervalMs: 1 })
    const event = await trail.commit(ev(1, 'key.revoked'))
    const text = await readFile(join(dir, 'main.spool.jsonl'), 'utf8')
    expect(text).to.include(event.id)
    expect(sink.target.events).to.have.length(0)
    sink.down = false
    await trail.close()
    const own = sink.target.events.filter((e) => !e.type.startsWith('audit.'))
    expect(own.map((e) => e.id)).to.deep.equal([event.id])
  })

  it('leaves undelivered events in the spool at shutdown and replays them on the next start', async () => {
    const sink = switchable()
    sink.down = true
    const first = createAuditTrail({
      sinks: [sink],
      spool: { dir },
      integrity: { key: KEY },
      flushIntervalMs: 1,
    })
    for (let i = 0; i < 50; i++) first.emit(ev(i))
    await first.close(300)
    expect(sink.target.events).to.have.length(0)
    const next = switchable()
    const second = createAuditTrail({
      sinks: [next],
      spool: { dir },
      integrity: { key: KEY },
      flushIntervalMs: 1,
    })
    second.emit(ev(50))
    await second.close()
    const actions = next.target.events
      .filter((e) => !e.type.startsWith('audit.'))
      .map((e) => e.action)
    expect(actions).to.deep.equal(Array.from({ length: 51 }, (_, i) => `GET /${i}`))
    // Two chains (one per process), each complete and in order.
    const result = verifyAuditChain(next.target.events, { keys: KEY })
    expect(result.ok).to.equal(true)
    expect(result.chains).to.have.length(2)
  })

  it('treats a sink slower than writeTimeoutMs as down, and drops replayed duplicates by id', async () => {
    const sink = switchable()
    sink.hang = true
    const trail = createAuditTrail({
      sinks: [sink],
      spool: { dir },
      writeTimeoutMs: 50,
      flushIntervalMs: 1,
      integrity: { key: KEY },
    })
    for (let i = 0; i < 20; i++) trail.emit(ev(i))
    await waitFor(() => trail.pending === 0)
    sink.hang = false
    await trail.close()
    const ids = sink.target.events.map((e) => e.id)
    expect(new Set(ids).size).to.equal(ids.length)
    expect(sink.target.events.filter((e) => !e.type.startsWith('audit.'))).to.have.length(20)
    expect(verifyAuditChain(sink.target.events, { keys: KEY }).ok).to.equal(true)
  })

  it('fails the gate closed when memory and spool are full, keeping security events', async () => {
    const sink = switchable()
    sink.down = true
    const trail = createAuditTrail({
      sinks: [sink],
      spool: { dir, maxBytes: 2048 },
      maxQueue: 20,
      flushIntervalMs: 1,
    })
    for (let i = 0; i < 40; i++) trail.emit(ev(i))
    await waitFor(() => trail.pending <= 20)
    // The spool holds ~2 KiB; the rest waits in memory up to maxQueue.
    const results: boolean[] = []
    for (let i = 40; i < 100; i++) results.push(trail.emit(ev(i, 'authz.deny')))
    expect(results.at(-1)).to.equal(false)
    // Non-security events are refused outright once full.
    expect(trail.emit({ ...ev(1000), type: 'authn.success', outcome: 'success' })).to.equal(false)
    const gate = createGate({ audit: trail, credentialsRequired: false })
    const decision = await gate.evaluate(
      fakeRequest({ url: '/x' }),
      compileRequirements({ public: true }),
    )
    expect(decision.allowed).to.equal(false)
    expect(decision.status).to.equal(503)
    expect(decision.allowed === false && decision.error.code).to.equal('ERR_AUDIT_UNAVAILABLE')
    sink.down = false
    await trail.flush(20_000)
    const actions = new Set(sink.target.events.map((e) => e.action))
    // Every security event emitted (the reserve was not exhausted) arrived.
    for (let i = 0; i < 100; i++) expect(actions.has(`GET /${i}`), `GET /${i}`).to.equal(true)
    expect(actions.has('GET /1000')).to.equal(false)
    await trail.close()
  })

  it('refuses a spool folder another live trail holds', async () => {
    const errors: string[] = []
    const first = createAuditTrail({ sinks: [switchable()], spool: { dir }, flushIntervalMs: 1 })
    await first.flush()
    const sink = switchable()
    const second = createAuditTrail({
      sinks: [sink],
      spool: { dir },
      flushIntervalMs: 1,
      logger: { warn() {}, error: (_f, m) => errors.push(m) },
    })
    second.emit(ev(1))
    await second.flush()
    expect(errors).to.deep.equal(['audit spool cannot be opened; events stay in memory'])
    // It still delivers, from memory.
    expect(sink.target.events).to.have.length(1)
    await second.close()
    await first.close()
  })

  it('loses nothing acknowledged when the process is SIGKILLed mid-batch', async () => {
    // Phase 1: a child commits events to a webhook that refuses connections (so they spool),
    // printing each id once acknowledged; we SIGKILL it mid-stream.
    const dead: Server = createServer()
    dead.listen(0, '127.0.0.1')
    await once(dead, 'listening')
    const port = (dead.address() as { port: number }).port
    await new Promise((r) => dead.close(r))
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        resolve('test/core/audit/fixtures/spool-child.ts'),
        'write',
        dir,
        `http://127.0.0.1:${port}/`,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    )
    const acked: string[] = []
    let buffer = ''
    child.stdout.on('data', (chunk: Buffer) => {
      buffer += chunk.toString()
      const lines = buffer.split('\n')
      buffer = lines.pop() ?? ''
      acked.push(...lines.filter((l) => l !== ''))
    })
    try {
      await waitFor(() => acked.length >= 500, 20_000)
    } finally {
      child.kill('SIGKILL')
    }
    await once(child, 'exit')
    expect(child.signalCode).to.equal('SIGKILL')
    // Phase 2: a fresh process replays the spool into a file.
    const file = join(dir, 'audit.jsonl')
    const replay = spawn(
      process.execPath,
      ['--import', 'tsx', resolve('test/core/audit/fixtures/spool-child.ts'), 'replay', dir, file],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    )
    let out = ''
    replay.stdout.on('data', (c: Buffer) => (out += c.toString()))
    const [code] = (await once(replay, 'exit')) as [number]
    expect(code, out).to.equal(0)
    const events = (await readFile(file, 'utf8'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as AuditEvent)
    const ids = events.map((e) => e.id)
    expect(new Set(ids).size).to.equal(ids.length)
    const stored = new Set(ids)
    const lost = acked.filter((id) => !stored.has(id))
    expect(lost, `${lost.length} acknowledged events lost`).to.deep.equal([])
    // The killed process's chain is intact up to its last fsync-ed link.
    expect(
      verifyAuditChain(events, { keys: 'spool-child-chain-key-0123456789abcdef' }).ok,
    ).to.equal(true)
  })
})

async function waitFor(check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const until = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > until) throw new Error('timed out waiting')
    await new Promise((r) => setTimeout(r, 10))
  }
}
