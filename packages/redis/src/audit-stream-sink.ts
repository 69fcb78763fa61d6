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

/** Options of {@link createRedisStreamAuditSink}. */
export interface RedisStreamAuditSinkOptions {
  /** Your ioredis client (close it yourself). */
  readonly client: Redis
  /** The stream's key. With Redis Cluster, use a hash tag (`{ptcl}:audit`). @default 'ptcl:audit' */
  readonly stream?: string
  /**
   * Trim the stream to about this many entries (`XADD MAXLEN ~`); 0 keeps every entry. Trimming
   * drops the oldest events whether or not every group has read them. @default 0
   */
  readonly maxLen?: number
  /** How long this sink remembers the last event it wrote, which makes retries idempotent. @default 86400000 */
  readonly producerTtlMs?: number
  /** Name for logs and metrics. @default 'redis-stream' */
  readonly name?: string
  /** Receives unknown-option warnings. @default silent */
  readonly logger?: Logger
}

/**
 * Appends a batch in one atomic script. The audit trail retries a failed batch from its first
 * event, in order, so remembering the last event id written by this producer is enough to skip
 * the part of a retried batch that already landed (the reply was lost, not the write).
 * KEYS: stream, producer key. ARGV: producer TTL, maxlen, then (id, type, json) triples.
 */
const APPEND_SCRIPT = `
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
  local r
  if maxlen > 0 then
    r = redis.pcall('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', 'id', ARGV[i], 'type', ARGV[i + 1], 'event', ARGV[i + 2])
  else
    r = redis.pcall('XADD', KEYS[1], '*', 'id', ARGV[i], 'type', ARGV[i + 1], 'event', ARGV[i + 2])
  end
  if type(r) == 'table' and r.err then
    if written then redis.call('SET', KEYS[2], written, 'PX', ARGV[1]) end
    return r
  end
  written = ARGV[i]
  added = added + 1
end
if written then redis.call('SET', KEYS[2], written, 'PX', ARGV[1]) end
return added
`
const APPEND_SHA = createHash('sha1').update(APPEND_SCRIPT).digest('hex')
const OPTION_NAMES = ['client', 'stream', 'maxLen', 'producerTtlMs', 'name', 'logger']
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
  const logger = options.logger ?? silentLogger
  v.assert((m) => logger.warn({}, m))
  const client = options.client
  const producerId = randomUUID()
  const producerKey = `${stream as string}:producer:${producerId}`
  const head = [producerKey, String(producerTtlMs), String(maxLen)]
  return {
    name: name as string,
    stream: stream as string,
    producerId,
    async write(events: readonly AuditEvent[]): Promise<void> {
      if (events.length === 0) return
      const args: string[] = [...head]
      for (const e of events) args.push(e.id, e.type, JSON.stringify(e))
      try {
        await client.evalsha(APPEND_SHA, 2, stream as string, ...args)
      } catch (error) {
        // The script is cached per server: a restarted Redis has forgotten it.
        if (!(error instanceof Error) || !error.message.startsWith('NOSCRIPT')) throw error
        await client.eval(APPEND_SCRIPT, 2, stream as string, ...args)
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
