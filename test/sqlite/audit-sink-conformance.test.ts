// The audit-sink conformance suite on the SQLite sink (a database file of its own per test).
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createSqliteAuditSink, readSqliteAuditEvents } from '@portcullis/sqlite'
import { describeAuditSinkConformance } from '../helpers/audit-sink-conformance.js'

describeAuditSinkConformance('sqlite sink', {
  dedupe: 'event',
  open: async () => {
    const dir = await mkdtemp(join(tmpdir(), 'portcullis-sqlite-conformance-'))
    const file = join(dir, 'audit.db')
    const sink = createSqliteAuditSink({ database: file })
    return {
      sink,
      delivered: async () => readSqliteAuditEvents(file),
      cleanup: async () => {
        await sink.close()
        await rm(dir, { recursive: true, force: true })
      },
    }
  },
})
