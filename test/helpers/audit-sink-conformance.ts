// The audit-sink conformance suite (issue 19): the same delivery, ordering and dedupe scenarios for
// every audit sink (memory, logger, JSON-lines file, webhook, Redis stream, PostgreSQL, SQLite),
// each reading back what the sink delivered from where it delivered it (the file, the table, the
// stream, the collector). What only one sink does (rotation, trimming, append-only triggers,
// outages of its store) stays in its own test file.
import { randomUUID } from 'node:crypto'
import { expect } from 'chai'
import {
  canonicalize,
  createAuditTrail,
  verifyAuditChain,
  type AuditEvent,
  type AuditEventInput,
  type AuditSink,
  type AuditOptions,
} from '@portcullis/core'

/** One sink opened for one test, with a way to read back what it delivered. */
export interface OpenedAuditSink {
  readonly sink: AuditSink
  /** What reached the destination, in its order there (readable after `close()` too). */
  delivered(): Promise<AuditEvent[]>
  /** Releases what {@link AuditSinkFixture.open} made besides the sink. */
  cleanup?(): Promise<void>
}

/** One sink under test. */
export interface AuditSinkFixture {
  /** A fresh sink (its own file, table, stream or collector). Called inside the tests. */
  open(): Promise<OpenedAuditSink>
  /**
   * What keeps a retried write from delivering an event twice: `event`, the sink itself by event
   * id or sequence (a batch retried whole, or grown); `batch`, a batch retried whole carries the
   * same idempotency key, which the receiver honours (the webhook); `none`, nothing (the logger,
   * for development: a retried batch is logged again). `none` leaves out the dedupe scenarios.
   */
  readonly dedupe: 'event' | 'batch' | 'none'
}

export const AUDIT_CONFORMANCE_CHAIN_KEY = 'conformance-chain-key-0123456789abcdef'

/** Event `i` of actor `who`, with an id of its own. */
export const auditInput = (i: number, who = 'a'): AuditEventInput => ({
  id: randomUUID(),
  type: 'authz.deny',
  outcome: 'failure',
  actor: { id: `${who}-${i}`, method: 'apikey' },
  action: `GET /${who}/${i}`,
})

/** Events as a sink receives them from the trail (id and time set). */
const written = (from: number, to: number): AuditEvent[] =>
  Array.from(
    { length: to - from },
    (_, k) =>
      ({
        ...auditInput(from + k),
        time: new Date(Date.UTC(2026, 0, 1, 0, 0, from + k)).toISOString(),
      }) as AuditEvent,
  )

/** The trail's own account of itself (checkpoints, sink health, drops): `audit.*` events. */
export const isTrailEvent = (e: AuditEvent): boolean => e.type.startsWith('audit.')

/** The events handed to the trail, without its own `audit.*` events; fails on a repeated id. */
function own(events: readonly AuditEvent[]): AuditEvent[] {
  const ids = events.map((e) => e.id)
  expect(new Set(ids).size, 'an event delivered twice').to.equal(ids.length)
  return events.filter((e) => !isTrailEvent(e))
}

const trailOptions = (sink: AuditSink, extra: Partial<AuditOptions> = {}): AuditOptions =>
  ({ sinks: [sink], flushIntervalMs: 0, ...extra }) as AuditOptions

/**
 * A sink that hands each batch on, and the first `losses` times then fails as if the
 * acknowledgement had been lost (the batch landed; the trail must retry it).
 */
function losingAcks(inner: AuditSink, losses: number): AuditSink & { readonly lost: number } {
  let lost = 0
  return {
    name: inner.name,
    get lost() {
      return lost
    },
    async write(events) {
      await inner.write(events)
      if (lost < losses) {
        lost++
        throw Object.assign(new Error('ECONNRESET: acknowledgement lost'), { retryAfterMs: 0 })
      }
    },
    close: () => inner.close?.() ?? Promise.resolve(),
  }
}

/** A sink that keeps (a structured copy of) every batch the trail hands on. */
function recording(inner: AuditSink): AuditSink & { readonly handed: AuditEvent[] } {
  const handed: AuditEvent[] = []
  return {
    name: inner.name,
    handed,
    async write(events) {
      handed.push(...events.map((e) => structuredClone(e)))
      await inner.write(events)
    },
    close: () => inner.close?.() ?? Promise.resolve(),
  }
}

/** Runs the audit-sink conformance scenarios against `fixture` (call it where its hooks run). */
export function describeAuditSinkConformance(title: string, fixture: AuditSinkFixture): void {
  describe(`${title}: audit-sink conformance`, function () {
    this.timeout(30_000)
    let opened: OpenedAuditSink | undefined
    const open = async (): Promise<OpenedAuditSink> => {
      opened = await fixture.open()
      return opened
    }
    /** A trail on a fresh sink with 12 events queued, which no timer writes: only flush or close. */
    const queued = async () => {
      const { sink, delivered } = await open()
      const trail = createAuditTrail(
        trailOptions(sink, { flushIntervalMs: 60_000, batchSize: 1000 }),
      )
      const inputs = Array.from({ length: 12 }, (_, i) => auditInput(i))
      for (const e of inputs) trail.emit(e)
      return { trail, inputs, delivered }
    }
    afterEach(async () => {
      await opened?.cleanup?.()
      opened = undefined
    })

    it('delivers every event exactly once, in emit order, across several batches', async () => {
      const { sink, delivered } = await open()
      const trail = createAuditTrail(trailOptions(sink, { batchSize: 7 }))
      const inputs = Array.from({ length: 30 }, (_, i) => auditInput(i))
      for (const e of inputs) trail.emit(e)
      await trail.close()
      expect(own(await delivered()).map((e) => e.id)).to.deep.equal(inputs.map((e) => e.id))
    })

    it('keeps the order of batches written one after another', async () => {
      const { sink, delivered } = await open()
      const batches = [written(0, 3), written(3, 4), written(4, 9)]
      for (const b of batches) await sink.write(b)
      await sink.close?.()
      expect((await delivered()).map((e) => e.id)).to.deep.equal(batches.flat().map((e) => e.id))
    })

    it('flush() resolves once everything emitted before it is delivered', async () => {
      const { trail, inputs, delivered } = await queued()
      await trail.flush()
      expect(own(await delivered()).map((e) => e.id)).to.deep.equal(inputs.map((e) => e.id))
      await trail.close()
    })

    it('close() drains what is still queued before it closes the sink', async () => {
      const { trail, inputs, delivered } = await queued()
      const report = await trail.close()
      expect(report).to.include({ complete: true })
      expect(own(await delivered()).map((e) => e.id)).to.deep.equal(inputs.map((e) => e.id))
    })

    it('delivers every field byte-identical (RFC 8785 text), hash-chain fields included, and the chain verifies', async () => {
      const { sink, delivered } = await open()
      const rec = recording(sink)
      const trail = createAuditTrail(
        trailOptions(rec, { integrity: { key: AUDIT_CONFORMANCE_CHAIN_KEY } }),
      )
      trail.emit({
        ...auditInput(1),
        target: { type: 'document', id: 'd-1' },
        reason: { code: 'ERR_POLICY_DENIED', detail: 'no rule: "quoted", back\\slash' },
        request: {
          id: 'req-1',
          method: 'GET',
          path: '/docs/é/😀',
          ip: '192.0.2.1',
          userAgent: 'agent\twith\ttabs',
        },
        tags: ['SOC2:CC7.2', 'ünïcode'],
        data: { z: 1, a: { y: [3, 1.5, -0.25], b: 'line\nbreak\u2028sep' }, n: null, t: true },
      })
      trail.emit({ ...auditInput(2), type: 'key.created', outcome: 'success' })
      await trail.close()
      const got = await delivered()
      expect(got.map((e) => canonicalize(e))).to.deep.equal(rec.handed.map((e) => canonicalize(e)))
      expect(got).to.deep.equal(rec.handed)
      expect(got.every((e) => e.chain !== undefined)).to.equal(true)
      expect(verifyAuditChain(got, { keys: AUDIT_CONFORMANCE_CHAIN_KEY }).ok).to.equal(true)
    })

    if (fixture.dedupe !== 'none') {
      it('adds nothing when a batch already delivered is written again (a lost acknowledgement)', async () => {
        const { sink, delivered } = await open()
        const [batch, more] = [written(0, 4), written(4, 6)]
        await sink.write(batch)
        await sink.write(batch)
        await sink.write(more)
        await sink.close?.()
        expect((await delivered()).map((e) => e.id)).to.deep.equal(
          [...batch, ...more].map((e) => e.id),
        )
      })

      it('the trail retries a batch whose acknowledgement was lost: every event once, in order', async () => {
        const { sink, delivered } = await open()
        const lossy = losingAcks(sink, 2)
        const trail = createAuditTrail(trailOptions(lossy, { batchSize: 5 }))
        const inputs = Array.from({ length: 12 }, (_, i) => auditInput(i))
        for (const e of inputs) trail.emit(e)
        await trail.close()
        expect(lossy.lost).to.equal(2)
        expect(own(await delivered()).map((e) => e.id)).to.deep.equal(inputs.map((e) => e.id))
      })
    }

    if (fixture.dedupe === 'event') {
      it('adds only the new events of a retried batch that grew, and skips repeats within a batch', async () => {
        const { sink, delivered } = await open()
        const [a, b, c, d] = written(0, 4) as [AuditEvent, AuditEvent, AuditEvent, AuditEvent]
        await sink.write([a, b])
        await sink.write([a, b, c, d])
        await sink.write([c, d])
        await sink.close?.()
        expect((await delivered()).map((e) => e.id)).to.deep.equal([a, b, c, d].map((e) => e.id))
      })
    }
  })
}
