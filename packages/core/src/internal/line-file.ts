/**
 * Appending whole lines to a JSON-lines file (the audit file sink, the audit spool) so that a
 * failed append leaves the file as it was: on a full disk a `write` lands partly before `ENOSPC`,
 * and a retried batch appended after that part would leave a torn line and duplicated events.
 * @internal
 */
import type { FileHandle } from 'node:fs/promises'

/** How a JSON-lines file is opened (`fs.promises.open`); tests pass one that injects faults. */
export type OpenFile = (path: string, flags: string, mode: number) => Promise<FileHandle>

const SCAN_CHUNK = 64 * 1024

/** The offset just after the file's last newline: where its whole lines end (0 when none). */
export async function wholeLinesEnd(fh: FileHandle, size: number): Promise<number> {
  const chunk = Buffer.alloc(Math.min(size, SCAN_CHUNK))
  let end = size
  while (end > 0) {
    const start = Math.max(0, end - chunk.length)
    const { bytesRead } = await fh.read(chunk, 0, end - start, start)
    const nl = chunk.subarray(0, bytesRead).lastIndexOf(0x0a)
    if (nl >= 0) return start + nl + 1
    end = start
  }
  return 0
}

/**
 * Appends `bytes` (whole lines) to a file opened in append mode whose length is `size`, then
 * `fdatasync`s it when `fsync`. On any failure (`ENOSPC` after a partial write, `EIO`, a failed
 * sync) the file is cut back to `size` before the error is rethrown. When cutting back fails too,
 * the error says so: the caller must cut back before its next append.
 */
export async function appendWholeLines(
  fh: FileHandle,
  bytes: Uint8Array,
  size: number,
  fsync: boolean,
): Promise<void> {
  try {
    let done = 0
    while (done < bytes.length) {
      // A short write is what a nearly full disk returns before ENOSPC: write the rest.
      const { bytesWritten } = await fh.write(bytes, done, bytes.length - done, null)
      if (bytesWritten <= 0) throw new Error('write wrote nothing')
      done += bytesWritten
    }
    if (fsync) await fh.datasync()
  } catch (error) {
    try {
      await fh.truncate(size)
    } catch (cutError) {
      throw new AggregateError(
        [error, cutError],
        `${String(error)}; cutting the file back to ${size} bytes failed too (${String(cutError)})`,
        { cause: cutError },
      )
    }
    throw error
  }
}
