/**
 * The per-sink disk spool: an append-only JSON-lines file of chained events waiting for a sink
 * that is down or slow, plus a small offset file marking how far the sink has acknowledged. Appends
 * are `fdatasync`'d before the events count as acknowledged; replay reads from the offset, in
 * order; a torn last line (a crash mid-append) was never acknowledged and is cut off at open.
 * Delivery is at least once: a crash between a sink write and the offset update replays a few
 * events, which sinks drop by event id.
 * @internal
 */
import { mkdir, open, readFile, rename, unlink, writeFile, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { auditEventJson, type AuditEvent } from './audit-event.js'

const READ_CHUNK = 64 * 1024 * 1024
/** Spool files this process holds, so two trails in one process cannot share one. */
const HELD = new Set<string>()

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** One sink's spool. @internal */
export class AuditSpool {
  readonly file: string
  readonly #offsetFile: string
  readonly #lockFile: string
  #locked = false
  #fh: FileHandle | undefined
  #size = 0
  #offset = 0

  constructor(
    dir: string,
    name: string,
    readonly maxBytes: number,
    readonly fsync: boolean,
  ) {
    const safe = name.replace(/[^A-Za-z0-9._-]/g, '_')
    this.file = join(dir, `${safe}.spool.jsonl`)
    this.#offsetFile = join(dir, `${safe}.spool.offset`)
    this.#lockFile = join(dir, `${safe}.spool.lock`)
    this.dir = dir
  }

  readonly dir: string

  /** Bytes waiting for the sink. */
  get pendingBytes(): number {
    return this.#size - this.#offset
  }

  /** Whether another append would exceed `maxBytes`. */
  get full(): boolean {
    return this.pendingBytes >= this.maxBytes
  }

  async open(): Promise<void> {
    await mkdir(this.dir, { recursive: true })
    await this.#lock()
    this.#fh = await open(this.file, 'a+', 0o600)
    const { size } = await this.#fh.stat()
    this.#size = size
    if (size > 0) {
      // Cut a torn tail: the bytes after the last newline were never fsync'd as a whole line.
      const tail = Buffer.alloc(Math.min(size, 64 * 1024))
      let end = size
      for (;;) {
        const start = Math.max(0, end - tail.length)
        const { bytesRead } = await this.#fh.read(tail, 0, end - start, start)
        const nl = tail.subarray(0, bytesRead).lastIndexOf(0x0a)
        if (nl >= 0) {
          end = start + nl + 1
          break
        }
        end = start
        if (start === 0) break
      }
      if (end !== size) {
        await this.#fh.truncate(end)
        this.#size = end
      }
    }
    let offset: number
    try {
      offset = Number.parseInt(await readFile(this.#offsetFile, 'utf8'), 10)
    } catch {
      offset = 0
    }
    this.#offset = Number.isSafeInteger(offset) && offset >= 0 && offset <= this.#size ? offset : 0
    if (this.#offset === this.#size && this.#size > 0) await this.#reset()
  }

  /** Appends events and makes them durable. */
  async append(events: readonly AuditEvent[]): Promise<void> {
    const fh = this.#fh
    if (fh === undefined) throw new Error('audit spool is not open')
    const lines: string[] = []
    for (const e of events) lines.push(auditEventJson(e))
    lines.push('')
    const bytes = Buffer.from(lines.join('\n'), 'utf8')
    await fh.write(bytes, 0, bytes.length, null)
    if (this.fsync) await fh.datasync()
    this.#size += bytes.length
  }

  /** Reads up to `max` events from the offset; `next` is the offset after them. */
  async read(max: number): Promise<{ readonly events: AuditEvent[]; readonly next: number }> {
    const fh = this.#fh
    if (fh === undefined || this.pendingBytes === 0) return { events: [], next: this.#offset }
    // Read about what `max` events need (they are rarely over 2 KiB), growing for a long line.
    let want = Math.max(64 * 1024, max * 2048)
    for (;;) {
      const length = Math.min(this.pendingBytes, want)
      const buf = Buffer.alloc(length)
      const { bytesRead } = await fh.read(buf, 0, length, this.#offset)
      const got = this.#parse(buf, bytesRead, max)
      if (got.events.length > 0 || got.pos > 0 || length === this.pendingBytes) {
        return { events: got.events, next: this.#offset + got.pos }
      }
      if (want >= READ_CHUNK) throw new Error('audit spool line longer than the read chunk')
      want *= 4
    }
  }

  #parse(buf: Buffer, bytesRead: number, max: number): { events: AuditEvent[]; pos: number } {
    const events: AuditEvent[] = []
    let pos = 0
    while (events.length < max) {
      const nl = buf.indexOf(0x0a, pos)
      if (nl < 0 || nl >= bytesRead) break
      const line = buf.toString('utf8', pos, nl)
      pos = nl + 1
      if (line.trim() === '') continue
      try {
        events.push(JSON.parse(line) as AuditEvent)
      } catch {
        // A line we wrote ourselves cannot be invalid unless the disk corrupted it: skip it
        // (the chain verifier will name the gap).
      }
    }
    return { events, pos }
  }

  /** Marks everything before `next` as acknowledged by the sink. */
  async commit(next: number): Promise<void> {
    this.#offset = next
    if (this.#offset >= this.#size) {
      await this.#reset()
      return
    }
    const tmp = `${this.#offsetFile}.tmp`
    await writeFile(tmp, String(next))
    await rename(tmp, this.#offsetFile)
  }

  async #reset(): Promise<void> {
    // Empty the file first: a crash before the offset is rewritten leaves offset > size, read as 0.
    await this.#fh?.truncate(0)
    this.#size = 0
    this.#offset = 0
    await writeFile(this.#offsetFile, '0')
  }

  async close(): Promise<void> {
    const fh = this.#fh
    this.#fh = undefined
    await fh?.close()
    if (this.#locked) {
      this.#locked = false
      HELD.delete(this.file)
      await unlink(this.#lockFile).catch(() => undefined)
    }
  }

  /**
   * One writer per spool: a lock file holds the owner's pid. A lock left by a dead process (a
   * crash) is taken over; a live owner (another instance on the same folder) is refused.
   */
  async #lock(): Promise<void> {
    if (HELD.has(this.file)) throw new Error(`audit spool ${this.file} is already open`)
    try {
      await writeFile(this.#lockFile, String(process.pid), { flag: 'wx', mode: 0o600 })
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error
      const owner = Number.parseInt(await readFile(this.#lockFile, 'utf8').catch(() => ''), 10)
      if (Number.isSafeInteger(owner) && owner !== process.pid && alive(owner))
        throw new Error(`audit spool ${this.file} is in use by process ${owner}`, {
          cause: error,
        })
      await writeFile(this.#lockFile, String(process.pid), { mode: 0o600 })
    }
    HELD.add(this.file)
    this.#locked = true
  }
}
