/**
 * The decide step: a step's outcome, once audited, becomes the request's {@link Decision}. An
 * allowed request has one Decision object whatever the number of steps (a route step extends the
 * authentication step's); a denial is its own.
 * @internal
 * @packageDocumentation
 */
import { AuthError } from '../errors.js'
import { toProblemDetails } from '../http/problem.js'
import type { RequestID } from '../ids.js'
import type { AllowDecision, Decision, DenyDecision, HeaderBag } from '../pipeline/decision.js'
import type { GateRequest } from '../pipeline/gate-request.js'
import type { MaybePromise } from '../pipeline/maybe-async.js'
import type { TraceEntry } from '../types.js'
import { writeAccessEvent } from './access-event.js'
import type { GateConfig } from './options.js'
import { chain, mergeHeaders, type StepResult } from './step.js'

/**
 * `Retry-After` of a 503 that did not set its own: a store, an audit sink or a deadline recovers
 * within seconds, and a client retrying later meets a recovered dependency or another 503.
 */
const RETRY_AFTER: HeaderBag = Object.freeze({ 'retry-after': '1' })

/** An allowed decision as the gate updates it in place (the route step extends the first one). */
type Mutable<T> = { -readonly [K in keyof T]: T[K] }

/**
 * Audits the step when `audit` (durably when `durable`) and returns the Decision. `into` is the
 * request's allowed decision so far: an allowed route step updates it rather than building a new
 * one. An allowed request whose event the trail cannot take becomes a 503 when the gate fails
 * closed on audit backpressure.
 */
export function decide(
  c: GateConfig,
  request: GateRequest,
  requestId: RequestID,
  step: StepResult,
  trace: TraceEntry[],
  audit: boolean,
  durable: boolean,
  into?: AllowDecision,
): MaybePromise<Decision> {
  let error = step.error
  if (audit) {
    const accepted = writeAccessEvent(c, request, requestId, step, trace, durable)
    if (accepted instanceof Promise)
      return whenDurable(c, accepted, request, requestId, step, trace, into)
    if (!accepted && c.failClosedOnAudit && error === undefined)
      error = new AuthError('ERR_AUDIT_UNAVAILABLE', 'The request could not be audited', {
        reason: 'audit queue full',
      })
  }
  if (error === undefined) return allow(step, trace, requestId, into)
  return deny(c, step, error, trace, requestId)
}

/**
 * The decision once its event is durable; when it cannot be, an allowed request becomes a 503 (it
 * was not served: a stage's `settle` hears so), a denied one stays denied.
 */
async function whenDurable(
  c: GateConfig,
  committed: Promise<unknown>,
  request: GateRequest,
  requestId: RequestID,
  step: StepResult,
  trace: TraceEntry[],
  into: AllowDecision | undefined,
): Promise<Decision> {
  try {
    await committed
  } catch (e) {
    if (step.error === undefined) {
      step.settle?.(503)
      const error = new AuthError('ERR_AUDIT_UNAVAILABLE', 'The request could not be audited', {
        cause: e,
        reason: 'durable audit write failed',
      })
      return deny(c, step, error, trace, requestId)
    }
  }
  if (step.error === undefined) return allow(step, trace, requestId, into)
  return deny(c, step, step.error, trace, requestId)
}

function allow(
  step: StepResult,
  trace: TraceEntry[],
  requestId: RequestID,
  into: AllowDecision | undefined,
): AllowDecision {
  if (into !== undefined) {
    const d = into as Mutable<AllowDecision>
    d.principal = step.principal
    d.headers = step.headers
    d.trace = trace
    if (step.settle !== undefined) d.settle = chain(into.settle, step.settle)
    return into
  }
  // Two literals rather than a conditional spread (a slow path in V8).
  if (step.settle === undefined)
    return {
      allowed: true,
      status: 200,
      principal: step.principal,
      headers: step.headers,
      trace,
      requestId,
    }
  return {
    allowed: true,
    status: 200,
    principal: step.principal,
    headers: step.headers,
    settle: step.settle,
    trace,
    requestId,
  }
}

function deny(
  c: GateConfig,
  step: StepResult,
  error: AuthError,
  trace: TraceEntry[],
  requestId: RequestID,
): DenyDecision {
  const challenge = c.challenges.for(error)
  let headers = step.headers
  if (challenge !== null) headers = mergeHeaders(headers, { 'www-authenticate': challenge })
  if (error.status === 503 && headers['retry-after'] === undefined)
    headers = mergeHeaders(headers, RETRY_AFTER)
  return {
    allowed: false,
    status: error.status,
    principal: step.principal,
    error,
    problem: toProblemDetails(error, requestId, c.typeBase),
    headers,
    trace,
    requestId,
  }
}
