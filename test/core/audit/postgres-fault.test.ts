// The fault test against a real PostgreSQL (test/helpers/postgres-server.ts) and the real
// PostgreSQL sink: the server is stopped under load, then started again; every event must arrive
// exactly once (by id), in order per instance, with each chain verifying; the CLI verifies the
// table too.
import { spawnSync } from 'node:child_process'
import { join, resolve } from 'node:path'
import { expect } from 'chai'
import {
  createAuditTrail,
  verifyAuditChain,
  type AuditEventInput,
  type AuditTrail,
} from '@portcullis/core'
import { createPostgresAuditSink, readPostgresAuditEvents } from '@portcullis/postgres'
import { describeWithPostgres } from '../../helpers/postgres-server.js'
import { useTempDir } from '../../helpers/temp-dir.js'

const KEY = 'pg-fault-chain-key-0123456789abcdef'
// PostgreSQL stays down for 30 s under load (the length the audit issue asks for: longer than every
// backoff step and the write timeout). PORTCULLIS_AUDIT_OUTAGE_MS shortens it for local iteration.
const OUTAGE_MS = Number(process.env.PORTCULLIS_AUDIT_OUTAGE_MS ?? 30_000)

const ev = (who: string, i: number): AuditEventInput => ({
  type: i % 3 === 0 ? 'authn.failure' : 'authz.allow',
  outcome: i % 3 === 0 ? 'failure' : 'success',
  actor: { id: `${who}-${i}` },
  action: `GET /${who}/${i}`,
})

describeWithPostgres('audit on PostgreSQL: outage under load', function (postgres) {
  this.timeout(OUTAGE_MS + 90_000)
  let dir: string
  useTempDir('portcullis-pg-fault-', (d) => (dir = d))

  it('delivers every event once, in order per instance, chains intact, after the database returns', async () => {
    const url = await postgres().createDatabase()
    let sinkFailures = 0
    const instances = ['a', 'b'].map((who) => ({
      who,
      sent: 0,
      errors: 0,
      trail: createAuditTrail({
        sinks: [createPostgresAuditSink({ connectionString: url })],
        spool: { dir: join(dir, who) },
        integrity: { key: KEY, checkpointEvery: 500 },
        flushIntervalMs: 5,
        batchSize: 200,
        writeTimeoutMs: 2_000,
        logger: {
          warn() {},
          error(_fields, message) {
            if (message.startsWith('audit sink write failed')) sinkFailures++
          },
        },
      }) as AuditTrail,
    }))
    let running = true
    const load = instances.map(async (inst) => {
      while (running) {
        for (let n = 0; n < 20; n++) {
          if (!inst.trail.emit(ev(inst.who, inst.sent))) inst.errors++
          inst.sent++
        }
        await new Promise((r) => setTimeout(r, 5))
      }
    })
    await new Promise((r) => setTimeout(r, 1_000))
    await postgres().pause()
    await new Promise((r) => setTimeout(r, OUTAGE_MS))
    await postgres().resume()
    await new Promise((r) => setTimeout(r, 1_000))
    running = false
    await Promise.all(load)
    for (const inst of instances) await inst.trail.close(60_000)

    // The outage was felt: writes failed and went to the spool.
    expect(sinkFailures).to.be.greaterThan(1)
    const events = await readPostgresAuditEvents({ connectionString: url })
    const ids = events.map((e) => e.id)
    expect(new Set(ids).size, 'duplicates').to.equal(ids.length)
    for (const inst of instances) {
      expect(inst.errors, `${inst.who} backpressure`).to.equal(0)
      expect(inst.sent).to.be.greaterThan(1000)
      const mine = events.filter(
        (e) => e.type !== 'audit.checkpoint' && e.actor.id?.startsWith(`${inst.who}-`),
      )
      expect(
        mine.map((e) => e.action),
        inst.who,
      ).to.deep.equal(Array.from({ length: inst.sent }, (_, i) => `GET /${inst.who}/${i}`))
    }
    const result = verifyAuditChain(events, { keys: KEY })
    expect(result.ok, JSON.stringify(result.firstBroken)).to.equal(true)
    expect(result.chains).to.have.length(2)

    const cli = spawnSync(
      process.execPath,
      [resolve('packages/cli/dist/bin.js'), 'audit', 'verify', '--postgres', url],
      { encoding: 'utf8', env: { ...process.env, PORTCULLIS_AUDIT_KEY: KEY } },
    )
    expect(cli.status, cli.stderr).to.equal(0)
    expect(cli.stdout).to.match(/^ok: \d+ events in 2 chain\(s\)/)
  })
})
