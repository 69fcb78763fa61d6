/**
 * `@gatehouse/express`: the Gatehouse gate for Express 5.
 *
 * @example
 * ```ts
 * import express from 'express'
 * import { authMiddleware, requirePolicy, problemHandler } from '@gatehouse/express'
 * const app = express()
 * app.use(authMiddleware({ apiKeys: { store, pepper } }))
 * app.get('/docs/:id', requirePolicy('documents:read'), (req, res) => res.json({ id: req.params.id, by: req.auth?.principal?.id }))
 * app.use(problemHandler())
 * ```
 * @packageDocumentation
 */
import {
  compileRequirements,
  ConfigError,
  createGate,
  PROBLEM_CONTENT_TYPE,
  runWithAccessContext,
  type Decision,
  type Gate,
  type GateOptions,
  type GateRequest,
  type HeaderBag,
  type Principal,
  type ProblemDetails,
  type RouteRequirements,
} from '@gatehouse/core'
import { randomUUID } from 'node:crypto'
import type { ErrorRequestHandler, NextFunction, Request, RequestHandler, Response } from 'express'

/** What the gate attaches to `req.auth`. */
export interface GatehouseAuth {
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
      /** Set by Gatehouse's `authMiddleware`. */
      auth?: GatehouseAuth
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

class ExpressGateRequest implements GateRequest {
  readonly method: string
  readonly path: string
  readonly query: string
  readonly route: string | undefined
  readonly ip: string | undefined
  readonly rawHeaders: readonly string[]
  readonly #req: Request

  constructor(req: Request) {
    this.#req = req
    const url = req.originalUrl
    const q = url.indexOf('?')
    this.method = req.method
    this.path = q === -1 ? url : url.slice(0, q)
    this.query = q === -1 ? '' : url.slice(q + 1)
    const routePath = (req.route as { path?: unknown } | undefined)?.path
    this.route = typeof routePath === 'string' ? req.baseUrl + routePath : undefined
    // `req.ip` honours the app's `trust proxy` setting; X-Forwarded-For is never read here.
    this.ip = req.ip
    this.rawHeaders = req.rawHeaders
  }

  header(name: string): string | undefined {
    const v = this.#req.headers[name]
    return typeof v === 'string' ? v : v?.[0]
  }
}

function send(res: Response, status: number, headers: HeaderBag, problem: ProblemDetails): void {
  res.status(status)
  for (const name in headers) res.setHeader(name, headers[name] as string)
  res.setHeader('content-type', PROBLEM_CONTENT_TYPE)
  res.end(JSON.stringify(problem))
}

function applyHeaders(res: Response, headers: HeaderBag): void {
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
  return async function gatehouseAuthMiddleware(
    req: Request,
    res: Response,
    next: NextFunction,
  ): Promise<void> {
    const startedAt = gate.now()
    const request = new ExpressGateRequest(req)
    let decision: Decision
    try {
      decision = await gate.authenticate(request)
    } catch (error) {
      return next(error)
    }
    if (!decision.allowed) return send(res, decision.status, decision.headers, decision.problem)
    applyHeaders(res, decision.headers)
    req.auth = { principal: decision.principal, decision, gate }
    if (mirrorToUser) (req as { user?: unknown }).user = decision.principal ?? undefined
    runWithAccessContext(gate.contextFor(request, decision, startedAt), next)
  }
}

/**
 * Per-route requirements: a permission (`'documents:read'`) or `{ scopes, roles, permission, public }`.
 * Compiled once here; needs {@link authMiddleware} earlier in the chain.
 * @throws {ConfigError} for an invalid declaration, at creation
 */
export function requirePolicy(requirements: string | RouteRequirements): RequestHandler {
  const compiled = compileRequirements(requirements)
  return async function gatehouseRequirePolicy(
    req: Request,
    res: Response,
    next: NextFunction,
  ): Promise<void> {
    const auth = req.auth
    if (auth === undefined) {
      return next(
        new ConfigError('requirePolicy() needs authMiddleware() to run first on this route'),
      )
    }
    if (!auth.decision.allowed)
      return next(new ConfigError('requirePolicy() reached after a denial'))
    let decision: Decision
    try {
      decision = await auth.gate.authorize(new ExpressGateRequest(req), auth.decision, compiled)
    } catch (error) {
      return next(error)
    }
    if (!decision.allowed) return send(res, decision.status, decision.headers, decision.problem)
    req.auth = { principal: decision.principal, decision, gate: auth.gate }
    next()
  }
}

/**
 * An error handler that renders any error as an RFC 9457 problem: Gatehouse errors with their
 * code, body-parser failures as 400/413, everything else as a 500 that reveals nothing.
 * Mount it last.
 */
export function problemHandler(options: { readonly gate?: Gate } = {}): ErrorRequestHandler {
  const fallback = options.gate ?? createGate({ logger: undefined, audit: false })
  return function gatehouseProblemHandler(
    error: unknown,
    req: Request,
    res: Response,
    next: NextFunction,
  ): void {
    if (res.headersSent) return next(error)
    const gate = req.auth?.gate ?? fallback
    const requestId = req.auth?.decision.requestId ?? randomUUID()
    const answer = gate.errorResponse(error, requestId)
    send(res, answer.status, answer.headers, answer.problem)
  }
}
