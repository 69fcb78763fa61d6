/**
 * `fastifyRateLimit`: a drop-in for `@fastify/rate-limit` 11. It is registered the same way, takes
 * the same options (`max`, `timeWindow`, `keyGenerator`, `allowList`, `ban`, `hook`, ...) and
 * per-route `config: { rateLimit }`, decorates `fastify.rateLimit()` and
 * `fastify.createRateLimit()`, and answers with the same statuses, headers and errors. Counts live
 * in core's bounded memory limiter, or in a `@fastify/rate-limit` store class given as `store`.
 *
 * Reachable from `@portcullis/fastify`.
 * @packageDocumentation
 */
import {
  checkRouteLimit,
  ConfigError,
  DEFAULT_PROBLEM_TYPE_BASE,
  describeValue,
  PROBLEM_CONTENT_TYPE,
  resolveRouteLimitOptions,
  RouteLimitMemoryStore,
  routeLimitContext,
  routeLimitHeaders,
  routeLimitProblem,
  toProblemDetails,
  type RateLimitResult,
  type RouteLimitCallback,
  type RouteLimitOptions,
  type RouteLimitParams,
  type RouteLimitPerRequest,
  type RouteLimitStore,
  type RouteLimitStoreCtor,
} from '@portcullis/core'
import type {
  FastifyInstance,
  FastifyPluginAsync,
  FastifyReply,
  FastifyRequest,
  preHandlerAsyncHookHandler,
} from 'fastify'
import fp from 'fastify-plugin'

export {
  normalizeIP,
  type ErrorResponseBuilderContext,
  type RateLimitHeaderName,
  type RateLimitHook,
  type RateLimitResult,
  type RateLimitStoreCallback,
} from '@portcullis/core'

/** A value computed from the request and its key, as `@fastify/rate-limit` calls it. */
export type PerRequest<TValue> = RouteLimitPerRequest<FastifyRequest, TValue>
/** Called with the request and its key. */
export type RateLimitCallback = RouteLimitCallback<FastifyRequest>
/** A `@fastify/rate-limit` store: counts a key's hits in a window of `timeWindow` ms. */
export type FastifyRateLimitStore = RouteLimitStore
/** A store class, constructed with the resolved plugin options. */
export type FastifyRateLimitStoreCtor = RouteLimitStoreCtor
/** Options of a route (`config.rateLimit`), of `fastify.rateLimit()` and of the plugin. */
export type RateLimitOptions = RouteLimitOptions<FastifyRequest>

/** Options of {@link fastifyRateLimit}: {@link RateLimitOptions} plus the plugin-wide ones. */
export interface RateLimitPluginOptions extends RateLimitOptions {
  /** Limit every route (`config.rateLimit: false` opts one out); else only routes that configure one. @default true */
  readonly global?: boolean
  /** Send `ratelimit-limit/remaining/reset` instead of `x-ratelimit-*`. @default false */
  readonly enableDraftSpec?: boolean
  /** A `@fastify/rate-limit` store class. @default core's bounded memory limiter */
  readonly store?: FastifyRateLimitStoreCtor
  /** Refused: there is no Redis driver here; pass a `store` class instead. */
  readonly redis?: never
  /** Refused with `redis`, whose key prefix it is. */
  readonly nameSpace?: never
}

declare module 'fastify' {
  interface FastifyInstance {
    /** A hook limiting with the plugin's options, or with its own (and its own counts). */
    rateLimit(options?: RateLimitOptions): preHandlerAsyncHookHandler
    /** A function counting a request (or only reading, with `increment: false`). */
    createRateLimit(
      options?: RateLimitOptions,
    ): (request: FastifyRequest, call?: { increment?: boolean }) => Promise<RateLimitResult>
  }
  interface FastifyContextConfig {
    /** This route's own limit (and count), or `false` for none. */
    rateLimit?: RateLimitOptions | false
  }
}

type Params = RouteLimitParams<FastifyRequest>

const check = (
  p: Params,
  store: FastifyRateLimitStore,
  request: FastifyRequest,
  increment = true,
): Promise<RateLimitResult> =>
  checkRouteLimit(
    p,
    store,
    request,
    (request.routeOptions.config.rateLimit || undefined)?.groupId,
    increment,
  )

/** The hook: counts once per request (per registration), sets headers, throws when limited. */
function limiter(
  p: Params,
  store: FastifyRateLimitStore,
  ran: WeakSet<FastifyRequest>,
): preHandlerAsyncHookHandler {
  return async function portcullisRateLimit(request, reply): Promise<void> {
    if (ran.has(request)) return
    ran.add(request)
    const r = await check(p, store, request)
    if (r.isAllowed) return
    if (r.isExceeded) p.onExceeded(request, r.key)
    for (const [name, value] of routeLimitHeaders(p, r)) reply.header(name, value)
    if (!r.isExceeded) {
      p.onExceeding(request, r.key)
      return
    }
    if (r.isBanned) p.onBanReach(request, r.key)
    if (p.problemDetails) return sendProblem(request, reply, r)
    throw p.errorResponseBuilder(request, routeLimitContext(r))
  }
}

function sendProblem(
  request: FastifyRequest,
  reply: FastifyReply,
  r: Extract<RateLimitResult, { isAllowed: false }>,
): void {
  const error = routeLimitProblem(r)
  const problem = toProblemDetails(error, request.id, DEFAULT_PROBLEM_TYPE_BASE)
  reply
    .code(error.status)
    .header('content-type', PROBLEM_CONTENT_TYPE)
    .send(Buffer.from(JSON.stringify(problem)))
}

async function rateLimitPlugin(
  fastify: FastifyInstance,
  options: RateLimitPluginOptions,
): Promise<void> {
  const warn = (message: string): void => fastify.log.warn(message)
  const global = resolveRouteLimitOptions<FastifyRequest>(
    options,
    undefined,
    'fastifyRateLimit',
    warn,
  )
  const root = options.store
    ? new options.store({ ...global })
    : new RouteLimitMemoryStore(global as RouteLimitParams<unknown>)
  if (typeof root.incr !== 'function' || typeof root.child !== 'function')
    throw new ConfigError('fastifyRateLimit.store: its instances must have incr() and child()')
  const ran = new WeakSet<FastifyRequest>()
  const own = (given: object | null | undefined, path: string, routeInfo: object) => {
    if (given == null) return [global, root] as const
    const p = resolveRouteLimitOptions(given, global, path, warn)
    return [p, root.child({ ...p, routeInfo })] as const
  }
  if (!fastify.hasDecorator('rateLimit'))
    fastify.decorate('rateLimit', (o?: RateLimitOptions) =>
      limiter(...own(o, 'rateLimit', {}), ran),
    )
  if (!fastify.hasDecorator('createRateLimit')) {
    fastify.decorate('createRateLimit', (o?: RateLimitOptions) => {
      const [p, store] = own(o, 'createRateLimit', {})
      return (request: FastifyRequest, call?: { increment?: boolean }) =>
        check(p, store, request, call?.increment !== false)
    })
  }
  fastify.addHook('onRoute', function portcullisRateLimitRoute(route) {
    const given: unknown = route.config?.rateLimit
    if (given === false || (given == null && !global.global)) return
    const where = `${String(route.method)} ${route.url}`
    if (given != null && typeof given !== 'object')
      throw new ConfigError(
        `${where} config.rateLimit: must be an object or false, received ${describeValue(given)}`,
      )
    const [p, store] = own(given, `${where} config.rateLimit`, route)
    const hooks = route as unknown as Record<string, unknown>
    hooks[p.hook] = [...[hooks[p.hook] ?? []].flat(), limiter(p, store, ran)]
  })
}

/**
 * `@fastify/rate-limit` 11 as a Portcullis plugin (wrapped with `fastify-plugin`): the same
 * options, per-route `config.rateLimit` (`false` opts a route out), `fastify.rateLimit()` and
 * `fastify.createRateLimit()`, and the same answers: `x-ratelimit-*` (or `ratelimit-*`) headers,
 * `retry-after`, and a thrown 429 error (403 once banned) that the app's error handler renders,
 * or with `problemDetails: true` an RFC 9457 problem. Bad options throw `ConfigError` at
 * registration (route options when the route is added) where `@fastify/rate-limit` falls back to
 * defaults; a failing store fails requests with `ERR_RATELIMIT_UNAVAILABLE` (503), never with the
 * store's own error, unless `skipOnError`.
 * @throws {ConfigError} for a bad option, or an option that cannot be supported (`redis`)
 * @example
 * ```ts
 * await app.register(fastifyRateLimit, { max: 100, timeWindow: '1 minute' })
 * app.post('/login', { config: { rateLimit: { max: 5, timeWindow: '15 minutes' } } }, login)
 * ```
 */
export const fastifyRateLimit: FastifyPluginAsync<RateLimitPluginOptions> = fp(rateLimitPlugin, {
  name: '@portcullis/fastify/rate-limit',
  fastify: '5.x',
})
