/**
 * What the steps hand each other: a step's outcome before it becomes a Decision, the trace it
 * writes, and how dependency failures and missed deadlines become answers.
 * @internal
 * @packageDocumentation
 */
import { AuthError, isAuthError } from '../errors.js'
import { monotonicMicros } from '../internal/clock.js'
import type { HeaderBag } from '../pipeline/decision.js'
import { withDeadline } from '../pipeline/deadline.js'
import type { GateRequest } from '../pipeline/gate-request.js'
import type { Principal, TraceEntry } from '../types.js'
import type { GateConfig } from './options.js'

/** The outcome of one step, before it becomes a Decision. */
export interface StepResult {
  readonly principal: Principal | null
  readonly error: AuthError | undefined
  readonly headers: HeaderBag
  readonly stage: 'authenticate' | 'authorize' | 'stage'
  readonly settle?: ((status: number) => void) | undefined
}

/** The empty header bag: compared by identity, never written. */
export const EMPTY_HEADERS: HeaderBag = Object.freeze({})

/** Opens the tracer's span for a stage; a throwing tracer costs the span, not the request. */
export function startSpan(c: GateConfig, stage: string, request: GateRequest): unknown {
  if (c.tracer === undefined) return undefined
  try {
    return c.tracer.startStage(stage, request)
  } catch {
    return undefined
  }
}

/** Appends a stage's trace entry and closes its span. */
export function pushEntry(
  c: GateConfig,
  trace: TraceEntry[],
  traceEntry: TraceEntry,
  span: unknown,
): void {
  trace.push(traceEntry)
  const tracer = c.tracer
  if (tracer === undefined) return
  try {
    tracer.endStage(span, traceEntry)
  } catch {
    // Tracing must never fail a request.
  }
}

/** A stage's trace entry; `started` and `ended` are {@link monotonicMicros} readings. */
export function entry(
  stage: string,
  error: AuthError | undefined,
  by: string,
  started: number,
  ended: number = monotonicMicros(),
): TraceEntry {
  const micros = Math.round(ended - started)
  if (error === undefined) return { stage, outcome: 'allow', by, micros }
  return {
    stage,
    outcome: error.status >= 500 ? 'error' : 'deny',
    by,
    code: error.code,
    ...(error.reason === undefined ? {} : { reason: error.reason }),
    micros,
  }
}

/**
 * A dependency's failure as the request's answer: its own client error as is (a store saying
 * "no such key" by throwing one), anything else logged and turned into `code` (a 503 or 500 that
 * reveals nothing).
 */
export function dependencyFailed(
  c: GateConfig,
  error: unknown,
  code: 'ERR_STORE_UNAVAILABLE' | 'ERR_INTERNAL_ERROR',
  reason: string,
): AuthError {
  if (isAuthError(error) && error.status < 500) return error
  c.logger.error(
    { error: String(error), code: isAuthError(error) ? error.code : undefined },
    `gate: ${reason}`,
  )
  if (isAuthError(error)) return error
  return new AuthError(code, 'The request could not be checked', { cause: error, reason })
}

/** Label objects per dependency, built once (metrics allocate nothing per request). */
const TIMEOUT_LABELS = new Map<string, Readonly<{ dependency: string }>>()

/**
 * `pending` within the deadline `ms` (none when `false`); past it, `expired(error)` answers with a
 * 503 `ERR_DEPENDENCY_TIMEOUT`, counted and logged, and the late answer is ignored.
 */
export function withinDeadline<T>(
  c: GateConfig,
  pending: PromiseLike<T>,
  ms: number | false,
  dependency: string,
  expired: (error: AuthError) => T,
): PromiseLike<T> {
  if (ms === false) return pending
  return withDeadline(pending, ms, () => {
    let labels = TIMEOUT_LABELS.get(dependency)
    if (labels === undefined && TIMEOUT_LABELS.size < 256) {
      labels = Object.freeze({ dependency })
      TIMEOUT_LABELS.set(dependency, labels)
    }
    c.metricsClient.increment('dependencyTimeouts', labels ?? { dependency: 'other' })
    c.logger.error({ dependency, timeoutMs: ms }, 'gate: dependency missed its deadline')
    return expired(
      new AuthError('ERR_DEPENDENCY_TIMEOUT', 'A dependency did not answer in time', {
        reason: `${dependency} did not answer within ${ms} ms`,
      }),
    )
  })
}

// Draft-8 RateLimit fields are lists of named policies: the global and the route step's lists join.
const LIST_FIELDS = ['ratelimit', 'ratelimit-policy'] as const

/** Two header bags as one; the RateLimit list fields of both are joined. */
export function mergeHeaders(a: HeaderBag, b: HeaderBag): HeaderBag {
  if (a === EMPTY_HEADERS) return b
  if (b === EMPTY_HEADERS) return a
  const out: Record<string, string> = { ...a, ...b }
  for (const f of LIST_FIELDS) {
    const x = a[f]
    const y = b[f]
    if (x !== undefined && y !== undefined && x.startsWith('"') && y.startsWith('"'))
      out[f] = `${x}, ${y}`
  }
  return out
}

/** Both settle callbacks, in order; either alone when the other is absent. */
export function chain(
  a: ((status: number) => void) | undefined,
  b: ((status: number) => void) | undefined,
): ((status: number) => void) | undefined {
  if (a === undefined) return b
  if (b === undefined) return a
  return (status) => {
    a(status)
    b(status)
  }
}
