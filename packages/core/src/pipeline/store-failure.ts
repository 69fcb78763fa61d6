/**
 * What the limit and quota stages do when their counter store fails: count it, then fail open
 * (allow, with a warning and a `*.bypassed` audit event) or closed (deny with a 503 and its own
 * code, with an error log), as the limit or quota is configured.
 * @internal
 * @packageDocumentation
 */
import { AuthError } from '../errors.js'
import type { StageContext, StageResult, StoreFailureMode } from './stage.js'
import type { HeaderBag } from './decision.js'
import type { MetricLabels } from '../integrations/metrics.js'
import type { Logger } from '../logger.js'

/** The words and codes of one stage's store failures. @internal */
export interface FailureKind {
  /** Metric label `store`, log prefix and audit-event prefix: `ratelimit` or `quota`. */
  readonly store: 'ratelimit' | 'quota'
  /** What the thing is called in log fields and reasons: `limit` or `quota`. */
  readonly noun: 'limit' | 'quota'
  readonly code: 'ERR_RATELIMIT_UNAVAILABLE' | 'ERR_QUOTA_UNAVAILABLE'
  readonly message: string
  readonly labels: MetricLabels
  readonly open: MetricLabels
  readonly closed: MetricLabels
  readonly insurance: MetricLabels
}

function kind(
  store: FailureKind['store'],
  noun: FailureKind['noun'],
  code: FailureKind['code'],
  message: string,
): FailureKind {
  return {
    store,
    noun,
    code,
    message,
    labels: Object.freeze({ store }),
    open: Object.freeze({ store, mode: 'open' }),
    closed: Object.freeze({ store, mode: 'closed' }),
    insurance: Object.freeze({ store, mode: 'insurance' }),
  }
}

/**
 * `Retry-After` of the 503 sent while a limit or quota store is down: one second, as for an audit
 * outage (a client retrying later meets a recovered store or another 503, never a wrong count).
 */
export const STORE_RETRY_AFTER: HeaderBag = Object.freeze({ 'retry-after': '1' })

/** The rate-limit stage's store failures. */
export const RATE_LIMIT_STORE: FailureKind = kind(
  'ratelimit',
  'limit',
  'ERR_RATELIMIT_UNAVAILABLE',
  'Rate limiting is unavailable',
)

/** The quota stage's store failures. */
export const QUOTA_STORE: FailureKind = kind(
  'quota',
  'quota',
  'ERR_QUOTA_UNAVAILABLE',
  'Quota accounting is unavailable',
)

/**
 * Handles a store failure of the limit or quota `name`: `undefined` to carry on (fail open),
 * otherwise the denial to return.
 */
export function storeFailure(
  k: FailureKind,
  name: string,
  mode: StoreFailureMode,
  error: unknown,
  context: StageContext,
  logger: Logger,
): StageResult | undefined {
  context.metrics?.increment('storeFailures', k.labels)
  context.metrics?.increment('failureModeActivations', mode === 'open' ? k.open : k.closed)
  if (mode === 'open') {
    logger.warn(
      { [k.noun]: name, error: String(error) },
      `${k.store}: store failed; request allowed (fail open)`,
    )
    context.audit?.record(`${k.store}.bypassed`, {
      outcome: 'failure',
      reason: { detail: `${k.noun} ${name}: store unavailable, failed open` },
    })
    return undefined
  }
  logger.error(
    { [k.noun]: name, error: String(error) },
    `${k.store}: store failed; request denied (fail closed)`,
  )
  return {
    ok: false,
    by: name,
    headers: STORE_RETRY_AFTER,
    error: new AuthError(k.code, k.message, {
      cause: error,
      reason: `${k.noun} ${name}: store unavailable`,
    }),
  }
}

/** Whether a stage's store is in an outage answered by insurance limiters: its start and end are logged once. */
export interface Outage {
  /** Since when (the stage's clock), or `undefined` while the store answers. */
  since: number | undefined
}

/**
 * Records one request counted by an insurance limiter of the limit `name` because the store failed
 * with `error`: counted every time (`storeFailures`, `failureModeActivations{mode="insurance"}`),
 * logged and audited (`ratelimit.degraded`) once, when the outage starts.
 */
export function storeInsured(
  k: FailureKind,
  name: string,
  error: unknown,
  context: StageContext,
  logger: Logger,
  outage: Outage,
  now: number,
): void {
  context.metrics?.increment('storeFailures', k.labels)
  context.metrics?.increment('failureModeActivations', k.insurance)
  if (outage.since !== undefined) return
  outage.since = now
  logger.warn(
    { store: k.store, [k.noun]: name, error: String(error) },
    `${k.store}: store failed; counting in process memory (insurance) until it answers again`,
  )
  context.audit?.record(`${k.store}.degraded`, {
    outcome: 'failure',
    reason: { detail: `${k.noun} ${name}: store unavailable, counting in process memory` },
  })
}

/** Records an answer of the store itself: ends the outage (logged once) if one was under way. */
export function storeAnswered(
  k: FailureKind,
  name: string,
  logger: Logger,
  outage: Outage,
  now: number,
): void {
  if (outage.since === undefined) return
  const downMs = Math.max(0, now - outage.since)
  outage.since = undefined
  logger.warn(
    { store: k.store, [k.noun]: name, downMs },
    `${k.store}: store answers again; insurance ended`,
  )
}
