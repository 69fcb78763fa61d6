/**
 * An audit sink appending JSON lines to a file. Each batch is one `write` + `fsync` (by default),
 * so an acknowledged batch survives a crash.
 *
 * Reachable from `@gatehouse/core`.
 * @packageDocumentation
 */
import { mkdir, open, type FileHandle } from 'node:fs/promises'
import { dirname } from 'node:path'
import type { AuditEvent, AuditSink } from './audit-event.js'

/** Options of {@link createJsonLinesFileSink}. */
export interface JsonLinesFileSinkOptions {
  /** File to append to; its folder is created. */
  readonly path: string
  /** `fsync` after each batch. @default true */
  readonly fsync?: boolean
}

/** Creates a JSON-lines file sink. The file opens on the first write. */
export function createJsonLinesFileSink(options: JsonLinesFileSinkOptions): AuditSink {
  const fsync = options.fsync ?? true
  let handle: Promise<FileHandle> | undefined
  const file = async (): Promise<FileHandle> => {
    handle ??= mkdir(dirname(options.path), { recursive: true }).then(() =>
      open(options.path, 'a', 0o600),
    )
    try {
      return await handle
    } catch (error) {
      handle = undefined
      throw error
    }
  }
  return {
    name: 'jsonl-file',
    async write(events: readonly AuditEvent[]): Promise<void> {
      if (events.length === 0) return
      let text = ''
      // JSON.stringify escapes every control character, so an event can never break its line.
      for (const e of events) text += JSON.stringify(e) + '\n'
      const fh = await file()
      await fh.appendFile(text, 'utf8')
      if (fsync) await fh.datasync()
    },
    async close(): Promise<void> {
      if (handle === undefined) return
      const fh = await handle.catch(() => undefined)
      handle = undefined
      await fh?.close()
    },
  }
}
