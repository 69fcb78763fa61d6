// Runs the REAL built `portcullis` binary (packages/cli/dist/bin.js, built by `npx tsc -b
// packages/cli`) on audit trails written by core's trail: a JSON-lines file (with rotation) and a
// SQLite database.
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { expect } from 'chai'
import {
  createAuditTrail,
  createJsonLinesFileSink,
  type AuditCheckpoint,
  type AuditSink,
} from '@portcullis/core'
import { createSqliteAuditSink } from '@portcullis/sqlite'

const BIN = resolve('packages/cli/dist/bin.js')
const KEY = 'cli-audit-chain-key-0123456789abcdef'

describe('portcullis audit (the built binary)', function () {
  this.timeout(60_000)
  let dir: string
  let checkpoints: AuditCheckpoint[]

  const run = (args: readonly string[], env: Record<string, string> = {}) => {
    const clean: Record<string, string> = {}
    for (const [k, v] of Object.entries(process.env))
      if (v !== undefined && !k.startsWith('PORTCULLIS_')) clean[k] = v
    const r = spawnSync(process.execPath, [BIN, ...args], {
      cwd: dir,
      env: { ...clean, PORTCULLIS_AUDIT_KEY: KEY, ...env },
      encoding: 'utf8',
      input: '',
    })
    return { code: r.status, stdout: r.stdout, stderr: r.stderr }
  }

  const write = async (sink: AuditSink, n: number): Promise<void> => {
    const trail = createAuditTrail({
      sinks: [sink],
      integrity: { key: KEY, checkpointEvery: 10, onCheckpoint: (c) => checkpoints.push(c) },
      flushIntervalMs: 0,
      batchSize: 5,
    })
    for (let i = 0; i < n; i++)
      trail.emit({
        type: i % 2 === 0 ? 'authn.failure' : 'key.revoked',
        outcome: 'failure',
        actor: { id: `u${i}` },
        action: `act-${i}`,
      })
    await trail.close()
  }

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'portcullis-cli-audit-'))
    checkpoints = []
  })
  afterEach(() => rmSync(dir, { recursive: true, force: true }))

  it('verifies a rotated JSON-lines trail, and names the first broken link of a tampered one', async () => {
    const path = join(dir, 'audit.jsonl')
    await write(createJsonLinesFileSink({ path, maxBytes: 4096 }), 40)
    const good = run(['audit', 'verify', 'audit.jsonl'])
    expect(good.code, good.stderr).to.equal(0)
    expect(good.stdout).to.match(/^ok: 45 events in 1 chain\(s\), 5 checkpoint\(s\) verified/)

    const lines = readFileSync(path, 'utf8').trimEnd().split('\n')
    const victim = JSON.parse(lines[1] as string)
    victim.outcome = 'success'
    lines[1] = JSON.stringify(victim)
    writeFileSync(path, lines.join('\n') + '\n')
    const bad = run(['audit', 'verify', 'audit.jsonl'])
    expect(bad.code).to.equal(1)
    expect(bad.stderr).to.include(`id ${victim.id}`)
    expect(bad.stderr).to.include(`seq ${victim.chain.seq}`)
    expect(bad.stderr).to.match(/mac mismatch/)
  })

  it('detects truncation with a published anchor, and a wrong key', async () => {
    const path = join(dir, 'audit.jsonl')
    await write(createJsonLinesFileSink({ path }), 30)
    const lines = readFileSync(path, 'utf8').trimEnd().split('\n')
    writeFileSync(path, lines.slice(0, 20).join('\n') + '\n')
    writeFileSync(join(dir, 'anchors.jsonl'), checkpoints.map((c) => JSON.stringify(c)).join('\n'))
    expect(run(['audit', 'verify', 'audit.jsonl']).code).to.equal(0)
    const cut = run(['audit', 'verify', 'audit.jsonl', '--anchor', 'anchors.jsonl'])
    expect(cut.code).to.equal(1)
    expect(cut.stderr).to.match(/truncated: chain ends at seq 20/)
    const wrong = run(['audit', 'verify', 'audit.jsonl'], {
      PORTCULLIS_AUDIT_KEY: 'not-the-key-0123456789abcdef',
    })
    expect(wrong.code).to.equal(1)
    expect(wrong.stderr).to.match(/event #1.*mac mismatch/)
    const nokey = run(['audit', 'verify', 'audit.jsonl'], { PORTCULLIS_AUDIT_KEY: '' })
    expect(nokey.code).to.equal(2)
  })

  it('tells a torn last line (a crash during a write: exit 3) from tampering (exit 1)', async () => {
    const path = join(dir, 'audit.jsonl')
    await write(createJsonLinesFileSink({ path }), 12)
    const whole = readFileSync(path, 'utf8')
    const count = whole.trimEnd().split('\n').length
    // A crash cut the next line short: no newline, and it does not parse.
    const torn = '{"id":"0b6f","time":"2026-01-01T00:00:00.000Z","type":"authn.fai'
    writeFileSync(path, whole + torn)
    const crash = run(['audit', 'verify', 'audit.jsonl'])
    expect(crash.code, crash.stderr).to.equal(3)
    expect(crash.stderr).to.include(`audit.jsonl:${count + 1}`)
    expect(crash.stderr).to.include(
      'the last line is incomplete (a crash during a write?); every earlier event verifies',
    )
    const json = run(['audit', 'verify', 'audit.jsonl', '--json'])
    expect(json.code).to.equal(3)
    expect(JSON.parse(json.stdout)).to.deep.include({
      ok: false,
      reason: 'torn-tail',
      events: count,
    })

    // The same bytes inside the trail (a newline after them, more events after them) are not a
    // crash: the trail was altered.
    writeFileSync(path, `${torn}\n${whole}`)
    const inside = run(['audit', 'verify', 'audit.jsonl', '--json'])
    expect(inside.code).to.equal(1)
    expect(JSON.parse(inside.stdout)).to.deep.include({ ok: false, reason: 'tampered' })
    expect(inside.stderr).to.match(/event #1, line .*audit\.jsonl:1: .* is not a JSON object/)
    writeFileSync(path, `${torn}\n`)
    expect(run(['audit', 'verify', 'audit.jsonl']).code).to.equal(1)

    // An altered event before a torn tail is tampering, whatever follows.
    const lines = whole.trimEnd().split('\n')
    const victim = JSON.parse(lines[3] as string)
    victim.actor.id = 'mallory'
    lines[3] = JSON.stringify(victim)
    writeFileSync(path, `${lines.join('\n')}\n${torn}`)
    const both = run(['audit', 'verify', 'audit.jsonl', '--json'])
    expect(both.code).to.equal(1)
    expect(JSON.parse(both.stdout)).to.deep.include({ ok: false, reason: 'tampered' })
    expect(both.stderr).to.match(/event #4, id .*: mac mismatch: the event was altered or forged/)

    // The next process to write the file cuts the torn line off first: the trail verifies again.
    writeFileSync(path, whole + torn)
    await write(createJsonLinesFileSink({ path }), 3)
    const after = run(['audit', 'verify', 'audit.jsonl', '--json'])
    expect(after.code, after.stderr).to.equal(0)
    expect(JSON.parse(after.stdout).chains).to.have.length(2)
  })

  it('verifies, tails and exports a SQLite trail', async () => {
    await write(createSqliteAuditSink({ database: join(dir, 'audit.db') }), 12)
    const v = run(['audit', 'verify', '--sqlite', 'audit.db', '--json'])
    expect(v.code, v.stderr).to.equal(0)
    expect(JSON.parse(v.stdout)).to.include({ ok: true, events: 14 })
    const tail = run(['audit', 'tail', '--sqlite', 'audit.db', '-n', '3'])
    expect(tail.stdout.trim().split('\n')).to.have.length(3)
    expect(tail.stdout).to.include('audit.checkpoint')
    const exported = run(['audit', 'export', '--sqlite', 'audit.db', '--type', 'key.revoked'])
    const events = exported.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l))
    expect(events).to.have.length(6)
    expect(events.every((e) => e.type === 'key.revoked')).to.equal(true)
    expect(run(['audit', 'verify', 'audit.db', '--sqlite', 'audit.db']).code).to.equal(2)
  })

  it('reports covered controls and gaps', () => {
    const weak = run(['audit', 'report', '--profile', 'soc2,gdpr', '--level', 'minimal', '--json'])
    expect(weak.code, weak.stderr).to.equal(0)
    const report = JSON.parse(weak.stdout)
    expect(report.profiles).to.deep.equal(['SOC2', 'GDPR'])
    expect(report.gaps.join('\n')).to.match(/no tamper evidence/)
    writeFileSync(
      join(dir, 'gate.yaml'),
      [
        'failClosedOnAuditBackpressure: true',
        'audit:',
        '  level: standard',
        '  compliance: [ISO27001]',
        '  retentionDays: 400',
        '  integrity: { key: from-env }',
        '  spool: { dir: data/spool }',
        '  sinks: [file]',
      ].join('\n'),
    )
    const good = run(['audit', 'report', '--config', 'gate.yaml'])
    expect(good.code, good.stderr).to.equal(0)
    expect(good.stdout).to.match(/ISO27001\s+A\.8\.15\s+covered/)
    expect(good.stdout).to.include('no gaps')
  })
})
