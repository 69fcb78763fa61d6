// The audit-sink conformance suite on the PostgreSQL sink, against a real server (a table of its
// own per test); what was delivered is read back in `seq` order.
import pg from 'pg'
import { createPostgresAuditSink, readPostgresAuditEvents } from '@portcullis/postgres'
import { describeAuditSinkConformance } from '../helpers/audit-sink-conformance.js'
import { describeWithPostgres } from '../helpers/postgres-server.js'

describeWithPostgres('PostgreSQL audit sink', function (postgres) {
  let pool: pg.Pool
  let tables = 0
  before(async () => {
    pool = new pg.Pool({ connectionString: await postgres().createDatabase(), max: 5 })
  })
  after(async () => {
    await pool?.end()
  })

  describeAuditSinkConformance('postgres sink', {
    dedupe: 'event',
    open: async () => {
      const table = `conformance_${++tables}`
      const sink = createPostgresAuditSink({ pool, table })
      return {
        sink,
        delivered: () => readPostgresAuditEvents({ pool, table }),
        cleanup: () => sink.close(),
      }
    },
  })
})
