/**
 * The pipeline's contracts: what authenticators, stages and the authorize hook receive and return.
 * Everything on the request path depends on these; they depend on nothing above them (no step, no
 * adapter), which keeps the folders free of import cycles.
 *
 * Reachable from `@portcullis/core` (the authenticator and hook shapes) and
 * `@portcullis/core/store` (the stage shapes, for limit and quota stores).
 * @packageDocumentation
 */
import type { AuditTrail } from '../audit/audit-trail.js'
import type { CompiledRequirements } from '../authz/requirements.js'
import type { AuthError } from '../errors.js'
import type { MetricsClient } from '../integrations/metrics.js'
import type { AccessResult, Principal } from '../types.js'
import type { HeaderBag } from './decision.js'
import type { GateRequest } from './gate-request.js'

/** What happens when the counter store fails: deny (503), allow (logged and audited), or the backend's insurance limiter. */
export type StoreFailureMode = 'closed' | 'open' | 'insurance'

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
  /**
   * Deadline of `authenticate`, in ms, overriding the gate's `timeouts.authenticators`; past it the
   * request gets a 503 `ERR_DEPENDENCY_TIMEOUT`.
   */
  readonly timeoutMs?: number
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
  /**
   * Deadline of `run`, in ms, when it returns a promise; overrides the gate's `timeouts.stages`.
   * Past it the request gets a 503 `ERR_DEPENDENCY_TIMEOUT`.
   */
  readonly timeoutMs?: number
  /** Decides the request's part this stage owns; synchronous when nothing waits. */
  run(context: StageContext): StageResult | Promise<StageResult>
}

/** Decides authorization; replaces the built-in scope/role check (the policy engine plugs in here). */
export type AuthorizeHook = (
  principal: Principal,
  requirements: CompiledRequirements,
  request: GateRequest,
) => AccessResult | Promise<AccessResult>
