/**
 * The audit step: turns a step's outcome into the request's access event. The event type comes
 * from two tables (a denial's by its code, an allowed request's by the last step it passed), and
 * only capture happens here: the trail prepares the event (redaction, pseudonyms, chaining) off the
 * request path.
 * @internal
 * @packageDocumentation
 */
import type { AuditEventInput, AuditEventType, AuditRequestContext } from '../audit/audit-event.js'
import type { RequestID } from '../ids.js'
import type { GateRequest } from '../pipeline/gate-request.js'
import type { TraceEntry } from '../types.js'
import type { GateConfig } from './options.js'
import type { StepResult } from './step.js'

/** User-Agent values are cut to this many characters in events and access contexts. */
export const USER_AGENT_MAX = 256

/**
 * The event type of a denial by its code, whatever the step: limits, quotas, store outages and
 * missed deadlines are audited as what they are.
 */
const DENIAL_BY_CODE: Readonly<Partial<Record<string, AuditEventType>>> = Object.freeze({
  ERR_RATE_LIMITED: 'ratelimit.exceeded',
  ERR_QUOTA_EXCEEDED: 'quota.exceeded',
  ERR_RATELIMIT_UNAVAILABLE: 'ratelimit.unavailable',
  ERR_QUOTA_UNAVAILABLE: 'quota.unavailable',
  ERR_STORE_UNAVAILABLE: 'store.unavailable',
  ERR_DEPENDENCY_TIMEOUT: 'dependency.timeout',
  ERR_AUTH_THROTTLED: 'authn.throttled',
})

/** The event type by the step that answered: for other denials, and for allowed requests. */
const BY_STEP: Readonly<
  Record<
    StepResult['stage'],
    { readonly failure: AuditEventType; readonly success: AuditEventType }
  >
> = Object.freeze({
  authenticate: { failure: 'authn.failure', success: 'authn.success' },
  stage: { failure: 'authn.failure', success: 'authn.success' },
  authorize: { failure: 'authz.deny', success: 'authz.allow' },
})

/** An audit event's parts, filled in field by field (no spreads on the request path). */
type Mutable<T> = { -readonly [K in keyof T]: T[K] }

/**
 * Writes the access event of a step: `true` when the trail took it (or does not record its type),
 * `false` when its queue is full, or the commit's promise when `durable`.
 */
export function writeAccessEvent(
  c: GateConfig,
  request: GateRequest,
  requestId: RequestID,
  step: StepResult,
  trace: readonly TraceEntry[],
  durable: boolean,
): boolean | Promise<unknown> {
  const audit = c.audit
  const failed = step.error !== undefined
  const type: AuditEventType = failed
    ? (DENIAL_BY_CODE[step.error.code] ?? BY_STEP[step.stage].failure)
    : BY_STEP[step.stage].success
  if (!audit.accepts(type, failed ? 'failure' : 'success')) return true
  const p = step.principal
  const ua = request.header('user-agent')
  // Normalized once, when the adapter built the request.
  const path = request.path
  const target = request.route ?? path
  const ctx: Mutable<AuditRequestContext> = {
    id: requestId,
    method: request.method,
    path,
    adapter: request.adapter ?? 'custom',
  }
  if (request.route !== undefined) ctx.route = request.route
  if (request.ip !== undefined) ctx.ip = request.ip
  if (ua !== undefined) ctx.userAgent = ua.slice(0, USER_AGENT_MAX)
  const event: Mutable<AuditEventInput> = {
    type,
    outcome: failed ? 'failure' : 'success',
    actor:
      p === null
        ? { id: null }
        : p.tokenId === undefined
          ? { id: p.id, method: p.method }
          : { id: p.id, method: p.method, tokenId: p.tokenId },
    action: `${request.method} ${target}`,
    target: { type: 'route', id: target },
    request: ctx,
  }
  if (failed)
    event.reason = { code: step.error.code, detail: step.error.reason ?? step.error.message, trace }
  else if (audit.level === 'verbose') event.reason = { trace }
  return durable ? audit.commit(event) : audit.emit(event)
}
