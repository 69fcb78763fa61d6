/**
 * The API-key lifecycle: create (the plaintext is returned once), import, get, list, update, rotate
 * with a grace period, revoke, expire, delete, and the rotation-due report. Compliance rules are
 * enforced at create, update and import. Every action is audited and published on the broker, so
 * that every instance drops its cached copy.
 *
 * Reachable from `@portcullis/core`.
 * @packageDocumentation
 */
import { createHash } from 'node:crypto'
import type { AuditTrail } from '../audit/audit-trail.js'
import { AuthError, ConfigError } from '../errors.js'
import { parseUserId, type UserID } from '../ids.js'
import { systemClock, type Clock } from '../internal/clock.js'
import type { BrokerTopic, MessageBroker } from '../integrations/message-broker.js'
import { parseDurationMs, type DurationInput } from '../validation/type-converter.js'
import { TypeValidator } from '../validation/type-validator.js'
import { DEFAULT_API_KEY_PREFIX } from '../defaults.js'
import { resolvePeppers } from './api-key-verifier.js'
import {
  API_KEY_BODY_LENGTH,
  API_KEY_PREFIX_PATTERN,
  IMPORTED_API_KEY_PATTERN,
  generateApiKey,
  hashApiKey,
  parseApiKey,
  randomBase62,
  API_KEY_ID_LENGTH,
  type ApiKeyHash,
  type ApiKeyId,
  type Pepper,
} from './format.js'
import type {
  ApiKeyEnvironment,
  ApiKeyListQuery,
  ApiKeyPage,
  ApiKeyRecord,
  ApiKeySecretHash,
  ApiKeyUsagePolicy,
  KeyStore,
} from './key-store.js'
import { resolveUsagePolicy, type ApiKeyUsagePolicyInput } from './usage-policy.js'

/** Compliance rules, checked at create, update and import; a breach throws {@link ApiKeyComplianceError}. */
export interface ApiKeyComplianceOptions {
  /** Longest lifetime (`90d`, ms): `expiresAt - createdAt` may not exceed it, and a key must expire. */
  readonly maxLifetime?: DurationInput
  /** Every key must have an expiry. @default false */
  readonly requireExpiry?: boolean
  /** Every key must name a non-blank owner (otherwise a missing owner is a plain validation error). @default false */
  readonly requireOwner?: boolean
  /** Every key must state its purpose. @default false */
  readonly requirePurpose?: boolean
  /** How often keys must be rotated (`90d`, ms); {@link ApiKeyManager.dueForRotation} reports keys past it. */
  readonly rotationPeriod?: DurationInput
}

/** The name of a compliance rule, as carried by {@link ApiKeyComplianceError.rule}. */
export type ApiKeyComplianceRule =
  'maxLifetime' | 'requireExpiry' | 'requireOwner' | 'requirePurpose'

/**
 * A key-management action broke a compliance rule: code `ERR_APIKEY_NONCOMPLIANT` (HTTP 422 if an
 * admin API answers with it). `rule` names the rule; the message says what to change.
 */
export class ApiKeyComplianceError extends AuthError {
  /** The rule that was broken. */
  readonly rule: ApiKeyComplianceRule

  constructor(rule: ApiKeyComplianceRule, message: string) {
    super('ERR_APIKEY_NONCOMPLIANT', `compliance rule ${rule}: ${message}`, { reason: rule })
    this.rule = rule
  }
}

/** Options of {@link createApiKeyManager}. */
export interface ApiKeyManagerOptions {
  readonly store: KeyStore
  /** Same value as the gate's `apiKeys.pepper`; new hashes use the first (current) pepper. */
  readonly pepper: string | Uint8Array | readonly Pepper[]
  /** Prefix of new `live` keys. @default 'ptcl' */
  readonly prefix?: string
  /** Prefix of new `test` keys. @default `${prefix}_test` (`ptcl_test`) */
  readonly testPrefix?: string
  /** Compliance rules. @default {} (none) */
  readonly compliance?: ApiKeyComplianceOptions
  readonly audit?: AuditTrail
  readonly broker?: MessageBroker
  /** Clock. @default Date.now */
  readonly now?: Clock
}

/** What a new key gets. */
export interface CreateApiKeyInput {
  readonly name: string
  readonly ownerId: string
  readonly scopes?: readonly string[]
  readonly roles?: readonly string[]
  /** Lifetime (`30d`, ms), or absent for no expiry. */
  readonly expiresIn?: DurationInput
  readonly metadata?: Readonly<Record<string, unknown>>
  /** Labels to list and filter by. */
  readonly tags?: readonly string[]
  /** Why the key exists. */
  readonly purpose?: string
  /**
   * `live` or `test`: picks the prefix (`ptcl` or `ptcl_test` by default). Without it, a `prefix`
   * ending in `_test` (or equal to the manager's `testPrefix`) makes a test key. @default 'live'
   */
  readonly environment?: ApiKeyEnvironment
  /** IP ranges, origins, per-key rate limits and quota. */
  readonly policy?: ApiKeyUsagePolicyInput
  /** Prefix for this key (e.g. `acme`). @default the prefix of its environment */
  readonly prefix?: string
}

/**
 * An existing key to bring under Portcullis (migration): exactly one of `key` (its plaintext, in any
 * format: stored as an HMAC under the current pepper) or `sha256` (only its SHA-256, hex: stored
 * as such and re-hashed under the current pepper at its first successful use).
 */
export interface ImportApiKeyInput extends Omit<CreateApiKeyInput, 'prefix'> {
  /** The plaintext key: 8 to 512 printable ASCII characters. */
  readonly key?: string
  /** The key's SHA-256, 64 hex digits. */
  readonly sha256?: string
}

/** What {@link ApiKeyManager.update} may change. */
export interface UpdateApiKeyInput {
  readonly name?: string
  readonly scopes?: readonly string[]
  readonly roles?: readonly string[]
  /** New absolute expiry (epoch ms), or `null` for none. */
  readonly expiresAt?: number | null
  readonly metadata?: Readonly<Record<string, unknown>>
  readonly tags?: readonly string[]
  /** `null` clears it. */
  readonly purpose?: string | null
  /** Replaces the whole usage policy; `null` clears it. */
  readonly policy?: ApiKeyUsagePolicyInput | null
}

/** A created or rotated key. `key` is the only time the plaintext exists: hand it over, never store it. */
export interface IssuedApiKey {
  readonly key: string
  readonly record: ApiKeyRecord
}

/** Who performs a management action, for the audit trail. */
export interface ActorInput {
  readonly actorId?: string
}

/** A key's effective status: `expired` is derived from `expiresAt`, never stored. */
export type ApiKeyStatus = 'active' | 'revoked' | 'expired'

/** The effective status of `record` at `now`. */
export function apiKeyStatus(record: ApiKeyRecord, now: number): ApiKeyStatus {
  if (record.status === 'revoked') return 'revoked'
  if (record.expiresAt !== null && now >= record.expiresAt) return 'expired'
  return 'active'
}

/** The lifecycle operations. */
export interface ApiKeyManager {
  /**
   * Creates a key; the plaintext is in the result only.
   * @throws {ConfigError} for invalid input; {@link ApiKeyComplianceError} for a broken rule
   */
  create(input: CreateApiKeyInput, actor?: ActorInput): Promise<IssuedApiKey>
  /**
   * Imports an existing key (its plaintext or its SHA-256) for migration; returns the record.
   * @throws {ConfigError} for invalid input or a key already imported; {@link ApiKeyComplianceError}
   */
  import(input: ImportApiKeyInput, actor?: ActorInput): Promise<ApiKeyRecord>
  get(id: ApiKeyId): Promise<ApiKeyRecord | undefined>
  /** Lists by owner, stored status and tag, one page at a time (ordered by id). */
  list(query?: ApiKeyListQuery): Promise<ApiKeyPage>
  /**
   * Changes a key's name, scopes, roles, expiry, metadata, tags, purpose or usage policy; every
   * instance drops its cached copy.
   * @throws {ConfigError} for invalid input; {@link ApiKeyComplianceError} for a broken rule
   */
  update(
    id: ApiKeyId,
    patch: UpdateApiKeyInput,
    actor?: ActorInput,
  ): Promise<ApiKeyRecord | undefined>
  /** Revokes at once. */
  revoke(id: ApiKeyId, actor?: ActorInput): Promise<ApiKeyRecord | undefined>
  /** Ends a key's life now (or at `at`, epoch ms) by setting its expiry; it then reads `expired`. */
  expire(
    id: ApiKeyId,
    options?: { readonly at?: number } & ActorInput,
  ): Promise<ApiKeyRecord | undefined>
  /** Issues a new secret for the same key id; the old secret keeps working for `grace`. Sets `rotatedAt`. */
  rotate(
    id: ApiKeyId,
    options?: { readonly grace?: DurationInput } & ActorInput,
  ): Promise<IssuedApiKey | undefined>
  /** Deletes the record. */
  delete(id: ApiKeyId, actor?: ActorInput): Promise<boolean>
  /**
   * Active, unexpired keys whose rotation is due: `(rotatedAt ?? createdAt) + rotationPeriod <= now`,
   * oldest due first.
   * @throws {ConfigError} when neither `rotationPeriod` nor `compliance.rotationPeriod` is set
   */
  dueForRotation(options?: {
    readonly now?: number
    readonly rotationPeriod?: DurationInput
  }): Promise<ApiKeyRecord[]>
}

const SCOPE = /^[\x21\x23-\x5b\x5d-\x7e]{1,256}$/
const ROLE = /^[A-Za-z0-9][A-Za-z0-9_.:\-/]*$/
const TAG = /^[\x21-\x7e](?:[\x20-\x7e]{0,62}[\x21-\x7e])?$/
const SHA256_HEX = /^[0-9a-fA-F]{64}$/
const COMPLIANCE_NAMES = [
  'maxLifetime',
  'requireExpiry',
  'requireOwner',
  'requirePurpose',
  'rotationPeriod',
]

/** Whether `value` is plain JSON data (what every store can keep and give back unchanged). */
function isJsonData(value: unknown, depth = 0): boolean {
  if (depth > 16) return false
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return true
  if (typeof value === 'number') return Number.isFinite(value)
  if (Array.isArray(value)) return value.every((v) => isJsonData(v, depth + 1))
  if (typeof value !== 'object') return false
  const proto = Object.getPrototypeOf(value) as unknown
  if (proto !== Object.prototype && proto !== null) return false
  return Object.values(value).every((v) => isJsonData(v, depth + 1))
}

/** Validates the fields create, import and update share; returns the resolved policy, if given. */
function checkFields(
  iv: TypeValidator,
  input: Omit<UpdateApiKeyInput, 'policy'> & { readonly policy?: unknown },
): ApiKeyUsagePolicy | undefined {
  if (input.name !== undefined) iv.string('name', input.name, { maxLength: 200 })
  if (input.scopes !== undefined)
    iv.array('scopes', input.scopes, (sv, i, x) => sv.string(i, x, { pattern: SCOPE }))
  if (input.roles !== undefined)
    iv.array('roles', input.roles, (rv, i, x) => rv.string(i, x, { pattern: ROLE }))
  if (input.tags !== undefined)
    iv.array('tags', input.tags, (tv, i, x) => tv.string(i, x, { pattern: TAG }), {
      maxLength: 64,
    })
  if (input.purpose !== undefined && input.purpose !== null)
    iv.string('purpose', input.purpose, { maxLength: 500 })
  if (
    input.metadata !== undefined &&
    (iv.object('metadata', input.metadata) === undefined || !isJsonData(input.metadata))
  ) {
    iv.fail('metadata', 'must be plain JSON data (no Dates, Maps, functions or non-finite numbers)')
  }
  return input.policy === undefined || input.policy === null
    ? undefined
    : resolveUsagePolicy(iv, 'policy', input.policy)
}

interface ResolvedCompliance {
  readonly maxLifetimeMs: number | undefined
  readonly requireExpiry: boolean
  readonly requireOwner: boolean
  readonly requirePurpose: boolean
  readonly rotationPeriodMs: number | undefined
}

function resolveCompliance(v: TypeValidator, value: unknown): ResolvedCompliance {
  const none: ResolvedCompliance = {
    maxLifetimeMs: undefined,
    requireExpiry: false,
    requireOwner: false,
    requirePurpose: false,
    rotationPeriodMs: undefined,
  }
  if (value === undefined) return none
  const c = v.object('compliance', value) as ApiKeyComplianceOptions | undefined
  if (c === undefined) return none
  const cv = v.child('compliance')
  cv.knownKeys(c as Record<string, unknown>, COMPLIANCE_NAMES)
  const duration = (field: string, d: DurationInput | undefined): number | undefined => {
    if (d === undefined) return undefined
    const ms = parseDurationMs(d)
    if (ms === undefined || ms <= 0)
      return cv.fail(
        field,
        `must be a positive duration (e.g. "90d"), received ${JSON.stringify(d)}`,
      )
    return ms
  }
  const flag = (field: string, b: boolean | undefined): boolean =>
    b === undefined ? false : (cv.boolean(field, b) ?? false)
  return {
    maxLifetimeMs: duration('maxLifetime', c.maxLifetime),
    requireExpiry: flag('requireExpiry', c.requireExpiry),
    requireOwner: flag('requireOwner', c.requireOwner),
    requirePurpose: flag('requirePurpose', c.requirePurpose),
    rotationPeriodMs: duration('rotationPeriod', c.rotationPeriod),
  }
}

const DAY_MS = 86_400_000
const showDuration = (ms: number): string => (ms % DAY_MS === 0 ? `${ms / DAY_MS}d` : `${ms} ms`)

/** Throws {@link ApiKeyComplianceError} for the first rule `key` breaks. */
function enforce(
  rules: ResolvedCompliance,
  key: {
    readonly purpose?: string | null | undefined
    readonly createdAt: number
    readonly expiresAt: number | null
  },
): void {
  if (rules.requireExpiry && key.expiresAt === null)
    throw new ApiKeyComplianceError('requireExpiry', 'every key must have an expiry (expiresIn)')
  if (rules.maxLifetimeMs !== undefined) {
    if (key.expiresAt === null)
      throw new ApiKeyComplianceError(
        'maxLifetime',
        `keys live at most ${showDuration(rules.maxLifetimeMs)}: give an expiry within it`,
      )
    const lifetime = key.expiresAt - key.createdAt
    if (lifetime > rules.maxLifetimeMs)
      throw new ApiKeyComplianceError(
        'maxLifetime',
        `keys live at most ${showDuration(rules.maxLifetimeMs)}, this one would live ${showDuration(lifetime)}`,
      )
  }
  if (rules.requirePurpose && (key.purpose === undefined || key.purpose === null))
    throw new ApiKeyComplianceError('requirePurpose', 'every key must state its purpose')
}

/**
 * Creates an API-key manager.
 * @throws {ConfigError} for a bad option
 * @example
 * ```ts
 * const keys = createApiKeyManager({ store, pepper, compliance: { maxLifetime: '90d', requirePurpose: true } })
 * const { key } = await keys.create({
 *   name: 'ci', ownerId: 'svc-ci', purpose: 'deploys', scopes: ['documents:read'], expiresIn: '90d',
 *   policy: { allowedCidrs: ['10.0.0.0/8'], rateLimits: [{ limit: 10, windowMs: '1s' }] },
 * })
 * ```
 */
export function createApiKeyManager(options: Readonly<ApiKeyManagerOptions>): ApiKeyManager {
  const v = new TypeValidator('keys')
  const peppers = resolvePeppers(v, options.pepper)
  const prefix = v.string('prefix', options.prefix ?? DEFAULT_API_KEY_PREFIX, {
    pattern: API_KEY_PREFIX_PATTERN,
  })
  const testPrefix = v.string(
    'testPrefix',
    options.testPrefix ?? `${options.prefix ?? DEFAULT_API_KEY_PREFIX}_test`,
    { pattern: API_KEY_PREFIX_PATTERN },
  )
  if (typeof options.store?.insert !== 'function') v.fail('store', 'must implement KeyStore')
  const rules = resolveCompliance(v, options.compliance)
  v.assert()
  const store = options.store
  const current = (peppers as Pepper[])[0] as Pepper
  const now = options.now ?? systemClock
  const prefixOf = (env: ApiKeyEnvironment): string =>
    (env === 'test' ? testPrefix : prefix) as string
  const environmentOf = (p: string): ApiKeyEnvironment =>
    p === testPrefix || p.endsWith('_test') ? 'test' : 'live'

  const announce = async (
    topic: BrokerTopic & `key.${string}`,
    action: string,
    record: { readonly id: string },
    actor: ActorInput | undefined,
    data?: Record<string, unknown>,
  ): Promise<void> => {
    options.audit?.emit({
      type: topic,
      outcome: 'success',
      actor: { id: actor?.actorId ?? null },
      action,
      target: { type: 'apikey', id: record.id },
      ...(data === undefined ? {} : { data }),
    })
    await options.broker?.publish(topic, { keyId: record.id })
  }

  /** Records a refused action (compliance breach) in the audit trail, then rethrows it. */
  const refused = (
    topic: BrokerTopic & `key.${string}`,
    action: string,
    id: string | undefined,
    actor: ActorInput | undefined,
    error: unknown,
  ): never => {
    if (error instanceof ApiKeyComplianceError) {
      options.audit?.emit({
        type: topic,
        outcome: 'failure',
        actor: { id: actor?.actorId ?? null },
        action,
        target: id === undefined ? { type: 'apikey' } : { type: 'apikey', id },
        reason: { code: error.code, detail: error.message },
      })
    }
    throw error
  }

  /** Validates what create and import share; returns the fields of the new record. */
  const resolveNew = (
    iv: TypeValidator,
    input: CreateApiKeyInput | ImportApiKeyInput,
    t: number,
  ): Omit<ApiKeyRecord, 'id' | 'prefix' | 'hashes' | 'environment'> & {
    readonly environment: ApiKeyEnvironment | undefined
  } => {
    if (rules.requireOwner && (typeof input.ownerId !== 'string' || input.ownerId.trim() === ''))
      throw new ApiKeyComplianceError('requireOwner', 'every key must name its owner (ownerId)')
    if (input.name === undefined) iv.fail('name', 'required')
    const policy = checkFields(iv, input)
    const ownerId =
      parseUserId(input.ownerId) ??
      iv.fail('ownerId', `invalid user id ${JSON.stringify(input.ownerId)}`)
    const ttl = input.expiresIn === undefined ? undefined : parseDurationMs(input.expiresIn)
    if (input.expiresIn !== undefined && (ttl === undefined || ttl <= 0))
      iv.fail(
        'expiresIn',
        `must be a positive duration, received ${JSON.stringify(input.expiresIn)}`,
      )
    const environment =
      input.environment === undefined
        ? undefined
        : iv.oneOf('environment', input.environment, ['live', 'test'] as const, 'environment')
    return {
      name: input.name,
      ownerId: ownerId as UserID,
      scopes: [...(input.scopes ?? [])],
      roles: [...(input.roles ?? [])],
      status: 'active',
      createdAt: t,
      expiresAt: ttl === undefined ? null : t + ttl,
      revokedAt: null,
      metadata: { ...(input.metadata ?? {}) },
      tags: [...new Set(input.tags ?? [])],
      purpose: input.purpose ?? null,
      environment,
      policy: policy ?? {},
      rotatedAt: null,
      lastUsedAt: null,
      usageCount: 0,
    }
  }

  return {
    async create(input, actor): Promise<IssuedApiKey> {
      const t = now()
      try {
        const iv = new TypeValidator('key')
        const fields = resolveNew(iv, input, t)
        if (input.prefix !== undefined)
          iv.string('prefix', input.prefix, { pattern: API_KEY_PREFIX_PATTERN })
        iv.assert()
        enforce(rules, fields)
        const keyPrefix = input.prefix ?? prefixOf(fields.environment ?? 'live')
        const generated = generateApiKey({ prefix: keyPrefix })
        const record: ApiKeyRecord = {
          ...fields,
          id: generated.id,
          prefix: generated.prefix,
          environment: fields.environment ?? environmentOf(keyPrefix),
          hashes: [
            { hash: hashApiKey(generated.key, current), pepperId: current.id, notAfter: null },
          ],
        }
        await store.insert(record)
        await announce('key.created', 'key.create', record, actor, {
          name: record.name,
          ownerId: record.ownerId,
          environment: record.environment,
        })
        return { key: generated.key, record }
      } catch (error) {
        return refused('key.created', 'key.create', undefined, actor, error)
      }
    },

    async import(input, actor): Promise<ApiKeyRecord> {
      const t = now()
      try {
        const iv = new TypeValidator('key')
        const fields = resolveNew(iv, input, t)
        const hasKey = input.key !== undefined
        if (hasKey === (input.sha256 !== undefined))
          iv.fail('key', 'give exactly one of key (the plaintext) or sha256 (its SHA-256, hex)')
        if (hasKey)
          iv.string('key', input.key, {
            pattern: IMPORTED_API_KEY_PATTERN,
          })
        else if (input.sha256 !== undefined)
          iv.string('sha256', input.sha256, { pattern: SHA256_HEX })
        iv.assert()
        enforce(rules, fields)
        let id = randomBase62(API_KEY_ID_LENGTH) as ApiKeyId
        // Keys imported from another system carry no Portcullis prefix; `''` says so.
        let keyPrefix = ''
        let hash: ApiKeySecretHash
        if (hasKey) {
          const key = input.key as string
          // A key already in Portcullis's format keeps its id, so it verifies on the fast path.
          const candidate = key.slice(0, key.length - API_KEY_BODY_LENGTH - 1)
          const parsed = API_KEY_PREFIX_PATTERN.test(candidate)
            ? parseApiKey(key, new Set([candidate]))
            : 'prefix'
          if (typeof parsed !== 'string') {
            id = parsed.id
            keyPrefix = parsed.prefix
          }
          hash = { hash: hashApiKey(key, current), pepperId: current.id, notAfter: null }
        } else {
          hash = {
            hash: (input.sha256 as string).toLowerCase() as ApiKeyHash,
            pepperId: current.id,
            notAfter: null,
            algorithm: 'sha256',
          }
        }
        const existing = await store.findByHash?.(hash.hash)
        if (existing !== undefined)
          throw new ConfigError(`key: already imported as key ${existing.id}`)
        const record: ApiKeyRecord = {
          ...fields,
          id,
          prefix: keyPrefix,
          environment: fields.environment ?? (keyPrefix === '' ? 'live' : environmentOf(keyPrefix)),
          hashes: [hash],
        }
        await store.insert(record)
        await announce('key.created', 'key.import', record, actor, {
          name: record.name,
          ownerId: record.ownerId,
          imported: hasKey ? 'plaintext' : 'sha256',
        })
        return record
      } catch (error) {
        return refused('key.created', 'key.import', undefined, actor, error)
      }
    },

    get: (id) => store.get(id),

    async update(id, patch, actor): Promise<ApiKeyRecord | undefined> {
      try {
        const iv = new TypeValidator('key')
        const policy = checkFields(iv, patch)
        if (patch.expiresAt !== undefined && patch.expiresAt !== null)
          iv.integer('expiresAt', patch.expiresAt, { min: 0 })
        iv.assert()
        // The rules judge the key as it would be after the patch, so they need the stored key.
        if (rules.requireExpiry || rules.requirePurpose || rules.maxLifetimeMs !== undefined) {
          const before = await store.get(id)
          if (before === undefined) return undefined
          enforce(rules, {
            purpose: patch.purpose === undefined ? before.purpose : patch.purpose,
            createdAt: before.createdAt,
            expiresAt: patch.expiresAt === undefined ? before.expiresAt : patch.expiresAt,
          })
        }
        const record = await store.update(id, {
          name: patch.name,
          scopes: patch.scopes,
          roles: patch.roles,
          expiresAt: patch.expiresAt,
          metadata: patch.metadata,
          tags: patch.tags === undefined ? undefined : [...new Set(patch.tags)],
          purpose: patch.purpose,
          policy: patch.policy === null ? {} : policy,
        })
        if (record !== undefined)
          await announce('key.updated', 'key.update', record, actor, {
            fields: Object.keys(patch).filter(
              (k) => (patch as Record<string, unknown>)[k] !== undefined,
            ),
          })
        return record
      } catch (error) {
        return refused('key.updated', 'key.update', id, actor, error)
      }
    },

    list: (query) => store.list(query),

    async revoke(id, actor): Promise<ApiKeyRecord | undefined> {
      const record = await store.update(id, { status: 'revoked', revokedAt: now() })
      if (record !== undefined) await announce('key.revoked', 'key.revoke', record, actor)
      return record
    },

    async expire(id, expireOptions = {}): Promise<ApiKeyRecord | undefined> {
      const at = expireOptions.at ?? now()
      if (!Number.isSafeInteger(at) || at < 0)
        throw new ConfigError(`at: must be an epoch-ms integer, received ${JSON.stringify(at)}`)
      const record = await store.update(id, { expiresAt: at })
      if (record !== undefined)
        await announce('key.updated', 'key.expire', record, expireOptions, { expiresAt: at })
      return record
    },

    async rotate(id, rotateOptions = {}): Promise<IssuedApiKey | undefined> {
      const existing = await store.get(id)
      if (existing === undefined) return undefined
      const grace = parseDurationMs(rotateOptions.grace ?? 0)
      if (grace === undefined || grace < 0)
        throw new ConfigError(
          `grace: must be a duration, received ${JSON.stringify(rotateOptions.grace)}`,
        )
      // An imported key without a Portcullis prefix gets one of its environment from now on.
      const generated = generateApiKey({
        prefix: existing.prefix === '' ? prefixOf(existing.environment ?? 'live') : existing.prefix,
        id: existing.id,
      })
      const t = now()
      const hashes = [
        { hash: hashApiKey(generated.key, current), pepperId: current.id, notAfter: null },
        ...existing.hashes
          .filter((h) => h.notAfter === null || h.notAfter > t)
          .map((h) => ({
            ...h,
            notAfter: h.notAfter === null ? t + grace : Math.min(h.notAfter, t + grace),
          })),
      ].filter((h) => h.notAfter === null || h.notAfter > t)
      const record = await store.update(id, { hashes, rotatedAt: t })
      if (record === undefined) return undefined
      await announce('key.rotated', 'key.rotate', record, rotateOptions, { graceMs: grace })
      return { key: generated.key, record }
    },

    async delete(id, actor): Promise<boolean> {
      const deleted = await store.delete(id)
      if (deleted) await announce('key.deleted', 'key.delete', { id }, actor)
      return deleted
    },

    async dueForRotation(dueOptions = {}): Promise<ApiKeyRecord[]> {
      const period =
        dueOptions.rotationPeriod === undefined
          ? rules.rotationPeriodMs
          : parseDurationMs(dueOptions.rotationPeriod)
      if (period === undefined || period <= 0)
        throw new ConfigError(
          'rotationPeriod: give a positive duration here or in the manager’s compliance options',
        )
      const t = dueOptions.now ?? now()
      const due: ApiKeyRecord[] = []
      let cursor: string | undefined
      do {
        const page = await store.list({
          status: 'active',
          limit: 1000,
          ...(cursor === undefined ? {} : { cursor }),
        })
        for (const r of page.items) {
          if (apiKeyStatus(r, t) === 'active' && (r.rotatedAt ?? r.createdAt) + period <= t)
            due.push(r)
        }
        cursor = page.nextCursor ?? undefined
      } while (cursor !== undefined)
      return due.sort(
        (a, b) =>
          (a.rotatedAt ?? a.createdAt) - (b.rotatedAt ?? b.createdAt) || (a.id < b.id ? -1 : 1),
      )
    },
  }
}

/** SHA-256 of a key, hex: the form {@link ImportApiKeyInput.sha256} expects. */
export function sha256Hex(key: string): string {
  return createHash('sha256').update(key).digest('hex')
}
