/**
 * An audit sink posting batches to an HTTP endpoint (a SIEM collector, a log pipeline). Each batch
 * is one `POST` of `{"events": [...]}` with an `Idempotency-Key` derived from the batch's event ids,
 * so a retried or replayed batch carries the same key; retries use exponential backoff with full
 * jitter and honour `Retry-After`. Receivers should also drop events by id.
 *
 * Reachable from `@portcullis/core`.
 * @packageDocumentation
 */
import { createHash } from 'node:crypto'
import { TypeValidator } from '../validation/type-validator.js'
import { auditEventJson, type AuditEvent, type AuditSink } from './audit-event.js'

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
  /** Longest retry delay. @default 5000 */
  readonly maxDelayMs?: number
  /** Per-request timeout. @default 5000 */
  readonly timeoutMs?: number
  /** Sink name. @default 'webhook' */
  readonly name?: string
  /** `fetch` to use (tests, proxies). @default globalThis.fetch */
  readonly fetch?: typeof globalThis.fetch
}

class HttpStatusError extends Error {
  constructor(
    readonly status: number,
    readonly retryAfterMs: number | undefined,
  ) {
    super(`webhook answered ${status}`)
  }
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
    'timeoutMs',
    'name',
    'fetch',
  ])
  v.string('url', options.url, { pattern: /^https?:\/\// })
  if (options.attempts !== undefined) v.integer('attempts', options.attempts, { min: 1 })
  if (options.baseDelayMs !== undefined) v.integer('baseDelayMs', options.baseDelayMs, { min: 0 })
  if (options.maxDelayMs !== undefined) v.integer('maxDelayMs', options.maxDelayMs, { min: 0 })
  if (options.timeoutMs !== undefined) v.integer('timeoutMs', options.timeoutMs, { min: 1 })
  v.assert()
  const attempts = options.attempts ?? 3
  const base = options.baseDelayMs ?? 100
  const max = options.maxDelayMs ?? 5000
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
    const ra = res.headers.get('retry-after')
    const seconds = ra === null ? Number.NaN : Number(ra)
    throw new HttpStatusError(res.status, Number.isFinite(seconds) ? seconds * 1000 : undefined)
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
          const ceiling = Math.min(max, base * 2 ** (attempt - 1))
          const wait = Math.max(
            error instanceof HttpStatusError ? (error.retryAfterMs ?? 0) : 0,
            Math.random() * ceiling,
          )
          await new Promise<void>((resolve) => setTimeout(resolve, Math.min(wait, max)).unref())
        }
      }
    },
  }
}
