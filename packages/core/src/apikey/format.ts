/**
 * The API key format: `<prefix>_<body>` where the body is 54 base62 characters: a 16-character key
 * id (one indexed store read), a 32-character secret (~190 bits) and a 6-character CRC32 checksum
 * that rejects mistyped or truncated keys before any store read (as GitHub's token format does).
 *
 * Reachable from `@portcullis/core`.
 * @packageDocumentation
 */
import { createHmac, randomBytes } from 'node:crypto'
import { crc32 } from 'node:zlib'
import type { Brand } from '../ids.js'

/** The id embedded in an API key: 16 base62 characters. */
export type ApiKeyId = Brand<string, 'ApiKeyId'>
/** An HMAC-SHA-256 of an API key under a server pepper, base64url. Only {@link hashApiKey} makes one. */
export type ApiKeyHash = Brand<string, 'ApiKeyHash'>

const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'
/** Characters of the key id. */
export const API_KEY_ID_LENGTH = 16
/** Characters of the secret. */
export const API_KEY_SECRET_LENGTH = 32
/** Characters of the checksum. */
export const API_KEY_CHECKSUM_LENGTH = 6
/** Characters after the prefix separator: id, secret and checksum. */
export const API_KEY_BODY_LENGTH: number =
  API_KEY_ID_LENGTH + API_KEY_SECRET_LENGTH + API_KEY_CHECKSUM_LENGTH
const BODY_LENGTH = API_KEY_BODY_LENGTH
/** Allowed prefixes: lower-case words joined by `_`, e.g. `ptcl`, `acme_live`. */
export const API_KEY_PREFIX_PATTERN: RegExp = /^[a-z][a-z0-9]{0,15}(?:_[a-z0-9]{1,16}){0,2}$/
const BODY_PATTERN = /^[0-9A-Za-z]+$/
/** Longest key accepted by {@link parseApiKey}. */
export const MAX_API_KEY_LENGTH: number = 50 + 1 + BODY_LENGTH

/** Random base62 text without modulo bias (rejection sampling). */
export function randomBase62(length: number): string {
  let out = ''
  while (out.length < length) {
    for (const byte of randomBytes(length * 2)) {
      // 248 = 4 * 62: bytes at or above it would bias the first characters.
      if (byte < 248) out += BASE62[byte % 62]
      if (out.length === length) break
    }
  }
  return out
}

function checksum(text: string): string {
  let n = crc32(text)
  let out = ''
  for (let i = 0; i < API_KEY_CHECKSUM_LENGTH; i++) {
    out = BASE62[n % 62] + out
    n = Math.floor(n / 62)
  }
  return out
}

/** A freshly generated key. `key` is the only copy of the plaintext: show it once, store its hash. */
export interface GeneratedApiKey {
  /** The full key to hand to the client. */
  readonly key: string
  /** Its id. */
  readonly id: ApiKeyId
  /** Its prefix. */
  readonly prefix: string
}

/** Generates a new key under `prefix` (default `ptcl`), optionally with a given id (for rotation). */
export function generateApiKey(options: {
  readonly prefix: string
  readonly id?: ApiKeyId
}): GeneratedApiKey {
  if (!API_KEY_PREFIX_PATTERN.test(options.prefix))
    throw new TypeError(`invalid API key prefix ${JSON.stringify(options.prefix)}`)
  const id = options.id ?? (randomBase62(API_KEY_ID_LENGTH) as ApiKeyId)
  const head = `${options.prefix}_${id}${randomBase62(API_KEY_SECRET_LENGTH)}`
  return { key: head + checksum(head), id, prefix: options.prefix }
}

/** A key that passed the format and checksum checks (its secret is not yet verified). */
export interface ParsedApiKey {
  readonly prefix: string
  readonly id: ApiKeyId
}

/** Why a string is not a well-formed key. */
export type ApiKeyFormatError = 'length' | 'prefix' | 'charset' | 'checksum'

/**
 * Checks the shape and checksum of a presented key without any store access. Returns the prefix
 * and id, or the reason it is malformed.
 */
export function parseApiKey(
  key: string,
  allowedPrefixes: ReadonlySet<string>,
): ParsedApiKey | ApiKeyFormatError {
  if (key.length > MAX_API_KEY_LENGTH || key.length < BODY_LENGTH + 2) return 'length'
  const sep = key.length - BODY_LENGTH - 1
  if (key.charCodeAt(sep) !== 0x5f) return 'length'
  const prefix = key.slice(0, sep)
  if (!allowedPrefixes.has(prefix)) return 'prefix'
  const body = key.slice(sep + 1)
  if (!BODY_PATTERN.test(body)) return 'charset'
  const head = key.slice(0, key.length - API_KEY_CHECKSUM_LENGTH)
  if (checksum(head) !== key.slice(key.length - API_KEY_CHECKSUM_LENGTH)) return 'checksum'
  return { prefix, id: body.slice(0, API_KEY_ID_LENGTH) as ApiKeyId }
}

/** Whether `value` is shaped like a key id. */
export function parseApiKeyId(value: unknown): ApiKeyId | undefined {
  return typeof value === 'string' && value.length === API_KEY_ID_LENGTH && BODY_PATTERN.test(value)
    ? (value as ApiKeyId)
    : undefined
}

/** A server-side secret that keys the API-key hashes. Rotate by adding a new first entry. */
export interface Pepper {
  /** Stored beside each hash so that older peppers still verify. */
  readonly id: string
  /** At least 32 bytes of secret. */
  readonly secret: string | Uint8Array
}

/** HMAC-SHA-256 of the full key under a pepper: the only form in which keys are stored. */
export function hashApiKey(key: string, pepper: Pepper): ApiKeyHash {
  return createHmac('sha256', pepper.secret).update(key).digest('base64url') as ApiKeyHash
}

/**
 * What an imported key (one made by another system, see `ApiKeyManager.import`) may look like:
 * 8 to 512 printable ASCII characters without spaces.
 */
export const IMPORTED_API_KEY_PATTERN: RegExp = /^[\x21-\x7e]{8,512}$/
