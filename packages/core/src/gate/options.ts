/**
 * The gate's options: their types, their validation, and the resolved configuration every step
 * reads. Nothing here runs per request.
 * @packageDocumentation
 */
import {
  createApiKeyVerifier,
  type ApiKeyOptions,
  type ApiKeyVerifier,
} from '../apikey/api-key-verifier.js'
import { createAuditTrail, type AuditOptions, type AuditTrail } from '../audit/audit-trail.js'
import type { RolePermissions } from '../authz/requirements.js'
import {
  DEFAULT_API_KEY_HEADER,
  DEFAULT_CREDENTIALS_REQUIRED,
  DEFAULT_PROBLEM_TYPE_BASE,
  DEFAULT_QUERY_CREDENTIAL_PARAMS,
  DEFAULT_REALM,
  DEFAULT_REJECT_AMBIGUOUS,
  DEFAULT_REQUEST_ID_HEADER,
} from '../defaults.js'
import { ChallengeBuilder } from '../http/problem.js'
import { systemClock, type Clock } from '../internal/clock.js'
import type { MessageBroker } from '../integrations/message-broker.js'
import { noopMetrics, type MetricsClient } from '../integrations/metrics.js'
import { isGateTracer, type GateTracer } from '../integrations/tracing.js'
import { GateMetrics, guardMetrics } from '../internal/gate-metrics.js'
import { createJwtVerifier, type JwtOptions, type JwtVerifier } from '../jwt/jwt-verifier.js'
import { silentLogger, type Logger } from '../logger.js'
import type { AuthFailureThrottle } from '../authn/failure-throttle.js'
import type { Authenticator, AuthorizeHook, GateStage } from '../pipeline/stage.js'
import { createPolicyAuthorizer, type GatePolicyInput } from '../policy/gate-policy.js'
import { createRateLimitStage } from '../ratelimit/rate-limit-stage.js'
import type { ResourceLoader } from '../types.js'
import { TypeValidator } from '../validation/type-validator.js'
import { queryCredentialPattern, type CredentialRules } from './credentials.js'

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
  /**
   * How many audit events a request writes: `'request'`, one access event carrying the
   * authentication, limits and authorization outcome and the whole trace (denials are one event
   * each too); `'step'`, one event per step (authentication, then the route's authorization), as
   * before 0.2. With a durable trail (`audit.durable`), the authentication step's event is written
   * before the request goes on, so a route step adds a second one.
   * @default 'request'
   */
  readonly auditEvents?: 'request' | 'step'
  /**
   * Deadlines, in ms, on each call the gate makes to a dependency while deciding a request; past
   * one, the request gets a 503 `ERR_DEPENDENCY_TIMEOUT` with `Retry-After`, counted, logged and
   * audited (`dependency.timeout`), and the late answer is ignored. An authenticator or a stage
   * may carry its own `timeoutMs`. `false` turns one off.
   */
  readonly timeouts?: GateTimeouts
  /**
   * Failed-authentication throttling: failures counted per client address (IPv6 by prefix) and
   * per presented credential id, with growing lock-outs answered 429 `ERR_AUTH_THROTTLED` with
   * `Retry-After` and audited as `authn.throttled` (see docs/security.md). Give
   * `createAuthFailureThrottle()` (one process) or `createRedisAuthFailureThrottle()` from
   * `@portcullis/redis` (several). Off unless given in this release.
   * @default false
   */
  readonly authFailureThrottle?: AuthFailureThrottle | false
  /** Clock, epoch ms. @default Date.now */
  readonly now?: Clock
  /** Logger. @default silent */
  readonly logger?: Logger
}

/** Deadlines of {@link GateOptions.timeouts}, in milliseconds. */
export interface GateTimeouts {
  /** API-key verification (the key store on a cache miss). @default 500 */
  readonly apiKeys?: number | false
  /** JWT verification (a JWKS fetch on an unknown `kid`). @default 3000 */
  readonly jwt?: number | false
  /** Custom authenticators and passport strategies, unless they set `timeoutMs`. @default 1000 */
  readonly authenticators?: number | false
  /** Limit and quota stages (their counter stores), unless a stage sets `timeoutMs`. @default 500 */
  readonly stages?: number | false
  /** The authorize hook or policy, resource loaders included. @default 500 */
  readonly authorize?: number | false
}

/** Default deadlines of {@link GateTimeouts}. @internal */
export const DEFAULT_TIMEOUTS: Readonly<Record<keyof GateTimeouts, number>> = Object.freeze({
  apiKeys: 500,
  jwt: 3000,
  authenticators: 1000,
  stages: 500,
  authorize: 500,
})

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
  'auditEvents',
  'timeouts',
  'authFailureThrottle',
  'now',
  'logger',
] as const satisfies readonly (keyof GateOptions)[]
// Fails to compile when GateOptions gains an option the list above does not name.
const ALL_OPTIONS_NAMED: Exclude<keyof GateOptions, (typeof OPTION_NAMES)[number]> extends never
  ? true
  : false = true
void ALL_OPTIONS_NAMED

const EMPTY: readonly never[] = []
void EMPTY

function isAuditTrail(value: unknown): value is AuditTrail {
  return (
    typeof (value as AuditTrail | undefined)?.emit === 'function' &&
    typeof (value as AuditTrail).flush === 'function'
  )
}

/** Validates every option and builds what the steps read. @throws {ConfigError} for a bad option */
export function resolveGateConfig(options: Readonly<GateOptions>): GateConfig {
  const logger = options.logger ?? silentLogger
  const warn = (m: string): void => logger.warn({}, m)
  const now = options.now ?? systemClock
  const v = new TypeValidator()
  v.knownKeys(options as Record<string, unknown>, OPTION_NAMES)
  const auditEvents =
    options.auditEvents === undefined
      ? 'request'
      : (v.oneOf('auditEvents', options.auditEvents, ['request', 'step'] as const) ?? 'request')
  const timeouts = resolveTimeouts(v, options.timeouts)
  const throttle = options.authFailureThrottle
  const authFailureThrottle =
    throttle === undefined || throttle === false
      ? undefined
      : typeof throttle.check === 'function' &&
          typeof throttle.failed === 'function' &&
          typeof throttle.succeeded === 'function'
        ? throttle
        : v.fail(
            'authFailureThrottle',
            'must be an AuthFailureThrottle with check(), failed() and succeeded()',
          )
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

  return {
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
    auditEvents,
    authFailureThrottle,
    timeouts,
    now,
    logger,
  }
}

function resolveTimeouts(
  v: TypeValidator,
  given: GateTimeouts | undefined,
): Readonly<Record<keyof GateTimeouts, number | false>> {
  if (given === undefined) return DEFAULT_TIMEOUTS
  const t = v.object('timeouts', given) ?? {}
  const tv = v.child('timeouts')
  tv.knownKeys(t as Record<string, unknown>, Object.keys(DEFAULT_TIMEOUTS))
  const out: Record<string, number | false> = {}
  for (const name of Object.keys(DEFAULT_TIMEOUTS) as (keyof GateTimeouts)[]) {
    const value = (t as GateTimeouts)[name]
    out[name] =
      value === false
        ? false
        : value === undefined
          ? DEFAULT_TIMEOUTS[name]
          : (tv.integer(name, value, { min: 1, max: 600_000 }) ?? DEFAULT_TIMEOUTS[name])
  }
  return Object.freeze(out) as Readonly<Record<keyof GateTimeouts, number | false>>
}

/** The gate's options, validated and resolved: what every step reads. @internal */
export interface GateConfig {
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
  readonly auditEvents: 'request' | 'step'
  readonly authFailureThrottle: AuthFailureThrottle | undefined
  readonly timeouts: Readonly<Record<keyof GateTimeouts, number | false>>
  readonly now: Clock
  readonly logger: Logger
}
