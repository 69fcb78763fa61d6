// Real file handles with injected faults, for the full-disk and I/O-error tests: a write that lands
// half of a batch and then fails with ENOSPC or EIO (what a full or failing disk does), a failing
// fdatasync, a failing ftruncate. Everything else is the real file system.
import { open, type FileHandle } from 'node:fs/promises'

export type Errno = 'ENOSPC' | 'EIO'

/** An error shaped like the file system's own. */
export function errnoError(code: Errno, syscall: string): NodeJS.ErrnoException {
  const text = code === 'ENOSPC' ? 'no space left on device' : 'i/o error'
  return Object.assign(new Error(`${code}: ${text}, ${syscall}`), {
    code,
    errno: code === 'ENOSPC' ? -28 : -5,
    syscall,
  })
}

/** What the next calls do; `undefined` means "as the file system does". */
export interface Faults {
  /** Each write call lands half of what it was given, and the call after it fails. */
  write?: Errno
  /** `datasync` fails (after the bytes were written). */
  sync?: Errno
  /** `truncate` fails this many more times. */
  truncateFailures?: number
  /** Writes that failed (each after a partial write). */
  failedWrites: number
  /** Bytes the partial writes landed in total. */
  partialBytes: number
}

/** An `open` for `createJsonLinesFileSink({ open })` or `new AuditSpool(..., open)` with faults. */
export function faultyOpen(faults: Faults) {
  return async (path: string, flags: string | number, mode: number): Promise<FileHandle> => {
    const fh = await open(path, flags, mode)
    let half = false
    return new Proxy(fh, {
      get(target, prop) {
        if (prop === 'write')
          return async (buffer: Uint8Array, offset: number, length: number, position: null) => {
            if (faults.write === undefined) return target.write(buffer, offset, length, position)
            if (!half) {
              half = true
              const part = Math.max(1, Math.floor(length / 2))
              faults.partialBytes += part
              return target.write(buffer, offset, part, position)
            }
            half = false
            faults.failedWrites++
            throw errnoError(faults.write, 'write')
          }
        if (prop === 'datasync')
          return async () => {
            if (faults.sync !== undefined) throw errnoError(faults.sync, 'fdatasync')
            return target.datasync()
          }
        if (prop === 'truncate')
          return async (len?: number) => {
            if ((faults.truncateFailures ?? 0) > 0) {
              faults.truncateFailures = (faults.truncateFailures ?? 0) - 1
              throw errnoError('EIO', 'ftruncate')
            }
            return target.truncate(len)
          }
        const value: unknown = Reflect.get(target, prop, target)
        return typeof value === 'function'
          ? (value as (...args: unknown[]) => unknown).bind(target)
          : value
      },
    })
  }
}

export const noFaults = (): Faults => ({ failedWrites: 0, partialBytes: 0 })
