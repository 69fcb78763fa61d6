/**
 * An audit sink appending JSON lines to a file, with rotation by size and by time. Each batch is
 * one append + `fdatasync` (by default), so an acknowledged batch survives a crash. A batch that
 * fails (a full disk lands part of it before `ENOSPC`, an `EIO`, a failed sync) is cut back off
 * the file, which then holds exactly what it held before; the trail retries the batch in full.
 * At open, an incomplete last line (a crash in the middle of a write, never acknowledged) is cut
 * off. Events already in the file (by id: the recent ones, including those found at the end of the
 * file at open) are not written twice, so a replayed spool does not duplicate them. One process
 * writes a file.
 *
 * Reachable from `@portcullis/core`.
 * @packageDocumentation
 */
import { createReadStream } from 'node:fs'
import { mkdir, open, readdir, rename, stat, type FileHandle } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import { createInterface } from 'node:readline'
import { systemClock, type Clock } from '../internal/clock.js'
import { appendWholeLines, wholeLinesEnd, type OpenFile } from '../internal/line-file.js'
import type { Logger } from '../logger.js'
import type { AuditEvent, AuditSink } from './audit-event.js'
import { auditEventJson } from './event-json.js'

/** Options of {@link createJsonLinesFileSink}. */
export interface JsonLinesFileSinkOptions {
  /** File to append to; its folder is created. */
  readonly path: string
  /** `fsync` after each batch. @default true */
  readonly fsync?: boolean
  /** Rotate when the file would grow past this many bytes. @default no size rotation */
  readonly maxBytes?: number
  /** Rotate when the file is older than this (since it was opened or last rotated). @default no time rotation */
  readonly rotateEveryMs?: number
  /** Recent event ids remembered to drop replayed duplicates (at least this many, at most twice). @default 10000 */
  readonly dedupeWindow?: number
  /** Sink name (unique per trail when a spool is used). @default 'jsonl-file' */
  readonly name?: string
  /** Clock for time rotation and rotated file names. @default Date.now */
  readonly now?: Clock
  /** Where the sink reports an incomplete last line it cut off at open. @default silent */
  readonly logger?: Logger
  /**
   * Opens the file (`fs.promises.open`). Only for tests that inject faults, e.g. a handle whose
   * `write` fails with `ENOSPC` or `EIO` halfway through a batch. @default fs.promises.open
   */
  readonly open?: (path: string, flags: string, mode: number) => Promise<FileHandle>
}

/**
 * Creates a JSON-lines file sink. The file opens on the first write. A rotated file is renamed to
 * `<path>.<ISO time>` (names sort in time order); pass all of them, oldest first, to
 * `portcullis audit verify`. A failed write rejects with the file system's error (`ENOSPC`,
 * `EIO`...) after cutting the partial batch off the file.
 */
export function createJsonLinesFileSink(options: Readonly<JsonLinesFileSinkOptions>): AuditSink {
  const fsync = options.fsync ?? true
  const now = options.now ?? systemClock
  const window = options.dedupeWindow ?? 10_000
  const openFile: OpenFile = options.open ?? open
  // Two generations of ids: the newest `window` to `2 × window` ids are remembered. Deleting the
  // oldest id of one Set per event was the top frame of the audit profile (a Set's iterator skips
  // every deleted slot before the first live one, so "delete the first" degrades under churn).
  let recent = new Set<string>()
  let older = new Set<string>()
  let handle: FileHandle | undefined
  /** Bytes of whole, acknowledged lines in the open file: where a failed batch is cut back to. */
  let size = 0
  /** A failed batch could not be cut back: the file must be cut to `size` before the next one. */
  let dirty = false
  let openedAt = 0
  let tail: Promise<void> = Promise.resolve()

  const seen = (id: string): boolean => recent.has(id) || older.has(id)
  const remember = (id: string): void => {
    recent.add(id)
  }
  /** Starts a new generation once the newest holds `window` ids (between batches only). */
  const age = (): void => {
    if (recent.size >= window) {
      older = recent
      recent = new Set()
    }
  }

  const openTrail = async (): Promise<FileHandle> => {
    if (handle !== undefined) return handle
    await mkdir(dirname(options.path), { recursive: true })
    const fh = await openFile(options.path, 'a+', 0o600)
    try {
      const found = (await fh.stat()).size
      size = await wholeLinesEnd(fh, found)
      if (size !== found) {
        // A crash in the middle of a write: the incomplete line was never acknowledged, and a new
        // line appended after it would be glued to it.
        await fh.truncate(size)
        options.logger?.warn(
          { path: options.path, bytes: found - size },
          'audit file: cut off an incomplete last line (a crash during a write)',
        )
      }
    } catch (error) {
      await fh.close().catch(() => undefined)
      throw error
    }
    dirty = false
    openedAt = now()
    if (recent.size === 0 && older.size === 0 && size > 0) {
      // Seed the duplicate filter from the end of the file (the part a replay could repeat).
      const length = Math.min(size, 1024 * 1024)
      const buf = Buffer.alloc(length)
      await fh.read(buf, 0, length, size - length)
      for (const line of buf
        .toString('utf8')
        .split('\n')
        .slice(length < size ? 1 : 0)) {
        try {
          const id = (JSON.parse(line) as { id?: unknown }).id
          if (typeof id === 'string') {
            remember(id)
            age()
          }
        } catch {
          // a partial first line of the window
        }
      }
    }
    handle = fh
    return fh
  }

  const rotate = async (): Promise<void> => {
    const fh = handle
    handle = undefined
    await fh?.close()
    const stamp = new Date(now()).toISOString().replace(/:/g, '-')
    let base = `${options.path}.${stamp}`
    // Readers take rotated files in name order: after the wall clock stepped back, this file is
    // named after the last one (a longer name sorts after its prefix), or `audit verify` would read
    // the chain out of order and call it tampered.
    const last = (await listAuditFiles(options.path)).filter((f) => f !== options.path).at(-1)
    if (last !== undefined && base <= last) base = last
    let target = base
    for (let i = 1; target === last || (await exists(target)); i++) target = `${base}.${i}`
    await rename(options.path, target)
  }

  const writeBatch = async (events: readonly AuditEvent[]): Promise<void> => {
    // Open first: opening seeds the duplicate filter from the file.
    let fh = await openTrail()
    if (dirty) {
      // The last batch failed (and may still be partly there, if cutting it back failed too):
      // nothing is appended after it.
      await fh.truncate(size)
      dirty = false
    }
    // Ids are remembered as they are taken (which also drops a repeat within the batch) and
    // forgotten again if the write fails, so the retried batch is written in full.
    const fresh: string[] = []
    const lines: string[] = []
    for (const e of events) {
      const id = e.id
      if (seen(id)) continue
      remember(id)
      fresh.push(id)
      // JSON escapes every control character, so an event can never break its line. The trail
      // may have serialized the event already (its hash chain's canonical form): reuse that.
      lines.push(auditEventJson(e))
    }
    if (lines.length === 0) return
    try {
      lines.push('')
      // One join and one encoding per batch; the byte count comes from the buffer.
      const buf = Buffer.from(lines.join('\n'), 'utf8')
      const bytes = buf.length
      const tooBig = options.maxBytes !== undefined && size > 0 && size + bytes > options.maxBytes
      const tooOld =
        options.rotateEveryMs !== undefined && now() - openedAt >= options.rotateEveryMs
      if ((tooBig || tooOld) && size > 0) {
        await rotate()
        fh = await openTrail()
      }
      try {
        await appendWholeLines(fh, buf, size, fsync)
      } catch (error) {
        // Cut back already, unless the error says otherwise; cutting again costs one call.
        dirty = true
        throw error
      }
      size += bytes
    } catch (error) {
      // No generation started since `remember`: every id of this batch is in `recent`.
      for (const id of fresh) recent.delete(id)
      throw error
    }
    age()
  }

  return {
    name: options.name ?? 'jsonl-file',
    write(events: readonly AuditEvent[]): Promise<void> {
      if (events.length === 0) return Promise.resolve()
      // One write at a time: a timed-out write that is still running must not interleave. Its
      // error goes to its caller; the next write only waits for it to settle.
      const run = tail.then(() => writeBatch(events))
      tail = run.then(
        () => undefined,
        () => undefined,
      )
      return run
    },
    async close(): Promise<void> {
      await tail
      const fh = handle
      handle = undefined
      await fh?.close()
    },
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path)
    return true
  } catch {
    return false
  }
}

/** The files of a rotated JSON-lines trail, oldest first: `<path>.<time>...` then `<path>`. */
export async function listAuditFiles(path: string): Promise<string[]> {
  const dir = dirname(path)
  const base = basename(path)
  let names: string[]
  try {
    names = await readdir(dir)
  } catch {
    return []
  }
  const rotated = names.filter((n) => n.startsWith(`${base}.`) && !n.endsWith('.tmp')).sort()
  const out = rotated.map((n) => join(dir, n))
  if (names.includes(base)) out.push(path)
  return out
}

/**
 * Reads audit events from JSON-lines files, in order. A line that is not a JSON object is yielded
 * as `{ invalidLine: '<file>:<line number>' }` so a verifier reports it where it is; when it is
 * the file's last line and the file does not end with a newline (a crash in the middle of a
 * write), it also carries `tornTail: true`.
 */
export async function* readJsonLinesAuditEvents(
  paths: readonly string[],
): AsyncGenerator<AuditEvent> {
  for (const path of paths) {
    const endsWithNewline = await lastByteIsNewline(path)
    const lines = createInterface({
      input: createReadStream(path, 'utf8'),
      crlfDelay: Infinity,
    })
    let n = 0
    // An invalid line is held back until the next line shows whether it was the last one.
    let invalid: string | undefined
    for await (const line of lines) {
      n++
      if (line.trim() === '') continue
      if (invalid !== undefined) yield { invalidLine: invalid } as unknown as AuditEvent
      invalid = undefined
      let value: unknown
      try {
        value = JSON.parse(line)
      } catch {
        value = undefined
      }
      if (typeof value === 'object' && value !== null && !Array.isArray(value))
        yield value as AuditEvent
      else invalid = `${path}:${n}`
    }
    if (invalid !== undefined)
      yield (endsWithNewline
        ? { invalidLine: invalid }
        : { invalidLine: invalid, tornTail: true }) as unknown as AuditEvent
  }
}

async function lastByteIsNewline(path: string): Promise<boolean> {
  const fh = await open(path, 'r')
  try {
    const { size } = await fh.stat()
    if (size === 0) return true
    const byte = Buffer.alloc(1)
    await fh.read(byte, 0, 1, size - 1)
    return byte[0] === 0x0a
  } finally {
    await fh.close()
  }
}
