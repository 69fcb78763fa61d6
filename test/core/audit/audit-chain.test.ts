import { generateKeyPairSync } from 'node:crypto'
import { expect } from 'chai'
import {
  createAuditTrail,
  verifyAuditChain,
  type AuditCheckpoint,
  type AuditEvent,
} from '@portcullis/core'
import { createMemoryAuditSink } from '@portcullis/core/testing'

const KEY = 'chain-key-0123456789abcdef0123456789'

async function chained(
  n: number,
  integrity: Record<string, unknown> = {},
): Promise<{ events: AuditEvent[]; checkpoints: AuditCheckpoint[] }> {
  const sink = createMemoryAuditSink()
  const checkpoints: AuditCheckpoint[] = []
  const trail = createAuditTrail({
    sinks: [sink],
    flushIntervalMs: 0,
    integrity: {
      key: KEY,
      checkpointEvery: 4,
      onCheckpoint: (c) => checkpoints.push(c),
      ...integrity,
    },
  })
  for (let i = 0; i < n; i++)
    trail.emit({
      type: 'authz.deny',
      outcome: 'failure',
      actor: { id: `user-${i}` },
      action: `GET /docs/${i}`,
      reason: { code: 'ERR_POLICY_DENIED' },
    })
  await trail.close()
  // A deep copy: tests tamper with it.
  return { events: JSON.parse(JSON.stringify(sink.events)) as AuditEvent[], checkpoints }
}

describe('audit hash chain', () => {
  it('links every event and verifies, checkpoints included', async () => {
    const { events, checkpoints } = await chained(10)
    // 10 events, a checkpoint after every 4 links, and a final one on close.
    expect(events.filter((e) => e.type === 'audit.checkpoint')).to.have.length(3)
    expect(events.map((e) => e.chain?.seq)).to.deep.equal(
      Array.from({ length: 13 }, (_, i) => i + 1),
    )
    const result = verifyAuditChain(events, { keys: KEY, anchors: checkpoints })
    expect(result).to.include({ ok: true, events: 13, checkpoints: 3 })
  })

  it('detects an edited event and names it', async () => {
    const { events } = await chained(8)
    const victim = events[5] as { action: string }
    victim.action = 'GET /docs/innocent'
    const result = verifyAuditChain(events, { keys: KEY })
    expect(result.ok).to.equal(false)
    expect(result.firstBroken).to.include({ index: 5, eventId: events[5]?.id, seq: 6 })
    expect(result.firstBroken?.reason).to.match(/mac mismatch/)
  })

  it('detects a deleted event', async () => {
    const { events } = await chained(8)
    events.splice(3, 1)
    const result = verifyAuditChain(events, { keys: KEY })
    expect(result.firstBroken).to.include({ index: 3, seq: 5 })
    expect(result.firstBroken?.reason).to.match(/seq gap: expected 4, found 5/)
  })

  it('detects an inserted event, forged or copied', async () => {
    const { events } = await chained(8)
    const forged = { ...events[2], id: 'forged', action: 'GET /nothing' } as AuditEvent
    expect(
      verifyAuditChain([...events.slice(0, 3), forged, ...events.slice(3)], { keys: KEY })
        .firstBroken,
    ).to.include({ index: 3, eventId: 'forged' })
    const copy = events[1] as AuditEvent
    const dup = verifyAuditChain([...events.slice(0, 4), copy, ...events.slice(4)], { keys: KEY })
    expect(dup.firstBroken).to.include({ index: 4, seq: 2 })
    expect(dup.firstBroken?.reason).to.match(/inserted, duplicated or reordered/)
    const unchained = { ...events[2] } as Record<string, unknown>
    delete unchained.chain
    expect(
      verifyAuditChain([...events.slice(0, 2), unchained as unknown as AuditEvent], { keys: KEY })
        .firstBroken?.reason,
    ).to.match(/no chain link/)
  })

  it('detects reordered events', async () => {
    const { events } = await chained(8)
    const swapped = [...events]
    ;[swapped[2], swapped[3]] = [swapped[3] as AuditEvent, swapped[2] as AuditEvent]
    const result = verifyAuditChain(swapped, { keys: KEY })
    expect(result.firstBroken).to.include({ index: 2, seq: 4 })
  })

  it('detects truncation against a published checkpoint', async () => {
    const { events, checkpoints } = await chained(10)
    const truncated = events.slice(0, 7)
    // On its own a prefix of a chain looks fine ...
    expect(verifyAuditChain(truncated, { keys: KEY }).ok).to.equal(true)
    // ... but not next to the checkpoints published while it was written.
    const result = verifyAuditChain(truncated, { keys: KEY, anchors: checkpoints })
    expect(result.ok).to.equal(false)
    expect(result.firstBroken?.reason).to.match(/truncated: chain ends at seq 7/)
    // Cutting the beginning is detected without anchors.
    expect(verifyAuditChain(events.slice(3), { keys: KEY }).firstBroken?.reason).to.match(
      /chain starts at seq 4/,
    )
    expect(verifyAuditChain(events.slice(5), { keys: KEY, partial: true }).ok).to.equal(true)
  })

  it('refuses a wrong key, an unknown key id and a forged checkpoint', async () => {
    const { events } = await chained(5)
    expect(verifyAuditChain(events, { keys: 'another-key-0123456789abcdef' }).ok).to.equal(false)
    expect(verifyAuditChain(events, { keys: { k2: KEY } }).firstBroken?.reason).to.match(
      /unknown chain key id "k1"/,
    )
    expect(verifyAuditChain(events, { keys: { k1: KEY } }).ok).to.equal(true)
    const cpIndex = events.findIndex((e) => e.type === 'audit.checkpoint')
    const cp = events[cpIndex] as unknown as { data: { signature: string } }
    cp.data.signature = cp.data.signature.replace(/^./, (c) => (c === 'A' ? 'B' : 'A'))
    // The mac covers the data, so the forged signature shows first as an altered event.
    expect(verifyAuditChain(events, { keys: KEY }).firstBroken?.index).to.equal(cpIndex)
  })

  it('signs checkpoints with Ed25519 when given a signing key', async () => {
    const { privateKey, publicKey } = generateKeyPairSync('ed25519')
    const { events, checkpoints } = await chained(6, { signingKey: privateKey })
    expect(checkpoints[0]?.alg).to.equal('Ed25519')
    expect(verifyAuditChain(events, { keys: KEY, checkpointPublicKey: publicKey })).to.include({
      ok: true,
      checkpoints: 2,
    })
    expect(verifyAuditChain(events, { keys: KEY }).firstBroken?.reason).to.match(
      /no checkpoint public key/,
    )
    const other = generateKeyPairSync('ed25519').publicKey
    expect(
      verifyAuditChain(events, { keys: KEY, checkpointPublicKey: other }).firstBroken?.reason,
    ).to.match(/checkpoint signature invalid/)
  })

  it('keeps one chain per sink and verifies interleaved chains', async () => {
    const a = await chained(3)
    const b = await chained(3)
    const mixed = a.events.flatMap((e, i) => [e, b.events[i] as AuditEvent])
    const result = verifyAuditChain(mixed, { keys: KEY })
    expect(result.ok).to.equal(true)
    expect(result.chains).to.have.length(2)
  })

  it('also checkpoints by time while events flow', async () => {
    let now = 0
    const sink = createMemoryAuditSink()
    const trail = createAuditTrail({
      sinks: [sink],
      flushIntervalMs: 0,
      now: () => now,
      integrity: { key: KEY, checkpointIntervalMs: 1_000 },
    })
    for (let i = 0; i < 3; i++) {
      trail.emit({ type: 'key.created', outcome: 'success', actor: { id: 'x' }, action: `k${i}` })
      await trail.flush()
      now += 600
    }
    // k0 at 0, k1 at 600, k2 at 1200: the interval has passed when k2 is linked.
    expect(sink.events.map((e) => e.action)).to.deep.equal(['k0', 'k1', 'k2', 'audit.checkpoint'])
    await trail.close()
    expect(verifyAuditChain(sink.events, { keys: KEY }).ok).to.equal(true)
  })

  it('refuses a weak chain key', () => {
    expect(() => createAuditTrail({ integrity: { key: 'short' } })).to.throw(/audit.integrity.key/)
  })
})
