/**
 * The in-memory key store: the reference implementation of {@link KeyStore}, for tests and
 * single-process use.
 *
 * Reachable from `@gatehouse/core`.
 * @packageDocumentation
 */
import type { ApiKeyId } from './format.js'
import type {
  ApiKeyListQuery,
  ApiKeyPage,
  ApiKeyPatch,
  ApiKeyRecord,
  KeyStore,
} from './key-store.js'

/** The fields `update` may change; everything else (id, owner, prefix, createdAt) is fixed. */
const PATCHABLE = [
  'name',
  'scopes',
  'roles',
  'status',
  'hashes',
  'expiresAt',
  'revokedAt',
  'metadata',
] as const

/** Largest page {@link KeyStore.list} returns. */
export const MAX_LIST_LIMIT = 1000

function deepFreeze<TValue>(value: TValue): TValue {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value)
    for (const v of Object.values(value)) deepFreeze(v)
  }
  return value
}

/** A private, deeply frozen copy: callers can neither change a stored record nor be changed by it. */
function snapshot(record: ApiKeyRecord): ApiKeyRecord {
  return deepFreeze(structuredClone(record))
}

/** Creates an in-memory key store. */
export function createMemoryKeyStore(): KeyStore {
  const keys = new Map<string, ApiKeyRecord>()
  return {
    async get(id: ApiKeyId): Promise<ApiKeyRecord | undefined> {
      return keys.get(id)
    },
    async insert(record: ApiKeyRecord): Promise<void> {
      if (keys.has(record.id)) throw new Error(`key ${record.id} exists`)
      keys.set(record.id, snapshot(record))
    },
    async update(id: ApiKeyId, patch: ApiKeyPatch): Promise<ApiKeyRecord | undefined> {
      const current = keys.get(id)
      if (current === undefined) return undefined
      const next: Record<string, unknown> = { ...current }
      for (const field of PATCHABLE) if (patch[field] !== undefined) next[field] = patch[field]
      const stored = snapshot(next as unknown as ApiKeyRecord)
      keys.set(id, stored)
      return stored
    },
    async delete(id: ApiKeyId): Promise<boolean> {
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
            (query.cursor === undefined || k.id > query.cursor),
        )
        .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
      const items = all.slice(0, limit)
      return { items, nextCursor: all.length > limit ? (items.at(-1)?.id ?? null) : null }
    },
  }
}
