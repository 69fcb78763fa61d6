/**
 * The `@fastify/rate-limit` 11 drop-in's types, over any request type: its options, store
 * contract and answers. `@portcullis/fastify` names them with `FastifyRequest`.
 * @packageDocumentation
 */

type Awaitable<TValue> = TValue | Promise<TValue>
/** A value computed from the request and its key, as `@fastify/rate-limit` calls it. */
export type RouteLimitPerRequest<TRequest, TValue> = (
  request: TRequest,
  key: string,
) => Awaitable<TValue>
/** Called with the request and its key. */
export type RouteLimitCallback<TRequest> = (request: TRequest, key: string) => void
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
export interface RouteLimitStore {
  incr(key: string, callback: RateLimitStoreCallback, timeWindow: number, max: number): void
  /** Reads without counting (`createRateLimit()(request, { increment: false })`). */
  read?(key: string, callback: RateLimitStoreCallback, timeWindow: number, max: number): void
  /** The store of a route or limiter with its own options (and `routeInfo`). */
  child(options: Readonly<Record<string, unknown>>): RouteLimitStore
}

/** A store class, constructed with the resolved plugin options. */
export type RouteLimitStoreCtor = new (
  options: Readonly<Record<string, unknown>>,
) => RouteLimitStore

/** Options of a route (`config.rateLimit`), of `fastify.rateLimit()` and of the plugin. */
export interface RouteLimitOptions<TRequest> {
  /** Requests per window and key, or a function of `(request, key)`. @default 1000 */
  readonly max?: number | RouteLimitPerRequest<TRequest, number>
  /** The window: ms, a string such as `'1 minute'`, or a function of `(request, key)`. @default 60000 */
  readonly timeWindow?: number | string | RouteLimitPerRequest<TRequest, number>
  /** The client's key. @default normalizeIP(request.ip, ipv6Subnet) */
  readonly keyGenerator?: (request: TRequest) => Awaitable<string | number>
  /** IPv6 prefix length of the default key (1 to 128). @default 64 */
  readonly ipv6Subnet?: number
  /** Keys never limited (no headers either), or a predicate of `(request, key)`. @default none */
  readonly allowList?: readonly string[] | RouteLimitPerRequest<TRequest, boolean>
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
    request: TRequest,
    context: ErrorResponseBuilderContext,
  ) => object
  /** Answer limited requests with an RFC 9457 problem (`ERR_RATE_LIMITED`; `ERR_POLICY_DENIED` once banned) instead. @default false */
  readonly problemDetails?: boolean
  /** Headers of limited answers. @default all */
  readonly addHeaders?: Readonly<Partial<Record<RateLimitHeaderName, boolean>>>
  /** Headers of answers under the limit. @default all but `retry-after` */
  readonly addHeadersOnExceeding?: Readonly<Partial<Record<RateLimitHeaderName, boolean>>>
  /** Called for every counted request under the limit. */
  readonly onExceeding?: RouteLimitCallback<TRequest>
  /** Called for every request over the limit. */
  readonly onExceeded?: RouteLimitCallback<TRequest>
  /** Called for every banned request. */
  readonly onBanReach?: RouteLimitCallback<TRequest>
}

/** What a limiter's check answers (`fastify.createRateLimit()`'s function). */
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

/** The resolved options: every one set (`ban` is -1 when off), `timeWindow` in ms or a function. */
export type RouteLimitParams<TRequest> = Readonly<
  Required<
    Omit<RouteLimitOptions<TRequest>, 'timeWindow' | 'keyGenerator' | 'allowList' | 'groupId'>
  > &
    Pick<RouteLimitOptions<TRequest>, 'keyGenerator' | 'allowList'> & {
      timeWindow: number | RouteLimitPerRequest<TRequest, number>
      labels: readonly [RateLimitHeaderName, RateLimitHeaderName, RateLimitHeaderName]
      global: boolean
    }
>
