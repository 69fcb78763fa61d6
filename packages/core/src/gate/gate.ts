/**
 * The gate: authenticate → stages (limits, quotas) → authorize → decide and audit, each step in
 * its own file of this folder, returning a {@link Decision} value. Framework adapters call it
 * through the adapter kit (`@portcullis/core/adapter`); it names no framework.
 *
 * Reachable from `@portcullis/core`.
 * @packageDocumentation
 */
import { randomUUID } from 'node:crypto'
import type { ApiKeyVerifier } from '../apikey/api-key-verifier.js'
import type { AuditTrail } from '../audit/audit-trail.js'
import { compileRequirements, type CompiledRequirements } from '../authz/requirements.js'
import { runWithAccessContext } from '../context/access-context.js'
import {
  PROBLEM_CONTENT_TYPE,
  toAuthError,
  toProblemDetails,
  type ErrorResponse,
} from '../http/problem.js'
import { parseRequestId, type RequestID } from '../ids.js'
import { monotonicMicros, type Clock } from '../internal/clock.js'
import { STEP_PASSED, type GateStep } from '../internal/gate-metrics.js'
import type { JwtVerifier } from '../jwt/jwt-verifier.js'
import type { AllowDecision, Decision } from '../pipeline/decision.js'
import type { GateRequest } from '../pipeline/gate-request.js'
import { andThen, type MaybePromise } from '../pipeline/maybe-async.js'
import type { AccessContext, RouteRequirements, TraceEntry } from '../types.js'
import { USER_AGENT_MAX, writeAccessEvent } from './access-event.js'
import { authenticateStep } from './authenticate.js'
import { authorizeStep } from './authorize.js'
import { decide } from './decide.js'
import { resolveGateConfig, type GateConfig, type GateOptions } from './options.js'
import { chain, mergeHeaders, type StepResult } from './step.js'

export type { GateOptions, GateTimeouts } from './options.js'
export type {
  Authenticator,
  AuthenticatorResult,
  AuthorizeHook,
  GateStage,
  StageContext,
  StageResult,
} from '../pipeline/stage.js'

/** Options of {@link Gate.authenticate}. */
export interface AuthenticateOptions {
  /**
   * A route step may follow: leave an allowed request's access event to it (or to
   * {@link Gate.record}). Ignored with `auditEvents: 'step'` and with a durable trail.
   * @default false
   */
  readonly deferAudit?: boolean
}

/** The gate. Create one per application with {@link createGate}. */
export interface Gate {
  /**
   * Authenticates and runs the stages; the global middleware's step. With `deferAudit`, an
   * allowed request's access event waits for the route step ({@link Gate.authorize}) or for
   * {@link Gate.record}, so that the request writes one event (see `auditEvents`).
   */
  authenticate(request: GateRequest, options?: AuthenticateOptions): Promise<Decision>
  /**
   * Authorizes an already-authenticated request against a route's requirements; the route
   * middleware's step. An allowed answer is `prior` itself, extended (its trace, headers and
   * settle): one Decision per request.
   */
  authorize(
    request: GateRequest,
    prior: AllowDecision,
    requirements: CompiledRequirements,
  ): Promise<Decision>
  /**
   * Both steps at once, for frameworks that know the route up front; without `requirements` only
   * authentication runs (as with a global middleware alone). Writes one access event (one per
   * step with `auditEvents: 'step'`).
   */
  evaluate(request: GateRequest, requirements?: CompiledRequirements): Promise<Decision>
  /**
   * Writes the access event of a request authenticated with `deferAudit` whose route step never
   * ran (a route without a guard). Does nothing for a denial or when nothing was deferred.
   */
  record(request: GateRequest, decision: Decision): void
  /** Like `evaluate` without auditing: a dry run that returns the full trace. */
  explain(request: GateRequest, requirements?: CompiledRequirements): Promise<Decision>
  /** Compiles a route declaration (a permission string or requirements object). */
  compile(requirements: string | RouteRequirements | undefined): CompiledRequirements
  /** The access context for a decided request. */
  contextFor(request: GateRequest, decision: Decision, startedAt: number): AccessContext
  /**
   * Continues an allowed request: calls `next` inside AsyncLocalStorage with the request's access
   * context when `asyncContext` is on, or directly otherwise. Adapters call it after allowing.
   */
  proceed<TResult>(
    request: GateRequest,
    decision: Decision,
    startedAt: number,
    next: () => TResult,
  ): TResult
  /** Whether {@link Gate.proceed} propagates the access context. */
  readonly asyncContext: boolean
  /** The full answer for any error (a Portcullis error, a body parser's 400, a bug's 500). */
  errorResponse(error: unknown, requestId: string): ErrorResponse
  /** The audit trail. */
  readonly audit: AuditTrail
  /** The API-key verifier, when configured. */
  readonly apiKeys: ApiKeyVerifier | undefined
  /** The JWT verifier, when configured. */
  readonly jwt: JwtVerifier | undefined
  /** The clock. */
  readonly now: Clock
  /** Flushes audit and releases subscriptions. */
  close(): Promise<void>
}

/**
 * Creates the gate. Validates every option now and throws on the first request never.
 * @throws {ConfigError} for a bad option
 * @example
 * ```ts
 * const gate = createGate({
 *   apiKeys: { store: createMemoryKeyStore(), pepper: process.env.PORTCULLIS_PEPPER },
 *   jwt: { secret: process.env.JWT_SECRET, issuer: 'https://id.example', audience: 'api' },
 * })
 * const decision = await gate.evaluate(request, gate.compile('documents:read'))
 * ```
 */
export function createGate(options: Readonly<GateOptions> = {}): Gate {
  return new GateImpl(resolveGateConfig(options))
}

class GateImpl implements Gate {
  readonly apiKeys: ApiKeyVerifier | undefined
  readonly jwt: JwtVerifier | undefined
  readonly audit: AuditTrail
  readonly now: Clock
  readonly asyncContext: boolean
  readonly #c: GateConfig
  /** Whether an allowed authentication may leave its event to the route step. */
  readonly #defers: boolean

  constructor(config: GateConfig) {
    this.#c = config
    this.apiKeys = config.apiKeys
    this.jwt = config.jwt
    this.audit = config.audit
    this.now = config.now
    this.asyncContext = config.asyncContext
    this.#defers = config.auditEvents === 'request' && config.audit.durable !== true
  }

  compile(requirements: string | RouteRequirements | undefined): CompiledRequirements {
    return compileRequirements(requirements)
  }

  async authenticate(request: GateRequest, options?: AuthenticateOptions): Promise<Decision> {
    const started = this.#started()
    const trace: TraceEntry[] = []
    const requestId = this.#requestId(request)
    const step = await authenticateStep(this.#c, request, trace, false)
    const audit = step.error !== undefined || options?.deferAudit !== true || !this.#defers
    const decision = await decide(
      this.#c,
      request,
      requestId,
      step,
      trace,
      audit,
      this.#durable(undefined),
    )
    return this.#measured('authenticate', decision, trace, 0, started)
  }

  async authorize(
    request: GateRequest,
    prior: AllowDecision,
    requirements: CompiledRequirements,
  ): Promise<Decision> {
    const started = this.#started()
    // The request's one trace, copied: the authentication's event, when written, keeps its own
    // (the trail prepares events after the request path).
    const trace = prior.trace.slice()
    const from = trace.length
    const authz = await authorizeStep(this.#c, request, prior.principal, requirements, trace)
    // The authentication step's settle is the adapter's already.
    const step = withFirstStep(prior.headers, undefined, authz)
    const decision = await decide(
      this.#c,
      request,
      prior.requestId,
      step,
      trace,
      true,
      this.#durable(requirements),
      prior,
    )
    return this.#measured('authorize', decision, trace, from, started)
  }

  evaluate(request: GateRequest, requirements?: CompiledRequirements): Promise<Decision> {
    return Promise.resolve(this.#evaluate(request, requirements, true))
  }

  explain(request: GateRequest, requirements?: CompiledRequirements): Promise<Decision> {
    return Promise.resolve(this.#evaluate(request, requirements, false))
  }

  record(request: GateRequest, decision: Decision): void {
    if (!decision.allowed || !this.#defers) return
    const step: StepResult = {
      principal: decision.principal,
      error: undefined,
      headers: decision.headers,
      stage: 'stage',
    }
    // After the response: a full queue can no longer refuse the request; the trail counts the drop.
    writeAccessEvent(this.#c, request, decision.requestId, step, decision.trace, false)
  }

  proceed<TResult>(
    request: GateRequest,
    decision: Decision,
    startedAt: number,
    next: () => TResult,
  ): TResult {
    if (!this.asyncContext) return next()
    return runWithAccessContext(this.contextFor(request, decision, startedAt), next)
  }

  contextFor(request: GateRequest, decision: Decision, startedAt: number): AccessContext {
    const ua = request.header('user-agent')
    return {
      requestId: decision.requestId,
      method: request.method,
      path: request.path,
      route: request.route,
      ip: request.ip,
      userAgent: ua === undefined ? undefined : ua.slice(0, USER_AGENT_MAX),
      startedAt,
      principal: decision.principal,
    }
  }

  errorResponse(error: unknown, requestId: string): ErrorResponse {
    const e = toAuthError(error)
    if (e.status >= 500)
      this.#c.logger.error(
        { requestId, code: e.code, error: String(e.cause ?? e) },
        'gate: request failed',
      )
    const challenge = this.#c.challenges.for(e)
    return {
      status: e.status,
      headers:
        challenge === null
          ? { 'content-type': PROBLEM_CONTENT_TYPE }
          : { 'content-type': PROBLEM_CONTENT_TYPE, 'www-authenticate': challenge },
      problem: toProblemDetails(e, requestId, this.#c.typeBase),
    }
  }

  async close(): Promise<void> {
    await this.#c.apiKeys?.close()
    await this.#c.audit.close()
  }

  /**
   * Authentication then, when the route declares requirements, authorization, as one pass: one
   * trace, one Decision and (with `auditEvents: 'request'`) one access event. Synchronous up to
   * the first step that waits.
   */
  #evaluate(
    request: GateRequest,
    requirements: CompiledRequirements | undefined,
    audit: boolean,
  ): MaybePromise<Decision> {
    const c = this.#c
    // A dry run (explain) is not counted.
    const started = audit ? this.#started() : 0
    const trace: TraceEntry[] = []
    const requestId = this.#requestId(request)
    const durable = audit && this.#durable(requirements)
    const isPublic = requirements?.public === true
    return andThen(
      authenticateStep(c, request, trace, isPublic),
      (authn): MaybePromise<Decision> => {
        if (authn.error !== undefined || requirements === undefined)
          return this.#finish(
            'authenticate',
            request,
            requestId,
            authn,
            trace,
            audit,
            durable,
            0,
            started,
          )
        if (audit && !this.#defers) {
          // One event per step: the authentication's is written first.
          const first = decide(c, request, requestId, authn, trace, true, durable)
          return andThen(
            first,
            (d) => {
              this.#measured('authenticate', d, trace, 0, started)
              // A copy: the authentication's event keeps its own trace.
              return d.allowed
                ? this.#authorized(
                    request,
                    requestId,
                    authn,
                    requirements,
                    trace.slice(),
                    audit,
                    durable,
                  )
                : d
            },
            (e: unknown) => Promise.reject(e),
          )
        }
        if (audit) this.#measured('authenticate', STEP_PASSED, trace, 0, started)
        return this.#authorized(request, requestId, authn, requirements, trace, audit, durable)
      },
      (e: unknown) => Promise.reject(e),
    )
  }

  /** The route step of a one-pass evaluation, after an allowed authentication. */
  #authorized(
    request: GateRequest,
    requestId: RequestID,
    authn: StepResult,
    requirements: CompiledRequirements,
    trace: TraceEntry[],
    audit: boolean,
    durable: boolean,
  ): MaybePromise<Decision> {
    const started = audit ? this.#started() : 0
    const from = trace.length
    return andThen(
      authorizeStep(this.#c, request, authn.principal, requirements, trace),
      (authz) => {
        // A denial carries no settle to the adapter: the authentication step's stages hear the
        // refusal here (a quota gives its unit back unless denied requests are charged).
        if (authz.error !== undefined) authn.settle?.(authz.error.status)
        const step = withFirstStep(authn.headers, authn.settle, authz)
        return this.#finish(
          'authorize',
          request,
          requestId,
          step,
          trace,
          audit,
          durable,
          from,
          started,
        )
      },
      (e: unknown) => Promise.reject(e),
    )
  }

  /** Decides (auditing when `audit`) and reports the decision to metrics. */
  #finish(
    gateStep: GateStep,
    request: GateRequest,
    requestId: RequestID,
    step: StepResult,
    trace: TraceEntry[],
    audit: boolean,
    durable: boolean,
    from: number,
    started: number,
  ): MaybePromise<Decision> {
    return andThen(
      decide(this.#c, request, requestId, step, trace, audit, durable),
      (d) => (audit ? this.#measured(gateStep, d, trace, from, started) : d),
      (e: unknown) => Promise.reject(e),
    )
  }

  /** The start of a decision's latency; 0 (and no clock read) when metrics are off. */
  #started(): number {
    return this.#c.metrics === undefined ? 0 : monotonicMicros()
  }

  /** Reports a step (counts, latency, stage durations of `trace[from..]`) and returns its decision. */
  #measured<TDecision extends Pick<Decision, 'allowed'>>(
    step: GateStep,
    decision: TDecision,
    trace: readonly TraceEntry[],
    from: number,
    started: number,
  ): TDecision {
    const metrics = this.#c.metrics
    if (metrics !== undefined)
      metrics.decided(step, decision, trace, from, started, monotonicMicros())
    return decision
  }

  #requestId(request: GateRequest): RequestID {
    const header = this.#c.requestIdHeader
    const given = header === null ? undefined : parseRequestId(request.header(header))
    return given ?? (randomUUID() as RequestID)
  }

  /** Whether a step's answer waits for its audit event to be durable (globally, or the route's). */
  #durable(requirements: CompiledRequirements | undefined): boolean {
    return this.#c.audit.durable === true || requirements?.durableAudit === true
  }
}

/** The route step with the authentication step's headers and settle in front. */
function withFirstStep(
  headers: StepResult['headers'],
  settle: StepResult['settle'],
  authz: StepResult,
): StepResult {
  // Built field by field: an object spread that overrides fields is a slow path in V8.
  return {
    principal: authz.principal,
    error: authz.error,
    headers: mergeHeaders(headers, authz.headers),
    stage: authz.stage,
    settle: chain(settle, authz.settle),
  }
}
