// Durable audit ("no answer unless audited"): with `audit.durable` (or a route's `durableAudit`),
// the gate's decision waits until its events are durable in a real JSON-lines file (fdatasync'd),
// answers 503 ERR_AUDIT_UNAVAILABLE with Retry-After when they cannot be, and a kill -9 of a
// serving process loses no event of an answered request. Without it, the kill loses the events of
// the last flush interval: the crash window docs/operations.md describes.
import { spawn, type ChildProcessByStdio } from 'node:child_process'
import { once } from 'node:events'
import { existsSync, readFileSync } from 'node:fs'
import { Agent, get } from 'node:http'
import { join, resolve } from 'node:path'
import type { Readable } from 'node:stream'
import { expect } from 'chai'
import {
  createAuditTrail,
  createGate,
  createJsonLinesFileSink,
  type AuditEvent,
  type AuditOptions,
  type GateStage,
} from '@portcullis/core'
import { createMemoryAuditSink, fakeRequest } from '@portcullis/core/testing'
import { faultyOpen, noFaults } from './faulty-fs.js'
import { readEvents, verifyWithCli } from './verify-cli.js'
import { useTempDir } from '../../helpers/temp-dir.js'

const KEY = 'durable-chain-key-0123456789abcdef01'
const CHILD_KEY = 'durable-child-chain-key-0123456789abcdef'

/** The request ids found in a JSON-lines file right now (no flush: what is on disk). */
function idsInFile(file: string): Map<string, string[]> {
  const out = new Map<string, string[]>()
  if (!existsSync(file)) return out
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    let e: AuditEvent
    try {
      e = JSON.parse(line) as AuditEvent
    } catch {
      continue // an empty or torn line
    }
    const id = e.request?.id
    if (id === undefined) continue
    out.set(id, [...(out.get(id) ?? []), e.type])
  }
  return out
}

describe('durable audit (no answer unless audited)', function () {
  this.timeout(60_000)
  let dir: string
  useTempDir('portcullis-durable-', (d) => (dir = d))

  const gateWith = (audit: AuditOptions, stages: readonly GateStage[] = []) =>
    createGate({ credentialsRequired: false, audit, stages })

  it('answers only once the events are in the file; without durable mode they are not there yet', async () => {
    const file = join(dir, 'audit.jsonl')
    const gate = gateWith({
      sinks: [createJsonLinesFileSink({ path: file })],
      integrity: { key: KEY },
      // Nothing would be written for a minute without durable mode.
      flushIntervalMs: 60_000,
      durable: true,
    })
    expect(gate.audit.durable).to.equal(true)
    const route = gate.compile({ public: true })
    for (let i = 0; i < 5; i++) {
      const decision = await gate.evaluate(fakeRequest({ url: `/item/${i}` }), route)
      expect(decision.allowed).to.equal(true)
      expect(idsInFile(file).get(decision.requestId)).to.deep.equal([
        'authn.success',
        'authz.allow',
      ])
    }
    await gate.close()
    const cli = verifyWithCli(file, KEY)
    expect(cli.code, cli.stderr).to.equal(0)

    const other = join(dir, 'other.jsonl')
    const lazy = gateWith({
      sinks: [createJsonLinesFileSink({ path: other })],
      flushIntervalMs: 60_000,
    })
    const decision = await lazy.evaluate(fakeRequest({ url: '/item/0' }), route)
    expect(decision.allowed).to.equal(true)
    expect(idsInFile(other).has(decision.requestId)).to.equal(false)
    await lazy.close()
    expect(idsInFile(other).has(decision.requestId)).to.equal(true)
  })

  it("waits only on the routes that declare durableAudit: true (and takes the step's earlier events along)", async () => {
    const file = join(dir, 'audit.jsonl')
    const gate = gateWith({
      sinks: [createJsonLinesFileSink({ path: file })],
      flushIntervalMs: 60_000,
    })
    const durable = gate.compile({ public: true, durableAudit: true })
    const plain = gate.compile({ public: true })
    expect(durable.durableAudit).to.equal(true)
    expect(plain.durableAudit).to.equal(false)
    const a = await gate.evaluate(fakeRequest({ url: '/a' }), durable)
    // One access event per request, durable before the answer.
    expect(idsInFile(file).get(a.requestId)).to.deep.equal(['authz.allow'])
    const b = await gate.evaluate(fakeRequest({ url: '/b' }), plain)
    expect(idsInFile(file).has(b.requestId)).to.equal(false)
    // The two steps of a global middleware and a route guard: the route's step waits, and the
    // events queued before its own (the authentication step's, and b's) are written with it.
    // With deferAudit (as the adapters call it), the request still writes one event.
    const request = fakeRequest({ url: '/c' })
    const prior = await gate.authenticate(request, { deferAudit: true })
    if (!prior.allowed) expect.fail('authentication refused')
    expect(idsInFile(file).has(prior.requestId)).to.equal(false)
    const c = await gate.authorize(request, prior, durable)
    expect(c.allowed).to.equal(true)
    const now = idsInFile(file)
    expect(now.get(prior.requestId)).to.deep.equal(['authz.allow'])
    expect(now.get(b.requestId)).to.deep.equal(['authz.allow'])
    // Without it, each step writes its own.
    const stepwise = fakeRequest({ url: '/d' })
    const first = await gate.authenticate(stepwise)
    if (!first.allowed) expect.fail('authentication refused')
    await gate.authorize(stepwise, first, durable)
    expect(idsInFile(file).get(first.requestId)).to.deep.equal(['authn.success', 'authz.allow'])
    await gate.close()
  })

  it('answers 503 ERR_AUDIT_UNAVAILABLE with Retry-After when the durable write fails, and still writes the event once the disk recovers', async () => {
    const file = join(dir, 'audit.jsonl')
    const faults = noFaults()
    const settled: number[] = []
    const stage: GateStage = {
      name: 'quota',
      run: () => ({ ok: true, settle: (status) => settled.push(status) }),
    }
    const gate = gateWith(
      {
        sinks: [createJsonLinesFileSink({ path: file, open: faultyOpen(faults) })],
        integrity: { key: KEY },
        durable: true,
      },
      [stage],
    )
    const route = gate.compile({ public: true })
    expect((await gate.evaluate(fakeRequest({ url: '/ok' }), route)).allowed).to.equal(true)
    faults.write = 'EIO'
    const refused = await gate.evaluate(fakeRequest({ url: '/refused' }), route)
    if (refused.allowed) expect.fail('served without a durable audit event')
    expect(refused.status).to.equal(503)
    expect(refused.error.code).to.equal('ERR_AUDIT_UNAVAILABLE')
    expect(refused.error.reason).to.equal('durable audit write failed')
    expect(refused.headers['retry-after']).to.equal('1')
    expect(refused.problem).to.include({ status: 503, code: 'ERR_AUDIT_UNAVAILABLE' })
    // The stage hears that the request was not served (a quota gives its unit back).
    expect(settled).to.deep.equal([503])
    // While the sink is failing, the next request is refused without waiting for the retry.
    const writesBefore = faults.failedWrites
    const next = await gate.evaluate(fakeRequest({ url: '/next' }), route)
    expect(next.status).to.equal(503)
    expect(faults.failedWrites).to.equal(writesBefore)
    faults.write = undefined
    await gate.audit.flush(20_000)
    const served = await gate.evaluate(fakeRequest({ url: '/served' }), route)
    expect(served.allowed).to.equal(true)
    await gate.close()
    const cli = verifyWithCli(file, KEY)
    expect(cli.code, cli.stderr).to.equal(0)
    // The refused requests' events (their authentication step's: the answer came from it) were
    // retried and written, once each, in order.
    const events = await readEvents(file)
    const paths = events.filter((e) => e.type === 'authn.success').map((e) => e.request?.path)
    expect(paths).to.deep.equal(['/ok', '/refused', '/next', '/served'])
    const ids = events.map((e) => e.id)
    expect(new Set(ids).size).to.equal(ids.length)
  })

  it("answers once the event is fsync'd in the spool while the sink is down", async () => {
    const target = createMemoryAuditSink({ name: 'main' })
    let down = true
    const gate = gateWith({
      sinks: [
        {
          name: 'main',
          async write(events) {
            if (down) throw new Error('connect ECONNREFUSED')
            await target.write(events)
          },
        },
      ],
      spool: { dir: join(dir, 'spool') },
      durable: true,
    })
    const decision = await gate.evaluate(fakeRequest({ url: '/x' }), gate.compile({ public: true }))
    expect(decision.allowed).to.equal(true)
    expect(idsInFile(join(dir, 'spool', 'main.spool.jsonl')).get(decision.requestId)).to.deep.equal(
      ['authn.success', 'authz.allow'],
    )
    expect(target.events).to.have.length(0)
    down = false
    await gate.close()
    // The request's two events; the trail's own (sink degraded, recovered) carry no request.
    const own = target.events.filter((e) => !e.type.startsWith('audit.'))
    expect(own.map((e) => e.request?.id)).to.deep.equal([decision.requestId, decision.requestId])
  })

  it('refuses a durable option or route declaration that is not a boolean', () => {
    expect(() => createAuditTrail({ durable: 'yes' as never })).to.throw(/audit.durable/)
    expect(() => createAuditTrail({ durable: true })).to.throw(
      /audit.durable: needs at least one sink/,
    )
    const gate = gateWith({})
    expect(() => gate.compile({ durableAudit: 1 as never })).to.throw(/durableAudit/)
  })

  describe('kill -9 of a serving process', () => {
    /** Serves requests from a child until `answered` were answered, then SIGKILLs it at once. */
    async function serveAndKill(
      file: string,
      mode: 'on' | 'off',
      answered: number,
    ): Promise<string[]> {
      const child: ChildProcessByStdio<null, Readable, Readable> = spawn(
        process.execPath,
        ['--import', 'tsx', resolve('test/core/audit/fixtures/durable-child.ts'), file, mode],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      )
      let stderr = ''
      child.stderr.on('data', (c: Buffer) => (stderr += c.toString()))
      const [first] = (await once(child.stdout, 'data')) as [Buffer]
      const port = Number.parseInt(first.toString(), 10)
      expect(port, stderr).to.be.greaterThan(0)
      const agent = new Agent({ keepAlive: true, maxSockets: 8 })
      // Every request the server answered 200, including any answered in the same instant as
      // the one that triggered the kill.
      const ids: string[] = []
      let killed = false
      let n = 0
      const one = (): Promise<void> =>
        new Promise((done) => {
          const req = get({ host: '127.0.0.1', port, path: `/item/${n++}`, agent }, (res) => {
            let body = ''
            res.on('data', (c: Buffer) => (body += c.toString()))
            res.on('error', () => done())
            res.on('end', () => {
              if (res.statusCode === 200 && res.complete) {
                ids.push((JSON.parse(body) as { requestId: string }).requestId)
                if (ids.length >= answered && !killed) {
                  killed = true
                  child.kill('SIGKILL')
                }
              }
              done()
            })
          })
          req.on('error', () => done())
        })
      await Promise.all(
        Array.from({ length: 8 }, async () => {
          while (!killed) await one()
        }),
      )
      agent.destroy()
      if (child.exitCode === null && child.signalCode === null) await once(child, 'exit')
      expect(child.signalCode, stderr).to.equal('SIGKILL')
      return ids
    }

    it('loses no event of an answered request with durable mode on, and the trail verifies', async () => {
      const file = join(dir, 'audit.jsonl')
      const answered = await serveAndKill(file, 'on', 200)
      expect(answered.length).to.be.at.least(200)
      const stored = idsInFile(file)
      const lost = answered.filter(
        (id) => stored.get(id)?.join() !== ['authn.success', 'authz.allow'].join(),
      )
      expect(lost, `${lost.length} answered requests without their events`).to.deep.equal([])
      // A write for a request not yet answered may have been cut short: then, and only then, the
      // last line is torn, and audit verify says so (exit 3), not "tampered".
      const cli = verifyWithCli(file, CHILD_KEY)
      if (cli.code === 3) expect(cli.result.reason).to.equal('torn-tail')
      else expect(cli.code, cli.stderr).to.equal(0)
      // The next process to open the file cuts a torn tail off before appending.
      const trail = createAuditTrail({
        sinks: [createJsonLinesFileSink({ path: file })],
        integrity: { key: CHILD_KEY },
      })
      trail.emit({ type: 'authn.failure', outcome: 'failure', actor: { id: null }, action: 'x' })
      await trail.close()
      const after = verifyWithCli(file, CHILD_KEY)
      expect(after.code, after.stderr).to.equal(0)
      expect(after.result.chains).to.have.length(2)
    })

    it('loses the events answered in the last flush interval without durable mode (the crash window)', async () => {
      const file = join(dir, 'audit.jsonl')
      const answered = await serveAndKill(file, 'off', 200)
      const stored = idsInFile(file)
      const lost = answered.filter((id) => !stored.has(id))
      expect(lost.length).to.be.greaterThan(0)
    })
  })
})
