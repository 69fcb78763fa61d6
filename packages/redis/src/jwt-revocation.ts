/**
 * The JWT {@link RevocationList} shared through Redis: each instance answers lookups from its own
 * in-memory copy (no round trip on the request path), revocations are written to Redis under
 * `<prefix>:jwt-revoked:jti:<jti>` and `<prefix>:jwt-revoked:sub:<subject>` with an absolute
 * expiry (`PXAT`) at the moment the longest token they can match expires, and announced on the
 * broker so that every other instance reads the entry and refuses the token at once.
 *
 * Reachable from `@portcullis/redis`.
 * @packageDocumentation
 */
import { randomUUID } from 'node:crypto'
import {
  ConfigError,
  createMemoryRevocationList,
  parseTokenId,
  parseUserId,
  resolveRevocationListOptions,
  revocationEntry,
  silentLogger,
  type Logger,
  type MemoryRevocationList,
  type MessageBroker,
  type RevocationClaims,
  type RevocationEntry,
  type RevocationListOptions,
  type RevocationList,
  type RevocationRule,
  type RevokeSubjectInput,
  type RevokeTokenInput,
} from '@portcullis/core'
import { Redis } from 'ioredis'
import { closeOwned, errorMessage, isIoredisClient } from './internal/ioredis.js'

/**
 * The namespace of the broker's `cache.invalidated` messages that announce a revocation: `key`
 * names the entry (`jti:<jti>` or `sub:<subject>`), which receivers read back from Redis, so a
 * message can only make an instance re-read Redis, never revoke anything by itself.
 */
export const JWT_REVOCATION_NAMESPACE = 'jwt-revocations'

/** Options of {@link createRedisRevocationList}. */
export interface RedisRevocationListOptions extends RevocationListOptions {
  /**
   * Your ioredis client (close it yourself), or a `redis://` URL for a connection the list makes
   * and closes in {@link RedisRevocationList.close}.
   */
  readonly client: Redis | string
  /**
   * The broker that spreads revocations (`createRedisBroker()`): every instance subscribed to it
   * refuses a revoked token within one broker delivery. Without one, other instances learn of a
   * revocation only at their next resync.
   */
  readonly broker?: MessageBroker
  /** First segment of every key (`<prefix>:jwt-revoked:...`). @default 'ptcl' */
  readonly prefix?: string
  /**
   * How often the whole list is read again from Redis, in ms, to catch announcements lost while
   * the broker was disconnected; `0` switches it off. One timer per list, never one per entry.
   * @default 60000
   */
  readonly resyncIntervalMs?: number
  /** Receives warnings about failed reads and resyncs. @default silent */
  readonly logger?: Logger
}

/** A revocation list shared through Redis. */
export interface RedisRevocationList extends RevocationList {
  /** Loads every entry from Redis into this instance's copy; call it before serving. */
  ready(): Promise<void>
  /** Reads the whole list from Redis again (also run every `resyncIntervalMs`). */
  resync(): Promise<void>
  /** Stops listening to the broker and the resync timer; closes a connection the list made. */
  close(): Promise<void>
}

/** Default of {@link RedisRevocationListOptions.resyncIntervalMs}. */
export const DEFAULT_REVOCATION_RESYNC_INTERVAL_MS = 60_000
const OPTION_NAMES = ['client', 'broker', 'prefix', 'resyncIntervalMs', 'logger']
const PREFIX_PATTERN = /^[A-Za-z0-9_.-]{1,64}$/
const SCAN_COUNT = 1000

// Keeps the later cut-off and the later expiry when an entry is written twice (two admins, two
// revocations of one subject), atomically.
const MERGE_SCRIPT = `
local new = cjson.decode(ARGV[1])
local cur = redis.call('GET', KEYS[1])
if cur then
  local ok, old = pcall(cjson.decode, cur)
  if ok and type(old) == 'table' then
    if type(old.retainUntilMs) == 'number' and old.retainUntilMs > new.retainUntilMs then
      new.retainUntilMs = old.retainUntilMs
    end
    if new.beforeMs ~= nil and type(old.beforeMs) == 'number' and old.beforeMs > new.beforeMs then
      new.beforeMs = old.beforeMs
    end
  end
end
local out = cjson.encode(new)
redis.call('SET', KEYS[1], out, 'PXAT', string.format('%d', new.retainUntilMs))
return out
`

/** An entry read from Redis, checked (anyone with access to Redis can write these keys). */
function parseEntry(raw: string | null): RevocationEntry | undefined {
  if (raw === null) return undefined
  let value: unknown
  try {
    value = JSON.parse(raw)
  } catch {
    return undefined
  }
  if (typeof value !== 'object' || value === null) return undefined
  const e = value as Record<string, unknown>
  const until = e.retainUntilMs
  if (typeof until !== 'number' || !Number.isFinite(until)) return undefined
  if (e.kind === 'jti') {
    const jti = parseTokenId(e.jti)
    return jti === undefined ? undefined : { kind: 'jti', jti, retainUntilMs: until }
  }
  if (e.kind === 'subject') {
    const subject = parseUserId(e.subject)
    const before = e.beforeMs
    if (subject === undefined || typeof before !== 'number' || !Number.isFinite(before))
      return undefined
    return { kind: 'subject', subject, beforeMs: before, retainUntilMs: until }
  }
  return undefined
}

const entryKey = (entry: RevocationEntry): string =>
  entry.kind === 'jti' ? `jti:${entry.jti}` : `sub:${entry.subject}`

/**
 * Creates a revocation list shared through Redis and the broker. Give the same list to
 * `jwt.revocations`, and call `ready()` before serving.
 * @throws {ConfigError} for an unknown or ill-typed option
 * @example
 * ```ts
 * const broker = createRedisBroker({ publisher: client })
 * const revocations = createRedisRevocationList({ client, broker })
 * await Promise.all([broker.ready(), revocations.ready()])
 * const gate = createGate({ jwt: { jwks, algorithms: ['RS256'], issuer, audience, revocations } })
 * ```
 */
export function createRedisRevocationList(
  options: Readonly<RedisRevocationListOptions>,
): RedisRevocationList {
  const { client, broker, prefix, resyncIntervalMs, logger } = options
  const issues: string[] = []
  if (!(typeof client === 'string' ? /^rediss?:\/\//.test(client) : isIoredisClient(client)))
    issues.push('redisRevocations.client: must be an ioredis client or a redis:// URL')
  if (
    broker !== undefined &&
    (typeof broker !== 'object' ||
      broker === null ||
      typeof broker.publish !== 'function' ||
      typeof broker.subscribe !== 'function')
  )
    issues.push('redisRevocations.broker: must be a message broker (createRedisBroker())')
  if (prefix !== undefined && (typeof prefix !== 'string' || !PREFIX_PATTERN.test(prefix)))
    issues.push('redisRevocations.prefix: must be 1-64 letters, digits, "_", "." or "-"')
  if (
    resyncIntervalMs !== undefined &&
    (typeof resyncIntervalMs !== 'number' ||
      !Number.isInteger(resyncIntervalMs) ||
      resyncIntervalMs < 0)
  )
    issues.push('redisRevocations.resyncIntervalMs: must be an integer of 0 or more')
  if (
    logger !== undefined &&
    (typeof logger !== 'object' || logger === null || typeof logger.warn !== 'function')
  )
    issues.push('redisRevocations.logger: must be a logger with warn()')
  if (issues.length > 0) throw new ConfigError(issues)
  const core: RevocationListOptions = {
    ...(options.maxTokenLifetimeSeconds === undefined
      ? {}
      : { maxTokenLifetimeSeconds: options.maxTokenLifetimeSeconds }),
    ...(options.now === undefined ? {} : { now: options.now }),
  }
  const rest = Object.fromEntries(
    Object.entries(options).filter(([k]) => !OPTION_NAMES.includes(k)),
  )
  // Validates maxTokenLifetimeSeconds and now, and refuses unknown keys.
  const resolved = resolveRevocationListOptions(rest, 'redisRevocations')
  const owned = typeof client === 'string'
  const redis =
    typeof client === 'string'
      ? new Redis(client, { maxRetriesPerRequest: 1, commandTimeout: 1000 })
      : client
  if (owned) redis.on('error', () => {})
  return new SharedList(
    redis,
    owned,
    broker,
    `${prefix ?? 'ptcl'}:jwt-revoked:`,
    resyncIntervalMs ?? DEFAULT_REVOCATION_RESYNC_INTERVAL_MS,
    logger ?? silentLogger,
    resolved,
    createMemoryRevocationList(core),
  )
}

class SharedList implements RedisRevocationList {
  readonly #instanceId = randomUUID()
  readonly #unsubscribe: (() => void) | undefined
  readonly #timer: NodeJS.Timeout | undefined

  constructor(
    private readonly redis: Redis,
    private readonly owned: boolean,
    private readonly broker: MessageBroker | undefined,
    private readonly keyPrefix: string,
    resyncIntervalMs: number,
    private readonly logger: Logger,
    private readonly options: ReturnType<typeof resolveRevocationListOptions>,
    private readonly local: MemoryRevocationList,
  ) {
    this.#unsubscribe = broker?.subscribe('cache.invalidated', (message) => {
      if (message.namespace !== JWT_REVOCATION_NAMESPACE || message.origin === this.#instanceId)
        return
      void (message.key === null ? this.resync() : this.#fetch(message.key))
    })
    if (resyncIntervalMs > 0) {
      this.#timer = setInterval(() => void this.resync(), resyncIntervalMs)
      this.#timer.unref()
    }
  }

  get maxTokenLifetimeSeconds(): number {
    return this.options.maxTokenLifetimeSeconds
  }

  get size(): number {
    return this.local.size
  }

  check(claims: RevocationClaims): RevocationRule | undefined {
    return this.local.check(claims)
  }

  async revokeToken(input: Readonly<RevokeTokenInput>): Promise<RevocationEntry> {
    return this.#revoke(revocationEntry({ kind: 'jti', ...input }, this.options))
  }

  async revokeSubject(input: Readonly<RevokeSubjectInput>): Promise<RevocationEntry> {
    return this.#revoke(revocationEntry({ kind: 'subject', ...input }, this.options))
  }

  async ready(): Promise<void> {
    await this.#load()
  }

  async resync(): Promise<void> {
    try {
      await this.#load()
    } catch (error) {
      this.logger.warn(
        { error: errorMessage(error) },
        'redis revocations: resync failed; retried at the next interval',
      )
    }
  }

  async close(): Promise<void> {
    this.#unsubscribe?.()
    clearInterval(this.#timer)
    if (this.owned) await closeOwned(this.redis)
  }

  async #revoke(entry: RevocationEntry): Promise<RevocationEntry> {
    // This instance refuses the token at once, whatever happens to the write.
    this.local.add(entry)
    const key = entryKey(entry)
    const raw = (await this.redis.eval(
      MERGE_SCRIPT,
      1,
      this.keyPrefix + key,
      JSON.stringify(entry),
    )) as string
    const stored = parseEntry(raw) ?? entry
    this.local.add(stored)
    await this.broker?.publish('cache.invalidated', {
      namespace: JWT_REVOCATION_NAMESPACE,
      key,
      origin: this.#instanceId,
    })
    return stored
  }

  async #fetch(key: string): Promise<void> {
    try {
      const entry = parseEntry(await this.redis.get(this.keyPrefix + key))
      if (entry !== undefined) this.local.add(entry)
    } catch (error) {
      this.logger.warn(
        { key, error: errorMessage(error) },
        'redis revocations: could not read an announced revocation; the next resync retries',
      )
    }
  }

  async #load(): Promise<void> {
    let cursor = '0'
    do {
      const [next, keys] = await this.redis.scan(
        cursor,
        'MATCH',
        `${this.keyPrefix}*`,
        'COUNT',
        SCAN_COUNT,
      )
      cursor = next
      if (keys.length > 0) {
        const values = await this.redis.mget(...keys)
        for (const raw of values) {
          const entry = parseEntry(raw)
          if (entry !== undefined) this.local.add(entry)
        }
      }
    } while (cursor !== '0')
  }
}
