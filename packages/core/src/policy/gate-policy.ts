/**
 * Wires an AccessManager into the gate's authorization step: a route's `permission` is the action
 * evaluated, its `resource` is loaded (by the route's own loader or the gate's loader for that
 * type) and handed to resource policies; `scopes` and `roles` on the route still apply.
 *
 * Reachable from `@portcullis/core`.
 * @packageDocumentation
 */
import { checkRequirements, type CompiledRequirements } from '../authz/requirements.js'
import type { AuditTrail } from '../audit/audit-trail.js'
import { AuthError, ConfigError } from '../errors.js'
import type { AuthorizeHook } from '../pipeline/stage.js'
import type { GateRequest } from '../pipeline/gate-request.js'
import type { Clock } from '../internal/clock.js'
import { silentLogger, type Logger } from '../logger.js'
import type { Principal, ResourceLoader, TraceEntry } from '../types.js'
import {
  createAccessManager,
  isAccessManager,
  type AccessManager,
  type PolicySource,
} from './access-manager.js'
import type { CompiledPolicySet } from './compile.js'
import type {
  AccessRequest,
  PolicyAccessResult,
  PolicyRequestAttributes,
  PolicySetInput,
} from './model.js'

/** What the gate's `policy` option accepts. */
export type GatePolicyInput = AccessManager | PolicySetInput | CompiledPolicySet | PolicySource

/** Options of {@link createPolicyAuthorizer}. */
export interface PolicyAuthorizerOptions {
  /** Loaders by resource type, for routes that declare `resource: '<type>'`. */
  readonly loaders?: Readonly<Record<string, ResourceLoader>>
  readonly now?: Clock
  readonly logger?: Logger
  /** The audit trail, for "would deny" events of shadow rules. */
  readonly audit?: () => AuditTrail | undefined
}

const NO_ROLES: ReadonlyMap<string, readonly string[]> = new Map()
const withoutPermission = new WeakMap<CompiledRequirements, CompiledRequirements>()

const ALLOWED: PolicyAccessResult = Object.freeze({
  allowed: true,
  decision: 'allow',
  level: 'read',
  matchedRules: Object.freeze([]),
  riskScore: 0,
  explanation: 'requirements met',
  shadowDenied: Object.freeze([]),
})

/**
 * Matches a route pattern (`/docs/:id`, `/orgs/:org/docs/:id`) against a normalized path and
 * returns the parameters, percent-decoded. Unknown shapes give no parameters.
 */
export function matchRouteParams(
  route: string | undefined,
  path: string,
): Readonly<Record<string, string>> {
  const params: Record<string, string> = Object.create(null) as Record<string, string>
  if (route === undefined || !route.includes(':')) return params
  const names = routeParamNames(route)
  // Empty segments are skipped on both sides, as routers do for repeated slashes.
  const p = path.split('/').filter((x) => x !== '')
  for (let i = 0; i < names.length && i < p.length; i++) {
    const name = names[i]
    if (name === undefined) continue
    try {
      params[name] = decodeURIComponent(p[i] as string)
    } catch {
      params[name] = p[i] as string
    }
  }
  return params
}

/** Route patterns seen, by pattern: the parameter name of each segment (`undefined`: literal). */
const routeShapes = new Map<string, readonly (string | undefined)[]>()
const ROUTE_SHAPES_MAX = 1024

function routeParamNames(route: string): readonly (string | undefined)[] {
  let names = routeShapes.get(route)
  if (names !== undefined) return names
  names = route
    .split('/')
    .filter((x) => x !== '')
    .map((seg) => {
      if (!seg.startsWith(':')) return undefined
      const name = /^:([A-Za-z0-9_]+)/.exec(seg)?.[1]
      return name === '__proto__' ? undefined : name
    })
  // Routes are few and fixed; the bound only guards against an adapter passing raw paths.
  if (routeShapes.size >= ROUTE_SHAPES_MAX) routeShapes.clear()
  routeShapes.set(route, names)
  return names
}

/**
 * What a policy sees of a gate request. Route parameters are matched only when something reads
 * them (a `request.params.*` condition, a resource loader): most decisions never do.
 */
class GateRequestAttributes implements PolicyRequestAttributes {
  readonly method: string
  /** Normalized by the adapter (possibly case-folded). */
  readonly path: string
  readonly route?: string
  readonly ip?: string
  readonly #request: GateRequest
  #params: Readonly<Record<string, string>> | undefined

  constructor(request: GateRequest) {
    this.#request = request
    this.method = request.method
    this.path = request.path
    if (request.route !== undefined) this.route = request.route
    if (request.ip !== undefined) this.ip = request.ip
  }

  /** Parameters come from the path as received, as the router extracted them. */
  get params(): Readonly<Record<string, string>> {
    return (this.#params ??= matchRouteParams(
      this.#request.route,
      this.#request.rawPath ?? this.#request.path,
    ))
  }

  header(name: string): string | undefined {
    return this.#request.header(name)
  }
}

async function loadResource(
  load: ResourceLoader,
  type: string,
  params: Readonly<Record<string, string>>,
  principal: Principal,
  request: GateRequest,
): Promise<unknown> {
  try {
    return await load({ params, principal, request })
  } catch (error) {
    // The record could not be read: fail closed, as any store failure does.
    throw new AuthError('ERR_STORE_UNAVAILABLE', 'The request could not be checked', {
      cause: error,
      reason: `resource loader for "${type}" failed`,
    })
  }
}

/**
 * Builds the gate's authorization hook over a policy. The gate does this for its `policy` option.
 * @throws {ConfigError} for an invalid policy
 */
export function createPolicyAuthorizer(
  policy: GatePolicyInput,
  options: PolicyAuthorizerOptions = {},
): AuthorizeHook & { readonly manager: AccessManager } {
  const logger = options.logger ?? silentLogger
  const manager = isAccessManager(policy)
    ? policy
    : createAccessManager({
        policy: policy as PolicySetInput,
        logger,
        ...(options.now === undefined ? {} : { now: options.now }),
      })
  const loaders = new Map<string, ResourceLoader>(Object.entries(options.loaders ?? {}))
  const hook = function portcullisPolicyAuthorize(
    principal: Principal,
    requirements: CompiledRequirements,
    request: GateRequest,
  ): PolicyAccessResult | Promise<PolicyAccessResult> {
    if (requirements.scopes.length > 0 || requirements.roles.size > 0) {
      let plain = withoutPermission.get(requirements)
      if (plain === undefined) {
        plain = { ...requirements, permission: undefined }
        withoutPermission.set(requirements, plain)
      }
      const first = checkRequirements(principal, plain, NO_ROLES)
      if (!first.allowed) return { ...first, decision: 'deny', shadowDenied: ALLOWED.shadowDenied }
    }
    const action = requirements.permission
    if (action === undefined) return ALLOWED
    const attrs = new GateRequestAttributes(request)
    const declared = requirements.resource
    // Synchronous unless a resource must be loaded: no promise, no extra turn per decision.
    if (declared === undefined)
      return decide(principal, action, undefined, undefined, attrs, request)
    const load = declared.load ?? loaders.get(declared.type)
    if (load === undefined)
      return Promise.reject(
        new ConfigError(
          `route ${request.route ?? attrs.path}: no loader for resource type "${declared.type}" (give resource.load or the gate's resourceLoaders)`,
        ),
      )
    return loadResource(load, declared.type, attrs.params, principal, request).then((resource) =>
      decide(principal, action, declared.type, resource, attrs, request),
    )
  }
  function decide(
    principal: Principal,
    action: string,
    resourceType: string | undefined,
    resource: unknown,
    attrs: GateRequestAttributes,
    request: GateRequest,
  ): PolicyAccessResult {
    const access: { -readonly [K in keyof AccessRequest]: AccessRequest[K] } = {
      principal,
      action,
      request: attrs,
    }
    if (resourceType !== undefined) access.resourceType = resourceType
    if (resource !== undefined && resource !== null) access.resource = resource
    const result = manager.evaluate(access)
    if (result.shadowDenied.length > 0) {
      options.audit?.()?.record('policy.shadow-deny', {
        outcome: 'success',
        action: `${request.method} ${request.route ?? attrs.path}`,
        reason: { detail: `would deny: ${result.shadowDenied.join(', ')} (${result.explanation})` },
      })
    }
    return result
  }
  return Object.assign(hook, { manager })
}

/** Whether an authorization result came from the policy engine. */
export function isPolicyAccessResult(value: unknown): value is PolicyAccessResult {
  return (
    typeof value === 'object' && value !== null && 'decision' in value && 'shadowDenied' in value
  )
}

/**
 * The gate's trace entry for an authorization decided by policy: the deciding rule ids, the risk
 * score and the explanation as the internal reason.
 */
export function policyTraceEntry(entry: TraceEntry, result: unknown): TraceEntry {
  if (!isPolicyAccessResult(result) || result.matchedRules.length === 0) return entry
  // Field by field: a spread that then overrides `by` and `reason` is a slow path in V8.
  const { stage, outcome, code, micros } = entry
  const rules = result.matchedRules
  const reason = result.explanation
  const riskScore = result.riskScore
  return code === undefined
    ? { stage, outcome, by: 'policy', reason, micros, rules, riskScore }
    : { stage, outcome, by: 'policy', code, reason, micros, rules, riskScore }
}
