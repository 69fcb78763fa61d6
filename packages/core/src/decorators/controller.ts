/**
 * Controller decorators, framework-neutral: `@Controller`, `@Get`/`@Post`/..., `@Policy`,
 * `@RateLimit` and `@Public`, as TC39 standard decorators (TypeScript 5+, `context.metadata`) and
 * as legacy `experimentalDecorators` (NestJS-style code bases), without reflect-metadata. Each
 * adapter's `mountController` reads {@link describeController} and registers the routes.
 *
 * Reachable from `@portcullis/core`.
 * @packageDocumentation
 */
import { compileRequirements, type CompiledRequirements } from '../authz/requirements.js'
import { ConfigError } from '../errors.js'
import type { RateLimitRule, RouteRequirements } from '../types.js'
import { METADATA_SYMBOL } from './metadata-polyfill.js'

/** HTTP methods a controller route can answer. */
export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE' | 'HEAD' | 'OPTIONS'

/** One route of a controller, with its effective requirements. */
export interface ControllerRoute {
  readonly method: HttpMethod
  /** Full path: the controller prefix joined with the method path. */
  readonly path: string
  /** Name of the handler method on the controller instance. */
  readonly handler: string | symbol
  /** Effective requirements: the method's `@Policy`/`@Public`, else the class's. */
  readonly requirements: CompiledRequirements
  /** Rate limits: the class's, then the method's. */
  readonly rateLimits: readonly RateLimitRule[]
}

/** What {@link describeController} returns. */
export interface ControllerDescription {
  readonly prefix: string
  readonly routes: readonly ControllerRoute[]
}

interface MemberMeta {
  route?: { method: HttpMethod; path: string }
  policy?: RouteRequirements
  isPublic?: boolean
  rateLimits: RateLimitRule[]
}

interface ClassMeta {
  prefix?: string
  policy?: RouteRequirements
  isPublic?: boolean
  rateLimits: RateLimitRule[]
  members: Map<string | symbol, MemberMeta>
}

const KEY = Symbol.for('@portcullis/core/controller')
// Legacy decorators have no metadata object: keep theirs by constructor.
const legacy = new WeakMap<object, ClassMeta>()

const emptyClass = (): ClassMeta => ({ rateLimits: [], members: new Map() })

function metaOf(bag: Record<symbol, unknown>): ClassMeta {
  let m = Object.hasOwn(bag, KEY) ? (bag[KEY] as ClassMeta) : undefined
  if (m === undefined) {
    m = emptyClass()
    bag[KEY] = m
  }
  return m
}

function legacyMeta(ctor: object): ClassMeta {
  let m = legacy.get(ctor)
  if (m === undefined) legacy.set(ctor, (m = emptyClass()))
  return m
}

function member(meta: ClassMeta, name: string | symbol): MemberMeta {
  let m = meta.members.get(name)
  if (m === undefined) meta.members.set(name, (m = { rateLimits: [] }))
  return m
}

interface StandardContext {
  readonly kind: string
  readonly name: string | symbol | undefined
  readonly metadata?: Record<symbol, unknown>
}

const isStandardContext = (v: unknown): v is StandardContext =>
  typeof v === 'object' && v !== null && typeof (v as { kind?: unknown }).kind === 'string'

/** A decorator usable on classes and methods, in both decorator dialects. */
export type ClassOrMethodDecorator = (
  target: unknown,
  contextOrKey?: unknown,
  descriptor?: unknown,
) => void

/** A decorator usable on methods, in both decorator dialects. */
export type MethodDecorator = (
  target: unknown,
  contextOrKey?: unknown,
  descriptor?: unknown,
) => void

/**
 * Builds a decorator that records into the class's metadata (standard) or our WeakMap (legacy).
 * `onClass`/`onMember` mutate the record; both dialects end up in the same shape.
 */
function decorator(
  name: string,
  onClass: ((meta: ClassMeta) => void) | null,
  onMember: ((meta: MemberMeta) => void) | null,
): ClassOrMethodDecorator {
  return (target: unknown, contextOrKey?: unknown): void => {
    if (isStandardContext(contextOrKey)) {
      const bag = contextOrKey.metadata
      if (bag === undefined)
        throw new ConfigError(
          `@${name}: context.metadata is missing; import @portcullis/core before defining decorated classes`,
        )
      const meta = metaOf(bag)
      if (contextOrKey.kind === 'class' && onClass !== null) return onClass(meta)
      if (contextOrKey.kind === 'method' && onMember !== null && contextOrKey.name !== undefined) {
        return onMember(member(meta, contextOrKey.name))
      }
      throw new ConfigError(`@${name} cannot decorate a ${contextOrKey.kind}`)
    }
    if (typeof target === 'function' && contextOrKey === undefined && onClass !== null)
      return onClass(legacyMeta(target))
    if (
      typeof target === 'object' &&
      target !== null &&
      (typeof contextOrKey === 'string' || typeof contextOrKey === 'symbol') &&
      onMember !== null
    ) {
      return onMember(member(legacyMeta(target.constructor), contextOrKey))
    }
    throw new ConfigError(`@${name} cannot decorate this target`)
  }
}

/** Marks a class as a controller whose routes live under `prefix`. */
export function Controller(prefix = ''): ClassOrMethodDecorator {
  if (prefix !== '' && !prefix.startsWith('/'))
    throw new ConfigError(
      `@Controller: prefix must start with "/", received ${JSON.stringify(prefix)}`,
    )
  return decorator('Controller', (m) => void (m.prefix = prefix), null)
}

function route(method: HttpMethod): (path?: string) => MethodDecorator {
  return (path = '') => {
    if (path !== '' && !path.startsWith('/'))
      throw new ConfigError(
        `@${method}: path must start with "/", received ${JSON.stringify(path)}`,
      )
    return decorator(method, null, (m) => void (m.route = { method, path }))
  }
}

/** Declares a `GET` route on a controller method. */
export const Get: (path?: string) => MethodDecorator = route('GET')
/** Declares a `POST` route on a controller method. */
export const Post: (path?: string) => MethodDecorator = route('POST')
/** Declares a `PUT` route on a controller method. */
export const Put: (path?: string) => MethodDecorator = route('PUT')
/** Declares a `PATCH` route on a controller method. */
export const Patch: (path?: string) => MethodDecorator = route('PATCH')
/** Declares a `DELETE` route on a controller method. */
export const Delete: (path?: string) => MethodDecorator = route('DELETE')

/**
 * Requirements for every route of a class, or for one method (the method's own declaration
 * replaces the class's). Validated now: a typo throws at class definition.
 * @throws {ConfigError}
 */
export function Policy(requirements: string | RouteRequirements): ClassOrMethodDecorator {
  const source = typeof requirements === 'string' ? { permission: requirements } : requirements
  compileRequirements(source)
  return decorator(
    'Policy',
    (m) => void (m.policy = source),
    (m) => void (m.policy = source),
  )
}

/** Opens a class or method to anonymous callers (credentials, when sent, are still verified). */
export function Public(): ClassOrMethodDecorator {
  return decorator(
    'Public',
    (m) => void (m.isPublic = true),
    (m) => void (m.isPublic = true),
  )
}

/**
 * A rate limit for every route of a class or for one method.
 * @throws {ConfigError} for a non-positive limit or window
 */
export function RateLimit(rule: RateLimitRule): ClassOrMethodDecorator {
  if (!Number.isSafeInteger(rule.limit) || rule.limit < 1)
    throw new ConfigError(`@RateLimit: limit must be a positive integer, received ${rule.limit}`)
  if (!Number.isSafeInteger(rule.windowMs) || rule.windowMs < 1)
    throw new ConfigError(
      `@RateLimit: windowMs must be a positive integer, received ${rule.windowMs}`,
    )
  const frozen = Object.freeze({ ...rule })
  return decorator(
    'RateLimit',
    (m) => void m.rateLimits.push(frozen),
    (m) => void m.rateLimits.push(frozen),
  )
}

function joinPath(prefix: string, path: string): string {
  const joined = `${prefix}${path}`.replace(/\/{2,}/g, '/')
  return joined === ''
    ? '/'
    : joined.length > 1 && joined.endsWith('/')
      ? joined.slice(0, -1)
      : joined
}

/**
 * Reads the routes declared on a controller class, with requirements compiled. Methods without a
 * route decorator are ignored; a class without any route is a configuration error.
 * @throws {ConfigError}
 */
export function describeController(
  ctor: abstract new (...args: never[]) => unknown,
): ControllerDescription {
  const standard = (ctor as unknown as Record<symbol, Record<symbol, unknown> | undefined>)[
    METADATA_SYMBOL
  ]
  const metas = [
    standard === undefined || standard === null
      ? undefined
      : (standard[KEY] as ClassMeta | undefined),
    legacy.get(ctor),
  ]
  const found = metas.filter((m): m is ClassMeta => m !== undefined)
  if (found.length === 0)
    throw new ConfigError(`${ctor.name}: not a controller (no @Controller or route decorators)`)
  const merged = emptyClass()
  for (const m of found) {
    merged.prefix ??= m.prefix
    merged.policy ??= m.policy
    merged.isPublic ||= m.isPublic === true
    merged.rateLimits.push(...m.rateLimits)
    for (const [name, mm] of m.members) {
      const into = member(merged, name)
      into.route ??= mm.route
      into.policy ??= mm.policy
      into.isPublic ||= mm.isPublic === true
      into.rateLimits.push(...mm.rateLimits)
    }
  }
  const routes: ControllerRoute[] = []
  for (const [name, mm] of merged.members) {
    if (mm.route === undefined) {
      throw new ConfigError(
        `${ctor.name}.${String(name)}: @Policy/@Public/@RateLimit on a method without a route decorator (@Get, @Post, ...)`,
      )
    }
    const own = mm.policy ?? (mm.isPublic === true ? {} : undefined)
    const base = own ?? merged.policy ?? {}
    const isPublic = mm.isPublic === true || (own === undefined && merged.isPublic === true)
    const limits = Object.freeze([...merged.rateLimits, ...mm.rateLimits])
    routes.push(
      Object.freeze({
        method: mm.route.method,
        path: joinPath(merged.prefix ?? '', mm.route.path),
        handler: name,
        requirements: compileRequirements({
          ...base,
          ...(isPublic ? { public: true } : {}),
          ...(limits.length === 0 ? {} : { rateLimits: limits }),
        }),
        rateLimits: limits,
      }),
    )
  }
  if (routes.length === 0)
    throw new ConfigError(`${ctor.name}: no routes (decorate methods with @Get, @Post, ...)`)
  return Object.freeze({ prefix: merged.prefix ?? '', routes: Object.freeze(routes) })
}
