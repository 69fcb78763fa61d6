// A step of the wall clock that stamps events is itself an audit event (`audit.clock_jump`): the
// trail compares it with the monotonic clock on its flush timer. Both clocks are injected, so the
// wall clock moves back and forth here without a real sleep.
import { join } from 'node:path'
import { expect } from 'chai'
import {
  createAuditTrail,
  createJsonLinesFileSink,
  DEFAULT_AUDIT_CLOCK_JUMP_THRESHOLD_MS,
  isAuthError,
  isSecurityEvent,
  verifyAuditChain,
  type AuditEvent,
  type AuditOptions,
} from '@portcullis/core'
import { createMemoryAuditSink } from '@portcullis/core/testing'
import { readEvents, verifyWithCli } from './verify-cli.js'
import { useTempDir } from '../../helpers/temp-dir.js'

const KEY = 'clock-watch-chain-key-0123456789abcdef'
const START = Date.UTC(2026, 11, 7, 12, 0, 0)
const MINUTE = 60_000

/** Two clocks the test moves: `wall` (what events are stamped with) and `mono` (elapsed time). */
function clocks() {
  const c = { wall: START, mono: 1_000 }
  return {
    c,
    /** Real time passing: both clocks advance. */
    pass(ms: number) {
      c.wall += ms
      c.mono += ms
    },
    /** The wall clock alone is set (NTP step, an operator, a VM restored from a snapshot). */
    step(ms: number) {
      c.wall += ms
    },
    options: { now: () => c.wall, monotonicNow: () => c.mono },
  }
}

const event = (action: string) => ({
  type: 'authn.failure' as const,
  outcome: 'failure' as const,
  actor: { id: null },
  action,
})

async function run(
  moves: (t: ReturnType<typeof clocks>) => void,
  options: Partial<AuditOptions> = {},
): Promise<AuditEvent[]> {
  const t = clocks()
  const sink = createMemoryAuditSink()
  const trail = createAuditTrail({ sinks: [sink], flushIntervalMs: 0, ...t.options, ...options })
  trail.emit(event('before'))
  await trail.flush()
  moves(t)
  trail.emit(event('after'))
  await trail.flush()
  await trail.close()
  return [...sink.events]
}

const jumps = (events: readonly AuditEvent[]) => events.filter((e) => e.type === 'audit.clock_jump')

describe('audit clock watch (audit.clock_jump)', () => {
  it('records a backward step of the wall clock as audit.clock_jump with from, to, deltaMs and direction', async () => {
    const events = await run((t) => {
      t.pass(1_000)
      t.step(-3 * MINUTE)
    })
    expect(events.map((e) => e.type)).to.deep.equal([
      'authn.failure',
      'authn.failure',
      'audit.clock_jump',
    ])
    const [jump] = jumps(events)
    expect(jump).to.deep.include({ outcome: 'success', action: 'audit.clock_jump' })
    expect(jump?.actor).to.deep.equal({ id: null })
    expect(jump?.data).to.deep.equal({
      direction: 'backward',
      from: new Date(START + 1_000).toISOString(),
      to: new Date(START + 1_000 - 3 * MINUTE).toISOString(),
      deltaMs: -3 * MINUTE,
      thresholdMs: DEFAULT_AUDIT_CLOCK_JUMP_THRESHOLD_MS,
      lastCheck: new Date(START).toISOString(),
    })
    expect(jump?.time).to.equal(new Date(START + 1_000 - 3 * MINUTE).toISOString())
  })

  it('records a backward step of any size beyond reading noise (50 ms)', async () => {
    const events = await run((t) => {
      t.pass(200)
      t.step(-50)
    })
    expect(jumps(events).map((e) => e.data)).to.deep.equal([
      {
        direction: 'backward',
        from: new Date(START + 200).toISOString(),
        to: new Date(START + 150).toISOString(),
        deltaMs: -50,
        thresholdMs: DEFAULT_AUDIT_CLOCK_JUMP_THRESHOLD_MS,
        lastCheck: new Date(START).toISOString(),
      },
    ])
  })

  it('records a forward step only beyond clockJumpThresholdMs (default five minutes)', async () => {
    expect(DEFAULT_AUDIT_CLOCK_JUMP_THRESHOLD_MS).to.equal(5 * MINUTE)
    const under = await run((t) => t.step(4 * MINUTE))
    expect(jumps(under)).to.deep.equal([])
    const over = await run((t) => {
      t.pass(10)
      t.step(6 * MINUTE)
    })
    expect(jumps(over).map((e) => e.data)).to.deep.equal([
      {
        direction: 'forward',
        from: new Date(START + 10).toISOString(),
        to: new Date(START + 10 + 6 * MINUTE).toISOString(),
        deltaMs: 6 * MINUTE,
        thresholdMs: 5 * MINUTE,
        lastCheck: new Date(START).toISOString(),
      },
    ])
    const lower = await run((t) => t.step(2 * MINUTE), { clockJumpThresholdMs: MINUTE })
    expect(jumps(lower).map((e) => e.data?.direction)).to.deep.equal(['forward'])
  })

  it('reports nothing while both clocks advance alike, however long', async () => {
    const events = await run((t) => t.pass(24 * 60 * MINUTE))
    expect(jumps(events)).to.deep.equal([])
  })

  it('records the jump once, at every level, as a security event tagged under ISO 27001 A.8.17', async () => {
    const events = await run(
      (t) => {
        t.step(-MINUTE)
      },
      { level: 'minimal', compliance: ['ISO27001'] },
    )
    const list = jumps(events)
    expect(list).to.have.length(1)
    expect(list[0]?.tags).to.deep.equal(['ISO27001:A.8.17'])
    expect(isSecurityEvent('audit.clock_jump')).to.equal(true)
    expect(list[0]?.compliance?.profiles).to.deep.equal(['ISO27001'])
  })

  it('is off when the wall clock is injected without a monotonic clock', async () => {
    let wall = START
    const sink = createMemoryAuditSink()
    const trail = createAuditTrail({ sinks: [sink], flushIntervalMs: 0, now: () => wall })
    trail.emit(event('before'))
    await trail.flush()
    wall -= 60 * MINUTE
    trail.emit(event('after'))
    await trail.close()
    expect(sink.events.map((e) => e.type)).to.deep.equal(['authn.failure', 'authn.failure'])
  })

  it('refuses a bad clockJumpThresholdMs or monotonicNow with ERR_CONFIG_INVALID', () => {
    for (const bad of [
      { clockJumpThresholdMs: 0 },
      { clockJumpThresholdMs: 1.5 },
      { monotonicNow: 'performance.now' as unknown as () => number },
    ]) {
      let error: unknown
      try {
        createAuditTrail(bad)
      } catch (e) {
        error = e
      }
      expect(isAuthError(error) && error.code, JSON.stringify(bad)).to.equal('ERR_CONFIG_INVALID')
    }
  })

  describe('the hash chain across a backward jump', () => {
    let dir: string
    useTempDir('ptcl-clock-', (d) => (dir = d))

    it('verifies (audit verify exits 0) with rotated files named before earlier ones', async () => {
      const t = clocks()
      const file = join(dir, 'audit.jsonl')
      // The file sink rotates on every batch and names rotated files by the same wall clock.
      const sink = createJsonLinesFileSink({ path: file, maxBytes: 1, now: t.options.now })
      const trail = createAuditTrail({
        sinks: [sink],
        flushIntervalMs: 0,
        integrity: { key: KEY, checkpointEvery: 3 },
        ...t.options,
      })
      for (let i = 0; i < 4; i++) {
        trail.emit(event(`before-${i}`))
        await trail.flush()
        t.pass(1_000)
      }
      t.step(-60 * MINUTE)
      for (let i = 0; i < 4; i++) {
        trail.emit(event(`after-${i}`))
        await trail.flush()
        t.pass(1_000)
      }
      await trail.close()

      const cli = verifyWithCli(file, KEY)
      expect(cli.result).to.include({ ok: true })
      expect(cli.code).to.equal(0)
      const { listAuditFiles } = await import('@portcullis/core')
      const events: AuditEvent[] = []
      for (const f of await listAuditFiles(file)) events.push(...(await readEvents(f)))
      expect(verifyAuditChain(events, { keys: KEY })).to.include({ ok: true })
      // The trail's times do go backwards, and the jump is in it, in the chain.
      const times = events.map((e) => Date.parse(e.time))
      expect(times.some((x, i) => i > 0 && x < (times[i - 1] as number))).to.equal(true)
      expect(jumps(events).map((e) => e.data?.direction)).to.deep.equal(['backward'])
      expect(
        events.filter((e) => e.type !== 'audit.checkpoint').map((e) => e.action),
      ).to.deep.equal([
        'before-0',
        'before-1',
        'before-2',
        'before-3',
        'after-0',
        'audit.clock_jump',
        'after-1',
        'after-2',
        'after-3',
      ])
    })
  })
})
