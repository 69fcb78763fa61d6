/**
 * Wires an AccessManager into the gate's authorization step: a route's `permission` is the action
 * evaluated, its `resource` is loaded (by the route's own loader or the gate's loader for that
 * type) and handed to resource policies; `scopes` and `roles` on the route still apply.
 *
 * Reachable from `@gatehouse/core`.
 * @packageDocumentation
 */
import { checkRequirements, type CompiledRequirements } from '../authz/requirements.js'
import type { AuditTrail } from '../audit/audit-trail.js'
import { AuthError, ConfigError } from '../errors.js'
import type { AuthorizeHook } from '../gate/gate.js'
import type { GateRequest } from '../gate/gate-request.js'
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
import type { PolicyAccessResult, PolicyRequestAttributes, PolicySetInput } from './model.js'

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
  // Empty segments are skipped on both sides, as routers do for repeated slashes.
  const r = route.split('/').filter((x) => x !== '')
  const p = path.split('/').filter((x) => x !== '')
  for (let i = 0; i < r.length && i < p.length; i++) {
    const seg = r[i] as string
    if (!seg.startsWith(':')) continue
    const name = /^:([A-Za-z0-9_]+)/.exec(seg)?.[1]
    if (name === undefined || name === '__proto__') continue
    try {
      params[name] = decodeURIComponent(p[i] as string)
    } catch {
      params[name] = p[i] as string
    }
  }
  return params
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
  const hook = async function gatehousePolicyAuthorize(
    principal: Principal,
    requirements: CompiledRequirements,
    request: GateRequest,
  ): Promise<PolicyAccessResult> {
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
    // `path` is normalized by the adapter (possibly case-folded); parameters come from the path as
    // received, as the router extracted them.
    const path = request.path
    const params = matchRouteParams(request.route, request.rawPath ?? path)
    const attrs: PolicyRequestAttributes & { header(name: string): string | undefined } = {
      method: request.method,
      path,
      ...(request.route === undefined ? {} : { route: request.route }),
      ...(request.ip === undefined ? {} : { ip: request.ip }),
      params,
      header: (name) => request.header(name),
    }
    let resource: unknown
    const declared = requirements.resource
    if (declared !== undefined) {
      const load = declared.load ?? loaders.get(declared.type)
      if (load === undefined)
        throw new ConfigError(
          `route ${request.route ?? path}: no loader for resource type "${declared.type}" (give resource.load or the gate's resourceLoaders)`,
        )
      try {
        resource = await load({ params, principal, request })
      } catch (error) {
        // The record could not be read: fail closed, as any store failure does.
        throw new AuthError('ERR_STORE_UNAVAILABLE', 'The request could not be checked', {
          cause: error,
          reason: `resource loader for "${declared.type}" failed`,
        })
      }
    }
    const result = manager.evaluate({
      principal,
      action,
      ...(declared === undefined ? {} : { resourceType: declared.type }),
      ...(resource === undefined || resource === null ? {} : { resource }),
      request: attrs,
    })
    if (result.shadowDenied.length > 0) {
      options.audit?.()?.record('policy.shadow-deny', {
        outcome: 'success',
        action: `${request.method} ${request.route ?? path}`,
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
  return {
    ...entry,
    by: 'policy',
    rules: result.matchedRules,
    riskScore: result.riskScore,
    reason: result.explanation,
  }
}
