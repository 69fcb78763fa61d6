/**
 * The {@link MessageBroker} on Redis pub/sub: key revocations, cache invalidations and policy
 * changes reach every instance. Messages travel in a small JSON envelope
 * (`{"v":1,"src":"<instance>","msg":{...}}`); malformed or foreign messages on the channels are
 * ignored, counted and logged, never delivered.
 *
 * Reachable from `@portcullis/redis`.
 * @packageDocumentation
 */
import { once } from 'node:events'
import { randomUUID } from 'node:crypto'
import {
  checkBrokerMessage,
  createBrokerMessageGuard,
  isBrokerTopic,
  noopMetrics,
  silentLogger,
  TypeValidator,
  type BrokerMessageGuard,
  type BrokerMessages,
  type BrokerTopic,
  type Logger,
  type MessageBroker,
  type MetricsClient,
} from '@portcullis/core'
import { Redis } from 'ioredis'
import { closeOwned, errorMessage, isIoredisClient } from './internal/ioredis.js'

/** Options of {@link createRedisBroker}. */
export interface RedisBrokerOptions {
  /**
   * The client that publishes (yours: close it yourself). Absent: one is made from `subscriber`
   * when that is a URL (and closed by `close()`).
   */
  readonly publisher?: Redis
  /**
   * The subscriber connection: a client of yours dedicated to it (a connection in subscriber
   * mode can run no other command), or a URL to connect to. @default publisher.duplicate()
   */
  readonly subscriber?: Redis | string
  /** Prefix of the channel names: a topic `key.revoked` travels on `<prefix>key.revoked`. @default 'ptcl:broker:' */
  readonly channelPrefix?: string
  /** This instance's id in the envelope; messages carrying it are not delivered twice. @default a random UUID */
  readonly instanceId?: string
  /** Largest message accepted, in bytes of JSON. @default 65536 */
  readonly maxMessageBytes?: number
  /**
   * How often the subscriber is sent a `PING`; without an answer within the same time it is
   * reconnected. A subscriber only listens, so without this a connection cut silently (a
   * network partition, a NAT dropping it) would miss every message until TCP gives up, hours
   * later. 0 turns it off. @default 10000
   */
  readonly pingIntervalMs?: number
  /** Counts rejected messages (`brokerMessagesRejected`) and failed publishes (`storeFailures`, store `broker`). */
  readonly metrics?: MetricsClient
  /** Warns about rejected messages, failed publishes and lost connections. @default silent */
  readonly logger?: Logger
}

/** A Redis-backed broker. */
export interface RedisBroker extends MessageBroker {
  /** This instance's id. */
  readonly instanceId: string
  /**
   * Resolves once the subscriber is connected and every subscription is active (after a
   * reconnect too): messages published from then on reach this instance.
   */
  ready(): Promise<void>
  /** Unsubscribes and closes the connections the broker made (not yours). */
  close(): Promise<void>
}

/** The envelope format version. */
export const REDIS_BROKER_ENVELOPE_VERSION = 1
const DEFAULT_CHANNEL_PREFIX = 'ptcl:broker:'
const DEFAULT_MAX_MESSAGE_BYTES = 65_536
const DEFAULT_PING_INTERVAL_MS = 10_000
const OPTION_NAMES = [
  'publisher',
  'subscriber',
  'channelPrefix',
  'instanceId',
  'maxMessageBytes',
  'pingIntervalMs',
  'metrics',
  'logger',
]
const INSTANCE_PATTERN = /^[A-Za-z0-9_-]{1,64}$/
const BROKER_FAILURE = Object.freeze({ store: 'broker' })

/** The subscriber must wait and retry forever: it holds no request, and losing it loses messages. */
const SUBSCRIBER_SETTINGS = {
  enableOfflineQueue: true,
  maxRetriesPerRequest: null,
  autoResubscribe: true,
  commandTimeout: undefined,
  lazyConnect: false,
} as const
const retryForever = (times: number): number => Math.min(times * 50, 500)

/**
 * Creates the Redis pub/sub broker. `publish` delivers to this instance's subscribers at once and
 * sends the message to Redis for the others; while Redis is unreachable, messages to other
 * instances are lost (logged and counted), and caches fall back to their TTLs. The subscriber
 * reconnects by itself and resubscribes every topic.
 * @throws {ConfigError} for a bad option
 * @example
 * ```ts
 * const broker = createRedisBroker({ publisher: client })
 * await broker.ready()
 * const gate = createGate({ apiKeys: { store, pepper, broker } })
 * ```
 */
export function createRedisBroker(options: Readonly<RedisBrokerOptions>): RedisBroker {
  const v = new TypeValidator('redisBroker')
  if (v.object('options', options) === undefined) v.assert()
  v.knownKeys(options as unknown as Record<string, unknown>, OPTION_NAMES)
  const { publisher, subscriber } = options
  if (publisher !== undefined && !isIoredisClient(publisher))
    v.fail('publisher', 'must be an ioredis client (new Redis(...) from ioredis 5 or 6)')
  if (subscriber !== undefined && typeof subscriber !== 'string' && !isIoredisClient(subscriber))
    v.fail('subscriber', 'must be an ioredis client or a redis:// URL')
  if (typeof subscriber === 'string' && !/^rediss?:\/\//.test(subscriber))
    v.fail('subscriber', 'must be an ioredis client or a redis:// URL')
  if (publisher === undefined && typeof subscriber !== 'string')
    v.fail('publisher', 'required unless subscriber is a URL')
  if (publisher !== undefined && subscriber === publisher)
    v.fail('subscriber', 'must be a connection of its own, not the publisher')
  const channelPrefix =
    options.channelPrefix === undefined
      ? DEFAULT_CHANNEL_PREFIX
      : v.string('channelPrefix', options.channelPrefix, { pattern: /^[A-Za-z0-9_:.{}-]{1,64}$/ })
  const instanceId =
    options.instanceId === undefined
      ? randomUUID()
      : v.string('instanceId', options.instanceId, { pattern: INSTANCE_PATTERN })
  const maxMessageBytes = v.integerOr(
    'maxMessageBytes',
    options.maxMessageBytes,
    DEFAULT_MAX_MESSAGE_BYTES,
    { min: 256 },
  )
  const pingIntervalMs = v.integerOr(
    'pingIntervalMs',
    options.pingIntervalMs,
    DEFAULT_PING_INTERVAL_MS,
    { min: 0 },
  )
  const logger = options.logger ?? silentLogger
  v.assert((m) => logger.warn({}, m))

  const owned: Redis[] = []
  const own = (c: Redis): Redis => {
    owned.push(c)
    return c
  }
  const pub =
    publisher ??
    own(
      new Redis(subscriber as string, {
        maxRetriesPerRequest: 1,
        commandTimeout: 1000,
        retryStrategy: retryForever,
      }),
    )
  const sub =
    subscriber === undefined
      ? own(pub.duplicate(SUBSCRIBER_SETTINGS))
      : typeof subscriber === 'string'
        ? own(new Redis(subscriber, { ...SUBSCRIBER_SETTINGS, retryStrategy: retryForever }))
        : subscriber
  return new Broker(
    pub,
    sub,
    owned,
    channelPrefix as string,
    instanceId as string,
    maxMessageBytes as number,
    pingIntervalMs as number,
    options.metrics ?? noopMetrics,
    logger,
  )
}

type Handler = (message: never) => void

interface Envelope {
  readonly v: unknown
  readonly src: unknown
  readonly msg: unknown
}

class Broker implements RedisBroker {
  readonly #handlers = new Map<BrokerTopic, Set<Handler>>()
  readonly #guard: BrokerMessageGuard
  /** The latest (re)subscription; `ready()` waits for it. */
  #subscribed: Promise<void> = Promise.resolve()
  #warnedDown = false
  #closed = false
  #pingTimer: NodeJS.Timeout | undefined
  #pinging = false
  /** Set while a subscriber that missed a PING reconnects; `ready()` waits for it. */
  #reconnecting: { promise: Promise<void>; resolve: () => void } | undefined
  readonly #onMessage = (channel: string, raw: string): void => this.#receive(channel, raw)
  readonly #onReady = (): void => {
    this.#warnedDown = false
    // ioredis resubscribes by itself (autoResubscribe); doing it here too covers a client of
    // yours built without it, and gives ready() a reply to wait for. SUBSCRIBE is idempotent.
    const channels = [...this.#handlers.keys()].map((t) => this.channelPrefix + t)
    if (channels.length > 0) this.#track(this.sub.subscribe(...channels))
  }
  readonly #onError = (error: unknown): void => {
    // A down Redis reports every reconnect attempt: warn once per outage.
    if (this.#warnedDown || this.#closed) return
    this.#warnedDown = true
    this.logger.warn(
      { error: errorMessage(error) },
      'redis broker: connection lost; messages to other instances are lost until it returns',
    )
  }

  constructor(
    private readonly pub: Redis,
    private readonly sub: Redis,
    private readonly owned: readonly Redis[],
    readonly channelPrefix: string,
    readonly instanceId: string,
    private readonly maxMessageBytes: number,
    private readonly pingIntervalMs: number,
    private readonly metrics: MetricsClient,
    private readonly logger: Logger,
  ) {
    this.#guard = createBrokerMessageGuard({ metrics, logger, name: 'redis broker' })
    if (pingIntervalMs > 0) {
      this.#pingTimer = setInterval(() => void this.#ping(), pingIntervalMs)
      this.#pingTimer.unref()
    }
    sub.on('message', this.#onMessage)
    sub.on('ready', this.#onReady)
    for (const c of owned) c.on('error', this.#onError)
  }

  async publish<TTopic extends BrokerTopic>(
    topic: TTopic,
    message: BrokerMessages[TTopic],
  ): Promise<void> {
    const check = checkBrokerMessage(topic, message)
    if (!check.ok) throw new TypeError(`redis broker: cannot publish ${topic}: ${check.reason}`)
    // This instance hears its own messages at once, whether or not Redis is reachable.
    this.#deliver(topic, check.message)
    const payload = JSON.stringify({
      v: REDIS_BROKER_ENVELOPE_VERSION,
      src: this.instanceId,
      msg: check.message,
    })
    try {
      await this.pub.publish(this.channelPrefix + topic, payload)
    } catch (error) {
      this.metrics.increment('storeFailures', BROKER_FAILURE)
      this.logger.warn(
        { topic, error: errorMessage(error) },
        'redis broker: publish failed; other instances miss this message',
      )
    }
  }

  subscribe<TTopic extends BrokerTopic>(
    topic: TTopic,
    handler: (message: BrokerMessages[TTopic]) => void,
  ): () => void {
    if (!isBrokerTopic(topic)) throw new TypeError(`redis broker: unknown topic ${String(topic)}`)
    let set = this.#handlers.get(topic)
    if (set === undefined) {
      this.#handlers.set(topic, (set = new Set()))
      this.#track(this.sub.subscribe(this.channelPrefix + topic))
    }
    const h = handler as Handler
    set.add(h)
    return () => {
      if (!set.delete(h) || set.size > 0 || this.#handlers.get(topic) !== set) return
      this.#handlers.delete(topic)
      if (!this.#closed) this.#track(this.sub.unsubscribe(this.channelPrefix + topic))
    }
  }

  async ready(): Promise<void> {
    // A subscriber dropped for a missed PING still reports 'ready' until its socket closes.
    if (this.#reconnecting !== undefined) await this.#reconnecting.promise
    for (const c of [this.sub, this.pub]) {
      if (c.status === 'end' || c.status === 'wait') continue
      if (c.status !== 'ready') await once(c, 'ready')
    }
    await this.#subscribed
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    clearInterval(this.#pingTimer)
    this.#reconnecting?.resolve()
    const channels = [...this.#handlers.keys()].map((t) => this.channelPrefix + t)
    this.#handlers.clear()
    this.sub.off('message', this.#onMessage)
    this.sub.off('ready', this.#onReady)
    if (!this.owned.includes(this.sub) && channels.length > 0 && this.sub.status === 'ready') {
      await this.sub.unsubscribe(...channels).catch(() => {})
    }
    // The error listeners stay: a connection torn down mid-reconnect may still emit one.
    await Promise.all(this.owned.map(closeOwned))
  }

  /** Reconnects a subscriber that stopped answering (its connection cut without a FIN). */
  async #ping(): Promise<void> {
    const sub = this.sub
    if (this.#pinging || sub.status !== 'ready') return
    this.#pinging = true
    let timer: NodeJS.Timeout | undefined
    const answered = await Promise.race([
      sub.ping().then(
        () => true,
        () => true, // an error is an answer; the connection's own events handle failures
      ),
      new Promise<false>((resolve) => {
        timer = setTimeout(() => resolve(false), this.pingIntervalMs)
      }),
    ])
    clearTimeout(timer)
    this.#pinging = false
    if (!answered && !this.#closed && sub.status === 'ready') {
      this.logger.warn(
        {},
        `redis broker: subscriber did not answer PING within ${this.pingIntervalMs} ms; reconnecting`,
      )
      let resolve!: () => void
      const promise = new Promise<void>((r) => (resolve = r))
      const reconnecting = { promise, resolve }
      this.#reconnecting = reconnecting
      sub.once('ready', () => {
        if (this.#reconnecting === reconnecting) this.#reconnecting = undefined
        resolve()
      })
      // A peer cut off without a FIN never acknowledges one either: close the socket at once
      // (ioredis then reconnects) rather than end() it and wait for its disconnect timeout.
      sub.stream.destroy()
    }
  }

  #track(subscription: Promise<unknown>): void {
    const p = subscription.then(
      () => {},
      (error: unknown) => {
        // The next 'ready' subscribes again.
        if (!this.#closed)
          this.logger.warn(
            { error: errorMessage(error) },
            'redis broker: (un)subscribe failed; retried on reconnect',
          )
      },
    )
    this.#subscribed = Promise.all([this.#subscribed, p]).then(() => {})
  }

  #receive(channel: string, raw: string): void {
    if (!channel.startsWith(this.channelPrefix)) return
    const topic = channel.slice(this.channelPrefix.length)
    if (!isBrokerTopic(topic)) return this.#guard.reject(topic, 'unknown topic')
    // Buffer.byteLength walks the string; length * 3 bounds UTF-8 bytes without it.
    if (raw.length * 3 > this.maxMessageBytes && Buffer.byteLength(raw) > this.maxMessageBytes)
      return this.#guard.reject(topic, `larger than ${this.maxMessageBytes} bytes`)
    let envelope: Envelope
    try {
      envelope = JSON.parse(raw) as Envelope
    } catch {
      return this.#guard.reject(topic, 'not JSON')
    }
    if (typeof envelope !== 'object' || envelope === null || Array.isArray(envelope))
      return this.#guard.reject(topic, 'not a portcullis envelope')
    if (envelope.v !== REDIS_BROKER_ENVELOPE_VERSION)
      return this.#guard.reject(topic, 'unsupported envelope version', {
        version: typeof envelope.v === 'number' ? envelope.v : typeof envelope.v,
      })
    if (typeof envelope.src !== 'string' || !INSTANCE_PATTERN.test(envelope.src))
      return this.#guard.reject(topic, 'envelope without a valid source instance')
    if (envelope.src === this.instanceId) return // delivered locally at publish time
    const message = this.#guard.accept(topic, envelope.msg)
    if (message !== undefined) this.#deliver(topic, message)
  }

  #deliver<TTopic extends BrokerTopic>(topic: TTopic, message: BrokerMessages[TTopic]): void {
    const set = this.#handlers.get(topic)
    if (set === undefined) return
    for (const h of set) {
      try {
        ;(h as (m: BrokerMessages[TTopic]) => void)(message)
      } catch (error) {
        // One broken subscriber must not stop the others, nor the connection's event loop.
        this.logger.error({ topic, error: errorMessage(error) }, 'redis broker: a subscriber threw')
      }
    }
  }
}
