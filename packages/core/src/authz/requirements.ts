/**
 * First-cut authorization: a route's scopes, roles and permission checked against the principal.
 * Requirements are compiled once, when the route is declared.
 *
 * Reachable from `@portcullis/core`.
 * @packageDocumentation
 */
import { AuthError, ConfigError } from '../errors.js'
import type {
  AccessResult,
  Principal,
  RateLimitRule,
  ResourceLoader,
  RouteRequirements,
} from '../types.js'
import { TypeValidator } from '../validation/type-validator.js'

/** A route's requirements, validated and indexed. Build with {@link compileRequirements}. */
export interface CompiledRequirements {
  readonly public: boolean
  readonly scopes: readonly string[]
  readonly roles: ReadonlySet<string>
  readonly permission: string | undefined
  /** Route rate limits, validated. */
  readonly rateLimits: readonly RateLimitRule[]
  /** The resource the route acts on (for resource policies), when declared. */
  readonly resource:
    { readonly type: string; readonly load: ResourceLoader | undefined } | undefined
  /** Whether the route's answer waits for its audit event to be durable. */
  readonly durableAudit: boolean
  /** The original declaration, for traces and explain output. */
  readonly source: RouteRequirements
}

const PERMISSION = /^[A-Za-z0-9_.\-*]+(?::[A-Za-z0-9_.\-*]+)+$/
const NAMES = ['public', 'scopes', 'roles', 'permission', 'rateLimits', 'resource', 'durableAudit']
const RESOURCE_TYPE = /^[A-Za-z][A-Za-z0-9_.-]{0,63}$/
const LIMIT_KEYS = ['ip', 'principal', 'apikey', 'route', 'global'] as const

/**
 * Validates and compiles a route's requirements. A string is a permission (`documents:read`).
 * @throws {ConfigError}
 */
export function compileRequirements(
  input: string | RouteRequirements | undefined,
): CompiledRequirements {
  const source: RouteRequirements =
    typeof input === 'string' ? { permission: input } : (input ?? {})
  const v = new TypeValidator('requirements')
  if (typeof source !== 'object' || source === null)
    throw new ConfigError(`requirements: must be a string or an object`)
  v.knownKeys(source as Record<string, unknown>, NAMES)
  const isPublic = source.public === undefined ? false : v.boolean('public', source.public)
  const durableAudit =
    source.durableAudit === undefined ? false : v.boolean('durableAudit', source.durableAudit)
  const scopes =
    source.scopes === undefined
      ? []
      : v.array('scopes', source.scopes, (sv, i, s) => sv.string(i, s))
  const roles =
    source.roles === undefined ? [] : v.array('roles', source.roles, (rv, i, r) => rv.string(i, r))
  const permission =
    source.permission === undefined
      ? undefined
      : v.string('permission', source.permission, { pattern: PERMISSION })
  const rateLimits =
    source.rateLimits === undefined
      ? []
      : v.array('rateLimits', source.rateLimits, (lv, i, raw) => {
          const r = lv.object(i, raw) as Partial<RateLimitRule> | undefined
          if (r === undefined) return undefined
          const rv = lv.child(i)
          rv.integer('limit', r.limit, { min: 1 })
          rv.integer('windowMs', r.windowMs, { min: 1 })
          if (r.cost !== undefined) rv.integer('cost', r.cost, { min: 1 })
          if (r.name !== undefined)
            rv.string('name', r.name, { pattern: /^[A-Za-z0-9_.:-]{1,64}$/ })
          if (r.key !== undefined) {
            for (const k of typeof r.key === 'string' ? [r.key] : r.key)
              rv.oneOf('key', k, LIMIT_KEYS, 'limit key')
          }
          return Object.freeze({ ...r }) as RateLimitRule
        })
  let resource: CompiledRequirements['resource']
  if (source.resource !== undefined) {
    const r = source.resource
    const type = v.string(
      'resource',
      typeof r === 'string' ? r : (v.object('resource', r) ?? {}).type,
      { pattern: RESOURCE_TYPE },
    )
    const load =
      typeof r === 'string' || r.load === undefined
        ? undefined
        : v.child('resource').function<ResourceLoader>('load', r.load)
    if (permission === undefined)
      v.fail('resource', 'a resource needs a permission (the action on it), e.g. documents:read')
    if (type !== undefined) resource = Object.freeze({ type, load })
  }
  v.assert()
  // Route declarations are code: a misspelt requirement must fail loudly, not be ignored.
  const unknown = v.result().warnings
  if (unknown.length > 0) throw new ConfigError(unknown)
  return Object.freeze({
    public: isPublic === true,
    scopes: Object.freeze(scopes ?? []),
    roles: new Set(roles),
    permission,
    rateLimits: Object.freeze(rateLimits ?? []),
    resource,
    durableAudit: durableAudit === true,
    source,
  })
}

/** Whether a granted permission pattern (`documents:*`, `*`) covers `wanted`. */
export function permissionCovers(granted: string, wanted: string): boolean {
  if (granted === wanted || granted === '*') return true
  if (!granted.endsWith('*')) return false
  const stem = granted.slice(0, -1)
  return stem.endsWith(':') && wanted.startsWith(stem)
}

/** Role name → permissions it grants (first-cut RBAC; the policy engine supersedes it). */
export type RolePermissions = Readonly<Record<string, readonly string[]>>

/** Checks compiled requirements against a principal; `principal` is non-null here. */
export function checkRequirements(
  principal: Principal,
  req: CompiledRequirements,
  rolePermissions: ReadonlyMap<string, readonly string[]>,
): AccessResult {
  for (const scope of req.scopes) {
    if (!principal.scopes.includes(scope)) {
      return deny(
        new AuthError(
          'ERR_SCOPE_INSUFFICIENT',
          'The request requires higher privileges than provided by the access token',
          {
            reason: `missing scope ${scope}`,
            requiredScopes: req.scopes,
          },
        ),
      )
    }
  }
  if (req.roles.size > 0 && !principal.roles.some((r) => req.roles.has(r))) {
    return deny(
      new AuthError('ERR_POLICY_DENIED', 'The principal lacks a required role', {
        reason: `needs one of roles ${[...req.roles].join(', ')}`,
      }),
    )
  }
  const wanted = req.permission
  if (wanted !== undefined) {
    let granted = principal.scopes.some((s) => permissionCovers(s, wanted))
    if (!granted) {
      for (const role of principal.roles) {
        const perms = rolePermissions.get(role)
        if (perms !== undefined && perms.some((p) => permissionCovers(p, wanted))) {
          granted = true
          break
        }
      }
    }
    if (!granted) {
      return deny(
        new AuthError(
          'ERR_SCOPE_INSUFFICIENT',
          'The request requires higher privileges than provided by the access token',
          {
            reason: `missing permission ${wanted}`,
            requiredScopes: [wanted],
          },
        ),
      )
    }
  }
  return ALLOWED
}

const ALLOWED: AccessResult = Object.freeze({
  allowed: true,
  level: 'read',
  matchedRules: Object.freeze([]),
  riskScore: 0,
  explanation: 'requirements met',
})

function deny(error: AuthError): AccessResult {
  return {
    allowed: false,
    level: 'none',
    matchedRules: [],
    riskScore: 0,
    explanation: error.reason ?? error.message,
    error,
  }
}
