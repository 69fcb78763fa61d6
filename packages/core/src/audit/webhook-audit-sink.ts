/**
 * An audit sink posting batches to an HTTP endpoint (a SIEM collector, a log pipeline). Each batch
 * is one `POST` of `{"events": [...]}` with an `Idempotency-Key` derived from the batch's event ids,
 * so a retried or replayed batch carries the same key; retries use exponential backoff with full
 * jitter and honour `Retry-After` (seconds or an HTTP date), up to `maxRetryAfterMs` even past
 * `maxDelayMs`: a wait longer than `maxDelayMs` is not slept inside the write, the write fails with
 * the wait attached (`retryAfterMs`) and the trail tries the sink again only after it. Receivers
 * should also drop events by id.
 *
 * Reachable from `@portcullis/core`.
 * @packageDocumentation
 */
import { createHash } from 'node:crypto'
import { systemClock } from '../internal/clock.js'
import { TypeValidator } from '../validation/type-validator.js'
import type { AuditEvent, AuditSink } from './audit-event.js'
import { auditEventJson } from './event-json.js'

/** Options of {@link createWebhookAuditSink}. */
export interface WebhookAuditSinkOptions {
  /** `https://…` (or `http://` for loopback and tests). */
  readonly url: string
  /** Extra headers (e.g. an authorization for the collector). */
  readonly headers?: Readonly<Record<string, string>>
  /** Attempts per batch before the write fails (and the trail spools it). @default 3 */
  readonly attempts?: number
  /** First retry delay; doubles each attempt. @default 100 */
  readonly baseDelayMs?: number
  /** Longest retry delay of the sink's own back-off. @default 5000 */
  readonly maxDelayMs?: number
  /**
   * Longest wait a collector's `Retry-After` (on 429, 503 or any retried status) can ask for; a
   * larger value is clamped to it. It is honoured beyond `maxDelayMs`: the trail holds the sink's
   * events (in memory, or in its spool) and writes again once it has passed. @default 600000
   */
  readonly maxRetryAfterMs?: number
  /** Per-request timeout. @default 5000 */
  readonly timeoutMs?: number
  /** Sink name. @default 'webhook' */
  readonly name?: string
  /** `fetch` to use (tests, proxies). @default globalThis.fetch */
  readonly fetch?: typeof globalThis.fetch
}

/** The default of {@link WebhookAuditSinkOptions.maxRetryAfterMs}: 10 minutes. */
const DEFAULT_MAX_RETRY_AFTER_MS = 600_000

/**
 * A collector's answer other than 2xx. `retryAfterMs` (its `Retry-After`, clamped) is read by the
 * trail, which waits at least that long before writing to the sink again.
 */
class HttpStatusError extends Error {
  constructor(
    readonly status: number,
    readonly retryAfterMs: number | undefined,
  ) {
    super(`webhook answered ${status}`)
  }
}

/** `Retry-After` in ms: delay-seconds or an HTTP-date (RFC 9110 §10.2.3); `undefined` if neither. */
function parseRetryAfter(value: string | null, max: number): number | undefined {
  if (value === null) return undefined
  const text = value.trim()
  let ms: number
  if (/^\d+$/.test(text)) ms = Number(text) * 1000
  else {
    const at = Date.parse(text)
    if (Number.isNaN(at)) return undefined
    ms = at - systemClock()
  }
  return Math.min(max, Math.max(0, ms))
}

/**
 * Creates a webhook sink.
 * @throws {ConfigError} for a bad option
 * @example
 * ```ts
 * createWebhookAuditSink({ url: 'https://siem.example/ingest', headers: { authorization: `Bearer ${token}` } })
 * ```
 */
export function createWebhookAuditSink(options: Readonly<WebhookAuditSinkOptions>): AuditSink {
  const v = new TypeValidator('webhook')
  v.knownKeys(options as Record<string, unknown>, [
    'url',
    'headers',
    'attempts',
    'baseDelayMs',
    'maxDelayMs',
    'maxRetryAfterMs',
    'timeoutMs',
    'name',
    'fetch',
  ])
  v.string('url', options.url, { pattern: /^https?:\/\// })
  if (options.attempts !== undefined) v.integer('attempts', options.attempts, { min: 1 })
  if (options.baseDelayMs !== undefined) v.integer('baseDelayMs', options.baseDelayMs, { min: 0 })
  if (options.maxDelayMs !== undefined) v.integer('maxDelayMs', options.maxDelayMs, { min: 0 })
  if (options.maxRetryAfterMs !== undefined)
    v.integer('maxRetryAfterMs', options.maxRetryAfterMs, { min: 0 })
  if (options.timeoutMs !== undefined) v.integer('timeoutMs', options.timeoutMs, { min: 1 })
  v.assert()
  const attempts = options.attempts ?? 3
  const base = options.baseDelayMs ?? 100
  const max = options.maxDelayMs ?? 5000
  const maxRetryAfter = options.maxRetryAfterMs ?? DEFAULT_MAX_RETRY_AFTER_MS
  const timeoutMs = options.timeoutMs ?? 5000
  const doFetch = options.fetch ?? globalThis.fetch
  const headers = { ...options.headers, 'content-type': 'application/json' }

  const post = async (body: string, key: string): Promise<void> => {
    const res = await doFetch(options.url, {
      method: 'POST',
      headers: { ...headers, 'idempotency-key': key },
      body,
      signal: AbortSignal.timeout(timeoutMs),
    })
    // Drain the body so the connection can be reused.
    await res.arrayBuffer().catch(() => undefined)
    if (res.ok) return
    throw new HttpStatusError(
      res.status,
      parseRetryAfter(res.headers.get('retry-after'), maxRetryAfter),
    )
  }

  return {
    name: options.name ?? 'webhook',
    async write(events: readonly AuditEvent[]): Promise<void> {
      if (events.length === 0) return
      const hash = createHash('sha256')
      for (const e of events) hash.update(e.id).update('\n')
      const key = hash.digest('base64url')
      // `{"events":[...]}`, reusing each event's text when the trail already made it.
      const body = `{"events":[${events.map(auditEventJson).join(',')}]}`
      for (let attempt = 1; ; attempt++) {
        try {
          await post(body, key)
          return
        } catch (error) {
          const status = error instanceof HttpStatusError ? error.status : 0
          // A 4xx other than 408/429 will not get better by retrying.
          const permanent = status >= 400 && status < 500 && status !== 408 && status !== 429
          if (permanent || attempt >= attempts) throw error
          const asked = error instanceof HttpStatusError ? error.retryAfterMs : undefined
          // A wait past the usual cap is the trail's to keep (the error carries it): sleeping it
          // here would hold the write past the trail's writeTimeoutMs, which then retries sooner.
          if (asked !== undefined && asked > max) throw error
          const ceiling = Math.min(max, base * 2 ** (attempt - 1))
          const wait = Math.max(asked ?? 0, Math.random() * ceiling)
          await new Promise<void>((resolve) => setTimeout(resolve, wait).unref())
        }
      }
    },
  }
}
