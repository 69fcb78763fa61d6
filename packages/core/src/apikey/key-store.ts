/**
 * The key store contract: what Portcullis keeps about each API key, and the interface every store
 * (memory, SQLite, PostgreSQL) implements.
 *
 * Reachable from `@portcullis/core`.
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
  /**
   * How `hash` was made: `hmac-sha256` under the pepper `pepperId` (every key Portcullis issues),
   * or `sha256` for a key imported as its bare SHA-256 hash (re-hashed under the current pepper at
   * its first successful use). @default 'hmac-sha256'
   */
  readonly algorithm?: ApiKeyHashAlgorithm
}

/** How a stored secret hash was made. */
export type ApiKeyHashAlgorithm = 'hmac-sha256' | 'sha256'

/** A key's environment, from its prefix (`ptcl_live_…`, `ptcl_test_…`). */
export type ApiKeyEnvironment = 'live' | 'test'

/** Per-key usage policy, enforced by the gate on every request made with the key. */
export interface ApiKeyUsagePolicy {
  /** Client IPs allowed to use the key (CIDR or single address); absent: any. */
  readonly allowedCidrs?: readonly string[]
  /** `Origin` values allowed (exact, or `*.example.com`); absent: any. */
  readonly allowedOrigins?: readonly string[]
  /** Rate limits of this key, as `{ limit, windowMs }` rules wired to the limits stage. */
  readonly rateLimits?: readonly { readonly limit: number; readonly windowMs: number }[]
  /** Quota of this key per UTC period. */
  readonly quota?: { readonly limit: number; readonly period: 'day' | 'month' }
}

/** One batched usage report for {@link KeyStore.recordUsage}. */
export interface ApiKeyUsage {
  readonly id: ApiKeyId
  /** Epoch ms of the latest use in the batch. */
  readonly lastUsedAt: number
  /** Uses in the batch. */
  readonly count: number
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
  /*
   * Fields below were added after 0.1.0's first stores; a store that predates them may omit them,
   * and readers treat an absent field as its documented default. Every built-in store keeps them.
   */
  /** Labels to list and filter by. @default [] */
  readonly tags?: readonly string[]
  /** Why the key exists (compliance rules may require it). @default null */
  readonly purpose?: string | null
  /** `live` or `test`. @default 'live' */
  readonly environment?: ApiKeyEnvironment
  /** Usage policy: IP ranges, origins, per-key limits and quota. @default {} */
  readonly policy?: ApiKeyUsagePolicy
  /** Epoch ms of the last rotation (rotation due dates count from it, or from `createdAt`). @default null */
  readonly rotatedAt?: number | null
  /** Epoch ms of the last use, updated in batches off the request path. @default null */
  readonly lastUsedAt?: number | null
  /** Uses recorded so far (batched, so it may trail by one flush interval). @default 0 */
  readonly usageCount?: number
}

/** The fields {@link KeyStore.update} may change. */
export type ApiKeyPatch = Partial<
  Pick<
    ApiKeyRecord,
    | 'name'
    | 'scopes'
    | 'roles'
    | 'status'
    | 'hashes'
    | 'expiresAt'
    | 'revokedAt'
    | 'metadata'
    | 'tags'
    | 'purpose'
    | 'policy'
    | 'rotatedAt'
  >
>

/**
 * The fields of {@link ApiKeyPatch}: what `update` may change. The others never change after
 * creation, or (usage) only through {@link KeyStore.recordUsage}.
 */
export const API_KEY_PATCH_FIELDS: readonly (keyof ApiKeyPatch)[] = Object.freeze([
  'name',
  'scopes',
  'roles',
  'status',
  'hashes',
  'expiresAt',
  'revokedAt',
  'metadata',
  'tags',
  'purpose',
  'policy',
  'rotatedAt',
] as const)

/** Filter and page of {@link KeyStore.list}. */
export interface ApiKeyListQuery {
  readonly ownerId?: UserID
  readonly status?: ApiKeyStoredStatus
  /** Only keys carrying this tag. */
  readonly tag?: string
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
  /**
   * The key holding this exact stored hash (any entry of `hashes`), or `undefined`: how imported
   * keys whose plaintext carries no Portcullis key id are found. Stores index it.
   */
  findByHash?(hash: ApiKeyHash): Promise<ApiKeyRecord | undefined>
  /** Adds batched usage (`usageCount += count`, `lastUsedAt = max(...)`); unknown ids are ignored. */
  recordUsage?(usage: readonly ApiKeyUsage[]): Promise<void>
  /** Releases resources the store owns. */
  close?(): Promise<void>
}
