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
  AuthError,
  BoundedMemoryLimiter,
  ConfigError,
  DEFAULT_PROBLEM_TYPE_BASE,
  describeValue,
  formatDuration,
  ipKeyGenerator,
  parseDurationMs,
  PROBLEM_CONTENT_TYPE,
  RateLimitedError,
  toHeaderSeconds,
  toProblemDetails,
  TypeValidator,
} from '@portcullis/core'
import type {
  FastifyInstance,
  FastifyPluginAsync,
  FastifyReply,
  FastifyRequest,
  preHandlerAsyncHookHandler,
} from 'fastify'
import fp from 'fastify-plugin'

type Awaitable<TValue> = TValue | Promise<TValue>
/** A value computed from the request and its key, as `@fastify/rate-limit` calls it. */
export type PerRequest<TValue> = (request: FastifyRequest, key: string) => Awaitable<TValue>
/** Called with the request and its key. */
export type RateLimitCallback = (request: FastifyRequest, key: string) => void
/** The route hook a limiter runs in. */
export type RateLimitHook = 'onRequest' | 'preParsing' | 'preValidation' | 'preHandler'
/** The headers `addHeaders` and `addHeadersOnExceeding` switch (the `ratelimit-*` ones with `enableDraftSpec`). */
export type RateLimitHeaderName =
  | 'x-ratelimit-limit'
  | 'x-ratelimit-remaining'
  | 'x-ratelimit-reset'
  | 'ratelimit-limit'
  | 'ratelimit-remaining'
  | 'ratelimit-reset'
  | 'retry-after'

/** What `errorResponseBuilder` receives. */
export interface ErrorResponseBuilderContext {
  /** 429, or 403 once the client is banned. */
  statusCode: number
  ban: boolean
  /** The wait in words: `1 minute`, `30 seconds`. */
  after: string
  max: number
  /** The wait in milliseconds. */
  ttl: number
}

/** The callback of a store's `incr` and `read`. */
export type RateLimitStoreCallback = (
  error: Error | null,
  result?: { readonly current: number; readonly ttl: number },
) => void

/** A `@fastify/rate-limit` store: counts a key's hits in a window of `timeWindow` ms. */
export interface FastifyRateLimitStore {
  incr(key: string, callback: RateLimitStoreCallback, timeWindow: number, max: number): void
  /** Reads without counting (`createRateLimit()(request, { increment: false })`). */
  read?(key: string, callback: RateLimitStoreCallback, timeWindow: number, max: number): void
  /** The store of a route or limiter with its own options (and `routeInfo`). */
  child(options: Readonly<Record<string, unknown>>): FastifyRateLimitStore
}

/** A store class, constructed with the resolved plugin options. */
export type FastifyRateLimitStoreCtor = new (
  options: Readonly<Record<string, unknown>>,
) => FastifyRateLimitStore

/** Options of a route (`config.rateLimit`), of `fastify.rateLimit()` and of the plugin. */
export interface RateLimitOptions {
  /** Requests per window and key, or a function of `(request, key)`. @default 1000 */
  readonly max?: number | PerRequest<number>
  /** The window: ms, a string such as `'1 minute'`, or a function of `(request, key)`. @default 60000 */
  readonly timeWindow?: number | string | PerRequest<number>
  /** The client's key. @default normalizeIP(request.ip, ipv6Subnet) */
  readonly keyGenerator?: (request: FastifyRequest) => Awaitable<string | number>
  /** IPv6 prefix length of the default key (1 to 128). @default 64 */
  readonly ipv6Subnet?: number
  /** Keys never limited (no headers either), or a predicate of `(request, key)`. @default none */
  readonly allowList?: readonly string[] | PerRequest<boolean>
  /** Requests over `max` answered 429 before the answer becomes 403. @default no ban */
  readonly ban?: number
  /** The route hook that counts. @default 'onRequest' */
  readonly hook?: RateLimitHook
  /** Keys the memory store keeps; the least recently used is dropped beyond. @default 5000 */
  readonly cache?: number
  /** A request over the limit restarts the window. @default false */
  readonly continueExceeding?: boolean
  /** The n-th request over the limit restarts the window as `timeWindow * 2^(n-1)`. @default false */
  readonly exponentialBackoff?: boolean
  /** A failing store lets requests through instead of failing them (503). @default false */
  readonly skipOnError?: boolean
  /** Routes with the same `groupId` (in `config.rateLimit`) share a count per key. */
  readonly groupId?: string
  /** What is thrown for a limited request. @default an Error "Rate limit exceeded, retry in 1 minute" with `statusCode` */
  readonly errorResponseBuilder?: (
    request: FastifyRequest,
    context: ErrorResponseBuilderContext,
  ) => object
  /** Answer limited requests with an RFC 9457 problem (`ERR_RATE_LIMITED`; `ERR_POLICY_DENIED` once banned) instead. @default false */
  readonly problemDetails?: boolean
  /** Headers of limited answers. @default all */
  readonly addHeaders?: Readonly<Partial<Record<RateLimitHeaderName, boolean>>>
  /** Headers of answers under the limit. @default all but `retry-after` */
  readonly addHeadersOnExceeding?: Readonly<Partial<Record<RateLimitHeaderName, boolean>>>
  /** Called for every counted request under the limit. */
  readonly onExceeding?: RateLimitCallback
  /** Called for every request over the limit. */
  readonly onExceeded?: RateLimitCallback
  /** Called for every banned request. */
  readonly onBanReach?: RateLimitCallback
}

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

/** What `fastify.createRateLimit()`'s function answers. */
export type RateLimitResult =
  | { readonly isAllowed: true; readonly key: string }
  | {
      readonly isAllowed: false
      readonly key: string
      readonly max: number
      readonly timeWindow: number
      readonly remaining: number
      readonly ttl: number
      readonly ttlInSeconds: number
      readonly isExceeded: boolean
      readonly isBanned: boolean
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

/** The resolved options: every one set (`ban` is -1 when off), `timeWindow` in ms or a function. */
type Params = Readonly<
  Required<Omit<RateLimitOptions, 'timeWindow' | 'keyGenerator' | 'allowList' | 'groupId'>> &
    Pick<RateLimitOptions, 'keyGenerator' | 'allowList'> & {
      timeWindow: number | PerRequest<number>
      labels: readonly [RateLimitHeaderName, RateLimitHeaderName, RateLimitHeaderName]
      global: boolean
    }
>

const HOOKS: readonly RateLimitHook[] = ['onRequest', 'preParsing', 'preValidation', 'preHandler']
const PLUGIN_ONLY = ['global', 'enableDraftSpec', 'store', 'redis', 'nameSpace']
const ROUTE_KEYS = [
  ...['max', 'timeWindow', 'keyGenerator', 'ipv6Subnet', 'allowList', 'ban', 'hook', 'cache'],
  ...['continueExceeding', 'exponentialBackoff', 'skipOnError', 'groupId', 'problemDetails'],
  ...['errorResponseBuilder', 'addHeaders', 'addHeadersOnExceeding'],
  ...['onExceeding', 'onExceeded', 'onBanReach'],
]
const LABELS = ['x-ratelimit-limit', 'x-ratelimit-remaining', 'x-ratelimit-reset'] as const
const DRAFT_LABELS = ['ratelimit-limit', 'ratelimit-remaining', 'ratelimit-reset'] as const
const none = (): void => {}

/** `@fastify/rate-limit`'s default answer: thrown, so the app's error handler renders it. */
function defaultErrorResponse(_r: FastifyRequest, context: ErrorResponseBuilderContext): Error {
  const error = new Error(`Rate limit exceeded, retry in ${context.after}`)
  return Object.assign(error, { statusCode: context.statusCode })
}

/**
 * `@fastify/rate-limit`'s `normalizeIP`, for custom key generators: IPv4 as is, IPv4-mapped IPv6
 * as IPv4, other IPv6 as the first address of its `/ipv6Subnet` network (`2001:db8:1:2::`).
 */
export function normalizeIP(ip: string, ipv6Subnet = 64): string {
  // A dotted tail in hex first: core keys `::1.2.3.4` (IPv4-compatible) as IPv4, @fastify/rate-limit
  // maps only `::ffff:0:0/96` to IPv4.
  const hex = ip.includes(':')
    ? ip.replace(/(\d+)\.(\d+)\.(\d+)\.(\d+)$/, (_, a, b, c, d) =>
        [Number(a) * 256 + Number(b), Number(c) * 256 + Number(d)]
          .map((x) => x.toString(16))
          .join(':'),
      )
    : ip
  return ipKeyGenerator(hex, ipv6Subnet)
    .replace(/\/\d+$/, '')
    .toLowerCase()
}

/** Checks `given` over `base` (the plugin's options, for a route); a wrong value throws. */
function resolve(
  given: object,
  base: Params | undefined,
  path: string,
  warn: RateLimitWarn,
): Params {
  const o = given as Readonly<Record<string, unknown>>
  const v = new TypeValidator(path)
  v.knownKeys(o, [...ROUTE_KEYS, ...PLUGIN_ONLY])
  for (const name of base === undefined ? ['redis', 'nameSpace'] : PLUGIN_ONLY) {
    if (o[name] === undefined) continue
    if (base !== undefined) v.fail(name, 'is plugin-wide: set it when registering fastifyRateLimit')
    else v.fail(name, 'is not supported (no Redis driver here): pass `store`, a store class')
  }
  const pick = <TValue>(name: string, check: (x: unknown) => TValue | undefined, or: TValue) =>
    o[name] === undefined ? or : (check(o[name]) ?? or)
  const count = (name: string, min: number) => (x: unknown) => {
    const n = v.number(name, x, { min })
    return n === undefined ? undefined : Math.trunc(n)
  }
  const fn = <TFn extends (...args: never[]) => unknown>(name: string, or: TFn): TFn =>
    pick(name, (x) => v.function<TFn>(name, x), or)
  const flag = (name: string, or: boolean): boolean => pick(name, (x) => v.boolean(name, x), or)
  const perRequest = (name: string, check: (x: unknown) => number | undefined) => (x: unknown) =>
    typeof x === 'function' ? (x as PerRequest<number>) : check(x)
  const draft = flag('enableDraftSpec', false)
  const labels = base?.labels ?? (draft ? DRAFT_LABELS : LABELS)
  const headers = (
    name: string,
    names: readonly string[],
    or?: Readonly<Record<string, boolean>>,
  ) => {
    const all = Object.fromEntries(names.map((h) => [h, true]))
    return pick(
      name,
      (x) => {
        const map = v.object(name, x) ?? {}
        for (const [h, on] of Object.entries(map))
          if (names.includes(h)) v.boolean(`${name}.${h}`, on)
          else v.oneOf(`${name}.${h}`, h, names, 'header')
        // A route's map replaces the plugin's (names it leaves out are off), as in @fastify/rate-limit.
        return { ...(base === undefined ? all : {}), ...(map as Record<string, boolean>) }
      },
      or ?? all,
    )
  }
  const p: Params = {
    max: pick('max', perRequest('max', count('max', 0)), base?.max ?? 1000),
    timeWindow: pick(
      'timeWindow',
      perRequest('timeWindow', (x) => {
        const ms = parseDurationMs(x)
        if (ms !== undefined && ms >= 1) return Math.trunc(ms)
        return v.fail(
          'timeWindow',
          `must be ms >= 1, a duration such as '1 minute', or a function, received ${describeValue(x)}`,
        )
      }),
      base?.timeWindow ?? 60_000,
    ),
    keyGenerator: pick(
      'keyGenerator',
      (x) => v.function<NonNullable<Params['keyGenerator']>>('keyGenerator', x),
      base?.keyGenerator,
    ),
    ipv6Subnet: pick(
      'ipv6Subnet',
      (x) => v.integer('ipv6Subnet', x, { min: 1, max: 128 }),
      base?.ipv6Subnet ?? 64,
    ),
    allowList: pick(
      'allowList',
      (x) =>
        Array.isArray(x) || typeof x === 'function'
          ? (x as Params['allowList'])
          : v.fail(
              'allowList',
              `must be an array of keys or a function, received ${describeValue(x)}`,
            ),
      base?.allowList,
    ),
    ban: pick('ban', count('ban', 0), base?.ban ?? -1),
    hook: pick('hook', (x) => v.oneOf('hook', x, HOOKS, 'hook'), base?.hook ?? 'onRequest'),
    cache: pick('cache', (x) => v.integer('cache', x, { min: 1 }), base?.cache ?? 5000),
    continueExceeding: flag('continueExceeding', base?.continueExceeding ?? false),
    exponentialBackoff: flag('exponentialBackoff', base?.exponentialBackoff ?? false),
    skipOnError: flag('skipOnError', base?.skipOnError ?? false),
    errorResponseBuilder: fn(
      'errorResponseBuilder',
      base?.errorResponseBuilder ?? defaultErrorResponse,
    ),
    problemDetails: flag('problemDetails', base?.problemDetails ?? false),
    labels,
    addHeaders: headers('addHeaders', [...labels, 'retry-after'], base?.addHeaders),
    addHeadersOnExceeding: headers('addHeadersOnExceeding', labels, base?.addHeadersOnExceeding),
    onExceeding: fn('onExceeding', base?.onExceeding ?? none),
    onExceeded: fn('onExceeded', base?.onExceeded ?? none),
    onBanReach: fn('onBanReach', base?.onBanReach ?? none),
    global: flag('global', true),
  }
  pick('groupId', (x) => v.string('groupId', x), '')
  if (o.store !== undefined) v.function('store', o.store)
  if (o.problemDetails === true && o.errorResponseBuilder !== undefined)
    v.fail('problemDetails', 'and errorResponseBuilder both shape the answer: choose one')
  v.assert(warn)
  return p
}
type RateLimitWarn = (message: string) => void

/**
 * `@fastify/rate-limit`'s memory store over core's bounded limiter: a fixed window from a key's
 * first hit; `continueExceeding` and `exponentialBackoff` restart it on hits over the limit.
 */
class MemoryStore implements FastifyRateLimitStore {
  readonly #limiter: BoundedMemoryLimiter
  readonly #windowMs: number

  constructor(readonly options: Params) {
    this.#windowMs = typeof options.timeWindow === 'number' ? options.timeWindow : 60_000
    this.#limiter = new BoundedMemoryLimiter({
      points: Number.MAX_SAFE_INTEGER,
      durationMs: this.#windowMs,
      maxKeys: options.cache,
      now: Date.now,
    })
  }

  incr(key: string, callback: RateLimitStoreCallback, timeWindow: number, max: number): void {
    // The limiter's own window when it is the one asked for: ms / 1000 * 1000 is not always ms.
    const own = timeWindow === this.#windowMs
    const r = this.#limiter.consumeNow(key, 1, own ? undefined : timeWindow / 1000)
    let ttl = r.msBeforeNext
    const { continueExceeding, exponentialBackoff } = this.options
    if (r.consumedPoints > max && (continueExceeding || exponentialBackoff)) {
      // continueExceeding wins, as in @fastify/rate-limit.
      const backoff = timeWindow * 2 ** (r.consumedPoints - max - 1)
      ttl = continueExceeding ? timeWindow : Math.min(backoff, Number.MAX_SAFE_INTEGER)
      void this.#limiter.set(key, r.consumedPoints, ttl === this.#windowMs ? 0 : ttl / 1000)
    }
    callback(null, { current: r.consumedPoints, ttl })
  }

  read(key: string, callback: RateLimitStoreCallback): void {
    void this.#limiter.get(key).then((r) => {
      callback(null, { current: r?.consumedPoints ?? 0, ttl: r?.msBeforeNext ?? 0 })
    })
  }

  child(options: Readonly<Record<string, unknown>>): FastifyRateLimitStore {
    return new MemoryStore(options as unknown as Params)
  }
}

async function check(
  p: Params,
  store: FastifyRateLimitStore,
  request: FastifyRequest,
  increment = true,
): Promise<RateLimitResult> {
  let key = p.keyGenerator ? await p.keyGenerator(request) : normalizeIP(request.ip, p.ipv6Subnet)
  const groupId = (request.routeOptions.config.rateLimit || undefined)?.groupId
  if (groupId) key += groupId
  const k = key as string
  const allowList = p.allowList
  if (typeof allowList === 'function' ? await allowList(request, k) : allowList?.includes(k))
    return { isAllowed: true, key: k }
  const max = typeof p.max === 'number' ? p.max : await p.max(request, k)
  const timeWindow =
    typeof p.timeWindow === 'number' ? p.timeWindow : await p.timeWindow(request, k)
  const method = increment ? store.incr : store.read
  if (method === undefined)
    throw new Error('The configured rate-limit store does not implement a `read` method')
  let counted = { current: 0, ttl: 0 }
  try {
    counted = await new Promise((resolve, reject) => {
      method.call(store, k, (e, r) => (e ? reject(e) : resolve(r!)), timeWindow, max)
    })
  } catch (cause) {
    if (!p.skipOnError)
      throw new AuthError('ERR_RATELIMIT_UNAVAILABLE', 'Rate limiting is unavailable', { cause })
  }
  const { current, ttl } = counted
  return {
    isAllowed: false,
    key: k,
    max,
    timeWindow,
    remaining: Math.max(0, max - current),
    ttl,
    ttlInSeconds: Math.ceil(ttl / 1000),
    isExceeded: current > max,
    isBanned: p.ban !== -1 && current - max > p.ban,
  }
}

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
    const [limit, remaining, reset] = p.labels
    const show = r.isExceeded ? p.addHeaders : p.addHeadersOnExceeding
    if (r.isExceeded) p.onExceeded(request, r.key)
    if (show[limit]) reply.header(limit, r.max)
    if (show[remaining]) reply.header(remaining, r.remaining)
    if (show[reset]) reply.header(reset, r.ttlInSeconds)
    if (!r.isExceeded) {
      p.onExceeding(request, r.key)
      return
    }
    if (show['retry-after']) reply.header('retry-after', r.ttlInSeconds)
    if (r.isBanned) p.onBanReach(request, r.key)
    if (p.problemDetails) return sendProblem(request, reply, r)
    const after = formatDuration(r.ttlInSeconds * 1000)
    const context = {
      statusCode: r.isBanned ? 403 : 429,
      ban: r.isBanned,
      max: r.max,
      ttl: r.ttl,
      after,
    }
    throw p.errorResponseBuilder(request, context)
  }
}

function sendProblem(
  request: FastifyRequest,
  reply: FastifyReply,
  r: Extract<RateLimitResult, { isAllowed: false }>,
): void {
  const error = r.isBanned
    ? new AuthError('ERR_POLICY_DENIED', 'Banned for sending too many requests over the limit')
    : new RateLimitedError('ERR_RATE_LIMITED', {
        policy: `${r.max}-in-${toHeaderSeconds(r.timeWindow)}s`,
        limit: r.max,
        remaining: 0,
        retryAfterMs: r.ttl,
      })
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
  const global = resolve(options, undefined, 'fastifyRateLimit', warn)
  const root = options.store ? new options.store({ ...global }) : new MemoryStore(global)
  if (typeof root.incr !== 'function' || typeof root.child !== 'function')
    throw new ConfigError('fastifyRateLimit.store: its instances must have incr() and child()')
  const ran = new WeakSet<FastifyRequest>()
  const own = (given: object | null | undefined, path: string, routeInfo: object) => {
    if (given == null) return [global, root] as const
    const p = resolve(given, global, path, warn)
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
