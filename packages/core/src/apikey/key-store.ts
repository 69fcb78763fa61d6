/**
 * The key store contract: what Gatehouse keeps about each API key, and the interface every store
 * (memory, SQLite, PostgreSQL) implements.
 *
 * Reachable from `@gatehouse/core`.
 * @packageDocumentation
 */
import type { UserID } from '../ids.js'
import type { ApiKeyHash, ApiKeyId } from './format.js'

/** One stored hash of a key's secret. Rotation adds a hash and gives the old one an end. */
export interface ApiKeySecretHash {
  /** HMAC-SHA-256 of the key under the pepper `pepperId`. */
  readonly hash: ApiKeyHash
  /** Which pepper made `hash`. */
  readonly pepperId: string
  /** After this instant (epoch ms) the hash no longer verifies; `null`: no end. */
  readonly notAfter: number | null
}

/** Stored status of a key; `expired` is derived from `expiresAt`, never stored. */
export type ApiKeyStoredStatus = 'active' | 'revoked'

/** Everything stored about one API key. Never holds the plaintext. */
export interface ApiKeyRecord {
  readonly id: ApiKeyId
  readonly prefix: string
  readonly name: string
  readonly ownerId: UserID
  readonly scopes: readonly string[]
  readonly roles: readonly string[]
  readonly status: ApiKeyStoredStatus
  readonly hashes: readonly ApiKeySecretHash[]
  /** Epoch ms. */
  readonly createdAt: number
  /** Epoch ms, or `null` for a key that never expires. */
  readonly expiresAt: number | null
  /** Epoch ms of revocation. */
  readonly revokedAt: number | null
  /** Free-form JSON attributes (tags, purpose, plan), available to policies. JSON values only. */
  readonly metadata: Readonly<Record<string, unknown>>
}

/** The fields {@link KeyStore.update} may change. */
export type ApiKeyPatch = Partial<
  Pick<
    ApiKeyRecord,
    'name' | 'scopes' | 'roles' | 'status' | 'hashes' | 'expiresAt' | 'revokedAt' | 'metadata'
  >
>

/** Filter and page of {@link KeyStore.list}. */
export interface ApiKeyListQuery {
  readonly ownerId?: UserID
  readonly status?: ApiKeyStoredStatus
  /** Page size, 1 to 1000 (larger values are lowered to 1000; smaller ones reject). @default 100 */
  readonly limit?: number
  /** Opaque cursor from the previous page. */
  readonly cursor?: string
}

/** One page of keys, ordered by id. */
export interface ApiKeyPage {
  readonly items: readonly ApiKeyRecord[]
  /** Pass as `cursor` to get the next page; `null` on the last. */
  readonly nextCursor: string | null
}

/**
 * Persistence of API keys. Implementations throw (reject) on storage failure; the gate turns that
 * into 503 `ERR_KEYSTORE_UNAVAILABLE` (fail closed).
 */
export interface KeyStore {
  /** The key with this id, or `undefined`. */
  get(id: ApiKeyId): Promise<ApiKeyRecord | undefined>
  /** Stores a new key; rejects if the id exists. */
  insert(record: ApiKeyRecord): Promise<void>
  /** Applies `patch` atomically and returns the new record, or `undefined` if absent. */
  update(id: ApiKeyId, patch: ApiKeyPatch): Promise<ApiKeyRecord | undefined>
  /** Deletes; whether it existed. */
  delete(id: ApiKeyId): Promise<boolean>
  /** Lists keys by id order. */
  list(query?: ApiKeyListQuery): Promise<ApiKeyPage>
  /** Releases resources the store owns. */
  close?(): Promise<void>
}
