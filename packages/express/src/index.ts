/**
 * `@portcullis/express`: the Portcullis gate for Express 4 and 5.
 *
 * @example
 * ```ts
 * import express from 'express'
 * import { authMiddleware, requirePolicy, problemHandler } from '@portcullis/express'
 * const app = express()
 * app.use(authMiddleware({ apiKeys: { store, pepper } }))
 * app.get('/docs/:id', requirePolicy('documents:read'), (req, res) => res.json({ id: req.params.id, by: req.auth?.principal?.id }))
 * app.use(notFoundHandler(), problemHandler())
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
  type HeaderBag,
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
import type { ErrorRequestHandler, NextFunction, Request, RequestHandler, Response } from 'express'

/** What the gate attaches to `req.auth`. */
export interface PortcullisAuth {
  /** The authenticated principal, `null` when anonymous. */
  readonly principal: Principal | null
  /** The latest decision (with its trace). */
  readonly decision: Decision
  /** The gate that decided, used by {@link requirePolicy}. */
  readonly gate: Gate
}

declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Express {
    interface Request {
      /** Set by Portcullis's `authMiddleware`. */
      auth?: PortcullisAuth
    }
  }
}

/** Options of {@link authMiddleware}: the gate's options, or a gate, plus Express specifics. */
export interface AuthMiddlewareOptions extends GateOptions {
  /** Use this gate instead of creating one from the other options. */
  readonly gate?: Gate
  /** Also set `req.user` to the principal, for passport-style code. @default false */
  readonly mirrorToUser?: boolean
}

/**
 * `req.auth` as this package sets it. It also keeps the request as the gate saw it, so that a route
 * guard after the global middleware reuses it (and its client IP, which Express resolves through
 * trust-proxy parsing on every `req.ip` read). Kept here rather than on `req` or in a WeakMap:
 * Express re-prototypes every request, so each property added to `req` costs a new hidden class,
 * and a WeakMap entry per request is more work for the garbage collector; `req.auth` is set anyway.
 */
class ExpressAuth implements PortcullisAuth {
  readonly principal: Principal | null
  readonly decision: Decision
  readonly gate: Gate
  readonly #request: NodeGateRequest

  constructor(decision: Decision, gate: Gate, request: NodeGateRequest) {
    this.principal = decision.principal
    this.decision = decision
    this.gate = gate
    this.#request = request
  }

  /** The gate request kept with an auth object of this package, if it is one. */
  static requestOf(auth: PortcullisAuth | undefined): NodeGateRequest | undefined {
    return auth instanceof ExpressAuth ? auth.#request : undefined
  }
}

function toGateRequest(req: Request): NodeGateRequest {
  const routePath = (req.route as { path?: unknown } | undefined)?.path
  const route = typeof routePath === 'string' ? req.baseUrl + routePath : undefined
  const earlier = ExpressAuth.requestOf(req.auth)
  if (earlier !== undefined) return earlier.withRoute(route)
  const request = new NodeGateRequest({
    method: req.method,
    url: req.originalUrl,
    route,
    // `req.ip` honours the app's `trust proxy` setting; with the default (off) it is the socket's
    // address, read directly to skip Express's X-Forwarded-For parsing on every request.
    ip: req.app.get('trust proxy') === false ? req.socket.remoteAddress : req.ip,
    headers: req.headers,
    rawHeaders: req.rawHeaders,
    // Path-based rules fold case as the app's router does (Express routes `/ADMIN` to `/admin`
    // unless `case sensitive routing` is on).
    caseSensitive: req.app.enabled('case sensitive routing'),
    adapter: 'express',
  })
  return request
}

/** A denial or an error answer: status, headers and problem body. */
type Answer = Pick<ErrorResponse, 'status' | 'headers' | 'problem'>

function send(res: Response, answer: Answer): void {
  res.status(answer.status)
  for (const name in answer.headers) res.setHeader(name, answer.headers[name] as string)
  res.setHeader('content-type', PROBLEM_CONTENT_TYPE)
  res.end(JSON.stringify(answer.problem))
}

function applyHeaders(res: Response, headers: HeaderBag | undefined): void {
  if (headers !== undefined)
    for (const name in headers) res.setHeader(name, headers[name] as string)
}

/**
 * Authenticates every request (and runs the gate's limit stages). Allowed requests continue with
 * `req.auth` set and their access context in AsyncLocalStorage; denied ones get a problem+json
 * answer with the status, challenge and headers from the gate.
 * @throws {ConfigError} for bad options, at creation
 */
export function authMiddleware(options: Readonly<AuthMiddlewareOptions>): RequestHandler {
  const { gate: given, mirrorToUser = false, ...gateOptions } = options
  const gate = given ?? createGate(gateOptions)
  return async function portcullisAuthMiddleware(
    req: Request,
    res: Response,
    next: NextFunction,
  ): Promise<void> {
    try {
      // Read only by the access context, which only `asyncContext` builds.
      const startedAt = gate.asyncContext ? gate.now() : 0
      const request = toGateRequest(req)
      const decision = await decideGlobal(gate, request)
      if (!decision.allowed) return send(res, decision)
      applyHeaders(res, decision.headers)
      req.auth = new ExpressAuth(decision, gate, request)
      if (mirrorToUser) (req as { user?: unknown }).user = decision.principal ?? undefined
      // One listener: the stages hear the final status, and a request no route guard decided
      // gets its access event.
      res.once('finish', () => finishRequest(gate, request, decision, res.statusCode))
      gate.proceed(request, decision, startedAt, next)
    } catch (error) {
      // Express 4 ignores the promise a middleware returns (Express 5 passes its rejection on).
      next(error)
    }
  }
}

/** Options of {@link requirePolicy}. */
export interface RequirePolicyOptions {
  /**
   * The gate to use when no {@link authMiddleware} ran before this route: the route then
   * authenticates and authorizes in one step, so a `{ public: true }` route can serve anonymous
   * callers while the rest of the app requires credentials.
   */
  readonly gate?: Gate
  /** Also set `req.user` (with `gate` only). @default false */
  readonly mirrorToUser?: boolean
}

/**
 * Per-route requirements: a permission (`'documents:read'`) or `{ scopes, roles, permission, public }`.
 * Compiled once here. Uses the decision of an earlier {@link authMiddleware}, or runs the whole
 * gate itself when given `{ gate }`.
 * @throws {ConfigError} for an invalid declaration, at creation
 */
export function requirePolicy(
  requirements: string | RouteRequirements,
  options: RequirePolicyOptions = {},
): RequestHandler {
  const compiled = compileRequirements(requirements)
  const { gate: ownGate, mirrorToUser = false } = options
  return async function portcullisRequirePolicy(
    req: Request,
    res: Response,
    next: NextFunction,
  ): Promise<void> {
    const auth = req.auth
    const gate = auth?.gate ?? ownGate
    if (gate === undefined) {
      return next(
        new ConfigError(
          'requirePolicy() needs authMiddleware() earlier on this route, or { gate }',
        ),
      )
    }
    try {
      // Read only by the access context, which only `asyncContext` builds.
      const startedAt = gate.asyncContext ? gate.now() : 0
      const request = toGateRequest(req)
      const before = auth?.decision.headers
      const decision = await decideRoute(gate, request, auth?.decision, compiled)
      if (!decision.allowed) return send(res, decision)
      // The route step's own headers (route rate limits) are sent on success too.
      applyHeaders(res, headersToSet(decision, before))
      if (auth !== undefined) return next()
      req.auth = new ExpressAuth(decision, gate, request)
      if (mirrorToUser) (req as { user?: unknown }).user = decision.principal ?? undefined
      gate.proceed(request, decision, startedAt, next)
    } catch (error) {
      // As in authMiddleware: Express 4 would leave the request hanging.
      next(error)
    }
  }
}

/**
 * An error handler that renders any error as an RFC 9457 problem: Portcullis errors with their
 * code, body-parser failures as 400/413, everything else as a 500 that reveals nothing.
 * Mount it last.
 */
export function problemHandler(options: { readonly gate?: Gate } = {}): ErrorRequestHandler {
  return function portcullisProblemHandler(
    error: unknown,
    req: Request,
    res: Response,
    next: NextFunction,
  ): void {
    if (res.headersSent) return next(error)
    send(res, problemAnswer(error, req.auth?.gate ?? options.gate, req.auth?.decision))
  }
}

/**
 * Turns a request no route answered into a 404 `ERR_ROUTE_NOT_FOUND` error for
 * {@link problemHandler}, instead of Express's HTML "Cannot GET". Mount it after every route and
 * before `problemHandler`: `app.use(notFoundHandler(), problemHandler())`.
 */
export function notFoundHandler(): RequestHandler {
  return function portcullisNotFound(_req: Request, _res: Response, next: NextFunction): void {
    next(routeNotFoundError())
  }
}

/** Something `mountController` can register routes on: an Express app or router. */
export interface ExpressRouteTarget {
  get(path: string, ...handlers: RequestHandler[]): unknown
  post(path: string, ...handlers: RequestHandler[]): unknown
  put(path: string, ...handlers: RequestHandler[]): unknown
  patch(path: string, ...handlers: RequestHandler[]): unknown
  delete(path: string, ...handlers: RequestHandler[]): unknown
  head(path: string, ...handlers: RequestHandler[]): unknown
  options(path: string, ...handlers: RequestHandler[]): unknown
}

/**
 * Registers a decorated controller's routes (`@Controller`, `@Get`, `@Policy`, `@Public` from
 * `@portcullis/core`), each behind {@link requirePolicy} with its effective requirements. Handlers
 * are called as `instance[method](req, res, next)`; a returned value that is not `undefined` is
 * sent with `res.json`. Pass `{ gate }` to mount it without a global {@link authMiddleware}, so
 * that `@Public()` routes serve anonymous callers.
 * @throws {ConfigError} for a class that declares no routes
 */
export function mountController<TController extends object>(
  target: ExpressRouteTarget,
  controller: ControllerInput<TController>,
  options: RequirePolicyOptions = {},
): void {
  for (const route of controllerRoutes(controller)) {
    const handler: RequestHandler = async function portcullisControllerRoute(req, res, next) {
      try {
        const result = await route.invoke(req, res, next)
        if (result !== undefined && !res.headersSent) res.json(result)
      } catch (error) {
        // Express 4 ignores the returned promise: a rejected method would leave the request hanging.
        next(error)
      }
    }
    const register = target[route.method.toLowerCase() as keyof ExpressRouteTarget]
    register.call(target, route.path, requirePolicy(route.requirements.source, options), handler)
  }
}
export * from './rate-limit.js'
