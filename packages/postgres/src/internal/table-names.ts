/**
 * Names of the key store's schema objects, derived from the validated `schema` and `tablePrefix`.
 * @internal
 */
import { qualified } from './connection.js'

/** Quoted identifiers of every schema object the key store owns. */
export interface KeyStoreNames {
  readonly schema: string | undefined
  /** Qualified. */
  readonly migrations: string
  /** Qualified. */
  readonly apiKeys: string
  /** Index names (unqualified: an index lives in its table's schema). */
  readonly ownerIndex: string
  readonly statusIndex: string
  readonly tagsIndex: string
  readonly hashIndex: string
}

/** The names for `prefix` (which matched `^[a-z_][a-z0-9_]*$`: quoting is belt and braces). */
export function keyStoreNames(schema: string | undefined, prefix: string): KeyStoreNames {
  return Object.freeze({
    schema,
    migrations: qualified(schema, `${prefix}migrations`),
    apiKeys: qualified(schema, `${prefix}api_keys`),
    ownerIndex: `"${prefix}api_keys_owner_id"`,
    statusIndex: `"${prefix}api_keys_status"`,
    tagsIndex: `"${prefix}api_keys_tags"`,
    hashIndex: `"${prefix}api_keys_hash_values"`,
  })
}
