/**
 * Re-hash on verify: a key whose matching hash is under an older pepper, or a bare SHA-256 (an
 * imported key), gets its HMAC under the current pepper written after its first successful use,
 * off the request path, once per key at a time.
 * @packageDocumentation
 */
import type { Logger } from '../logger.js'
import { hashApiKey, type ApiKeyId, type Pepper } from './format.js'
import type { ApiKeySecretHash, KeyStore } from './key-store.js'

/** Whether a key that verified against `matched` should be re-hashed under `current`. */
export function needsRehash(matched: ApiKeySecretHash, current: Pepper): boolean {
  return matched.algorithm === 'sha256' || matched.pepperId !== current.id
}

/** Upgrades stored hashes to the current pepper. */
export class KeyRehasher {
  /** Key ids being re-hashed now, so that concurrent requests start one re-hash, not many. */
  readonly #rehashing = new Set<string>()
  readonly #inflight = new Set<Promise<void>>()

  constructor(
    readonly store: KeyStore,
    readonly current: Pepper,
    readonly logger: Logger,
  ) {}

  /**
   * Replaces `old` (a hash under an older pepper, or a bare SHA-256) with the key's HMAC under the
   * current pepper. Runs after the answer, once per key at a time; a failure is logged and the
   * next use tries again.
   */
  rehash(key: string, id: ApiKeyId, old: ApiKeySecretHash): void {
    if (this.#rehashing.has(id)) return
    this.#rehashing.add(id)
    const store = this.store
    const task = (async (): Promise<void> => {
      // Read again just before the write, so that a rotation since the read is not undone.
      const fresh = await store.get(id)
      if (fresh === undefined || !fresh.hashes.some((h) => h.hash === old.hash)) return
      const hashes = fresh.hashes.map((h) =>
        h.hash === old.hash
          ? {
              hash: hashApiKey(key, this.current),
              pepperId: this.current.id,
              notAfter: h.notAfter,
            }
          : h,
      )
      await store.update(id, { hashes })
    })()
      .catch((error: unknown) => {
        this.logger.warn(
          { keyId: id, error: String(error) },
          'apiKeys: re-hashing a key under the current pepper failed',
        )
      })
      .finally(() => {
        this.#rehashing.delete(id)
        this.#inflight.delete(task)
      })
    this.#inflight.add(task)
  }

  /** Resolves when the re-hashes running now have ended. */
  async settled(): Promise<void> {
    await Promise.all(this.#inflight)
  }
}
