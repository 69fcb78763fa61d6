/**
 * The per-sink disk spool: an append-only JSON-lines file of chained events waiting for a sink
 * that is down or slow, plus a small offset file marking how far the sink has acknowledged. Appends
 * are `fdatasync`'d before the events count as acknowledged; a failed append (a full disk lands
 * part of it before `ENOSPC`) is cut back off the file, which then holds exactly what it held
 * before. Replay reads from the offset, in order; a torn last line (a crash mid-append) was never
 * acknowledged and is cut off at open. The offset is rewritten in place (no new block to allocate,
 * so a full disk cannot refuse it). Delivery is at least once: a crash between a sink write and
 * the offset update replays a few events, which sinks drop by event id.
 * @internal
 */
import { constants } from 'node:fs'
import { mkdir, open, readFile, unlink, writeFile, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { appendWholeLines, wholeLinesEnd, type OpenFile } from '../internal/line-file.js'
import type { AuditEvent } from './audit-event.js'
import { auditEventJson } from './event-json.js'

/** Width of the offset record: any safe integer, padded, so each rewrite covers the last one. */
const OFFSET_WIDTH = 20

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
  #offsetFh: FileHandle | undefined
  /** Bytes of whole, acknowledged lines: where a failed append is cut back to. */
  #size = 0
  /** A failed append could not be cut back: the file is cut to `#size` before the next one. */
  #dirty = false
  #offset = 0

  constructor(
    dir: string,
    name: string,
    readonly maxBytes: number,
    readonly fsync: boolean,
    readonly openFile: OpenFile = open,
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
    this.#fh = await this.openFile(this.file, 'a+', 0o600)
    const { size } = await this.#fh.stat()
    // Cut a torn tail: the bytes after the last newline were never fsync'd as a whole line.
    this.#size = await wholeLinesEnd(this.#fh, size)
    if (this.#size !== size) await this.#fh.truncate(this.#size)
    let offset: number
    try {
      offset = Number.parseInt(await readFile(this.#offsetFile, 'utf8'), 10)
    } catch {
      offset = 0
    }
    // Read-write without truncating (no string flag says that): the offset is rewritten in place.
    this.#offsetFh = await open(this.#offsetFile, constants.O_RDWR | constants.O_CREAT, 0o600)
    this.#offset = Number.isSafeInteger(offset) && offset >= 0 && offset <= this.#size ? offset : 0
    if (this.#offset === this.#size && this.#size > 0) await this.#reset()
    // Written now, while there is room: later rewrites of the record need no new block.
    else await this.#writeOffset(this.#offset)
  }

  /** Appends events and makes them durable; on failure the file is left as it was. */
  async append(events: readonly AuditEvent[]): Promise<void> {
    const fh = this.#fh
    if (fh === undefined) throw new Error('audit spool is not open')
    if (this.#dirty) {
      await fh.truncate(this.#size)
      this.#dirty = false
    }
    const lines: string[] = []
    for (const e of events) lines.push(auditEventJson(e))
    lines.push('')
    const bytes = Buffer.from(lines.join('\n'), 'utf8')
    try {
      await appendWholeLines(fh, bytes, this.#size, this.fsync)
    } catch (error) {
      this.#dirty = true
      throw error
    }
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

  /**
   * Marks everything before `next` as acknowledged by the sink. When recording it on disk fails,
   * it still counts in memory (a crash would then replay a few events) and the error is thrown.
   */
  async commit(next: number): Promise<void> {
    this.#offset = next
    if (this.#offset >= this.#size) {
      await this.#reset()
      return
    }
    await this.#writeOffset(next)
  }

  async #writeOffset(offset: number): Promise<void> {
    const fh = this.#offsetFh
    if (fh === undefined) throw new Error('audit spool is not open')
    const text = Buffer.from(`${String(offset).padEnd(OFFSET_WIDTH)}\n`, 'utf8')
    await fh.write(text, 0, text.length, 0)
  }

  async #reset(): Promise<void> {
    // Empty the file first: a crash before the offset is rewritten leaves offset > size, read as 0.
    await this.#fh?.truncate(0)
    this.#size = 0
    this.#dirty = false
    this.#offset = 0
    await this.#writeOffset(0)
  }

  async close(): Promise<void> {
    const fh = this.#fh
    const offsetFh = this.#offsetFh
    this.#fh = undefined
    this.#offsetFh = undefined
    await fh?.close()
    await offsetFh?.close()
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
