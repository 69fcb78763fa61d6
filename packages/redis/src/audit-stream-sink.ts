/**
 * Audit fan-out on Redis Streams: an {@link AuditSink} that appends each event to a stream with
 * `XADD`, and a consumer-group reader for the services (SIEM shippers, alerting) that consume it.
 * Delivery is at least once: consumer groups redeliver what was not acknowledged.
 *
 * Reachable from `@portcullis/redis`.
 * @packageDocumentation
 */
import { createHash, randomUUID } from 'node:crypto'
import {
  TypeValidator,
  silentLogger,
  type AuditEvent,
  type AuditSink,
  type Logger,
} from '@portcullis/core'
import type { Redis } from 'ioredis'
import { isIoredisClient } from './internal/ioredis.js'

/** The `waitForReplicas` option of {@link createRedisStreamAuditSink}. */
export interface RedisStreamWaitForReplicas {
  /** Replicas that must acknowledge each batch (1 to 64). */
  readonly replicas: number
  /** How long `WAIT` waits for them, in ms (1 to 60000; keep it below the trail's `writeTimeoutMs`). */
  readonly timeoutMs: number
}

/**
 * The error a {@link createRedisStreamAuditSink} write rejects with when fewer replicas than
 * `waitForReplicas.replicas` acknowledged the batch within `timeoutMs`. The batch is on the
 * primary; the audit trail retries it, and the retry waits for replication again.
 */
export class RedisReplicationError extends Error {
  /** Always `ERR_REDIS_NOT_REPLICATED`. */
  readonly code = 'ERR_REDIS_NOT_REPLICATED'
  /**
   * @param wanted - the replicas asked for
   * @param acknowledged - the replicas `WAIT` reported
   */
  constructor(
    readonly wanted: number,
    readonly acknowledged: number,
  ) {
    super(`redis stream sink: ${acknowledged} of ${wanted} replicas acknowledged the batch in time`)
    this.name = 'RedisReplicationError'
  }
}

/** Options of {@link createRedisStreamAuditSink}. */
export interface RedisStreamAuditSinkOptions {
  /** Your ioredis client (close it yourself). */
  readonly client: Redis
  /** The stream's key. With Redis Cluster, use a hash tag (`{ptcl}:audit`). @default 'ptcl:audit' */
  readonly stream?: string
  /**
   * Trim the stream to about this many entries after each write; 0 keeps every entry. Trimming
   * never removes an entry that a consumer group of the stream has not been delivered and
   * acknowledged (it stops at the oldest pending entry, or the last delivered one, of the group
   * furthest behind), so unread events can hold the stream above `maxLen`: the sink then logs one
   * warning (`{ sink, stream, length, maxLen, held }`) until trimming catches up, and one again the
   * next time it falls behind. A stream without any consumer group is trimmed by length alone
   * (no group reads it; a group created later starts from what is left). Approximate: whole
   * internal nodes go (`XTRIM MINID ~`), so the stream keeps somewhat more than `maxLen`. Needs
   * Redis 6.2 or later. @default 0
   */
  readonly maxLen?: number
  /**
   * Acknowledge a batch to the audit trail only once `WAIT replicas timeoutMs` reports that at
   * least `replicas` replicas have it. Fewer in time rejects the write with a
   * {@link RedisReplicationError}: the trail retries the batch (or spools it) as for any sink
   * failure, and the retry appends nothing twice. `WAIT` blocks its connection for up to
   * `timeoutMs`: give the sink a client of its own. @default off (acknowledged once the primary has it)
   */
  readonly waitForReplicas?: RedisStreamWaitForReplicas
  /** How long this sink remembers the last event it wrote, which makes retries idempotent. @default 86400000 */
  readonly producerTtlMs?: number
  /** Name for logs and metrics. @default 'redis-stream' */
  readonly name?: string
  /** Receives unknown-option warnings and the warning of a stream held above `maxLen`. @default silent */
  readonly logger?: Logger
}

/**
 * Appends a batch in one atomic script. The audit trail retries a failed batch from its first
 * event, in order, so remembering the last event id written by this producer is enough to skip
 * the part of a retried batch that already landed (the reply was lost, not the write).
 *
 * With maxlen > 0 it then trims, but never an entry a consumer group still needs: for each group,
 * entries before its oldest pending entry (XPENDING) are acknowledged, or, when nothing is pending,
 * every entry up to its last-delivered-id. The script removes the `XLEN - maxlen` oldest entries
 * (at most 1024 a call), or fewer when the oldest group boundary comes first (`XTRIM MINID ~`,
 * which never removes an entry at or after the id given). Without any group, it trims by length
 * alone (`XTRIM MAXLEN ~`).
 * KEYS: stream, producer key. ARGV: producer TTL, maxlen, then (id, type, json) triples.
 * Returns { added, length after trimming, entries over maxlen kept because a group needs them }.
 */
const APPEND_SCRIPT = `
local function older(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  if #am ~= #bm then return #am < #bm end
  if am ~= bm then return am < bm end
  if #as ~= #bs then return #as < #bs end
  return as < bs
end
local function trim(key, maxlen)
  local len = redis.call('XLEN', key)
  local excess = len - maxlen
  if excess <= 0 then return len, 0 end
  -- The group boundary: entries before it (or up to it, when inclusive) are acknowledged by all.
  local bound, inclusive = nil, false
  local groups = redis.call('XINFO', 'GROUPS', key)
  for _, g in ipairs(groups) do
    local info = {}
    for i = 1, #g, 2 do info[g[i]] = g[i + 1] end
    local id, incl = info['last-delivered-id'], true
    if tonumber(info['pending']) > 0 then
      id, incl = redis.call('XPENDING', key, info['name'])[2], false
    end
    if bound == nil or older(id, bound) or (id == bound and not incl) then
      bound, inclusive = id, incl
    end
  end
  if bound == nil then
    redis.call('XTRIM', key, 'MAXLEN', '~', maxlen)
    return redis.call('XLEN', key), 0
  end
  -- Reads at most 1024 entries per write (a group that catches up after a long stall is trimmed
  -- over the next writes, not in one long script).
  local want = math.min(excess, 1024)
  local range = redis.call('XRANGE', key, '-', inclusive and bound or ('(' .. bound), 'COUNT', want + 1)
  local removable = #range
  if removable > want then
    redis.call('XTRIM', key, 'MINID', '~', range[want + 1][1])
  elseif removable > 0 then
    local cut = range[removable][1]
    -- Everything up to and including cut may go: the first entry after it is the new minimum.
    local nxt = redis.call('XRANGE', key, '(' .. cut, '+', 'COUNT', 1)
    if #nxt > 0 then redis.call('XTRIM', key, 'MINID', '~', nxt[1][1]) end
  end
  local held = 0
  if removable < want then held = excess - removable end
  return redis.call('XLEN', key), held
end
local last = redis.call('GET', KEYS[2])
local start = 3
if last then
  for i = 3, #ARGV, 3 do
    if ARGV[i] == last then start = i + 3 break end
  end
end
local maxlen = tonumber(ARGV[2])
local written = nil
local added = 0
for i = start, #ARGV, 3 do
  local r = redis.pcall('XADD', KEYS[1], '*', 'id', ARGV[i], 'type', ARGV[i + 1], 'event', ARGV[i + 2])
  if type(r) == 'table' and r.err then
    if written then redis.call('SET', KEYS[2], written, 'PX', ARGV[1]) end
    return r
  end
  written = ARGV[i]
  added = added + 1
end
-- Set even when a retry wrote nothing new: this write advances the connection's replication
-- offset past the earlier attempt's entries, so WAIT cannot answer for less than the whole batch
-- (after a reconnect, a fresh connection has written nothing of its own).
if written then redis.call('SET', KEYS[2], written, 'PX', ARGV[1])
elseif last then redis.call('SET', KEYS[2], last, 'PX', ARGV[1]) end
if maxlen > 0 and redis.call('EXISTS', KEYS[1]) == 1 then
  local len, held = trim(KEYS[1], maxlen)
  return { added, len, held }
end
return { added, -1, 0 }
`
const APPEND_SHA = createHash('sha1').update(APPEND_SCRIPT).digest('hex')
const OPTION_NAMES = [
  'client',
  'stream',
  'maxLen',
  'waitForReplicas',
  'producerTtlMs',
  'name',
  'logger',
]
const STREAM_PATTERN = /^[A-Za-z0-9_:.{}-]{1,128}$/

/** An audit sink on a Redis stream; it does not close your client. */
export interface RedisStreamAuditSink extends AuditSink {
  /** The stream's key. */
  readonly stream: string
  /** This sink's producer id (the key remembering its last write is `<stream>:producer:<id>`). */
  readonly producerId: string
}

/**
 * Creates the Redis Streams audit sink. Each event becomes one entry with the fields `id` (the
 * event id), `type` and `event` (the event as JSON). A retried batch never appends an event
 * twice; if a write fails partway (Redis out of memory), what landed is remembered too. Consumers
 * should still treat `id` as the deduplication key, as with any at-least-once pipe.
 * @throws {ConfigError} for a bad option
 * @example
 * ```ts
 * const gate = createGate({ audit: { sinks: [createRedisStreamAuditSink({ client })] } })
 * ```
 */
export function createRedisStreamAuditSink(
  options: Readonly<RedisStreamAuditSinkOptions>,
): RedisStreamAuditSink {
  const v = new TypeValidator('redisStreamAuditSink')
  if (v.object('options', options) === undefined) v.assert()
  v.knownKeys(options as unknown as Record<string, unknown>, OPTION_NAMES)
  if (!isIoredisClient(options.client))
    v.fail('client', 'must be an ioredis client (new Redis(...) from ioredis 5 or 6)')
  const stream =
    options.stream === undefined
      ? 'ptcl:audit'
      : v.string('stream', options.stream, { pattern: STREAM_PATTERN })
  const maxLen = v.integerOr('maxLen', options.maxLen, 0, { min: 0 })
  const producerTtlMs = v.integerOr('producerTtlMs', options.producerTtlMs, 86_400_000, {
    min: 1000,
  })
  const name =
    options.name === undefined
      ? 'redis-stream'
      : v.string('name', options.name, { pattern: /^[A-Za-z0-9_.-]{1,64}$/ })
  let waitFor: { replicas: number; timeoutMs: number } | undefined
  if (options.waitForReplicas !== undefined) {
    const w = v.object('waitForReplicas', options.waitForReplicas)
    if (w !== undefined) {
      const wv = v.child('waitForReplicas')
      wv.knownKeys(w as unknown as Record<string, unknown>, ['replicas', 'timeoutMs'])
      const replicas = wv.integer('replicas', w.replicas, { min: 1, max: 64 })
      const timeoutMs = wv.integer('timeoutMs', w.timeoutMs, { min: 1, max: 60_000 })
      if (replicas !== undefined && timeoutMs !== undefined) waitFor = { replicas, timeoutMs }
    }
  }
  const logger = options.logger ?? silentLogger
  v.assert((m) => logger.warn({}, m))
  const client = options.client
  const producerId = randomUUID()
  const producerKey = `${stream as string}:producer:${producerId}`
  const head = [producerKey, String(producerTtlMs), String(maxLen)]
  let holding = false
  return {
    name: name as string,
    stream: stream as string,
    producerId,
    async write(events: readonly AuditEvent[]): Promise<void> {
      if (events.length === 0) return
      const args: string[] = [...head]
      for (const e of events) args.push(e.id, e.type, JSON.stringify(e))
      let reply: unknown
      try {
        reply = await client.evalsha(APPEND_SHA, 2, stream as string, ...args)
      } catch (error) {
        // The script is cached per server: a restarted Redis has forgotten it.
        if (!(error instanceof Error) || !error.message.startsWith('NOSCRIPT')) throw error
        reply = await client.eval(APPEND_SCRIPT, 2, stream as string, ...args)
      }
      const [, length, held] = (reply as [number, number, number] | undefined) ?? [0, -1, 0]
      if (held > 0 && !holding) {
        holding = true
        logger.warn(
          { sink: name, stream, length, maxLen, held },
          'redis stream sink: entries a consumer group has not acknowledged keep the stream above maxLen',
        )
      } else if (held === 0) holding = false
      if (waitFor !== undefined) {
        // WAIT covers every write this connection made so far; the script always writes, so
        // that includes a retried batch's earlier part that it skipped this time.
        const acknowledged = Number(await client.call('WAIT', waitFor.replicas, waitFor.timeoutMs))
        if (acknowledged < waitFor.replicas)
          throw new RedisReplicationError(waitFor.replicas, acknowledged)
      }
    },
  }
}

/** Options of {@link createRedisStreamAuditReader}. */
export interface RedisStreamAuditReaderOptions {
  /**
   * Your ioredis client. A blocking read holds the connection: give the reader a connection of
   * its own (`client.duplicate()`) when you use `blockMs`.
   */
  readonly client: Redis
  /** The stream's key. @default 'ptcl:audit' */
  readonly stream?: string
  /** The consumer group (created, with the stream, when missing). */
  readonly group: string
  /** This consumer's name within the group. */
  readonly consumer: string
  /** Where a new group starts: `0` reads the whole stream, `$` only new entries. @default '0' */
  readonly startId?: '0' | '$'
}

/** One stream entry. `event` is `undefined` when the entry does not hold a JSON event (`raw` has it). */
export interface RedisStreamAuditEntry {
  /** The entry's stream id, to acknowledge. */
  readonly streamId: string
  readonly event: AuditEvent | undefined
  /** The entry's `event` field as stored. */
  readonly raw: string | undefined
}

/** Reads audit events as a member of a consumer group. */
export interface RedisStreamAuditReader {
  /** Entries never delivered to the group (`XREADGROUP ... >`); waits up to `blockMs` for one. */
  read(options?: {
    readonly count?: number
    readonly blockMs?: number
  }): Promise<RedisStreamAuditEntry[]>
  /** Entries delivered to this consumer and not yet acknowledged (after a crash, read these first). */
  pending(options?: { readonly count?: number }): Promise<RedisStreamAuditEntry[]>
  /** Takes over entries another consumer left unacknowledged for `minIdleMs` (`XAUTOCLAIM`). */
  claim(options: {
    readonly minIdleMs: number
    readonly count?: number
  }): Promise<RedisStreamAuditEntry[]>
  /** Acknowledges entries; resolves the number acknowledged. */
  ack(streamIds: readonly string[]): Promise<number>
}

type RawEntry = [id: string, fields: string[] | null]

function toEntry([streamId, fields]: RawEntry): RedisStreamAuditEntry {
  let raw: string | undefined
  for (let i = 0; fields !== null && i + 1 < fields.length; i += 2)
    if (fields[i] === 'event') raw = fields[i + 1]
  let event: AuditEvent | undefined
  try {
    event = raw === undefined ? undefined : (JSON.parse(raw) as AuditEvent)
  } catch {
    event = undefined
  }
  return { streamId, event, raw }
}

/**
 * Creates a consumer-group reader of the audit stream (for tests, tools and shippers), creating
 * the group when it does not exist.
 * @throws {ConfigError} for a bad option
 * @example
 * ```ts
 * const reader = await createRedisStreamAuditReader({ client, group: 'siem', consumer: 'shipper-1' })
 * for (const entry of await reader.read({ count: 100 })) ship(entry.event)
 * await reader.ack(entries.map((e) => e.streamId))
 * ```
 */
export async function createRedisStreamAuditReader(
  options: Readonly<RedisStreamAuditReaderOptions>,
): Promise<RedisStreamAuditReader> {
  const v = new TypeValidator('redisStreamAuditReader')
  if (v.object('options', options) === undefined) v.assert()
  v.knownKeys(options as unknown as Record<string, unknown>, [
    'client',
    'stream',
    'group',
    'consumer',
    'startId',
  ])
  if (!isIoredisClient(options.client))
    v.fail('client', 'must be an ioredis client (new Redis(...) from ioredis 5 or 6)')
  const stream =
    options.stream === undefined
      ? 'ptcl:audit'
      : v.string('stream', options.stream, { pattern: STREAM_PATTERN })
  const group = v.string('group', options.group, { pattern: /^[A-Za-z0-9_.:-]{1,64}$/ })
  const consumer = v.string('consumer', options.consumer, { pattern: /^[A-Za-z0-9_.:-]{1,64}$/ })
  const startId =
    options.startId === undefined ? '0' : v.oneOf('startId', options.startId, ['0', '$'] as const)
  v.assert()
  const client = options.client
  const s = stream as string
  const g = group as string
  const c = consumer as string
  try {
    await client.xgroup('CREATE', s, g, startId as string, 'MKSTREAM')
  } catch (error) {
    if (!(error instanceof Error) || !error.message.startsWith('BUSYGROUP')) throw error
  }
  const readGroup = async (id: string, count: number, blockMs?: number) => {
    const args: (string | number)[] = ['GROUP', g, c, 'COUNT', count]
    if (blockMs !== undefined) args.push('BLOCK', blockMs)
    args.push('STREAMS', s, id)
    const reply = (await client.call('XREADGROUP', ...args)) as
      [string, RawEntry[]][] | Record<string, RawEntry[]> | null
    if (reply === null) return []
    // A list of [stream, entries] (RESP2, and RESP3 as ioredis maps it by default); a map keyed
    // by stream from an ioredis 6 client built with `replyMapping: 'resp3'`.
    const entries = Array.isArray(reply) ? reply[0]?.[1] : reply[s]
    return (entries ?? []).map(toEntry)
  }
  return {
    read: (o = {}) => readGroup('>', o.count ?? 100, o.blockMs),
    pending: (o = {}) => readGroup('0', o.count ?? 100),
    async claim(o) {
      const reply = (await client.call(
        'XAUTOCLAIM',
        s,
        g,
        c,
        o.minIdleMs,
        '0',
        'COUNT',
        o.count ?? 100,
      )) as [string, RawEntry[], ...unknown[]]
      return reply[1].filter((e) => e !== null).map(toEntry)
    },
    async ack(ids) {
      if (ids.length === 0) return 0
      return client.xack(s, g, ...ids)
    },
  }
}
