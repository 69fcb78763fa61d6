/**
 * `@portcullis/koa`: the Portcullis gate for Koa 2 and 3 and `@koa/router`.
 *
 * @example
 * ```ts
 * const router = new Router()
 * router.get('/docs/:id', requirePolicy('documents:read'), (ctx) => {
 *   ctx.body = { id: ctx.params.id, reader: ctx.state.auth?.principal?.id }
 * })
 * app.use(problemHandler({ gate })).use(authMiddleware({ gate })).use(router.routes())
 * ```
 * @packageDocumentation
 */
import {
  compileRequirements,
  ConfigError,
  createGate,
  type Decision,
  type Gate,
  type GateOptions,
  type Principal,
  type RouteRequirements,
} from '@portcullis/core'
import {
  controllerRoutes,
  decideGlobal,
  decideRoute,
  finishRequest,
  headersToSet,
  NodeGateRequest,
  problemAnswer,
  PROBLEM_CONTENT_TYPE,
  routeNotFoundError,
  type ControllerInput,
  type ErrorResponse,
} from '@portcullis/core/adapter'
import type { ParameterizedContext } from 'koa'

/** What the gate attaches to `ctx.state.auth`. */
export interface PortcullisAuth {
  /** The authenticated principal, `null` when anonymous. */
  readonly principal: Principal | null
  /** The latest decision (with its trace). */
  readonly decision: Decision
  /** The gate that decided, used by {@link requirePolicy}. */
  readonly gate: Gate
}

declare module 'koa' {
  interface DefaultState {
    /** Set by Portcullis's `authMiddleware` or `requirePolicy`. */
    auth?: PortcullisAuth
    /** The principal, when `mirrorToUser` is set. */
    user?: unknown
  }
}

/** A Koa middleware as this package returns it; usable with `app.use` and `@koa/router`. */
export type PortcullisMiddleware = (
  ctx: ParameterizedContext,
  next: () => Promise<unknown>,
) => Promise<void>

/** Options of {@link authMiddleware}: the gate's options, or a gate, plus Koa specifics. */
export interface AuthMiddlewareOptions extends GateOptions {
  /** Use this gate instead of creating one from the other options. */
  readonly gate?: Gate
  /** Also set `ctx.state.user` to the principal, for koa-passport-style code. @default false */
  readonly mirrorToUser?: boolean
}

// One GateRequest per request: a route guard after the global middleware reuses it. Kept in a
// symbol-keyed property of Node's request rather than a WeakMap: no weak entry per request for
// the garbage collector to trace.
const BUILT = Symbol('@portcullis/koa/gate-request')
type WithGateRequest = ParameterizedContext['req'] & { [BUILT]?: NodeGateRequest }

function toGateRequest(ctx: ParameterizedContext): NodeGateRequest {
  // Set by @koa/router before a route's middleware runs; a string unless the route is a RegExp.
  const matched = (ctx as { _matchedRoute?: unknown })._matchedRoute
  const route = typeof matched === 'string' ? matched : undefined
  const holder = ctx.req as WithGateRequest
  const earlier = holder[BUILT]
  if (earlier !== undefined) return earlier.withRoute(route)
  const request = new NodeGateRequest({
    method: ctx.method,
    url: ctx.originalUrl,
    route,
    // `ctx.ip` reads X-Forwarded-For only when `app.proxy` is set; Koa gives '' when unknown.
    ip: ctx.ip === '' ? undefined : ctx.ip,
    headers: ctx.req.headers,
    rawHeaders: ctx.req.rawHeaders,
    // The global middleware runs before any router: fold case as @koa/router does by default
    // (`sensitive: false`), so path-based rules see `/ADMIN` as the `/admin` it is routed to.
    caseSensitive: false,
    adapter: 'koa',
  })
  holder[BUILT] = request
  return request
}

// Answering here instead of throwing: Koa's default error handler removes every header set before
// the throw, which would lose WWW-Authenticate, RateLimit and Retry-After.
function send(
  ctx: ParameterizedContext,
  answer: Pick<ErrorResponse, 'status' | 'headers' | 'problem'>,
): void {
  ctx.status = answer.status
  ctx.set(answer.headers)
  ctx.type = PROBLEM_CONTENT_TYPE
  ctx.body = JSON.stringify(answer.problem)
}

/**
 * Authenticates every request (and runs the gate's limit stages). Allowed requests continue with
 * `ctx.state.auth` set and their access context in AsyncLocalStorage; denied ones get a
 * problem+json answer with the status, challenge and headers from the gate.
 * @throws {ConfigError} for bad options, at creation
 */
export function authMiddleware(options: Readonly<AuthMiddlewareOptions>): PortcullisMiddleware {
  const { gate: given, mirrorToUser = false, ...gateOptions } = options
  const gate = given ?? createGate(gateOptions)
  return async function portcullisAuthMiddleware(ctx, next) {
    // Read only by the access context, which only `asyncContext` builds.
    const startedAt = gate.asyncContext ? gate.now() : 0
    const request = toGateRequest(ctx)
    const decision = await decideGlobal(gate, request)
    if (!decision.allowed) return send(ctx, decision)
    ctx.set(decision.headers)
    ctx.state.auth = { principal: decision.principal, decision, gate }
    if (mirrorToUser) ctx.state.user = decision.principal ?? undefined
    try {
      await gate.proceed(request, decision, startedAt, next)
    } catch (error) {
      finishRequest(gate, request, decision, 500)
      throw error
    }
    finishRequest(gate, request, decision, ctx.status)
  }
}

/** Options of {@link requirePolicy} and {@link mountController}. */
export interface RequirePolicyOptions {
  /**
   * The gate to use when no {@link authMiddleware} ran before this route: the route then
   * authenticates and authorizes in one step, so a `{ public: true }` route can serve anonymous
   * callers while the rest of the app requires credentials.
   */
  readonly gate?: Gate
  /** Also set `ctx.state.user` (with `gate` only). @default false */
  readonly mirrorToUser?: boolean
}

/**
 * Per-route requirements for `@koa/router`: a permission (`'documents:read'`) or
 * `{ scopes, roles, permission, public }`, compiled once here. Uses the decision of an earlier
 * {@link authMiddleware}, or runs the whole gate itself when given `{ gate }`.
 * @throws {ConfigError} for an invalid declaration, at creation
 */
export function requirePolicy(
  requirements: string | RouteRequirements,
  options: RequirePolicyOptions = {},
): PortcullisMiddleware {
  const compiled = compileRequirements(requirements)
  const { gate: ownGate, mirrorToUser = false } = options
  return async function portcullisRequirePolicy(ctx, next) {
    const auth = ctx.state.auth
    const gate = auth?.gate ?? ownGate
    if (gate === undefined)
      throw new ConfigError(
        'requirePolicy() needs authMiddleware() earlier on this route, or { gate }',
      )
    // Read only by the access context, which only `asyncContext` builds.
    const startedAt = gate.asyncContext ? gate.now() : 0
    const request = toGateRequest(ctx)
    const before = auth?.decision.headers
    const decision = await decideRoute(gate, request, auth?.decision, compiled)
    if (!decision.allowed) return send(ctx, decision)
    // The route step's own headers (route rate limits) are sent on success too.
    const added = headersToSet(decision, before)
    if (added !== undefined) ctx.set(added)
    ctx.state.auth = { principal: decision.principal, decision, gate }
    if (auth !== undefined) return void (await next())
    if (mirrorToUser) ctx.state.user = decision.principal ?? undefined
    await gate.proceed(request, decision, startedAt, next)
  }
}

/**
 * Renders any error thrown downstream as an RFC 9457 problem: Portcullis errors with their code,
 * body-parser failures as 400/413, everything else as a 500 that reveals nothing. A request that
 * falls through every middleware with Koa's default 404 and no body becomes a 404
 * `ERR_ROUTE_NOT_FOUND` problem. Mount it first.
 */
export function problemHandler(options: { readonly gate?: Gate } = {}): PortcullisMiddleware {
  return async function portcullisProblemHandler(ctx, next) {
    try {
      await next()
    } catch (error) {
      if (ctx.headerSent) throw error
      const auth = ctx.state.auth
      send(ctx, problemAnswer(error, auth?.gate ?? options.gate, auth?.decision))
      return
    }
    // Koa's own 404: nothing set a body (or a status) on the way down.
    if (ctx.status === 404 && ctx.body == null && !ctx.headerSent && ctx.respond !== false) {
      const auth = ctx.state.auth
      send(ctx, problemAnswer(routeNotFoundError(), auth?.gate ?? options.gate, auth?.decision))
    }
  }
}

/** Something `mountController` can register routes on: a `@koa/router` router. */
export type KoaRouteTarget = Record<
  'get' | 'post' | 'put' | 'patch' | 'delete' | 'head' | 'options',
  (path: string, ...middleware: PortcullisMiddleware[]) => unknown
>

/**
 * Registers a decorated controller's routes (`@Controller`, `@Get`, `@Policy`, `@Public` from
 * `@portcullis/core`) on a router, each behind {@link requirePolicy} with its effective
 * requirements. Handlers are called as `instance[method](ctx, next)`; a returned value that is not
 * `undefined` becomes `ctx.body`. Pass `{ gate }` to mount it without a global
 * {@link authMiddleware}, so that `@Public()` routes serve anonymous callers.
 * @throws {ConfigError} for a class that declares no routes
 */
export function mountController<TController extends object>(
  router: KoaRouteTarget,
  controller: ControllerInput<TController>,
  options: RequirePolicyOptions = {},
): void {
  for (const route of controllerRoutes(controller)) {
    const handler: PortcullisMiddleware = async function portcullisControllerRoute(ctx, next) {
      const result = await route.invoke(ctx, next)
      if (result !== undefined) ctx.body = result
    }
    const register = router[route.method.toLowerCase() as keyof KoaRouteTarget]
    register.call(router, route.path, requirePolicy(route.requirements.source, options), handler)
  }
}
export * from './rate-limit.js'
