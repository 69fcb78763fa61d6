/**
 * The authorization step: the route's own limits, then its requirements (the built-in scope, role
 * and permission check, or the authorize hook: the policy engine, under its deadline). Synchronous
 * when neither waits.
 * @internal
 * @packageDocumentation
 */
import { checkRequirements, type CompiledRequirements } from '../authz/requirements.js'
import { AuthError } from '../errors.js'
import { monotonicMicros } from '../internal/clock.js'
import type { GateRequest } from '../pipeline/gate-request.js'
import { isThenable, type MaybePromise } from '../pipeline/maybe-async.js'
import { policyTraceEntry } from '../policy/gate-policy.js'
import type { AccessResult, Principal, TraceEntry } from '../types.js'
import type { GateConfig } from './options.js'
import { runStages } from './stages.js'
import {
  dependencyFailed,
  EMPTY_HEADERS,
  entry,
  mergeHeaders,
  pushEntry,
  startSpan,
  withinDeadline,
  type StepResult,
} from './step.js'

/** Route limits, then the requirement check. */
export function authorizeStep(
  c: GateConfig,
  request: GateRequest,
  principal: Principal | null,
  requirements: CompiledRequirements,
  trace: TraceEntry[],
): MaybePromise<StepResult> {
  const started = monotonicMicros()
  if (requirements.rateLimits.length > 0)
    return limitedCheck(c, request, principal, requirements, trace, started)
  return check(c, request, principal, requirements, trace, started)
}

async function limitedCheck(
  c: GateConfig,
  request: GateRequest,
  principal: Principal | null,
  requirements: CompiledRequirements,
  trace: TraceEntry[],
  started: number,
): Promise<StepResult> {
  // Route limits run before the requirement check, as the pipeline orders them.
  const limited = await runStages(c, request, principal, requirements, trace, started)
  if (limited.error !== undefined) return limited
  const authz = await check(c, request, principal, requirements, trace, monotonicMicros())
  return {
    principal: authz.principal,
    error: authz.error,
    headers: mergeHeaders(limited.headers, authz.headers),
    stage: authz.stage,
  }
}

/** The requirement check or the authorize hook (the policy); synchronous unless the hook waits. */
function check(
  c: GateConfig,
  request: GateRequest,
  principal: Principal | null,
  requirements: CompiledRequirements,
  trace: TraceEntry[],
  started: number,
): MaybePromise<StepResult> {
  const span = startSpan(c, 'authorize', request)
  const hook = c.authorize
  if (principal !== null && hook !== undefined) {
    let result: AccessResult | PromiseLike<AccessResult>
    try {
      result = hook(principal, requirements, request)
    } catch (e) {
      return checked(c, principal, hookFailed(c, e), undefined, trace, span, started)
    }
    if (!isThenable(result))
      return checked(c, principal, hookError(result), result, trace, span, started)
    return Promise.resolve(
      withinDeadline<AccessResult | AuthError>(
        c,
        result,
        c.timeouts.authorize,
        'authorize',
        (error) => error,
      ),
    ).then(
      (r) =>
        r instanceof AuthError
          ? checked(c, principal, r, undefined, trace, span, started)
          : checked(c, principal, hookError(r), r, trace, span, started),
      (e: unknown) => checked(c, principal, hookFailed(c, e), undefined, trace, span, started),
    )
  }
  let error: AuthError | undefined
  let by = 'requirements'
  if (principal === null) {
    // Default deny: only routes declared public serve anonymous requests.
    if (!requirements.public)
      error = new AuthError('ERR_AUTH_REQUIRED', 'Authentication is required', {
        reason: 'anonymous request',
      })
    else by = 'public'
  } else {
    error = checkRequirements(principal, requirements, c.roles).error
  }
  const traced = entry('authorize', error, by, started)
  pushEntry(c, trace, traced, span)
  return { principal, error, headers: EMPTY_HEADERS, stage: 'authorize' }
}

/** Records the hook's trace entry (with the policy's explanation) and returns the step. */
function checked(
  c: GateConfig,
  principal: Principal,
  error: AuthError | undefined,
  decided: AccessResult | undefined,
  trace: TraceEntry[],
  span: unknown,
  started: number,
): StepResult {
  const traced = entry('authorize', error, 'authorize', started)
  pushEntry(c, trace, decided === undefined ? traced : policyTraceEntry(traced, decided), span)
  return { principal, error, headers: EMPTY_HEADERS, stage: 'authorize' }
}

function hookFailed(c: GateConfig, e: unknown): AuthError {
  return dependencyFailed(c, e, 'ERR_INTERNAL_ERROR', 'authorize hook failed')
}

/** The authorize hook's answer as the step's error (none when allowed). */
function hookError(result: AccessResult): AuthError | undefined {
  if (result.allowed) return undefined
  return (
    result.error ??
    new AuthError('ERR_POLICY_DENIED', 'Access denied by policy', { reason: result.explanation })
  )
}
