/**
 * The API-key lifecycle: create (the plaintext is returned once), get, list, update, rotate with a
 * grace period, revoke, delete. Every action is audited and published on the broker, so that every
 * instance drops its cached copy.
 *
 * Reachable from `@gatehouse/core`.
 * @packageDocumentation
 */
import type { AuditTrail } from '../audit/audit-trail.js'
import { ConfigError } from '../errors.js'
import { parseUserId, type UserID } from '../ids.js'
import { systemClock, type Clock } from '../internal/clock.js'
import type { BrokerTopic, MessageBroker } from '../integrations/message-broker.js'
import { parseDurationMs, type DurationInput } from '../validation/type-converter.js'
import { TypeValidator } from '../validation/type-validator.js'
import { DEFAULT_API_KEY_PREFIX } from '../defaults.js'
import { resolvePeppers } from './api-key-verifier.js'
import {
  API_KEY_PREFIX_PATTERN,
  generateApiKey,
  hashApiKey,
  type ApiKeyId,
  type Pepper,
} from './format.js'
import type { ApiKeyListQuery, ApiKeyPage, ApiKeyRecord, KeyStore } from './key-store.js'

/** Options of {@link createApiKeyManager}. */
export interface ApiKeyManagerOptions {
  readonly store: KeyStore
  /** Same value as the gate's `apiKeys.pepper`. */
  readonly pepper: string | Uint8Array | readonly Pepper[]
  /** Prefix of new keys. @default 'gh' */
  readonly prefix?: string
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
  /** Prefix for this key (e.g. `gh_test`). @default the manager's prefix */
  readonly prefix?: string
}

/** What {@link ApiKeyManager.update} may change. */
export interface UpdateApiKeyInput {
  readonly name?: string
  readonly scopes?: readonly string[]
  readonly roles?: readonly string[]
  /** New absolute expiry (epoch ms), or `null` for none. */
  readonly expiresAt?: number | null
  readonly metadata?: Readonly<Record<string, unknown>>
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

/** The lifecycle operations. */
export interface ApiKeyManager {
  create(input: CreateApiKeyInput, actor?: ActorInput): Promise<IssuedApiKey>
  get(id: ApiKeyId): Promise<ApiKeyRecord | undefined>
  list(query?: ApiKeyListQuery): Promise<ApiKeyPage>
  /** Changes a key's name, scopes, roles, expiry or metadata; every instance drops its cached copy. */
  update(
    id: ApiKeyId,
    patch: UpdateApiKeyInput,
    actor?: ActorInput,
  ): Promise<ApiKeyRecord | undefined>
  /** Revokes at once. */
  revoke(id: ApiKeyId, actor?: ActorInput): Promise<ApiKeyRecord | undefined>
  /** Issues a new secret for the same key id; the old secret keeps working for `graceMs`. */
  rotate(
    id: ApiKeyId,
    options?: { readonly grace?: DurationInput } & ActorInput,
  ): Promise<IssuedApiKey | undefined>
  /** Deletes the record. */
  delete(id: ApiKeyId, actor?: ActorInput): Promise<boolean>
}

const SCOPE = /^[\x21\x23-\x5b\x5d-\x7e]{1,256}$/
const ROLE = /^[A-Za-z0-9][A-Za-z0-9_.:\-/]*$/

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

function checkFields(iv: TypeValidator, input: UpdateApiKeyInput): void {
  if (input.name !== undefined) iv.string('name', input.name, { maxLength: 200 })
  if (input.scopes !== undefined)
    iv.array('scopes', input.scopes, (sv, i, x) => sv.string(i, x, { pattern: SCOPE }))
  if (input.roles !== undefined)
    iv.array('roles', input.roles, (rv, i, x) => rv.string(i, x, { pattern: ROLE }))
  if (
    input.metadata !== undefined &&
    (iv.object('metadata', input.metadata) === undefined || !isJsonData(input.metadata))
  ) {
    iv.fail('metadata', 'must be plain JSON data (no Dates, Maps, functions or non-finite numbers)')
  }
}

/**
 * Creates an API-key manager.
 * @throws {ConfigError} for a bad option
 * @example
 * ```ts
 * const keys = createApiKeyManager({ store, pepper })
 * const { key } = await keys.create({ name: 'ci', ownerId: 'svc-ci', scopes: ['documents:read'], expiresIn: '90d' })
 * ```
 */
export function createApiKeyManager(options: Readonly<ApiKeyManagerOptions>): ApiKeyManager {
  const v = new TypeValidator('keys')
  const peppers = resolvePeppers(v, options.pepper)
  const prefix = v.string('prefix', options.prefix ?? DEFAULT_API_KEY_PREFIX, {
    pattern: API_KEY_PREFIX_PATTERN,
  })
  if (typeof options.store?.insert !== 'function') v.fail('store', 'must implement KeyStore')
  v.assert()
  const store = options.store
  const current = (peppers as Pepper[])[0] as Pepper
  const now = options.now ?? systemClock

  const announce = async (
    topic: BrokerTopic & `key.${string}`,
    record: { readonly id: string },
    actor: ActorInput | undefined,
    data?: Record<string, unknown>,
  ): Promise<void> => {
    options.audit?.emit({
      type: topic,
      outcome: 'success',
      actor: { id: actor?.actorId ?? null },
      action: topic,
      target: { type: 'apikey', id: record.id },
      ...(data === undefined ? {} : { data }),
    })
    await options.broker?.publish(topic, { keyId: record.id })
  }

  return {
    async create(input, actor): Promise<IssuedApiKey> {
      const iv = new TypeValidator('key')
      if (input.name === undefined) iv.fail('name', 'required')
      checkFields(iv, input)
      const ownerId =
        parseUserId(input.ownerId) ??
        iv.fail('ownerId', `invalid user id ${JSON.stringify(input.ownerId)}`)
      const ttl = input.expiresIn === undefined ? undefined : parseDurationMs(input.expiresIn)
      if (input.expiresIn !== undefined && (ttl === undefined || ttl <= 0))
        iv.fail(
          'expiresIn',
          `must be a positive duration, received ${JSON.stringify(input.expiresIn)}`,
        )
      const keyPrefix = iv.string('prefix', input.prefix ?? prefix, {
        pattern: API_KEY_PREFIX_PATTERN,
      })
      iv.assert()
      const generated = generateApiKey({ prefix: keyPrefix as string })
      const t = now()
      const record: ApiKeyRecord = {
        id: generated.id,
        prefix: generated.prefix,
        name: input.name,
        ownerId: ownerId as UserID,
        scopes: [...(input.scopes ?? [])],
        roles: [...(input.roles ?? [])],
        status: 'active',
        hashes: [
          { hash: hashApiKey(generated.key, current), pepperId: current.id, notAfter: null },
        ],
        createdAt: t,
        expiresAt: ttl === undefined ? null : t + ttl,
        revokedAt: null,
        metadata: { ...(input.metadata ?? {}) },
      }
      await store.insert(record)
      await announce('key.created', record, actor, { name: record.name, ownerId: record.ownerId })
      return { key: generated.key, record }
    },
    get: (id) => store.get(id),
    async update(id, patch, actor): Promise<ApiKeyRecord | undefined> {
      const iv = new TypeValidator('key')
      checkFields(iv, patch)
      if (patch.expiresAt !== undefined && patch.expiresAt !== null)
        iv.integer('expiresAt', patch.expiresAt, { min: 0 })
      iv.assert()
      const record = await store.update(id, {
        name: patch.name,
        scopes: patch.scopes,
        roles: patch.roles,
        expiresAt: patch.expiresAt,
        metadata: patch.metadata,
      })
      if (record !== undefined)
        await announce('key.updated', record, actor, { fields: Object.keys(patch) })
      return record
    },
    list: (query) => store.list(query),
    async revoke(id, actor): Promise<ApiKeyRecord | undefined> {
      const record = await store.update(id, { status: 'revoked', revokedAt: now() })
      if (record !== undefined) await announce('key.revoked', record, actor)
      return record
    },
    async rotate(id, rotateOptions = {}): Promise<IssuedApiKey | undefined> {
      const existing = await store.get(id)
      if (existing === undefined) return undefined
      const grace = parseDurationMs(rotateOptions.grace ?? 0)
      if (grace === undefined)
        throw new ConfigError(
          `grace: must be a duration, received ${JSON.stringify(rotateOptions.grace)}`,
        )
      const generated = generateApiKey({ prefix: existing.prefix, id: existing.id })
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
      const record = await store.update(id, { hashes })
      if (record === undefined) return undefined
      await announce('key.rotated', record, rotateOptions, { graceMs: grace })
      return { key: generated.key, record }
    },
    async delete(id, actor): Promise<boolean> {
      const deleted = await store.delete(id)
      if (deleted) await announce('key.deleted', { id }, actor)
      return deleted
    },
  }
}
