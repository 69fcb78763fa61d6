import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect } from 'chai'
import Database from 'better-sqlite3'
import {
  createAuditTrail,
  createPseudonymizer,
  verifyAuditChain,
  type AuditEvent,
} from '@portcullis/core'
import { createSqliteAuditSink, readSqliteAuditEvents } from '@portcullis/sqlite'

const KEY = 'sqlite-chain-key-0123456789abcdef0123'

describe('createSqliteAuditSink', () => {
  let dir: string
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'portcullis-sqlite-audit-'))
  })
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  it('stores a chained trail once per event id, append-only, readable back in order', async () => {
    const file = join(dir, 'audit.db')
    const sink = createSqliteAuditSink({ database: file })
    const trail = createAuditTrail({ sinks: [sink], integrity: { key: KEY }, flushIntervalMs: 0 })
    for (let i = 0; i < 50; i++)
      trail.emit({
        type: 'key.created',
        outcome: 'success',
        actor: { id: 'admin' },
        action: `k${i}`,
      })
    await trail.flush()
    const stored = sink.read()
    // A replayed batch (same ids) adds nothing.
    await sink.write(stored.slice(10, 20))
    await trail.close()
    const events = readSqliteAuditEvents(file)
    expect(events.filter((e) => e.type !== 'audit.checkpoint').map((e) => e.action)).to.deep.equal(
      Array.from({ length: 50 }, (_, i) => `k${i}`),
    )
    expect(verifyAuditChain(events, { keys: KEY }).ok).to.equal(true)
    const db = new Database(file)
    try {
      expect(() => db.prepare("UPDATE portcullis_audit_events SET body = '{}'").run()).to.throw(
        /append-only/,
      )
      expect(() => db.prepare('DELETE FROM portcullis_audit_events').run()).to.throw(/append-only/)
    } finally {
      db.close()
    }
  })

  it('keeps the pseudonym table beside the trail, and erasure leaves the chain verifiable', async () => {
    const db = new Database(':memory:')
    const sink = createSqliteAuditSink({ database: db, tablePrefix: 'app_' })
    const pseudonyms = createPseudonymizer({
      key: 'pseudonym-key-0123456789abcdef',
      store: sink.pseudonymStore(),
    })
    const trail = createAuditTrail({
      sinks: [sink],
      integrity: { key: KEY },
      compliance: ['GDPR'],
      pseudonyms,
      flushIntervalMs: 0,
    })
    trail.emit({ type: 'authz.deny', outcome: 'failure', actor: { id: 'erin' }, action: 'GET /x' })
    await trail.close()
    const [event] = readSqliteAuditEvents(db, { tablePrefix: 'app_' }) as [AuditEvent]
    expect(pseudonyms.resolve(event.actor.id as string)).to.equal('erin')
    expect(pseudonyms.erase('erin')).to.equal(true)
    expect(pseudonyms.resolve(event.actor.id as string)).to.equal(undefined)
    expect(JSON.stringify(readSqliteAuditEvents(db, { tablePrefix: 'app_' }))).to.not.include(
      'erin',
    )
    expect(
      verifyAuditChain(readSqliteAuditEvents(db, { tablePrefix: 'app_' }), { keys: KEY }).ok,
    ).to.equal(true)
    db.close()
  })

  it('refuses a bad table prefix', () => {
    expect(() => createSqliteAuditSink({ database: ':memory:', tablePrefix: 'x; DROP' })).to.throw(
      /sqliteAudit.tablePrefix/,
    )
  })
})
