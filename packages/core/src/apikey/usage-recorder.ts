/**
 * Key usage (`lastUsedAt`, `usageCount`) counted in memory on the request path and written in
 * batches off it, through `KeyStore.recordUsage`: every `flushIntervalMs`, or as soon as
 * `maxBatch` distinct keys are pending.
 * @packageDocumentation
 */
import { unrefInterval } from '../internal/clock.js'
import type { Logger } from '../logger.js'
import type { ApiKeyId } from './format.js'
import type { ApiKeyUsage, KeyStore } from './key-store.js'

/** How usage is batched. */
export interface UsageRecorderOptions {
  readonly flushIntervalMs: number
  readonly maxBatch: number
}

/** Counts uses per key and writes them in batches. */
export class UsageRecorder {
  /** Uses not yet written, by key id. */
  #pending = new Map<string, { count: number; last: number }>()
  readonly #timer: NodeJS.Timeout

  constructor(
    readonly store: KeyStore,
    readonly options: UsageRecorderOptions,
    readonly logger: Logger,
  ) {
    this.#timer = unrefInterval(() => void this.flush(), options.flushIntervalMs)
  }

  /** One use of key `id` at `now`. */
  count(id: string, now: number): void {
    const u = this.#pending.get(id)
    if (u !== undefined) {
      u.count++
      if (now > u.last) u.last = now
      return
    }
    this.#pending.set(id, { count: 1, last: now })
    if (this.#pending.size >= this.options.maxBatch) void this.flush()
  }

  /** Writes pending usage now; a failing write is logged, never thrown. */
  async flush(): Promise<void> {
    const store = this.store
    if (this.#pending.size === 0 || store.recordUsage === undefined) return
    const batch: ApiKeyUsage[] = []
    for (const [id, u] of this.#pending)
      batch.push({ id: id as ApiKeyId, lastUsedAt: u.last, count: u.count })
    this.#pending = new Map()
    try {
      await store.recordUsage(batch)
    } catch (error) {
      // Usage is bookkeeping: losing one batch must never fail a request or crash the process.
      this.logger.warn(
        { keys: batch.length, error: String(error) },
        'apiKeys: writing key usage failed; this batch is dropped',
      )
    }
  }

  /** Stops the flush timer (pending usage stays until the next {@link UsageRecorder.flush}). */
  stop(): void {
    clearInterval(this.#timer)
  }
}
