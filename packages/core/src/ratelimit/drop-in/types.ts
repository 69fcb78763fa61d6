/**
 * The express-rate-limit 8 drop-in's types: its options, `Store` contract, `req.rateLimit` info and
 * what one counted request answers (express-rate-limit's `types.ts`).
 * @packageDocumentation
 */
import type { Clock } from '../../internal/clock.js'

/** The IETF RateLimit header drafts express-rate-limit can send. */
export type DropInHeaderDraft = 'draft-6' | 'draft-7' | 'draft-8'

/** What the engine needs of a request: the client address, as Express, Koa and Fastify expose it. */
export interface DropInRequest {
  readonly ip?: string | undefined
}

/** The `next` an adapter hands to a custom `handler`. */
export type DropInNext = (error?: unknown) => void

/** express-rate-limit's "value-determining middleware": a value computed from the request. */
export type DropInValue<TRequest, TResponse, TValue> = (
  request: TRequest,
  response: TResponse,
) => TValue | Promise<TValue>

/** A client's count in a store (express-rate-limit's `ClientRateLimitInfo`). */
export interface DropInClientInfo {
  readonly totalHits: number
  readonly resetTime: Date | undefined
}

/** What `store.init()` receives: the options in use (at least `windowMs`). */
export interface DropInStoreInitOptions {
  readonly windowMs: number
  readonly [option: string]: unknown
}

/**
 * express-rate-limit's `Store` contract, so its stores (rate-limit-redis, ...) plug in unchanged.
 * `init` is called once at creation and not awaited; only `increment` failures are store errors.
 */
export interface DropInStore {
  init?(options: DropInStoreInitOptions): void | Promise<void>
  get?(key: string): Promise<DropInClientInfo | undefined> | DropInClientInfo | undefined
  increment(key: string): Promise<DropInClientInfo> | DropInClientInfo
  decrement(key: string): Promise<void> | void
  resetKey(key: string): Promise<void> | void
  resetAll?(): Promise<void> | void
  shutdown?(): Promise<void> | void
  /** Keys of this store cannot be affected by other instances (true for memory stores). */
  readonly localKeys?: boolean
  /** Prefix the store puts before keys. */
  readonly prefix?: string
}

/** express-rate-limit's callback-style store of v6 and older, still accepted. */
export interface DropInLegacyStore {
  incr(
    key: string,
    callback: (error: Error | undefined, totalHits: number, resetTime: Date | undefined) => void,
  ): void
  decrement(key: string): void
  resetKey(key: string): void
  resetAll?(): void
}

/**
 * express-rate-limit's logger, in pino's order: an error (store failures) or a fields object
 * (unknown-option warnings, `{}`) first, then the message. pino fits as it is; `console` prints
 * the two the other way round.
 */
export interface DropInLogger {
  warn(error: unknown, message?: string): void
  error(error: unknown, message?: string): void
}

/** Answers a limited request (express-rate-limit's `handler`). */
export type DropInHandler<TRequest, TResponse, TNext> = (
  request: TRequest,
  response: TResponse,
  next: TNext,
  optionsUsed: DropInOptionsUsed<TRequest, TResponse, TNext>,
) => unknown

/** What `req.rateLimit` (or `req[requestPropertyName]`) holds. */
export interface DropInRateLimitInfo {
  readonly limit: number
  readonly used: number
  readonly remaining: number
  readonly resetTime: Date | undefined
  readonly key: string
}

/**
 * express-rate-limit 8's options, with its defaults, plus `now` and `maxKeys` for the default
 * store. Functions receive the framework's request and response.
 */
export interface DropInLimiterOptions<TRequest, TResponse, TNext> {
  /** Window length in ms. @default 60000 */
  readonly windowMs?: number
  /** Requests per window, or a function of the request. @default 5 */
  readonly limit?: number | DropInValue<TRequest, TResponse, number>
  /** Alias of `limit` (`limit` wins when both are set). */
  readonly max?: number | DropInValue<TRequest, TResponse, number>
  /** Body of the default answer, or a function of the request. @default 'Too many requests, please try again later.' */
  readonly message?: DropInValue<TRequest, TResponse, unknown> | string | number | boolean | object
  /** Status of the default answer. @default 429 */
  readonly statusCode?: number
  /** Send `X-RateLimit-Limit/Remaining/Reset`. @default true */
  readonly legacyHeaders?: boolean
  /** Old name of `legacyHeaders` (`legacyHeaders` wins when both are set). */
  readonly headers?: boolean
  /** IETF RateLimit headers: a draft, `true` for `draft-6`, or `false`. @default false */
  readonly standardHeaders?: boolean | DropInHeaderDraft
  /** Policy name in draft-8 headers. @default `${limit}-in-${window}`, e.g. `5-in-1min` */
  readonly identifier?: string | DropInValue<TRequest, TResponse, string>
  /** `Retry-After` seconds. @default the seconds until the window resets */
  readonly retryAfter?: number | DropInValue<TRequest, TResponse, number>
  /** Request property that receives the info. @default 'rateLimit' */
  readonly requestPropertyName?: string
  /** Give the hit back when the request fails. @default false */
  readonly skipFailedRequests?: boolean
  /** Give the hit back when the request succeeds. @default false */
  readonly skipSuccessfulRequests?: boolean
  /** Client key. @default ipKeyGenerator(request.ip, ipv6Subnet) */
  readonly keyGenerator?: DropInValue<TRequest, TResponse, string>
  /** IPv6 prefix length of the default key, `false` for whole addresses, or a function. @default 56 */
  readonly ipv6Subnet?: number | false | DropInValue<TRequest, TResponse, number | false>
  /** Answers limited requests. @default status `statusCode`, body `message` */
  readonly handler?: DropInHandler<TRequest, TResponse, TNext>
  /** Requests not counted at all. @default none */
  readonly skip?: DropInValue<TRequest, TResponse, boolean>
  /** What "successful" means for the skip options. @default status < 400 */
  readonly requestWasSuccessful?: DropInValue<TRequest, TResponse, boolean>
  /** Where counts live. @default a BoundedMemoryStore */
  readonly store?: DropInStore | DropInLegacyStore
  /** express-rate-limit's runtime checks; accepted and ignored here. */
  readonly validate?: boolean | Readonly<Record<string, boolean>>
  /** Let requests through when the store fails (logged), instead of failing them. @default false */
  readonly passOnStoreError?: boolean
  /** Receives store errors and unknown-option warnings. @default silent */
  readonly logger?: DropInLogger
  /** Clock of the default store and of reset times. @default Date.now */
  readonly now?: Clock
  /** Keys the default store keeps; least recently used beyond. @default 100000 */
  readonly maxKeys?: number
}

/** The resolved options: what a custom `handler` receives as `optionsUsed`, and `store.init()`. */
export interface DropInOptionsUsed<TRequest, TResponse, TNext> {
  readonly windowMs: number
  readonly limit: number | DropInValue<TRequest, TResponse, number>
  readonly message: unknown
  readonly statusCode: number
  readonly legacyHeaders: boolean
  readonly standardHeaders: DropInHeaderDraft | false
  readonly identifier: string | DropInValue<TRequest, TResponse, string>
  readonly retryAfter: number | DropInValue<TRequest, TResponse, number> | undefined
  readonly requestPropertyName: string
  readonly skipFailedRequests: boolean
  readonly skipSuccessfulRequests: boolean
  readonly keyGenerator: DropInValue<TRequest, TResponse, string>
  readonly ipv6Subnet: number | false | DropInValue<TRequest, TResponse, number | false>
  /** The custom handler, or `undefined` for the default answer. */
  readonly handler: DropInHandler<TRequest, TResponse, TNext> | undefined
  readonly skip: DropInValue<TRequest, TResponse, boolean>
  readonly requestWasSuccessful: DropInValue<TRequest, TResponse, boolean>
  readonly store: DropInStore
  readonly validate: boolean | Readonly<Record<string, boolean>>
  readonly passOnStoreError: boolean
  readonly logger: DropInLogger
  readonly [option: string]: unknown
}

/** One header to write: `append` ones (draft-8) add to a value set by an earlier limiter. */
export interface DropInHeader {
  readonly name: string
  readonly value: string
  readonly append: boolean
}

/** A request that was counted. */
export interface DropInCounted {
  readonly counted: true
  /** Also assigned to `request[requestPropertyName]` by `hit`. */
  readonly info: DropInRateLimitInfo
  /** In express-rate-limit's order and case: legacy, standard, then `Retry-After`. */
  readonly headers: readonly DropInHeader[]
  /** Over the limit: answer with `handler`, or `statusCode` and `message()`. */
  readonly limited: boolean
  readonly statusCode: number
  /** The body of the default answer (calls `message` when it is a function). */
  message(): Promise<unknown>
  /**
   * Present with `skipSuccessfulRequests`/`skipFailedRequests`: call once the response is done,
   * with `false` when it was aborted or failed, or with nothing to ask `requestWasSuccessful`.
   * Gives the hit back at most once, never after the window reset, and never rejects.
   */
  readonly settle: ((success?: boolean) => Promise<void>) | undefined
}

/** The outcome of {@link DropInLimiter.hit}: skipped (or store failed open), or counted. */
export type DropInResult = { readonly counted: false } | DropInCounted

/** The engine behind a drop-in `rateLimit()`. */
export interface DropInLimiter<TRequest, TResponse, TNext> {
  /** The resolved options. */
  readonly options: DropInOptionsUsed<TRequest, TResponse, TNext>
  /**
   * Counts a request. Rejects with `ERR_RATELIMIT_UNAVAILABLE` (503) when the store fails and
   * `passOnStoreError` is off, and with whatever a user function throws.
   */
  hit(request: TRequest, response: TResponse): Promise<DropInResult>
  /** Forgets a client's count. */
  resetKey(key: string): Promise<void>
  /** A client's count; throws at once when the store has no `get`. */
  getKey(key: string): Promise<DropInClientInfo | undefined>
}
