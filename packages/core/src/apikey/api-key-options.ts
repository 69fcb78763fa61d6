/**
 * The API-key verifier's options: their type, their validation and defaults, resolved once when
 * the verifier is made (see `createApiKeyVerifier`).
 *
 * Reachable from `@portcullis/core` (through `./api-key-verifier.js`).
 * @packageDocumentation
 */
import {
  DEFAULT_API_KEY_CACHE_MAX,
  DEFAULT_API_KEY_CACHE_TTL_MS,
  DEFAULT_API_KEY_NEGATIVE_CACHE_MAX,
  DEFAULT_API_KEY_NEGATIVE_CACHE_TTL_MS,
  DEFAULT_API_KEY_PREFIX,
  DEFAULT_API_KEY_USAGE_FLUSH_INTERVAL_MS,
  DEFAULT_API_KEY_USAGE_MAX_BATCH,
} from '../defaults.js'
import type { MessageBroker } from '../integrations/message-broker.js'
import { optionNames } from '../internal/option-names.js'
import type { Principal } from '../types.js'
import { TypeValidator } from '../validation/type-validator.js'
import { API_KEY_PREFIX_PATTERN, type Pepper } from './format.js'
import type { ApiKeyEnvironment, ApiKeyRecord, KeyStore } from './key-store.js'
import type { UsageRecorderOptions } from './usage-recorder.js'
import type { VerifiedKeyCacheOptions } from './verified-key-cache.js'

/** API-key authentication options. */
export interface ApiKeyOptions {
  /** Where keys live. */
  readonly store: KeyStore
  /**
   * The server secret(s) keying the stored hashes: one secret, or a list whose first entry is
   * current and whose others still verify older hashes (pepper rotation: a key that verifies
   * under an older pepper is re-hashed under the current one, once, off the request path).
   */
  readonly pepper: string | Uint8Array | readonly Pepper[]
  /** Key prefixes accepted (add `ptcl_test` to accept test keys). @default ['ptcl'] */
  readonly prefixes?: readonly string[]
  /** Cache of verified keys; `false` disables it. */
  readonly cache?:
    | false
    | {
        /** @default 10000 */
        readonly max?: number
        /** How long a verified key is trusted without a store read. @default 60000 */
        readonly ttlMs?: number
        /** Unknown key ids remembered, so that guessing floods never reach the store. @default 10000 */
        readonly negativeMax?: number
        /** @default 10000 */
        readonly negativeTtlMs?: number
      }
  /** Builds the principal from a verified key record. */
  readonly toPrincipal?: (record: ApiKeyRecord) => Principal
  /** Revocations and updates arriving here drop cached copies. */
  readonly broker?: MessageBroker
  /** Key environments this gate accepts (e.g. `['live']` in production). @default ['live', 'test'] */
  readonly environments?: readonly ApiKeyEnvironment[]
  /**
   * Also accept keys imported from another system (`ApiKeyManager.import`) whose format is not
   * Portcullis's: such a token is looked up by its hash (`KeyStore.findByHash`). Tokens that start
   * with one of `prefixes` are never looked up this way, so a mistyped Portcullis key is still
   * refused before any store read. @default false
   */
  readonly importedKeys?: boolean
  /**
   * Batching of `lastUsedAt` / `usageCount` (written through `KeyStore.recordUsage`, when the
   * store has it); `false` disables usage tracking.
   */
  readonly usage?:
    | false
    | {
        /** How often pending usage is written. @default 10000 */
        readonly flushIntervalMs?: number
        /** Distinct keys pending that trigger an early write. @default 1000 */
        readonly maxBatch?: number
      }
}

const OPTION_NAMES = optionNames<ApiKeyOptions>()([
  'store',
  'pepper',
  'prefixes',
  'cache',
  'toPrincipal',
  'broker',
  'environments',
  'importedKeys',
  'usage',
])
const MIN_PEPPER_BYTES = 32

/** Resolves the pepper option into a non-empty list, current first. */
export function resolvePeppers(v: TypeValidator, value: unknown): Pepper[] | undefined {
  const list: unknown[] =
    typeof value === 'string' || value instanceof Uint8Array
      ? [{ id: 'p1', secret: value }]
      : Array.isArray(value)
        ? value
        : []
  if (list.length === 0)
    return v.fail('pepper', 'required: a secret of at least 32 bytes, or a list of { id, secret }')
  return v.array('pepper', list, (pv, i, item) => {
    const p = pv.object(i, item) as Partial<Pepper> | undefined
    if (p === undefined) return undefined
    const id = pv.child(i).string('id', p.id, { pattern: /^[A-Za-z0-9_.-]{1,32}$/ })
    const bytes =
      typeof p.secret === 'string'
        ? Buffer.byteLength(p.secret)
        : p.secret instanceof Uint8Array
          ? p.secret.length
          : -1
    if (bytes < MIN_PEPPER_BYTES)
      return pv.child(i).fail('secret', `must be at least ${MIN_PEPPER_BYTES} bytes`)
    return id === undefined ? undefined : { id, secret: p.secret as string | Uint8Array }
  })
}

/** The options as the verifier uses them: validated, with defaults filled in. */
export interface ResolvedApiKeyOptions {
  readonly store: KeyStore
  readonly peppers: readonly Pepper[]
  readonly prefixes: ReadonlySet<string>
  readonly cache: Omit<VerifiedKeyCacheOptions, 'metrics'>
  /** Absent: the default, `principalFromKeyRecord`. */
  readonly toPrincipal: ((record: ApiKeyRecord) => Principal) | undefined
  readonly broker: MessageBroker | undefined
  readonly environments: ReadonlySet<ApiKeyEnvironment>
  /** Whether imported keys are looked up (asked for, and the store can find keys by hash). */
  readonly importedKeys: boolean
  /** Absent: usage is not tracked (turned off, or the store cannot record it). */
  readonly usage: UsageRecorderOptions | undefined
}

/**
 * Validates `options` and fills the defaults; `warn` hears of unknown options and of imported
 * keys the store cannot find.
 * @throws {ConfigError} for a bad option
 */
export function resolveApiKeyOptions(
  options: Readonly<ApiKeyOptions>,
  warn: ((message: string) => void) | undefined,
): ResolvedApiKeyOptions {
  const v = new TypeValidator('apiKeys')
  v.knownKeys(options as Record<string, unknown>, OPTION_NAMES)
  const store = v.object('store', options.store) as KeyStore | undefined
  if (store !== undefined && typeof store.get !== 'function')
    v.fail('store', 'must implement KeyStore (get, insert, update, delete, list)')
  const peppers = resolvePeppers(v, options.pepper)
  const prefixes = v.array(
    'prefixes',
    options.prefixes ?? [DEFAULT_API_KEY_PREFIX],
    (pv, i, p) => pv.string(i, p, { pattern: API_KEY_PREFIX_PATTERN }),
    {
      nonEmpty: true,
    },
  )
  const c = options.cache === false ? { max: 0, negativeMax: 0 } : (options.cache ?? {})
  const cv = v.child('cache')
  const max = cv.integerOr('max', c.max, DEFAULT_API_KEY_CACHE_MAX, { min: 0 })
  const ttlMs =
    'ttlMs' in c && c.ttlMs !== undefined
      ? cv.integer('ttlMs', c.ttlMs, { min: 1 })
      : DEFAULT_API_KEY_CACHE_TTL_MS
  const negativeMax = cv.integerOr(
    'negativeMax',
    c.negativeMax,
    DEFAULT_API_KEY_NEGATIVE_CACHE_MAX,
    { min: 0 },
  )
  const negativeTtlMs =
    'negativeTtlMs' in c && c.negativeTtlMs !== undefined
      ? cv.integer('negativeTtlMs', c.negativeTtlMs, { min: 1 })
      : DEFAULT_API_KEY_NEGATIVE_CACHE_TTL_MS
  const toPrincipal =
    options.toPrincipal === undefined
      ? undefined
      : v.function<(r: ApiKeyRecord) => Principal>('toPrincipal', options.toPrincipal)
  const environments = v.array(
    'environments',
    options.environments ?? ['live', 'test'],
    (ev, i, e) => ev.oneOf(i, e, ['live', 'test'] as const, 'environment'),
    { nonEmpty: true },
  )
  const importedKeys =
    options.importedKeys === undefined ? false : v.boolean('importedKeys', options.importedKeys)
  const u = options.usage === false ? undefined : (options.usage ?? {})
  const uv = v.child('usage')
  if (options.usage !== undefined && options.usage !== false) v.object('usage', options.usage)
  const flushIntervalMs =
    u?.flushIntervalMs === undefined
      ? DEFAULT_API_KEY_USAGE_FLUSH_INTERVAL_MS
      : uv.integer('flushIntervalMs', u.flushIntervalMs, { min: 1 })
  const maxBatch =
    u?.maxBatch === undefined
      ? DEFAULT_API_KEY_USAGE_MAX_BATCH
      : uv.integer('maxBatch', u.maxBatch, { min: 1 })
  v.assert(warn)
  if (importedKeys === true && typeof store?.findByHash !== 'function')
    warn?.('apiKeys.importedKeys: the store has no findByHash(); imported keys cannot verify')
  return {
    store: store as KeyStore,
    peppers: peppers as Pepper[],
    prefixes: new Set(prefixes),
    cache: {
      max: max ?? 0,
      ttlMs: ttlMs as number,
      negativeMax: negativeMax ?? 0,
      negativeTtlMs: negativeTtlMs as number,
    },
    toPrincipal,
    broker: options.broker,
    environments: new Set(environments),
    importedKeys: importedKeys === true && typeof store?.findByHash === 'function',
    usage:
      u === undefined || typeof store?.recordUsage !== 'function'
        ? undefined
        : { flushIntervalMs: flushIntervalMs as number, maxBatch: maxBatch as number },
  }
}
