/**
 * The in-memory key store: the reference implementation of {@link KeyStore}, for tests and
 * single-process use.
 *
 * Reachable from `@portcullis/core`.
 * @packageDocumentation
 */
import type { ApiKeyHash, ApiKeyId } from './format.js'
import type {
  ApiKeyListQuery,
  ApiKeyPage,
  ApiKeyPatch,
  ApiKeyRecord,
  ApiKeyUsage,
  KeyStore,
} from './key-store.js'
import { API_KEY_PATCH_FIELDS } from './key-store.js'

/** Largest page {@link KeyStore.list} returns. */
export const MAX_LIST_LIMIT = 1000

function deepFreeze<TValue>(value: TValue): TValue {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value)
    for (const v of Object.values(value)) deepFreeze(v)
  }
  return value
}

/**
 * A private, deeply frozen copy with every optional field present (absent ones take their
 * documented default), as every built-in store returns records: callers can neither change a
 * stored record nor be changed by it.
 */
function snapshot(record: ApiKeyRecord): ApiKeyRecord {
  return deepFreeze(
    structuredClone({
      ...record,
      tags: record.tags ?? [],
      purpose: record.purpose ?? null,
      environment: record.environment ?? 'live',
      policy: record.policy ?? {},
      rotatedAt: record.rotatedAt ?? null,
      lastUsedAt: record.lastUsedAt ?? null,
      usageCount: record.usageCount ?? 0,
    }),
  )
}

/** Creates an in-memory key store. Implements every optional method of {@link KeyStore}. */
export function createMemoryKeyStore(): KeyStore {
  const keys = new Map<string, ApiKeyRecord>()
  // hash -> key id: findByHash is one map read, as an index would be in a database.
  const byHash = new Map<string, ApiKeyId>()
  const index = (record: ApiKeyRecord): void => {
    for (const h of record.hashes) byHash.set(h.hash, record.id)
  }
  const unindex = (record: ApiKeyRecord): void => {
    for (const h of record.hashes) if (byHash.get(h.hash) === record.id) byHash.delete(h.hash)
  }
  return {
    async get(id: ApiKeyId): Promise<ApiKeyRecord | undefined> {
      return keys.get(id)
    },
    async insert(record: ApiKeyRecord): Promise<void> {
      if (keys.has(record.id)) throw new Error(`key ${record.id} exists`)
      const stored = snapshot(record)
      keys.set(record.id, stored)
      index(stored)
    },
    async update(id: ApiKeyId, patch: ApiKeyPatch): Promise<ApiKeyRecord | undefined> {
      const current = keys.get(id)
      if (current === undefined) return undefined
      const next: Record<string, unknown> = { ...current }
      for (const field of API_KEY_PATCH_FIELDS)
        if (patch[field] !== undefined) next[field] = patch[field]
      const stored = snapshot(next as unknown as ApiKeyRecord)
      unindex(current)
      keys.set(id, stored)
      index(stored)
      return stored
    },
    async delete(id: ApiKeyId): Promise<boolean> {
      const current = keys.get(id)
      if (current === undefined) return false
      unindex(current)
      return keys.delete(id)
    },
    async list(query: ApiKeyListQuery = {}): Promise<ApiKeyPage> {
      const limit = Math.min(query.limit ?? 100, MAX_LIST_LIMIT)
      if (!Number.isSafeInteger(limit) || limit < 1)
        throw new RangeError(`limit must be an integer >= 1, received ${query.limit}`)
      const all = [...keys.values()]
        .filter(
          (k) =>
            (query.ownerId === undefined || k.ownerId === query.ownerId) &&
            (query.status === undefined || k.status === query.status) &&
            (query.tag === undefined || (k.tags ?? []).includes(query.tag)) &&
            (query.cursor === undefined || k.id > query.cursor),
        )
        .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
      const items = all.slice(0, limit)
      return { items, nextCursor: all.length > limit ? (items.at(-1)?.id ?? null) : null }
    },
    async findByHash(hash: ApiKeyHash): Promise<ApiKeyRecord | undefined> {
      const id = byHash.get(hash)
      return id === undefined ? undefined : keys.get(id)
    },
    async recordUsage(usage: readonly ApiKeyUsage[]): Promise<void> {
      for (const u of usage) {
        const current = keys.get(u.id)
        if (current === undefined) continue
        const last = current.lastUsedAt ?? null
        keys.set(
          u.id,
          deepFreeze({
            ...current,
            usageCount: (current.usageCount ?? 0) + u.count,
            lastUsedAt: last === null || u.lastUsedAt > last ? u.lastUsedAt : last,
          }),
        )
      }
    },
  }
}
