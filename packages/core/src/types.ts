/**
 * The access-control vocabulary of Portcullis: principals, resources, levels and results.
 *
 * Reachable from `@portcullis/core`.
 * @packageDocumentation
 */
import type { AuthError, AuthErrorCode } from './errors.js'
import type { RequestID, RoleID, TokenID, UserID } from './ids.js'

/** The kinds of resources a policy talks about. Open-ended: applications add their own. */
export type ResourceType =
  'document' | 'project' | 'user' | 'apikey' | 'policy' | 'audit' | (string & {})

/** Coarse access levels, ordered `none < read < write < admin`. */
export type AccessLevel = 'none' | 'read' | 'write' | 'admin'

/** The levels in ascending order. */
export const ACCESS_LEVELS: readonly AccessLevel[] = Object.freeze([
  'none',
  'read',
  'write',
  'admin',
])

/** Whether `granted` is at least `required`. */
export function hasAccessLevel(granted: AccessLevel, required: AccessLevel): boolean {
  return ACCESS_LEVELS.indexOf(granted) >= ACCESS_LEVELS.indexOf(required)
}

/** Where a credential stands. */
export type AuthStatus = 'active' | 'revoked' | 'expired' | 'unknown'

/** How a principal proved who it is. */
export type AuthMethod = 'apikey' | 'jwt' | (string & {})

/** Who is making the request, as established by an authenticator. */
export interface Principal {
  /** Stable id of the subject (user, service). */
  readonly id: UserID
  /** How it authenticated. */
  readonly method: AuthMethod
  /** Granted OAuth-style scopes. */
  readonly scopes: readonly string[]
  /** Granted roles. */
  readonly roles: readonly RoleID[]
  /** The credential's own id: API key id or JWT `jti`, when there is one. */
  readonly tokenId?: TokenID
  /** Extra attributes for policies (tenant, plan, verified claims...). */
  readonly attributes: Readonly<Record<string, unknown>>
  /**
   * The credential's own limits (an API key's usage policy): the limits stage adds `rateLimits`
   * to its global limits and the quota stage adds `quota`, both counted per credential.
   */
  readonly limits?: PrincipalLimits
}

/** Per-credential limits carried by a {@link Principal}. */
export interface PrincipalLimits {
  /** Rate limits, counted per credential (`apikey` key). */
  readonly rateLimits?: readonly { readonly limit: number; readonly windowMs: number }[]
  /** Quota per UTC day or month, counted per credential. */
  readonly quota?: { readonly limit: number; readonly period: 'day' | 'month' }
}

/**
 * The per-request context shared through AsyncLocalStorage, so that audit events raised deep in a
 * handler carry it without being passed around.
 */
export interface AccessContext {
  /** This request's id. */
  readonly requestId: RequestID
  /** HTTP method, upper case. */
  readonly method: string
  /** Normalized path. */
  readonly path: string
  /** Route pattern when the framework knows it (e.g. `/docs/:id`). */
  readonly route: string | undefined
  /** Client IP as resolved by the framework's trust-proxy rules. */
  readonly ip: string | undefined
  /** User-Agent, truncated. */
  readonly userAgent: string | undefined
  /** Start time, epoch milliseconds. */
  readonly startedAt: number
  /** The authenticated principal; `null` for anonymous requests. */
  principal: Principal | null
}

/** What a limit counts per: client IP, principal, API key, route, or everything together. */
export type LimitKey = 'ip' | 'principal' | 'apikey' | 'route' | 'global'

/** A rate limit declared as data on a route (`requirements.rateLimits`, `@RateLimit`). */
export interface RateLimitRule {
  /** Requests (or units) allowed per window. */
  readonly limit: number
  /** Window length in milliseconds. */
  readonly windowMs: number
  /** Policy name in headers and traces. @default `route-<limit>-<windowMs>` */
  readonly name?: string
  /** What the limit counts per; several make a composite key. @default 'principal' */
  readonly key?: LimitKey | readonly LimitKey[]
  /** Units one request costs. @default 1 */
  readonly cost?: number
}

/** What the route asks of the principal (first-cut authorization; the policy engine extends it). */
export interface RouteRequirements {
  /** Let anonymous requests through this route (credentials, when sent, are still verified). */
  readonly public?: boolean
  /** Every one of these scopes is required. */
  readonly scopes?: readonly string[]
  /** At least one of these roles is required. */
  readonly roles?: readonly string[]
  /** A permission `resource:action`, granted by a matching scope or by a role's permissions. */
  readonly permission?: string
  /** Rate limits of this route, enforced by the limits stage before authorization. */
  readonly rateLimits?: readonly RateLimitRule[]
  /**
   * The resource this route acts on, for resource policies (needs the gate's `policy`): a type
   * whose loader the gate knows (`resourceLoaders`), or a type with its own loader.
   */
  readonly resource?: ResourceType | RouteResource
  /**
   * Answer only once this route's audit event is durable (written by every sink, or fsync'd in its
   * spool), and with a 503 `ERR_AUDIT_UNAVAILABLE` when it cannot be: the trail's `durable` mode
   * for one route. @default false (the trail's `durable` option)
   */
  readonly durableAudit?: boolean
}

/** What a {@link ResourceLoader} gets. */
export interface ResourceLoadContext {
  /** Route parameters matched from the route pattern (`/docs/:id` → `{ id: '7' }`). */
  readonly params: Readonly<Record<string, string>>
  /** The authenticated principal. */
  readonly principal: Principal
  /** The request. */
  readonly request: {
    readonly method: string
    readonly path: string
    readonly route: string | undefined
    header(name: string): string | undefined
  }
}

/**
 * Loads the record a route acts on (e.g. `({ params }) => db.documents.find(params.id)`), so that
 * policies check the actual resource (`resource.ownerId`). `undefined` means "not found"; a
 * rejection is a store failure (503, fail closed).
 */
export type ResourceLoader = (context: ResourceLoadContext) => unknown

/** A route's resource declaration. */
export interface RouteResource {
  /** The resource type, which selects the resource policy. */
  readonly type: ResourceType
  /** Loads the record; without it the gate's loader for `type` is used. */
  readonly load?: ResourceLoader
}

/** The outcome of an authorization check. */
export interface AccessResult {
  /** Whether access is granted. */
  readonly allowed: boolean
  /** The level granted, when level-based checks apply. */
  readonly level: AccessLevel
  /** Ids of the rules that decided. */
  readonly matchedRules: readonly string[]
  /** Risk score 0-100 (0 when no risk assessment ran). */
  readonly riskScore: number
  /** Why, in a sentence. */
  readonly explanation: string
  /** When denied: the error to answer with. */
  readonly error?: AuthError
}

/** A stage outcome inside a {@link DecisionTrace}. */
export type TraceOutcome = 'allow' | 'deny' | 'skip' | 'error'

/** One stage of the gate, as recorded in a decision's trace. */
export interface TraceEntry {
  /** Stage name: `authenticate`, `ratelimit`, `quota`, `authorize`, ... */
  readonly stage: string
  /** What the stage decided. */
  readonly outcome: TraceOutcome
  /** Which authenticator, limit or rule was responsible. */
  readonly by?: string
  /** Error code on denial. */
  readonly code?: AuthErrorCode
  /** Internal reason (never sent to clients). */
  readonly reason?: string
  /** Policy rules that decided (authorization with a policy). */
  readonly rules?: readonly string[]
  /** Risk score 0-100, when risk assessment ran. */
  readonly riskScore?: number
  /** Time spent, microseconds. */
  readonly micros: number
}

/** The ordered list of stages a decision passed through. */
export type DecisionTrace = readonly TraceEntry[]
