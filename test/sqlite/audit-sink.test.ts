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
import { useTempDir } from '../helpers/temp-dir.js'

const KEY = 'sqlite-chain-key-0123456789abcdef0123'

describe('createSqliteAuditSink', () => {
  let dir: string
  useTempDir('portcullis-sqlite-audit-', (d) => (dir = d))

  // Delivery, order, dedupe by event id and the chain: the audit-sink conformance suite
  // (test/sqlite/audit-sink-conformance.test.ts).
  it('refuses UPDATE and DELETE on the events table (append-only)', async () => {
    const file = join(dir, 'audit.db')
    const sink = createSqliteAuditSink({ database: file })
    const trail = createAuditTrail({ sinks: [sink], flushIntervalMs: 0 })
    trail.emit({ type: 'key.created', outcome: 'success', actor: { id: 'admin' }, action: 'k0' })
    await trail.close()
    const db = new Database(file)
    try {
      expect(() => db.prepare("UPDATE portcullis_audit_events SET body = '{}'").run()).to.throw(
        /append-only/,
      )
      expect(() => db.prepare('DELETE FROM portcullis_audit_events').run()).to.throw(/append-only/)
      expect(readSqliteAuditEvents(file).map((e) => e.action)).to.deep.equal(['k0'])
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
