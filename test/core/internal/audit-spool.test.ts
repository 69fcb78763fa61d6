// The audit spool (internal) with ENOSPC / EIO injected in the middle of an append: the spool file
// is left as it was, nothing is acknowledged, and the next append and the replay see every event
// once, in order. test/core/audit/full-disk.test.ts proves the same on a real full tmpfs.
import { readFileSync } from 'node:fs'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { expect } from 'chai'
import type { AuditEvent } from '@portcullis/core'
import { AuditSpool } from '../../../packages/core/src/audit/audit-spool.js'
import { faultyOpen, noFaults, type Errno } from '../audit/faulty-fs.js'
import { useTempDir } from '../../helpers/temp-dir.js'

const event = (i: number): AuditEvent =>
  ({
    id: `id-${i}`,
    time: '2026-01-01T00:00:00.000Z',
    type: 'authz.deny',
    outcome: 'failure',
    actor: { id: `user-${i}` },
    action: `GET /item/${i}`,
  }) as AuditEvent

const range = (from: number, to: number): AuditEvent[] =>
  Array.from({ length: to - from }, (_, i) => event(from + i))

describe('AuditSpool (internal) with injected write failures', () => {
  let dir: string
  useTempDir('portcullis-spool-faults-', (d) => (dir = d))

  for (const code of ['ENOSPC', 'EIO'] as Errno[]) {
    it(`cuts an append that failed halfway with ${code} back off the spool`, async () => {
      const faults = noFaults()
      const spool = new AuditSpool(dir, 'main', 1 << 20, true, faultyOpen(faults))
      await spool.open()
      await spool.append(range(0, 5))
      const before = readFileSync(spool.file, 'utf8')
      const pending = spool.pendingBytes
      faults.write = code
      for (let attempt = 0; attempt < 3; attempt++) {
        const error = await spool.append(range(5, 30)).then(
          () => undefined,
          (e: unknown) => e as NodeJS.ErrnoException,
        )
        expect(error?.code).to.equal(code)
        expect(readFileSync(spool.file, 'utf8')).to.equal(before)
        expect(spool.pendingBytes).to.equal(pending)
      }
      expect(faults.partialBytes).to.be.greaterThan(0)
      faults.write = undefined
      await spool.append(range(5, 30))
      const { events, next } = await spool.read(100)
      expect(events.map((e) => e.id)).to.deep.equal(range(0, 30).map((e) => e.id))
      await spool.commit(next)
      expect(spool.pendingBytes).to.equal(0)
      await spool.close()
    })
  }

  it('cuts back an append whose sync failed, and repairs one it could not cut back before the next', async () => {
    const faults = noFaults()
    const spool = new AuditSpool(dir, 'main', 1 << 20, true, faultyOpen(faults))
    await spool.open()
    await spool.append(range(0, 3))
    const before = readFileSync(spool.file, 'utf8')
    faults.sync = 'EIO'
    await spool.append(range(3, 6)).catch(() => undefined)
    expect(readFileSync(spool.file, 'utf8')).to.equal(before)
    faults.sync = undefined
    await spool.append(range(3, 6))
    const whole = readFileSync(spool.file, 'utf8')
    faults.write = 'EIO'
    faults.truncateFailures = 1
    const error = await spool.append(range(6, 9)).then(
      () => undefined,
      (e: unknown) => e as Error,
    )
    expect(String(error)).to.match(/cutting the file back to \d+ bytes failed too/)
    // The partial append is still there, beyond what the spool counts...
    expect(readFileSync(spool.file, 'utf8').length).to.be.greaterThan(whole.length)
    faults.write = undefined
    // ...and is cut before the next append lands.
    await spool.append(range(6, 9))
    const { events } = await spool.read(100)
    expect(events.map((e) => e.id)).to.deep.equal(range(0, 9).map((e) => e.id))
    await spool.close()
  })

  it('reads an offset written by the previous format and rewrites it in place', async () => {
    const first = new AuditSpool(dir, 'main', 1 << 20, true)
    await first.open()
    await first.append(range(0, 4))
    const { next } = await first.read(2)
    await first.close()
    // The earlier spool wrote the bare number.
    await writeFile(join(dir, 'main.spool.offset'), String(next))
    const second = new AuditSpool(dir, 'main', 1 << 20, true)
    await second.open()
    expect((await second.read(100)).events.map((e) => e.id)).to.deep.equal(['id-2', 'id-3'])
    const one = await second.read(1)
    await second.commit(one.next)
    expect((await readFile(join(dir, 'main.spool.offset'), 'utf8')).trim()).to.equal(
      String(one.next),
    )
    await second.close()
    const third = new AuditSpool(dir, 'main', 1 << 20, true)
    await third.open()
    expect((await third.read(100)).events.map((e) => e.id)).to.deep.equal(['id-3'])
    await third.close()
  })
})
