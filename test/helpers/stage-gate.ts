// A gate around limit or quota stages with two API keys, for the rate-limit and quota tests, and
// the readings those tests repeat (failure events of a trail, a recording logger).
import {
  createApiKeyManager,
  createGate,
  createMemoryKeyStore,
  type AuditEvent,
  type AuditSink,
  type Decision,
  type GateStage,
  type Logger,
  type MetricsClient,
} from '@portcullis/core'
import { createFakeClock, fakeRequest, type FakeClock } from '@portcullis/core/testing'

/** The pepper of every key store these tests make. */
export const TEST_PEPPER = 'p'.repeat(32)

/** Options of {@link stageGate}. */
export interface StageGateOptions {
  /** Clock of the gate and the key manager. @default a fake clock at 2026-11-28 12:00 UTC */
  readonly clock?: FakeClock
  /** Audit sinks; none: no audit. */
  readonly sinks?: readonly AuditSink[]
  readonly metrics?: MetricsClient
  /** @default true */
  readonly credentialsRequired?: boolean
}

/**
 * A gate with `stages` and two API keys: alice's (`plan: 'pro'` in its metadata) and bob's, both
 * with the scope `docs:read`. `as(key)` sends one request with a key.
 */
export async function stageGate(stages: readonly GateStage[], options: StageGateOptions = {}) {
  const clock = options.clock ?? createFakeClock(Date.UTC(2026, 10, 28, 12, 0, 0))
  const store = createMemoryKeyStore()
  const gate = createGate({
    apiKeys: { store, pepper: TEST_PEPPER },
    stages: [...stages],
    audit: options.sinks === undefined ? false : { sinks: [...options.sinks] },
    now: clock,
    credentialsRequired: options.credentialsRequired ?? true,
    ...(options.metrics === undefined ? {} : { metrics: options.metrics }),
  })
  const keys = createApiKeyManager({ store, pepper: TEST_PEPPER, now: clock })
  const alice = await keys.create({
    name: 'a',
    ownerId: 'alice',
    scopes: ['docs:read'],
    metadata: { plan: 'pro' },
  })
  const bob = await keys.create({ name: 'b', ownerId: 'bob', scopes: ['docs:read'] })
  /** One request with `key` (and `headers`) to `path`. */
  const as = (
    key: string,
    headers: Record<string, string> = {},
    path = '/docs',
  ): Promise<Decision> =>
    gate.evaluate(fakeRequest({ url: path, headers: { 'x-api-key': key, ...headers } }))
  return { gate, clock, store, keys, alice, bob, as }
}

/** `[type, reason code]` of each failure event, in order. */
export const failureCodes = (events: readonly AuditEvent[]): Array<[string, string | undefined]> =>
  events.filter((e) => e.outcome === 'failure').map((e) => [e.type, e.reason?.code])

/** A logger keeping `level message fields` lines. */
export function recordingLogger(): { logger: Logger; lines: string[] } {
  const lines: string[] = []
  return {
    lines,
    logger: {
      warn: (fields, message) => lines.push(`warn ${message} ${JSON.stringify(fields)}`),
      error: (fields, message) => lines.push(`error ${message} ${JSON.stringify(fields)}`),
    },
  }
}
