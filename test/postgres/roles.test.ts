import { expect } from 'chai'
import pg from 'pg'
import { randomUUID } from 'node:crypto'
import {
  createPostgresAuditSink,
  createPostgresKeyStore,
  migratePostgres,
  readPostgresAuditEvents,
} from '@portcullis/postgres'
import { buildKeyRecord } from '../helpers/key-store-conformance.js'
import { describeWithPostgres } from '../helpers/postgres-server.js'

// The two-role set-up docs/operations.md recommends: the owner migrates, the application role
// only reads and writes rows and runs with `migrate: false`.
describeWithPostgres(
  '@portcullis/postgres with an owner role and a row-only application role',
  function (postgres) {
    this.timeout(30_000)

    it('works with exactly the grants the operations guide lists', async function () {
      const admin = new pg.Client({ connectionString: postgres().url })
      await admin.connect()
      try {
        await admin.query('CREATE ROLE portcullis_owner LOGIN')
        await admin.query('CREATE ROLE portcullis_app LOGIN')
        await admin.query('CREATE DATABASE portcullis OWNER portcullis_owner')
      } finally {
        await admin.end()
      }
      const server = postgres()
      const ownerUrl = server.urlFor('portcullis').replace('postgres@', 'portcullis_owner@')
      const appUrl = server.urlFor('portcullis').replace('postgres@', 'portcullis_app@')

      await migratePostgres({ connectionString: ownerUrl })
      const ownerSink = createPostgresAuditSink({ connectionString: ownerUrl })
      await ownerSink.ready()
      await ownerSink.close()
      const owner = new pg.Client({ connectionString: ownerUrl })
      await owner.connect()
      try {
        for (const sql of [
          'GRANT USAGE ON SCHEMA public TO portcullis_app',
          'GRANT SELECT, INSERT, UPDATE, DELETE ON portcullis_api_keys TO portcullis_app',
          'GRANT SELECT ON portcullis_migrations, portcullis_audit_events_migrations TO portcullis_app',
          'GRANT SELECT, INSERT ON portcullis_audit_events TO portcullis_app',
          'GRANT USAGE ON SEQUENCE portcullis_audit_events_seq_seq TO portcullis_app',
        ])
          await owner.query(sql)
      } finally {
        await owner.end()
      }

      const store = createPostgresKeyStore({ connectionString: appUrl, migrate: false })
      const sink = createPostgresAuditSink({ connectionString: appUrl, migrate: false })
      try {
        const record = buildKeyRecord()
        await store.insert(record)
        await store.update(record.id, { name: 'rotated' })
        await store.recordUsage([{ id: record.id, lastUsedAt: 1, count: 1 }])
        expect(await store.findByHash(record.hashes[0]?.hash as never)).to.include({
          name: 'rotated',
        })
        expect((await store.list()).items).to.have.length(1)
        expect(await store.delete(record.id)).to.equal(true)
        const id = randomUUID()
        const e = {
          id,
          time: new Date().toISOString(),
          type: 'custom' as const,
          outcome: 'success' as const,
          actor: { id: null },
          action: 'x',
        }
        await sink.write([e])
        await sink.write([e])
        expect(await readPostgresAuditEvents({ connectionString: appUrl })).to.deep.equal([e])
        // The app role cannot create tables: migrating as it fails (and is reported as unavailable).
        const error = await migratePostgres({
          connectionString: appUrl,
          tablePrefix: 'other_',
        }).then(
          () => undefined,
          (err: Error & { code?: string }) => err,
        )
        expect(error?.code).to.equal('ERR_KEYSTORE_UNAVAILABLE')
      } finally {
        await store.close()
        await sink.close()
      }
    })
  },
)
