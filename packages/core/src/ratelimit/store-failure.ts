/**
 * What the limit and quota stages do when their counter store fails: count it, then fail open
 * (allow, with a warning and a `*.bypassed` audit event) or closed (deny with a 503 and its own
 * code, with an error log), as the limit or quota is configured.
 * @internal
 * @packageDocumentation
 */
import { AuthError } from '../errors.js'
import type { StageContext, StageResult } from '../gate/gate.js'
import type { MetricLabels } from '../integrations/metrics.js'
import type { Logger } from '../logger.js'
import type { StoreFailureMode } from './rate-limit-stage.js'

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
  }
}

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
    error: new AuthError(k.code, k.message, {
      cause: error,
      reason: `${k.noun} ${name}: store unavailable`,
    }),
  }
}
