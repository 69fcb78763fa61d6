/**
 * Checks of broker messages against their topic's shape. A remote broker (Redis pub/sub) receives
 * whatever anyone publishes on its channels: these checks let it drop malformed or foreign
 * messages, count them (`portcullis_broker_messages_rejected_total`) and warn, so a bad message
 * never crashes a subscriber nor poisons a cache.
 *
 * Reachable from `@portcullis/core`.
 * @packageDocumentation
 */
import { parseApiKeyId } from '../apikey/format.js'
import { silentLogger, type Logger } from '../logger.js'
import type { BrokerMessages, BrokerTopic } from './message-broker.js'
import { noopMetrics, type MetricLabels, type MetricsClient } from './metrics.js'

/** Every broker topic. */
export const BROKER_TOPICS: readonly BrokerTopic[] = Object.freeze([
  'key.created',
  'key.revoked',
  'key.rotated',
  'key.updated',
  'key.deleted',
  'policy.changed',
  'config.changed',
  'cache.invalidated',
])

const TOPICS: ReadonlySet<string> = new Set(BROKER_TOPICS)

/** Whether `value` names a broker topic. */
export function isBrokerTopic(value: unknown): value is BrokerTopic {
  return typeof value === 'string' && TOPICS.has(value)
}

/** The outcome of {@link checkBrokerMessage}: the message rebuilt from its known fields, or why not. */
export type BrokerMessageCheck<TTopic extends BrokerTopic = BrokerTopic> =
  | { readonly ok: true; readonly message: BrokerMessages[TTopic] }
  | { readonly ok: false; readonly reason: string }

/** `version` of `policy.changed` / `config.changed`: printable ASCII, 1 to 128 characters. */
const VERSION_PATTERN = /^[\x21-\x7e][\x20-\x7e]{0,127}$/
/** `namespace` of `cache.invalidated`. */
export const CACHE_NAMESPACE_PATTERN: RegExp = /^[A-Za-z0-9_.-]{1,64}$/
/** `origin` of `cache.invalidated`: a cache's instance id. */
const ORIGIN_PATTERN = /^[A-Za-z0-9_-]{1,64}$/
/** Longest cache key a `cache.invalidated` message may carry. */
export const MAX_CACHE_KEY_LENGTH = 1024

const fail = (reason: string): { readonly ok: false; readonly reason: string } => ({
  ok: false,
  reason,
})

function isRecord(value: unknown): value is Readonly<Record<string, unknown>> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/**
 * Checks `message` against the shape of `topic`: key ids must be key ids, versions short printable
 * strings, cache namespaces and origins simple names. Fields a newer version may add are
 * ignored (not copied), so a rolling upgrade never makes an older instance drop a revocation.
 * Never throws.
 */
export function checkBrokerMessage<TTopic extends BrokerTopic>(
  topic: TTopic,
  message: unknown,
): BrokerMessageCheck<TTopic> {
  if (!isRecord(message)) return fail('not an object')
  let out: BrokerMessages[BrokerTopic]
  switch (topic as BrokerTopic) {
    case 'key.created':
    case 'key.revoked':
    case 'key.rotated':
    case 'key.updated':
    case 'key.deleted': {
      const keyId = parseApiKeyId(message.keyId)
      if (keyId === undefined) return fail('keyId is not a key id')
      out = { keyId }
      break
    }
    case 'policy.changed':
    case 'config.changed': {
      const version = message.version
      if (typeof version !== 'string' || !VERSION_PATTERN.test(version))
        return fail('version is not a printable string of 1 to 128 characters')
      out = { version }
      break
    }
    case 'cache.invalidated': {
      const { namespace, key, origin } = message
      if (typeof namespace !== 'string' || !CACHE_NAMESPACE_PATTERN.test(namespace))
        return fail('namespace is not a cache namespace')
      if (
        key !== null &&
        (typeof key !== 'string' || key.length === 0 || key.length > MAX_CACHE_KEY_LENGTH)
      )
        return fail(`key is not null nor a string of 1 to ${MAX_CACHE_KEY_LENGTH} characters`)
      if (typeof origin !== 'string' || !ORIGIN_PATTERN.test(origin))
        return fail('origin is not an instance id')
      out = { namespace, key, origin }
      break
    }
    default:
      return fail('unknown topic')
  }
  return { ok: true, message: Object.freeze(out) as BrokerMessages[TTopic] }
}

/** Options of {@link createBrokerMessageGuard}. */
export interface BrokerMessageGuardOptions {
  /** Counts rejections as `brokerMessagesRejected` by topic. @default no metrics */
  readonly metrics?: MetricsClient
  /** Receives one warning per rejected message. @default silent */
  readonly logger?: Logger
  /** Names the broker in warnings (`redis broker`). @default 'broker' */
  readonly name?: string
}

/** Checks incoming broker messages and reports the ones it drops. */
export interface BrokerMessageGuard {
  /**
   * The message rebuilt from its known fields when it fits `topic`; otherwise `undefined`, after
   * counting it and logging a warning. Never throws.
   */
  accept<TTopic extends BrokerTopic>(
    topic: TTopic,
    message: unknown,
  ): BrokerMessages[TTopic] | undefined
  /**
   * Counts and logs a message dropped before its body could be checked (unknown topic, bad JSON,
   * a foreign envelope). Unknown topics are counted under the label `unknown`, so a stranger
   * publishing on many channels cannot grow the metric's label set.
   */
  reject(topic: string, reason: string, fields?: Readonly<Record<string, unknown>>): void
}

/**
 * Creates the guard a remote broker runs every incoming message through.
 * @example
 * ```ts
 * const guard = createBrokerMessageGuard({ metrics, logger, name: 'redis broker' })
 * const message = guard.accept('key.revoked', JSON.parse(raw).msg)
 * if (message !== undefined) deliver(message)
 * ```
 */
export function createBrokerMessageGuard(
  options: Readonly<BrokerMessageGuardOptions> = {},
): BrokerMessageGuard {
  const metrics = options.metrics ?? noopMetrics
  const logger = options.logger ?? silentLogger
  const name = options.name ?? 'broker'
  // Label objects are built once: rejections may come in floods.
  const labels = new Map<string, MetricLabels>()
  for (const t of [...BROKER_TOPICS, 'unknown']) labels.set(t, Object.freeze({ topic: t }))
  const reject = (
    topic: string,
    reason: string,
    fields?: Readonly<Record<string, unknown>>,
  ): void => {
    const known = TOPICS.has(topic)
    try {
      metrics.increment('brokerMessagesRejected', labels.get(known ? topic : 'unknown'))
      logger.warn(
        { topic: known ? topic : topic.slice(0, 128), ...fields },
        `${name}: ignored a malformed or foreign message: ${reason}`,
      )
    } catch {
      // Reporting must never take a subscriber down.
    }
  }
  return {
    accept<TTopic extends BrokerTopic>(
      topic: TTopic,
      message: unknown,
    ): BrokerMessages[TTopic] | undefined {
      const check = checkBrokerMessage(topic, message)
      if (check.ok) return check.message
      reject(topic, check.reason)
      return undefined
    },
    reject,
  }
}
