/**
 * The gate: authenticate → (rate limit → quota: pluggable stages) → authorize → audit, returning a
 * {@link Decision} value. Framework adapters call it; it names no framework.
 *
 * Reachable from `@portcullis/core`.
 * @packageDocumentation
 */
import { randomUUID } from 'node:crypto'
import {
  createApiKeyVerifier,
  type ApiKeyOptions,
  type ApiKeyVerifier,
} from '../apikey/api-key-verifier.js'
import { createAuditTrail, type AuditOptions, type AuditTrail } from '../audit/audit-trail.js'
import type { AuditEventInput, AuditEventType, AuditRequestContext } from '../audit/audit-event.js'
import {
  checkRequirements,
  compileRequirements,
  type CompiledRequirements,
  type RolePermissions,
} from '../authz/requirements.js'
import {
  DEFAULT_API_KEY_HEADER,
  DEFAULT_CREDENTIALS_REQUIRED,
  DEFAULT_PROBLEM_TYPE_BASE,
  DEFAULT_QUERY_CREDENTIAL_PARAMS,
  DEFAULT_REALM,
  DEFAULT_REJECT_AMBIGUOUS,
  DEFAULT_REQUEST_ID_HEADER,
} from '../defaults.js'
import { AuthError, isAuthError } from '../errors.js'
import {
  ChallengeBuilder,
  PROBLEM_CONTENT_TYPE,
  toAuthError,
  toProblemDetails,
  type ErrorResponse,
} from '../http/problem.js'
import { parseRequestId, type RequestID } from '../ids.js'
import { monotonicMicros, systemClock, type Clock } from '../internal/clock.js'
import type { MessageBroker } from '../integrations/message-broker.js'
import { noopMetrics, type MetricsClient } from '../integrations/metrics.js'
import { isGateTracer, type GateTracer } from '../integrations/tracing.js'
import { GateMetrics, guardMetrics, type GateStep } from '../internal/gate-metrics.js'
import { createJwtVerifier, type JwtOptions, type JwtVerifier } from '../jwt/jwt-verifier.js'
import { silentLogger, type Logger } from '../logger.js'
import type {
  AccessContext,
  AccessResult,
  Principal,
  ResourceLoader,
  RouteRequirements,
  TraceEntry,
} from '../types.js'
import { createRateLimitStage } from '../ratelimit/rate-limit-stage.js'
import {
  createPolicyAuthorizer,
  policyTraceEntry,
  type GatePolicyInput,
} from '../policy/gate-policy.js'
import { runWithAccessContext } from '../context/access-context.js'
import { TypeValidator } from '../validation/type-validator.js'
import { extractCredential, queryCredentialPattern, type CredentialRules } from './credentials.js'
import type { AllowDecision, Decision, DenyDecision, HeaderBag } from './decision.js'
import { normalizePath, type GateRequest } from './gate-request.js'

/** The result of an authenticator. */
export type AuthenticatorResult =
  | { readonly ok: true; readonly principal: Principal }
  | { readonly ok: false; readonly error: AuthError }

/**
 * A custom way to authenticate (e.g. a passport strategy). `detect` must be cheap and synchronous:
 * it says whether the request carries this authenticator's kind of credential.
 */
export interface Authenticator {
  /** Name shown in traces and audit events. */
  readonly name: string
  /** Whether the request carries a credential for this authenticator. */
  detect(request: GateRequest): boolean
  /**
   * Its own challenge for 401 answers (e.g. `Basic realm="api"`), sent after the Bearer one
   * (RFC 9110 §11.6.1 allows several).
   */
  readonly challenge?: string
  /** Verifies it. Rejections are treated as store failures (503, fail closed). */
  authenticate(request: GateRequest): Promise<AuthenticatorResult>
}

/** What a stage sees. */
export interface StageContext {
  readonly request: GateRequest
  readonly principal: Principal | null
  /** `undefined` in the authentication step; the route's requirements in the authorization step. */
  readonly requirements: CompiledRequirements | undefined
  /** The gate's audit trail, for stages that must record what they did (e.g. failing open). */
  readonly audit?: AuditTrail
  /** The gate's metrics client, for stages that count what they did (rejections, store failures). */
  readonly metrics?: MetricsClient
}

/** A stage's verdict; headers (e.g. `RateLimit`) are sent whatever the outcome. */
export type StageResult =
  | {
      readonly ok: true
      readonly headers?: HeaderBag
      readonly by?: string
      /** Called with the final HTTP status once the response is sent (e.g. to refund a quota unit on 5xx). */
      readonly settle?: (status: number) => void
    }
  | {
      readonly ok: false
      readonly error: AuthError
      readonly headers?: HeaderBag
      readonly by?: string
    }

/** A pluggable stage run between authentication and authorization (rate limits, quotas). */
export interface GateStage {
  /** `ratelimit`, `quota`, ... */
  readonly name: string
  run(context: StageContext): StageResult | Promise<StageResult>
}

/** Decides authorization; replaces the built-in scope/role check (the policy engine plugs in here). */
export type AuthorizeHook = (
  principal: Principal,
  requirements: CompiledRequirements,
  request: GateRequest,
) => AccessResult | Promise<AccessResult>

/** Options of {@link createGate}. */
export interface GateOptions {
  /** API-key authentication. */
  readonly apiKeys?: ApiKeyOptions
  /** JWT authentication. */
  readonly jwt?: JwtOptions
  /** More authenticators, tried after API keys and JWTs. */
  readonly authenticators?: readonly Authenticator[]
  /** Deny requests without credentials at authentication (routes may still be declared public). @default true */
  readonly credentialsRequired?: boolean
  /** Refuse two credentials in one request (400 `invalid_request`). @default true */
  readonly rejectAmbiguousCredentials?: boolean
  /** Query parameters refused as credentials; `false` turns the check off. @default ['access_token', 'api_key', 'apikey', 'token'] */
  readonly rejectQueryCredentials?: false | readonly string[]
  /** Header carrying API keys besides `Authorization: Bearer`; `false` for none. @default 'x-api-key' */
  readonly apiKeyHeader?: string | false
  /** `realm` of challenges. @default 'api' */
  readonly realm?: string
  /** Prefix of problem `type` URIs. @default 'urn:portcullis:problem:' */
  readonly problemTypeBase?: string
  /** Header whose well-formed value becomes the request id; `false` always generates. @default 'x-request-id' */
  readonly requestIdHeader?: string | false
  /** Role → permissions for `permission` requirements (first-cut RBAC). */
  readonly roles?: RolePermissions
  /** Replaces the built-in requirement check. */
  readonly authorize?: AuthorizeHook
  /**
   * The policy engine: an `AccessManager`, a policy set (data or compiled) or a `PolicyStore`.
   * A route's `permission` is then decided by the policy (rules, resource policies, risk); its
   * `scopes` and `roles` still apply. Exclusive with `authorize`.
   */
  readonly policy?: GatePolicyInput
  /** Resource loaders by type, for routes declaring `resource: '<type>'` (with `policy`). */
  readonly resourceLoaders?: Readonly<Record<string, ResourceLoader>>
  /** Stages between authentication and authorization (rate limits, quotas). */
  readonly stages?: readonly GateStage[]
  /** Audit trail, or its options; `false` disables auditing. @default an in-memory-free trail with no sinks */
  readonly audit?: AuditOptions | AuditTrail | false
  /** Deny with 503 when the audit queue is full rather than serve unaudited. @default true */
  readonly failClosedOnAuditBackpressure?: boolean
  /**
   * Run the rest of each allowed request inside AsyncLocalStorage with its {@link AccessContext},
   * so `getAccessContext()` and `audit.record()` in handlers see the request. Off by default: on
   * Node 20, AsyncLocalStorage turns on promise hooks for the whole process, which measurably
   * slows every promise (see docs/performance.md); Node 24's AsyncContextFrame makes it cheap.
   * @default false
   */
  readonly asyncContext?: boolean
  /** Spreads key revocations between instances. */
  readonly broker?: MessageBroker
  /**
   * Where the gate reports its metrics (decisions, latency, rejections, cache lookups, store
   * failures; and the audit trail's, when the gate builds it). `@portcullis/prometheus` and
   * `@portcullis/opentelemetry` implement it. @default noopMetrics
   */
  readonly metrics?: MetricsClient
  /** Opens a span around each stage (`@portcullis/opentelemetry`). @default none */
  readonly tracer?: GateTracer
  /** Clock, epoch ms. @default Date.now */
  readonly now?: Clock
  /** Logger. @default silent */
  readonly logger?: Logger
}

/** The gate. Create one per application with {@link createGate}. */
export interface Gate {
  /** Authenticates and runs the stages; the global middleware's step. */
  authenticate(request: GateRequest): Promise<Decision>
  /** Authorizes an already-authenticated request against a route's requirements; the route middleware's step. */
  authorize(
    request: GateRequest,
    prior: AllowDecision,
    requirements: CompiledRequirements,
  ): Promise<Decision>
  /**
   * Both steps at once, for frameworks that know the route up front; without `requirements` only
   * authentication runs (as with a global middleware alone). Audits each step, like the two calls.
   */
  evaluate(request: GateRequest, requirements?: CompiledRequirements): Promise<Decision>
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

const OPTION_NAMES = [
  'apiKeys',
  'jwt',
  'authenticators',
  'credentialsRequired',
  'rejectAmbiguousCredentials',
  'rejectQueryCredentials',
  'apiKeyHeader',
  'realm',
  'problemTypeBase',
  'requestIdHeader',
  'roles',
  'authorize',
  'policy',
  'resourceLoaders',
  'stages',
  'audit',
  'failClosedOnAuditBackpressure',
  'asyncContext',
  'broker',
  'metrics',
  'tracer',
  'now',
  'logger',
]

const EMPTY_HEADERS: HeaderBag = Object.freeze({})

function isAuditTrail(value: unknown): value is AuditTrail {
  return (
    typeof (value as AuditTrail | undefined)?.emit === 'function' &&
    typeof (value as AuditTrail).flush === 'function'
  )
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
  const logger = options.logger ?? silentLogger
  const warn = (m: string): void => logger.warn({}, m)
  const now = options.now ?? systemClock
  const v = new TypeValidator()
  v.knownKeys(options as Record<string, unknown>, OPTION_NAMES)
  const bool = (name: keyof GateOptions, d: boolean): boolean =>
    options[name] === undefined ? d : (v.boolean(name, options[name]) ?? d)
  const credentialsRequired = bool('credentialsRequired', DEFAULT_CREDENTIALS_REQUIRED)
  const rejectAmbiguous = bool('rejectAmbiguousCredentials', DEFAULT_REJECT_AMBIGUOUS)
  const failClosedOnAudit = bool('failClosedOnAuditBackpressure', true)
  const asyncContext = bool('asyncContext', false)
  const queryParams =
    options.rejectQueryCredentials === false
      ? []
      : (v.array(
          'rejectQueryCredentials',
          options.rejectQueryCredentials ?? DEFAULT_QUERY_CREDENTIAL_PARAMS,
          (qv, i, q) => qv.string(i, q),
        ) ?? [])
  const apiKeyHeader =
    options.apiKeyHeader === false
      ? null
      : (v
          .string('apiKeyHeader', options.apiKeyHeader ?? DEFAULT_API_KEY_HEADER, {
            pattern: /^[a-z0-9-]+$/i,
          })
          ?.toLowerCase() ?? null)
  const realm = v.string('realm', options.realm ?? DEFAULT_REALM) ?? DEFAULT_REALM
  const typeBase =
    v.string('problemTypeBase', options.problemTypeBase ?? DEFAULT_PROBLEM_TYPE_BASE) ??
    DEFAULT_PROBLEM_TYPE_BASE
  const requestIdHeader =
    options.requestIdHeader === false
      ? null
      : (v
          .string('requestIdHeader', options.requestIdHeader ?? DEFAULT_REQUEST_ID_HEADER)
          ?.toLowerCase() ?? null)
  const authenticators = v.array('authenticators', options.authenticators ?? [], (av, i, a) =>
    typeof (a as Authenticator | undefined)?.authenticate === 'function' &&
    typeof (a as Authenticator).detect === 'function'
      ? (a as Authenticator)
      : av.fail(i, 'must be an Authenticator with name, detect() and authenticate()'),
  )
  const stages = v.array('stages', options.stages ?? [], (sv, i, s) =>
    typeof (s as GateStage | undefined)?.run === 'function'
      ? (s as GateStage)
      : sv.fail(i, 'must be a GateStage with name and run()'),
  )
  const authorize =
    options.authorize === undefined
      ? undefined
      : v.function<AuthorizeHook>('authorize', options.authorize)
  const roles = new Map<string, readonly string[]>()
  if (options.roles !== undefined) {
    const r = v.object('roles', options.roles)
    if (r !== undefined) {
      for (const [role, perms] of Object.entries(r)) {
        const list = v.child('roles').array(role, perms, (pv, i, p) => pv.string(i, p))
        if (list !== undefined) roles.set(role, Object.freeze(list))
      }
    }
  }
  if (options.policy !== undefined && authorize !== undefined)
    v.fail('policy', 'give either policy or authorize, not both')
  if (options.policy !== undefined && options.roles !== undefined)
    v.fail('roles', 'with a policy, declare roles and their permissions in the policy set')
  if (options.resourceLoaders !== undefined) {
    const loaders = v.object('resourceLoaders', options.resourceLoaders)
    for (const [type, fn] of Object.entries(loaders ?? {}))
      v.child('resourceLoaders').function(type, fn)
  }
  const metrics =
    options.metrics === undefined || options.metrics === noopMetrics
      ? noopMetrics
      : typeof options.metrics?.increment === 'function' &&
          typeof options.metrics.set === 'function' &&
          typeof options.metrics.observe === 'function'
        ? guardMetrics(options.metrics)
        : v.fail('metrics', 'must be a MetricsClient with increment(), set() and observe()')
  const tracer =
    options.tracer === undefined || isGateTracer(options.tracer)
      ? options.tracer
      : v.fail('tracer', 'must be a GateTracer with startStage() and endStage()')
  v.assert(warn)
  // Built after the top level validated, so their own errors name their own paths.
  const apiKeys =
    options.apiKeys === undefined
      ? undefined
      : createApiKeyVerifier(
          { broker: options.broker, ...options.apiKeys },
          { now, warn, logger, metrics: metrics ?? noopMetrics },
        )
  const jwt =
    options.jwt === undefined
      ? undefined
      : createJwtVerifier(options.jwt, { now, warn, metrics: metrics ?? noopMetrics })
  if (apiKeys === undefined && jwt === undefined && (authenticators ?? []).length === 0) {
    warn(
      'gate: no authenticator configured (apiKeys, jwt or authenticators); every credential will be refused',
    )
  }
  const audit =
    options.audit === false
      ? createAuditTrail({ sinks: [] })
      : isAuditTrail(options.audit)
        ? options.audit
        : createAuditTrail({
            now,
            logger,
            ...(metrics === undefined || metrics === noopMetrics ? {} : { metrics }),
            ...(options.audit ?? {}),
          })
  const policy =
    options.policy === undefined
      ? undefined
      : createPolicyAuthorizer(options.policy, {
          now,
          logger,
          audit: () => audit,
          ...(options.resourceLoaders === undefined ? {} : { loaders: options.resourceLoaders }),
        })

  return new GateImpl({
    apiKeys,
    jwt,
    authenticators: authenticators ?? [],
    credentialsRequired,
    credentialRules: {
      apiKeyHeader,
      rejectAmbiguous,
      queryParams,
      queryPattern: queryCredentialPattern(queryParams),
    },
    challenges: new ChallengeBuilder(
      realm,
      (authenticators ?? []).flatMap((a) => (typeof a.challenge === 'string' ? [a.challenge] : [])),
    ),
    typeBase,
    requestIdHeader,
    roles,
    authorize: authorize ?? policy,
    stages: stages ?? [],
    // Routes may declare limits (`rateLimits`, `@RateLimit`) even when no limits stage was given:
    // they are then enforced by a default in-memory one rather than silently ignored.
    routeStages: (stages ?? []).some((s) => s.name === 'ratelimit')
      ? (stages ?? [])
      : [...(stages ?? []), createRateLimitStage({ now, logger })],
    audit,
    failClosedOnAudit,
    asyncContext,
    metrics:
      metrics === undefined || metrics === noopMetrics ? undefined : new GateMetrics(metrics),
    metricsClient: metrics ?? noopMetrics,
    tracer,
    now,
    logger,
  })
}

interface GateConfig {
  readonly apiKeys: ApiKeyVerifier | undefined
  readonly jwt: JwtVerifier | undefined
  readonly authenticators: readonly Authenticator[]
  readonly credentialsRequired: boolean
  readonly credentialRules: CredentialRules
  readonly challenges: ChallengeBuilder
  readonly typeBase: string
  readonly requestIdHeader: string | null
  readonly roles: ReadonlyMap<string, readonly string[]>
  readonly authorize: AuthorizeHook | undefined
  readonly stages: readonly GateStage[]
  /** The stages of the authorization step (route limits); always includes a limits stage. */
  readonly routeStages: readonly GateStage[]
  readonly audit: AuditTrail
  readonly failClosedOnAudit: boolean
  readonly asyncContext: boolean
  /** Undefined when metrics are off (no client, or `noopMetrics`): nothing is measured then. */
  readonly metrics: GateMetrics | undefined
  /** Handed to stages; `noopMetrics` when off. */
  readonly metricsClient: MetricsClient
  readonly tracer: GateTracer | undefined
  readonly now: Clock
  readonly logger: Logger
}

/** The outcome of one step, before it becomes a Decision. */
interface StepResult {
  readonly principal: Principal | null
  readonly error: AuthError | undefined
  readonly headers: HeaderBag
  readonly stage: 'authenticate' | 'authorize' | 'stage'
  readonly settle?: ((status: number) => void) | undefined
}

/** One step's run through its stages, carried across the stages that wait. */
interface StagesRun {
  readonly request: GateRequest
  readonly principal: Principal | null
  readonly stages: readonly GateStage[]
  readonly context: StageContext
  readonly trace: TraceEntry[]
  headers: HeaderBag
  settle: ((status: number) => void) | undefined
  /** When the next stage began (the previous trace entry's end). */
  started: number
}

const USER_AGENT_MAX = 256
/** A durable audit write failed, or the audit queue is full: the trail retries a failing sink within seconds. */
const AUDIT_RETRY_AFTER: HeaderBag = Object.freeze({ 'retry-after': '1' })
/**
 * The audit event type of a denial by its code, whatever the step: limits, quotas and store
 * outages are audited as what they are. Other codes are `authz.deny` in the authorization step,
 * `authn.failure` otherwise.
 */
const DENIAL_EVENT_TYPES: Readonly<Partial<Record<string, AuditEventType>>> = Object.freeze({
  ERR_RATE_LIMITED: 'ratelimit.exceeded',
  ERR_QUOTA_EXCEEDED: 'quota.exceeded',
  ERR_RATELIMIT_UNAVAILABLE: 'ratelimit.unavailable',
  ERR_QUOTA_UNAVAILABLE: 'quota.unavailable',
  ERR_STORE_UNAVAILABLE: 'store.unavailable',
})
/** An audit event's parts, filled in field by field (no spreads on the request path). */
type Mutable<T> = { -readonly [K in keyof T]: T[K] }

class GateImpl implements Gate {
  readonly apiKeys: ApiKeyVerifier | undefined
  readonly jwt: JwtVerifier | undefined
  readonly audit: AuditTrail
  readonly now: Clock
  readonly asyncContext: boolean
  readonly #c: GateConfig

  constructor(config: GateConfig) {
    this.#c = config
    this.apiKeys = config.apiKeys
    this.jwt = config.jwt
    this.audit = config.audit
    this.now = config.now
    this.asyncContext = config.asyncContext
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

  compile(requirements: string | RouteRequirements | undefined): CompiledRequirements {
    return compileRequirements(requirements)
  }

  async authenticate(request: GateRequest): Promise<Decision> {
    const started = this.#started()
    const trace: TraceEntry[] = []
    const requestId = this.#requestId(request)
    const authenticating = this.#authenticate(request, trace)
    const step = authenticating instanceof Promise ? await authenticating : authenticating
    let decision = this.#finish(request, requestId, step, trace, true, this.#durable(undefined))
    if (decision instanceof Promise) decision = await decision
    return this.#measured('authenticate', decision, trace, 0, started)
  }

  async authorize(
    request: GateRequest,
    prior: AllowDecision,
    requirements: CompiledRequirements,
  ): Promise<Decision> {
    const started = this.#started()
    const trace: TraceEntry[] = [...prior.trace]
    const pending = this.#authorize(request, prior.principal, requirements, trace)
    const step = pending instanceof Promise ? await pending : pending
    const merged = afterAuthentication(prior.headers, undefined, step)
    const durable = this.#durable(requirements)
    let decision = this.#finish(request, prior.requestId, merged, trace, true, durable)
    if (decision instanceof Promise) decision = await decision
    return this.#measured('authorize', decision, trace, prior.trace.length, started)
  }

  evaluate(request: GateRequest, requirements?: CompiledRequirements): Promise<Decision> {
    return this.#evaluate(request, requirements, true)
  }

  explain(request: GateRequest, requirements?: CompiledRequirements): Promise<Decision> {
    return this.#evaluate(request, requirements, false)
  }

  contextFor(request: GateRequest, decision: Decision, startedAt: number): AccessContext {
    const ua = request.header('user-agent')
    return {
      requestId: decision.requestId,
      method: request.method,
      path: normalizePath(request.path),
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
   * Authentication then, when the route declares requirements, authorization: the same two steps
   * (and the same two audit events) as a global middleware followed by a route guard, so every
   * adapter audits alike.
   */
  async #evaluate(
    request: GateRequest,
    requirements: CompiledRequirements | undefined,
    audit: boolean,
  ): Promise<Decision> {
    // A dry run (explain) is not counted.
    const started = audit ? this.#started() : 0
    const trace: TraceEntry[] = []
    const requestId = this.#requestId(request)
    const authenticating = this.#authenticate(request, trace, requirements?.public === true)
    // Awaited only when something waited: a settled answer costs no extra turn.
    const authn = authenticating instanceof Promise ? await authenticating : authenticating
    const durable = audit && this.#durable(requirements)
    let first = this.#finish(request, requestId, authn, trace, audit, durable)
    if (first instanceof Promise) first = await first
    if (audit) first = this.#measured('authenticate', first, trace, 0, started)
    if (!first.allowed || requirements === undefined) return first
    const authzStarted = audit ? this.#started() : 0
    // A copy: the first decision (and its audit event) keeps its own trace.
    const authzTrace = [...trace]
    const pending = this.#authorize(request, first.principal, requirements, authzTrace)
    const authz = pending instanceof Promise ? await pending : pending
    // A denial carries no settle to the adapter: the authentication step's stages hear the refusal
    // here (a quota gives its unit back unless denied requests are charged; issue 18).
    if (authz.error !== undefined) authn.settle?.(authz.error.status)
    const step = afterAuthentication(authn.headers, authn.settle, authz)
    let decision = this.#finish(request, requestId, step, authzTrace, audit, durable)
    if (decision instanceof Promise) decision = await decision
    return audit
      ? this.#measured('authorize', decision, authzTrace, trace.length, authzStarted)
      : decision
  }

  /** Opens the tracer's span for a stage; a throwing tracer costs the span, not the request. */
  #startSpan(stage: string, request: GateRequest): unknown {
    try {
      return this.#c.tracer?.startStage(stage, request)
    } catch {
      return undefined
    }
  }

  /** Appends a stage's trace entry and closes its span. */
  #push(trace: TraceEntry[], traceEntry: TraceEntry, span: unknown): void {
    trace.push(traceEntry)
    const tracer = this.#c.tracer
    if (tracer === undefined) return
    try {
      tracer.endStage(span, traceEntry)
    } catch {
      // Tracing must never fail a request.
    }
  }

  /** The start of a decision's latency; 0 (and no clock read) when metrics are off. */
  #started(): number {
    return this.#c.metrics === undefined ? 0 : monotonicMicros()
  }

  /** Reports a decision (counts, latency, stage durations of `trace[from..]`) and returns it. */
  #measured(
    step: GateStep,
    decision: Decision,
    trace: readonly TraceEntry[],
    from: number,
    started: number,
  ): Decision {
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

  /** Authentication and the step's stages; synchronous when nothing waits (a cached key or token). */
  #authenticate(
    request: GateRequest,
    trace: TraceEntry[],
    isPublic = false,
  ): StepResult | Promise<StepResult> {
    const c = this.#c
    const span = c.tracer === undefined ? undefined : this.#startSpan('authenticate', request)
    const started = monotonicMicros()
    let credential = extractCredential(request, c.credentialRules)
    if (
      c.credentialRules.rejectAmbiguous &&
      c.authenticators.length > 0 &&
      (credential.kind === 'bearer' || credential.kind === 'apikey-header') &&
      c.authenticators.some((a) => a.detect(request))
    ) {
      // A custom authenticator also sees a credential of its own kind: two credentials.
      credential = {
        kind: 'error',
        error: new AuthError('ERR_AUTH_AMBIGUOUS', 'The request carries more than one credential', {
          reason: 'a custom authenticator also found a credential',
        }),
      }
    }
    let by = 'none'
    let verified: Authenticated | PromiseLike<AuthenticatorResult>
    try {
      switch (credential.kind) {
        case 'error':
          verified = { ok: false, error: credential.error }
          break
        case 'apikey-header':
          by = 'apikey'
          verified = this.#apiKey(credential.token, request)
          break
        case 'bearer':
          if (
            c.apiKeys !== undefined &&
            (c.jwt === undefined || c.apiKeys.looksLikeKey(credential.token))
          ) {
            by = 'apikey'
            verified = this.#apiKey(credential.token, request)
          } else {
            by = 'jwt'
            verified = this.#jwt(credential.token)
          }
          break
        default: {
          const custom =
            c.authenticators.length === 0
              ? undefined
              : c.authenticators.find((a) => a.detect(request))
          if (custom !== undefined) {
            by = custom.name
            verified = custom.authenticate(request)
          } else if (c.credentialsRequired && !isPublic) {
            verified = {
              ok: false,
              error: new AuthError('ERR_AUTH_REQUIRED', 'Authentication is required', {
                reason: credential.kind === 'other-scheme' ? credential.reason : 'no credentials',
              }),
            }
          } else {
            verified = ANONYMOUS
          }
        }
      }
    } catch (e) {
      verified = this.#authenticatorFailed(e, by)
    }
    if (!isThenable(verified))
      return this.#authenticated(request, trace, span, started, by, verified)
    const authenticator = by
    return Promise.resolve(verified).then(
      (v) => this.#authenticated(request, trace, span, started, authenticator, v),
      (e: unknown) =>
        this.#authenticated(
          request,
          trace,
          span,
          started,
          authenticator,
          this.#authenticatorFailed(e, authenticator),
        ),
    )
  }

  #authenticatorFailed(e: unknown, by: string): AuthenticatorResult {
    return {
      ok: false,
      error: this.#internal(e, 'ERR_STORE_UNAVAILABLE', `authenticator ${by} failed`),
    }
  }

  /** Records the authentication's trace entry, then runs the step's stages. */
  #authenticated(
    request: GateRequest,
    trace: TraceEntry[],
    span: unknown,
    started: number,
    by: string,
    verified: Authenticated,
  ): StepResult | Promise<StepResult> {
    const principal = verified.ok ? verified.principal : null
    const error = verified.ok ? undefined : verified.error
    const ended = monotonicMicros()
    this.#push(trace, entry('authenticate', error, by, started, ended), span)
    if (error !== undefined)
      return { principal, error, headers: EMPTY_HEADERS, stage: 'authenticate' }
    // No stages: answered here, without another async step.
    if (this.#c.stages.length === 0)
      return { principal, error, headers: EMPTY_HEADERS, stage: 'stage' }
    return this.#stages(request, principal, undefined, trace, ended)
  }

  /** The API-key verifier's answer: synchronous for a cached key. */
  #apiKey(token: string, request: GateRequest): AuthenticatorResult | Promise<AuthenticatorResult> {
    const verifier = this.#c.apiKeys
    if (verifier === undefined)
      return {
        ok: false,
        error: new AuthError('ERR_APIKEY_INVALID', 'API keys are not accepted', {
          reason: 'no API-key authenticator',
        }),
      }
    return verifier.verifyNow(token, request)
  }

  /** The JWT verifier's answer: synchronous with static keys or a cached token. */
  #jwt(token: string): AuthenticatorResult | Promise<AuthenticatorResult> {
    const verifier = this.#c.jwt
    if (verifier === undefined)
      return {
        ok: false,
        error: new AuthError('ERR_JWT_INVALID', 'Bearer tokens are not accepted', {
          reason: 'no JWT authenticator',
        }),
      }
    return verifier.verifyNow(token)
  }

  /**
   * Runs the step's stages; `started` is when the first began (the previous entry's end).
   * Synchronous while every stage answers synchronously (limits and quotas in memory).
   */
  #stages(
    request: GateRequest,
    principal: Principal | null,
    requirements: CompiledRequirements | undefined,
    trace: TraceEntry[],
    started: number,
  ): StepResult | Promise<StepResult> {
    const c = this.#c
    const run: StagesRun = {
      request,
      principal,
      stages: requirements === undefined ? c.stages : c.routeStages,
      // One context for every stage of the step: they all see the same request and principal.
      context: { request, principal, requirements, audit: c.audit, metrics: c.metricsClient },
      trace,
      headers: EMPTY_HEADERS,
      settle: undefined,
      started,
    }
    return this.#stagesFrom(run, 0)
  }

  #stagesFrom(run: StagesRun, from: number): StepResult | Promise<StepResult> {
    const stages = run.stages
    for (let i = from; i < stages.length; i++) {
      const stage = stages[i] as GateStage
      const span =
        this.#c.tracer === undefined ? undefined : this.#startSpan(stage.name, run.request)
      let r: StageResult | PromiseLike<StageResult>
      try {
        r = stage.run(run.context)
      } catch (error) {
        r = this.#stageFailed(stage, error)
      }
      if (isThenable(r)) {
        const next = i + 1
        return Promise.resolve(r).then(
          (v) => this.#stageDone(run, stage, v, span) ?? this.#stagesFrom(run, next),
          (e: unknown) =>
            this.#stageDone(run, stage, this.#stageFailed(stage, e), span) ??
            this.#stagesFrom(run, next),
        )
      }
      const denied = this.#stageDone(run, stage, r, span)
      if (denied !== undefined) return denied
    }
    return {
      principal: run.principal,
      error: undefined,
      headers: run.headers,
      stage: 'stage',
      settle: run.settle,
    }
  }

  #stageFailed(stage: GateStage, error: unknown): StageResult {
    return {
      ok: false,
      error: this.#internal(error, 'ERR_STORE_UNAVAILABLE', `stage ${stage.name} failed`),
    }
  }

  /** Records a stage's answer in the step; returns the step's result when the stage denied. */
  #stageDone(
    run: StagesRun,
    stage: GateStage,
    r: StageResult,
    span: unknown,
  ): StepResult | undefined {
    if (r.headers !== undefined) run.headers = mergeHeaders(run.headers, r.headers)
    // One clock read ends this stage's timing and starts the next one's.
    const ended = monotonicMicros()
    this.#push(
      run.trace,
      entry(stage.name, r.ok ? undefined : r.error, r.by ?? stage.name, run.started, ended),
      span,
    )
    run.started = ended
    if (!r.ok)
      return { principal: run.principal, error: r.error, headers: run.headers, stage: 'stage' }
    if (r.settle !== undefined) run.settle = chain(run.settle, r.settle)
    return undefined
  }

  /** Route limits, then the requirement check; synchronous when neither needs to wait. */
  #authorize(
    request: GateRequest,
    principal: Principal | null,
    requirements: CompiledRequirements,
    trace: TraceEntry[],
  ): StepResult | Promise<StepResult> {
    const started = monotonicMicros()
    if (requirements.rateLimits.length > 0)
      return this.#limitedCheck(request, principal, requirements, trace, started)
    return this.#check(request, principal, requirements, trace, started)
  }

  async #limitedCheck(
    request: GateRequest,
    principal: Principal | null,
    requirements: CompiledRequirements,
    trace: TraceEntry[],
    started: number,
  ): Promise<StepResult> {
    // Route limits run before the requirement check, as the pipeline orders them.
    const limited = await this.#stages(request, principal, requirements, trace, started)
    if (limited.error !== undefined) return limited
    const authz = await this.#check(request, principal, requirements, trace, monotonicMicros())
    return {
      principal: authz.principal,
      error: authz.error,
      headers: mergeHeaders(limited.headers, authz.headers),
      stage: authz.stage,
    }
  }

  /** The requirement check or the authorize hook (the policy); synchronous unless the hook waits. */
  #check(
    request: GateRequest,
    principal: Principal | null,
    requirements: CompiledRequirements,
    trace: TraceEntry[],
    started: number,
  ): StepResult | Promise<StepResult> {
    const span = this.#c.tracer === undefined ? undefined : this.#startSpan('authorize', request)
    const hook = this.#c.authorize
    if (principal !== null && hook !== undefined) {
      let result: AccessResult | Promise<AccessResult>
      try {
        result = hook(principal, requirements, request)
      } catch (e) {
        return this.#checked(
          principal,
          this.#hookFailed(e),
          'authorize',
          undefined,
          trace,
          span,
          started,
        )
      }
      if (!isThenable(result))
        return this.#checked(
          principal,
          hookError(result),
          'authorize',
          result,
          trace,
          span,
          started,
        )
      return Promise.resolve(result).then(
        (r) => this.#checked(principal, hookError(r), 'authorize', r, trace, span, started),
        (e: unknown) =>
          this.#checked(
            principal,
            this.#hookFailed(e),
            'authorize',
            undefined,
            trace,
            span,
            started,
          ),
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
      error = checkRequirements(principal, requirements, this.#c.roles).error
    }
    return this.#checked(principal, error, by, undefined, trace, span, started)
  }

  /** Records the authorization's trace entry and returns the step. */
  #checked(
    principal: Principal | null,
    error: AuthError | undefined,
    by: string,
    decided: AccessResult | undefined,
    trace: TraceEntry[],
    span: unknown,
    started: number,
  ): StepResult {
    const traced = entry('authorize', error, by, started, monotonicMicros())
    this.#push(trace, decided === undefined ? traced : policyTraceEntry(traced, decided), span)
    return { principal, error, headers: EMPTY_HEADERS, stage: 'authorize' }
  }

  #hookFailed(e: unknown): AuthError {
    return this.#internal(e, 'ERR_INTERNAL_ERROR', 'authorize hook failed')
  }

  #internal(
    error: unknown,
    code: 'ERR_STORE_UNAVAILABLE' | 'ERR_INTERNAL_ERROR',
    reason: string,
  ): AuthError {
    if (isAuthError(error) && error.status < 500) return error
    this.#c.logger.error(
      { error: String(error), code: isAuthError(error) ? error.code : undefined },
      `gate: ${reason}`,
    )
    if (isAuthError(error)) return error
    return new AuthError(code, 'The request could not be checked', { cause: error, reason })
  }

  /** Whether a step's answer waits for its audit event to be durable (globally, or the route's). */
  #durable(requirements: CompiledRequirements | undefined): boolean {
    return this.#c.audit.durable === true || requirements?.durableAudit === true
  }

  /**
   * The decision once its audit event is durable; when it cannot be, an allowed request becomes a
   * 503 (it was not served: a stage's `settle` hears so), a denied one stays denied.
   */
  async #whenDurable(
    committed: Promise<unknown>,
    request: GateRequest,
    requestId: RequestID,
    step: StepResult,
    trace: TraceEntry[],
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
        const headers = mergeHeaders(step.headers, AUDIT_RETRY_AFTER)
        return this.#finish(request, requestId, { ...step, error, headers }, trace, false)
      }
    }
    return this.#finish(request, requestId, step, trace, false)
  }

  #finish(
    request: GateRequest,
    requestId: RequestID,
    step: StepResult,
    trace: TraceEntry[],
    audit: boolean,
    durable = false,
  ): Decision | Promise<Decision> {
    let error = step.error
    if (audit) {
      const accepted = this.#audit(request, requestId, step, trace, durable)
      if (accepted instanceof Promise)
        return this.#whenDurable(accepted, request, requestId, step, trace)
      if (!accepted && this.#c.failClosedOnAudit && error === undefined) {
        error = new AuthError('ERR_AUDIT_UNAVAILABLE', 'The request could not be audited', {
          reason: 'audit queue full',
        })
        step = { ...step, headers: mergeHeaders(step.headers, AUDIT_RETRY_AFTER) }
      }
    }
    if (error === undefined) {
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
    const challenge = this.#c.challenges.for(error)
    const headers =
      challenge === null
        ? step.headers
        : mergeHeaders(step.headers, { 'www-authenticate': challenge })
    const deny: DenyDecision = {
      allowed: false,
      status: error.status,
      principal: step.principal,
      error,
      problem: toProblemDetails(error, requestId, this.#c.typeBase),
      headers,
      trace,
      requestId,
    }
    return deny
  }

  #audit(
    request: GateRequest,
    requestId: RequestID,
    step: StepResult,
    trace: readonly TraceEntry[],
    durable: boolean,
  ): boolean | Promise<unknown> {
    const audit = this.#c.audit
    const failed = step.error !== undefined
    const type: AuditEventType = failed
      ? (DENIAL_EVENT_TYPES[step.error.code] ??
        (step.stage === 'authorize' ? 'authz.deny' : 'authn.failure'))
      : step.stage === 'authorize'
        ? 'authz.allow'
        : 'authn.success'
    if (!audit.accepts(type, failed ? 'failure' : 'success')) return true
    // Only capture here (no spreads, no redaction): the trail prepares the event off the path.
    const p = step.principal
    const ua = request.header('user-agent')
    const path = normalizePath(request.path)
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
      event.reason = {
        code: step.error.code,
        detail: step.error.reason ?? step.error.message,
        trace,
      }
    else if (audit.level === 'verbose') event.reason = { trace }
    return durable ? audit.commit(event) : audit.emit(event)
  }
}

/** A stage's trace entry; `started` and `ended` are {@link monotonicMicros} readings. */
function entry(
  stage: string,
  error: AuthError | undefined,
  by: string,
  started: number,
  ended: number,
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

/** An authenticator's answer, or an anonymous request let through (no credential, none required). */
type Authenticated = AuthenticatorResult | { readonly ok: true; readonly principal: null }
const ANONYMOUS: Authenticated = Object.freeze({ ok: true, principal: null })

/** The authorize hook's answer as the step's error (none when allowed). */
function hookError(result: AccessResult): AuthError | undefined {
  if (result.allowed) return undefined
  return (
    result.error ??
    new AuthError('ERR_POLICY_DENIED', 'Access denied by policy', { reason: result.explanation })
  )
}

function isThenable<T>(value: T | PromiseLike<T>): value is PromiseLike<T> {
  return typeof (value as PromiseLike<T> | undefined)?.then === 'function'
}

// Draft-8 RateLimit fields are lists of named policies: the global and the route step's lists join.
const LIST_FIELDS = ['ratelimit', 'ratelimit-policy'] as const

/** The authorization step with the authentication step's headers and settle in front. */
function afterAuthentication(
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

function chain(
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

function mergeHeaders(a: HeaderBag, b: HeaderBag): HeaderBag {
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
