// Checks shared by the Redis integrations. Not exported from the package.
import type { Redis } from 'ioredis'

/** Whether `value` looks like an ioredis client of 5 or 6 (duck-typed: two installs may meet). */
export function isIoredisClient(value: unknown): value is Redis {
  const c = value as Partial<
    Record<'defineCommand' | 'multi' | 'del' | 'status' | 'duplicate', unknown>
  > | null
  return (
    typeof c === 'object' &&
    c !== null &&
    typeof c.defineCommand === 'function' &&
    typeof c.multi === 'function' &&
    typeof c.del === 'function' &&
    typeof c.duplicate === 'function' &&
    typeof c.status === 'string'
  )
}

/** The message of an unknown thrown value, for logs. */
export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}

/** Closes a connection we own: QUIT when connected (flushes), otherwise drop it at once. */
export async function closeOwned(client: Redis): Promise<void> {
  if (client.status === 'end') return
  if (client.status === 'ready') {
    try {
      await client.quit()
      return
    } catch {
      // fall through: the connection broke while quitting
    }
  }
  client.disconnect()
}
