/**
 * Keys imported from another system (`ApiKeyManager.import`) in a format that is not Portcullis's:
 * they carry no id at a fixed offset, so they are found by their hash (`KeyStore.findByHash`)
 * under each pepper, then by their bare SHA-256, and cached by their digest.
 * @packageDocumentation
 */
import { IMPORTED_API_KEY_PATTERN, hashApiKey, type ApiKeyHash, type Pepper } from './format.js'
import type { ApiKeyRecord, KeyStore } from './key-store.js'

/**
 * Whether `key` is looked up as an imported key: in the imported format and not starting like one
 * of ours (`ours`), so that a mistyped Portcullis key is refused before any store read.
 */
export function isImportedKeyCandidate(key: string, ours: boolean): boolean {
  return !ours && IMPORTED_API_KEY_PATTERN.test(key)
}

/** The id an imported key is cached under: its SHA-256 digest. */
export function importedCacheId(digest: Buffer): string {
  return `sha256:${digest.toString('base64url')}`
}

/**
 * The record of an imported key, by its hash under each pepper (current first), then by its bare
 * SHA-256 (`digest`); `undefined` when no record has it. A store failure rejects.
 */
export async function findImportedKey(
  store: KeyStore,
  peppers: readonly Pepper[],
  key: string,
  digest: Buffer,
): Promise<ApiKeyRecord | undefined> {
  const find = store.findByHash as (h: ApiKeyHash) => Promise<ApiKeyRecord | undefined>
  let record: ApiKeyRecord | undefined
  for (const pepper of peppers) {
    record = await find.call(store, hashApiKey(key, pepper))
    if (record !== undefined) break
  }
  return record ?? (await find.call(store, digest.toString('hex') as ApiKeyHash))
}
