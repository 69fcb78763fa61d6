/**
 * `@portcullis/fastify`: the Portcullis gate for Fastify 5.
 *
 * @example
 * ```ts
 * import Fastify from 'fastify'
 * const app = Fastify()
 * // or: import { portcullisPlugin } from '@portcullis/fastify'; app.register(portcullisPlugin, ...)
 * await app.register(import('@portcullis/fastify'), { apiKeys: { store, pepper }, problemErrors: true })
 * app.get('/docs/:id', { config: { portcullis: 'documents:read' } }, async (request) => ({
 *   by: request.auth?.principal?.id,
 * }))
 * ```
 * @packageDocumentation
 */
import {
  ConfigError,
  createGate,
  type CompiledRequirements,
  type Decision,
  type Gate,
  type GateOptions,
  type Principal,
  type RouteRequirements,
} from '@portcullis/core'
import {
  controllerRoutes,
  decideRoute,
  headersToSet,
  NodeGateRequest,
  problemAnswer,
  PROBLEM_CONTENT_TYPE,
  routeNotFoundError,
  type ControllerInput,
  type ErrorResponse,
} from '@portcullis/core/adapter'
import type {
  FastifyInstance,
  FastifyPluginAsync,
  FastifyReply,
  FastifyRequest,
  HookHandlerDoneFunction,
  onRequestHookHandler,
} from 'fastify'
import fp from 'fastify-plugin'
import { validateHeaderValue } from 'node:http'

/** What the gate attaches to `request.auth`. */
export interface PortcullisAuth {
  /** The authenticated principal, `null` when anonymous. */
  readonly principal: Principal | null
  /** The latest decision (with its trace). */
  readonly decision: Decision
  /** The gate that decided. */
  readonly gate: Gate
}

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by {@link portcullisPlugin} on allowed requests; `null` before (and on denied ones). */
    auth: PortcullisAuth | null
  }
  interface FastifyContextConfig {
    /** The route's requirements: a permission (`'documents:read'`) or `{ scopes, roles, permission, public }`. */
    portcullis?: string | RouteRequirements
  }
  interface FastifyInstance {
    /** An `onRequest` hook declaring a route's requirements; see {@link portcullisPlugin}. */
    requirePolicy(requirements: string | RouteRequirements): onRequestHookHandler
  }
}

/** Options of {@link portcullisPlugin}: the gate's options, or a gate, plus Fastify specifics. */
export interface PortcullisPluginOptions extends GateOptions {
  /** Use this gate instead of creating one from the other options. */
  readonly gate?: Gate
  /** Also set `request.user` to the principal, for passport-style code. @default false */
  readonly mirrorToUser?: boolean
  /**
   * Install an error handler rendering every error as an RFC 9457 problem (content-type-parser
   * errors `FST_ERR_CTP_*` as 400 `ERR_REQUEST_MALFORMED` / 413 `ERR_REQUEST_TOO_LARGE`), and a
   * not-found handler answering an unknown route with a 404 `ERR_ROUTE_NOT_FOUND` problem (so the
   * app must not call `setNotFoundHandler` itself). @default false
   */
  readonly problemErrors?: boolean
}

const COMPILED = Symbol('@portcullis/fastify/requirements')
type CompiledConfig = { [COMPILED]?: CompiledRequirements; portcullis?: string | RouteRequirements }
type PolicyHook = onRequestHookHandler & { readonly [COMPILED]: CompiledRequirements }
const isPolicyHook = (hook: unknown): hook is PolicyHook =>
  typeof hook === 'function' && COMPILED in hook

/** `route`: `request.routeOptions.url`, read once by the caller (Fastify builds `routeOptions` per read). */
function toGateRequest(
  request: FastifyRequest,
  route: string | undefined,
  caseSensitive: boolean,
): NodeGateRequest {
  return new NodeGateRequest({
    method: request.method,
    url: request.url,
    route,
    // `request.ip` honours the instance's `trustProxy`; X-Forwarded-For is never read here.
    ip: request.ip,
    headers: request.headers,
    rawHeaders: request.raw.rawHeaders,
    caseSensitive,
    adapter: 'fastify',
  })
}

/** Whether the instance's router matches paths case-sensitively (Fastify's default: yes). */
function routesCaseSensitively(fastify: FastifyInstance): boolean {
  const config = fastify.initialConfig as {
    readonly caseSensitive?: boolean
    readonly routerOptions?: { readonly caseSensitive?: boolean }
  }
  return config.routerOptions?.caseSensitive ?? config.caseSensitive ?? true
}

function send(
  reply: FastifyReply,
  answer: Pick<ErrorResponse, 'status' | 'headers' | 'problem'>,
): void {
  reply
    .code(answer.status)
    .headers(answer.headers)
    .header('content-type', PROBLEM_CONTENT_TYPE)
    .send(Buffer.from(JSON.stringify(answer.problem)))
}

async function portcullis(
  fastify: FastifyInstance,
  options: PortcullisPluginOptions,
): Promise<void> {
  const { gate: given, mirrorToUser = false, problemErrors = false, ...gateOptions } = options
  const gate = given ?? createGate(gateOptions)
  const caseSensitive = routesCaseSensitively(fastify)
  // The start time only goes into the access context, which only `asyncContext` builds.
  const startTime = (): number => (gate.asyncContext ? gate.now() : 0)

  /**
   * Denies, or records the decision and runs the rest of the request in its access context.
   * `startedAt` was read before the gate ran; `pending` is the gate's answer for `gateRequest`.
   */
  function settle(
    request: FastifyRequest,
    reply: FastifyReply,
    next: HookHandlerDoneFunction,
    gateRequest: NodeGateRequest,
    prior: Decision | undefined,
    startedAt: number,
    pending: Promise<Decision>,
  ): void {
    // Read now: an allowed route step extends the earlier decision in place.
    const priorHeaders = prior?.headers
    pending.then(function portcullisDecided(decision) {
      try {
        if (!decision.allowed) return send(reply, decision)
        request.auth = { principal: decision.principal, decision, gate }
        // A later step's own headers (route rate limits) are sent on success too; the same bag as
        // the earlier step's is already on the reply.
        const added = headersToSet(decision, priorHeaders)
        if (added !== undefined) {
          // Checked now, as Express's setHeader does: Fastify writes them after the handler, too
          // late for a problem answer.
          for (const name in added) validateHeaderValue(name, added[name] as string)
          reply.headers(added)
        }
      } catch (error) {
        // A header Node refuses to send (from a custom stage): dropped, and Fastify's error path
        // answers 500, where a throw inside this callback would leave the request hanging.
        for (const name in decision.headers) reply.removeHeader(name)
        return next(error as Error)
      }
      if (prior !== undefined) return next()
      const settleStage = decision.settle
      if (settleStage !== undefined)
        reply.raw.once('finish', () => settleStage(reply.raw.statusCode))
      if (mirrorToUser) (request as { user?: unknown }).user = decision.principal ?? undefined
      // `done` called inside the store: Fastify runs the rest of the lifecycle from this call (its
      // body parser re-enters the same async scope), so handlers see the context.
      gate.proceed(gateRequest, decision, startedAt, next)
    }, next)
  }

  fastify.decorateRequest('auth', null)
  if (mirrorToUser && !fastify.hasRequestDecorator('user')) fastify.decorateRequest('user', null)

  fastify.decorate('requirePolicy', function requirePolicy(requirements) {
    const compiled = gate.compile(requirements)
    function portcullisRequirePolicy(
      request: FastifyRequest,
      reply: FastifyReply,
      next: HookHandlerDoneFunction,
    ): void {
      const route = request.routeOptions
      // Folded into the route by onRoute, so the plugin's own hook has enforced it already.
      if ((route.config as CompiledConfig)[COMPILED] === compiled) return next()
      const startedAt = startTime()
      const r = toGateRequest(request, route.url, caseSensitive)
      const prior = request.auth?.decision
      settle(request, reply, next, r, prior, startedAt, decideRoute(gate, r, prior, compiled))
    }
    return Object.assign(portcullisRequirePolicy, { [COMPILED]: compiled })
  })

  fastify.addHook('onRoute', function portcullisCompileRoute(route) {
    const hooks = [route.onRequest ?? []].flat().filter(isPolicyHook)
    const declared = route.config?.portcullis
    if (hooks.length > 1 || (hooks.length === 1 && declared !== undefined)) {
      throw new ConfigError(
        `${String(route.method)} ${route.url}: declare requirements once, with config.portcullis or one requirePolicy()`,
      )
    }
    const compiled = hooks[0]?.[COMPILED] ?? gate.compile(declared)
    route.config = { ...route.config, [COMPILED]: compiled } as typeof route.config
  })

  fastify.addHook('onRequest', function portcullisOnRequest(request, reply, next) {
    const startedAt = startTime()
    // Fastify builds `routeOptions` on every read: read it once.
    const route = request.routeOptions
    const r = toGateRequest(request, route.url, caseSensitive)
    const prior = request.auth?.decision
    // No route (`is404`), nothing to authorize: authenticate only (credentials required unless
    // the gate says `credentialsRequired: false`), so a 404 reveals nothing to anonymous callers.
    if (route.url === undefined)
      return settle(request, reply, next, r, prior, startedAt, gate.authenticate(r))
    // Routes added before the plugin loaded (no `await register`) are compiled on first use.
    const config = route.config as CompiledConfig
    const compiled = (config[COMPILED] ??= gate.compile(config.portcullis))
    settle(request, reply, next, r, prior, startedAt, gate.evaluate(r, compiled))
  })

  if (problemErrors) {
    fastify.setErrorHandler(function portcullisErrorHandler(error, request, reply) {
      const answer = problemAnswer(error, gate, request.auth?.decision)
      if (answer.status >= 500) request.log.error({ err: error }, 'portcullis: request failed')
      send(reply, answer)
    })
    // Fastify's own 404, after the gate's onRequest hook (which authenticated it).
    fastify.setNotFoundHandler(function portcullisNotFound(request, reply) {
      send(reply, problemAnswer(routeNotFoundError(), gate, request.auth?.decision))
    })
  }
}

/**
 * The Portcullis plugin (wrapped with `fastify-plugin`, so it covers the whole app). In `onRequest`,
 * every request is decided in one `gate.evaluate` against its route's `config.portcullis`, compiled
 * once when the route is added (absent: an authenticated caller, nothing more); a request matching
 * no route is only authenticated (credentials required unless `credentialsRequired: false`).
 * Allowed requests continue with `request.auth` set and their access context in
 * AsyncLocalStorage; denied ones get one problem+json answer and go no further.
 *
 * `fastify.requirePolicy(r)` in a route's `onRequest` replaces `config.portcullis` for that route:
 * it is folded in at registration, so the route is still decided in one step and
 * `requirePolicy({ public: true })` opens it. Declaring both, or two `requirePolicy`, throws.
 * Used anywhere else (another hook, a route added before the plugin loaded), it adds its
 * requirements to the plugin's decision with `gate.authorize` (one more authorization event).
 *
 * Register it with `await` before the routes (a route added earlier is compiled on its first
 * request instead), and after plugins whose hooks must also run on denials (`@fastify/helmet`,
 * so its headers are on 401 and 403 answers).
 * @throws {ConfigError} for bad options (at registration) and invalid route requirements (at
 *   route registration)
 * @example
 * ```ts
 * await app.register(portcullisPlugin, { gate, problemErrors: true })
 * app.get('/health', { config: { portcullis: { public: true } } }, async () => ({ ok: true }))
 * app.post('/docs', { onRequest: app.requirePolicy('documents:write') }, handler)
 * ```
 */
export const portcullisPlugin: FastifyPluginAsync<PortcullisPluginOptions> = fp(portcullis, {
  name: '@portcullis/fastify',
  fastify: '5.x',
})

/**
 * {@link portcullisPlugin} as the module's default export, so `app.register(import('@portcullis/fastify'), options)`
 * works as it does for `@fastify/*` plugins.
 */
export default portcullisPlugin

/**
 * Registers a decorated controller's routes (`@Controller`, `@Get`, `@Policy`, `@Public` from
 * `@portcullis/core`) with `config.portcullis` set to their effective requirements. Handlers are
 * called as `instance[method](request, reply)`; what they return is sent as Fastify sends any
 * handler's result. Call it after registering {@link portcullisPlugin}.
 * @throws {ConfigError} for a class that declares no routes
 */
export function mountController<TController extends object>(
  fastify: FastifyInstance,
  controller: ControllerInput<TController>,
): void {
  for (const route of controllerRoutes(controller)) {
    fastify.route({
      method: route.method,
      url: route.path,
      config: { portcullis: route.requirements.source },
      handler: function portcullisControllerRoute(request, reply): unknown {
        return route.invoke(request, reply)
      },
    })
  }
}
export * from './rate-limit.js'
export * from './fastify-rate-limit.js'
