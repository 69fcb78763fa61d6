/**
 * `@portcullis/core/testing`: helpers for users' own tests: a fake request, a controllable clock,
 * and the in-memory stores.
 *
 * @example
 * ```ts
 * import { fakeRequest } from '@portcullis/core/testing'
 * const decision = await gate.evaluate(fakeRequest({ headers: { authorization: 'Bearer x' } }))
 * ```
 * @packageDocumentation
 */
import { normalizePath, type GateRequest } from '../pipeline/gate-request.js'
import type { RateLimitBackend } from '../ratelimit/backend.js'

export { createMemoryKeyStore } from '../apikey/memory-key-store.js'
export { createMemoryAuditSink, type MemoryAuditSink } from '../audit/memory-audit-sink.js'
export { createMemoryBroker } from '../integrations/message-broker.js'
export { createMemoryMetrics, type MemoryMetrics } from './memory-metrics.js'

/**
 * A rate-limit backend whose store is down: every `consume` and `reward` rejects with `error`
 * (`get` finds nothing, `delete` deletes nothing), as a Redis backend does while its server is
 * unreachable. For testing what limits and quotas do with `onStoreError`.
 * @example
 * ```ts
 * const limits = createRateLimitStage({ backend: createFailingBackend(), onStoreError: 'open', limits })
 * ```
 */
export function createFailingBackend(
  error: () => Error = () => new Error('ECONNREFUSED'),
): RateLimitBackend {
  return {
    name: 'failing',
    create: () => ({
      consume: () => Promise.reject(error()),
      get: () => Promise.resolve(null),
      reward: () => Promise.reject(error()),
      delete: () => Promise.resolve(false),
    }),
  }
}

/** What {@link fakeRequest} accepts. */
export interface FakeRequestInput {
  readonly method?: string
  /** Path with optional `?query`. @default '/' */
  readonly url?: string
  readonly route?: string
  readonly ip?: string
  /** Header values; an array sends the header several times. */
  readonly headers?: Readonly<Record<string, string | readonly string[]>>
  /** Whether the imagined router is case-sensitive (`path` is lower-cased when not). @default true */
  readonly caseSensitive?: boolean
}

/** Builds a {@link GateRequest} as an adapter would, including repeated headers in `rawHeaders`. */
export function fakeRequest(input: FakeRequestInput = {}): GateRequest {
  const url = input.url ?? '/'
  const q = url.indexOf('?')
  const raw: string[] = []
  const joined = new Map<string, string>()
  for (const [name, value] of Object.entries(input.headers ?? {})) {
    const values = typeof value === 'string' ? [value] : value
    for (const v of values) raw.push(name, v)
    const lower = name.toLowerCase()
    // Node keeps the first Authorization and joins repeats of unknown headers with ", ".
    joined.set(lower, lower === 'authorization' ? (values[0] as string) : values.join(', '))
  }
  const rawPath = q === -1 ? url : url.slice(0, q)
  return {
    method: (input.method ?? 'GET').toUpperCase(),
    // Normalized as the adapters do, so path rules behave in tests as they do in apps.
    path: normalizePath(rawPath, { caseSensitive: input.caseSensitive !== false }),
    rawPath,
    query: q === -1 ? '' : url.slice(q + 1),
    route: input.route,
    ip: input.ip ?? '127.0.0.1',
    rawHeaders: raw,
    header: (name: string) => joined.get(name),
  }
}

/** A clock tests move by hand. */
export interface FakeClock {
  (): number
  /** Moves time forward. */
  advance(ms: number): void
  /** Sets the time. */
  set(ms: number): void
}

/** Creates a {@link FakeClock} starting at `start` (epoch ms). */
export function createFakeClock(start: number = Date.UTC(2026, 0, 1)): FakeClock {
  let t = start
  const clock = (() => t) as FakeClock
  clock.advance = (ms: number) => {
    t += ms
  }
  clock.set = (ms: number) => {
    t = ms
  }
  return clock
}
