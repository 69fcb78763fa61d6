// The audit-sink conformance suite on core's sinks: memory, logger (pino), JSON-lines file and
// webhook (against a real local HTTP collector).
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import pino from 'pino'
import {
  createJsonLinesFileSink,
  createLoggerAuditSink,
  createWebhookAuditSink,
  listAuditFiles,
  readJsonLinesAuditEvents,
  type AuditEvent,
} from '@portcullis/core'
import { createMemoryAuditSink } from '@portcullis/core/testing'
import { AuditCollector } from '../../helpers/audit-collector.js'
import { describeAuditSinkConformance } from '../../helpers/audit-sink-conformance.js'

describeAuditSinkConformance('memory sink', {
  dedupe: 'event',
  open: async () => {
    const sink = createMemoryAuditSink()
    return { sink, delivered: async () => [...sink.events] }
  },
})

describeAuditSinkConformance('logger sink (pino)', {
  // For development: a retried batch is logged again.
  dedupe: 'none',
  open: async () => {
    const lines: string[] = []
    const stream = new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(...chunk.toString().split('\n').filter(Boolean))
        done()
      },
    })
    const sink = createLoggerAuditSink({ logger: pino(stream) })
    return {
      sink,
      delivered: async () => lines.map((l) => (JSON.parse(l) as { audit: AuditEvent }).audit),
    }
  },
})

describeAuditSinkConformance('JSON-lines file sink', {
  dedupe: 'event',
  open: async () => {
    const dir = await mkdtemp(join(tmpdir(), 'portcullis-sink-conformance-'))
    const path = join(dir, 'audit.jsonl')
    const sink = createJsonLinesFileSink({ path })
    return {
      sink,
      delivered: async () => {
        const events: AuditEvent[] = []
        for await (const e of readJsonLinesAuditEvents(await listAuditFiles(path))) events.push(e)
        return events
      },
      cleanup: async () => {
        await sink.close?.()
        await rm(dir, { recursive: true, force: true })
      },
    }
  },
})

describeAuditSinkConformance('webhook sink', {
  // The sink sends a batch retried whole under the same Idempotency-Key; the collector keeps one.
  dedupe: 'batch',
  open: async () => {
    const collector = new AuditCollector('idempotency-key')
    await collector.start()
    // The first POST of each test fails with a 503: the sink's own retry delivers it once.
    collector.failures = [503]
    const sink = createWebhookAuditSink({ url: collector.url, baseDelayMs: 5, attempts: 3 })
    return {
      sink,
      delivered: async () => [...collector.events],
      cleanup: () => collector.stop(),
    }
  },
})
