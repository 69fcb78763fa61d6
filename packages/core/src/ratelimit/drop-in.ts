/**
 * express-rate-limit 8 as a framework-neutral engine: its options (resolved and validated once),
 * its `Store` contract, its `req.rateLimit` info and the exact bytes of its headers, counted by
 * default in Portcullis's bounded memory limiter. `@portcullis/express` wraps it as a drop-in
 * `rateLimit()`; a Koa or Fastify adapter wraps the same engine.
 *
 * Reachable from `@portcullis/core`.
 * @packageDocumentation
 */
import { Buffer } from 'node:buffer'
import { createHash } from 'node:crypto'
import { isIPv6 } from 'node:net'
import { DEFAULT_IPV6_SUBNET, DEFAULT_RATE_LIMIT_MAX_KEYS } from '../defaults.js'
import { AuthError } from '../errors.js'
import { systemClock, type Clock } from '../internal/clock.js'
import { formatIp, maskIp, parseIp } from '../internal/ip.js'
import { toHeaderSeconds } from '../validation/type-converter.js'
import { describeValue, TypeValidator } from '../validation/type-validator.js'
import { rateLimitHeaders, type LimitReport } from './headers.js'
import { BoundedMemoryLimiter } from './memory-limiter.js'

/** The IETF RateLimit header drafts express-rate-limit can send. */
export type DropInHeaderDraft = 'draft-6' | 'draft-7' | 'draft-8'

/** express-rate-limit 8's defaults, one constant each. */
export const DROP_IN_DEFAULTS: {
  readonly windowMs: number
  readonly limit: number
  readonly message: string
  readonly statusCode: number
  readonly legacyHeaders: boolean
  readonly standardHeaders: DropInHeaderDraft | false
  readonly requestPropertyName: string
  readonly skipFailedRequests: boolean
  readonly skipSuccessfulRequests: boolean
  readonly ipv6Subnet: number
  readonly passOnStoreError: boolean
} = Object.freeze({
  windowMs: 60_000,
  limit: 5,
  message: 'Too many requests, please try again later.',
  statusCode: 429,
  legacyHeaders: true,
  standardHeaders: false,
  requestPropertyName: 'rateLimit',
  skipFailedRequests: false,
  skipSuccessfulRequests: false,
  ipv6Subnet: DEFAULT_IPV6_SUBNET,
  passOnStoreError: false,
})

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

/**
 * express-rate-limit's `ipKeyGenerator`, byte for byte: IPv4 as is, IPv4-mapped (and
 * IPv4-compatible dotted) IPv6 as IPv4, other IPv6 as its `/ipv6Subnet` network in RFC 5952
 * form (`2001:db8::/56`); a falsy subnet keeps the address as given.
 * @throws {RangeError} for a subnet that is not an integer from 0 to 128
 */
export function ipKeyGenerator(
  ip: string,
  ipv6Subnet: number | false = DEFAULT_IPV6_SUBNET,
): string {
  const parsed = isIPv6(ip) ? parseIp(ip) : undefined
  if (parsed === undefined) return ip
  if (parsed.family === 4) return formatIp(parsed)
  // The deprecated IPv4-compatible notation (::1.2.3.4) is told apart from :: and ::1 by its text.
  const h = parsed.parts
  if (parsed.dotted && h.slice(0, 6).every((x) => x === 0))
    return `${(h[6] as number) >> 8}.${(h[6] as number) & 0xff}.${(h[7] as number) >> 8}.${(h[7] as number) & 0xff}`
  if (ipv6Subnet === false || ipv6Subnet === 0) return ip
  if (!Number.isInteger(ipv6Subnet) || ipv6Subnet < 0 || ipv6Subnet > 128)
    throw new RangeError('Invalid subnet mask.')
  return `${formatIp(maskIp(parsed, ipv6Subnet))}/${ipv6Subnet}`
}

/** Options of {@link BoundedMemoryStore}. */
export interface BoundedMemoryStoreOptions {
  /** Keys kept; the least recently used window is dropped beyond. @default 100000 */
  readonly maxKeys?: number
  /** Clock. @default Date.now */
  readonly now?: Clock
}

/**
 * An express-rate-limit `Store` over {@link BoundedMemoryLimiter}: fixed windows per key like its
 * `MemoryStore`, but at most `maxKeys` keys (LRU) and no timers, so a flood of distinct client
 * addresses cannot grow the heap. The default store of {@link createDropInLimiter}.
 */
export class BoundedMemoryStore implements DropInStore {
  readonly localKeys: boolean = true
  readonly maxKeys: number
  readonly #now: Clock
  #at = 0
  #windowMs: number = DROP_IN_DEFAULTS.windowMs
  #limiter: BoundedMemoryLimiter

  constructor(options: Readonly<BoundedMemoryStoreOptions> = {}) {
    this.maxKeys = options.maxKeys ?? DEFAULT_RATE_LIMIT_MAX_KEYS
    this.#now = options.now ?? systemClock
    this.#limiter = this.#create()
  }

  #create(): BoundedMemoryLimiter {
    // The limit is the engine's (it may be a function of the request), so the limiter never refuses.
    // Its clock is the time read once per store call, so a reset time is exactly start + window.
    return new BoundedMemoryLimiter({
      points: Number.MAX_SAFE_INTEGER,
      durationMs: this.#windowMs,
      maxKeys: this.maxKeys,
      now: () => this.#at,
    })
  }

  #tick(): number {
    this.#at = this.#now()
    return this.#at
  }

  /** Takes `windowMs` from the limiter's options and starts empty. */
  init(options: DropInStoreInitOptions): void {
    this.#windowMs = options.windowMs
    this.#limiter = this.#create()
  }

  /** Keys currently remembered. */
  get size(): number {
    return this.#limiter.size
  }

  /** The live window of `key`, or `undefined`. */
  async get(key: string): Promise<DropInClientInfo | undefined> {
    const now = this.#tick()
    const r = await this.#limiter.get(key)
    return r === null
      ? undefined
      : { totalHits: r.consumedPoints, resetTime: new Date(now + r.msBeforeNext) }
  }

  /** Counts a hit, opening a window when none is live. */
  async increment(key: string): Promise<DropInClientInfo> {
    const now = this.#tick()
    const r = await this.#limiter.consume(key)
    return { totalHits: r.consumedPoints, resetTime: new Date(now + r.msBeforeNext) }
  }

  /** Gives a hit back to a live window; without one there is nothing to give back. */
  async decrement(key: string): Promise<void> {
    this.#tick()
    if ((await this.#limiter.get(key)) !== null) await this.#limiter.reward(key)
  }

  /** Forgets `key`. */
  async resetKey(key: string): Promise<void> {
    await this.#limiter.delete(key)
  }

  /** Forgets every key. */
  async resetAll(): Promise<void> {
    this.#limiter = this.#create()
  }

  /** Forgets every key (there are no timers to stop). */
  shutdown(): void {
    this.#limiter = this.#create()
  }
}

const KNOWN_OPTIONS = [
  'windowMs',
  'limit',
  'message',
  'statusCode',
  'legacyHeaders',
  'standardHeaders',
  'identifier',
  'retryAfter',
  'requestPropertyName',
  'skipFailedRequests',
  'skipSuccessfulRequests',
  'keyGenerator',
  'ipv6Subnet',
  'handler',
  'skip',
  'requestWasSuccessful',
  'store',
  'validate',
  'headers',
  'max',
  'passOnStoreError',
  'logger',
  // express-slow-down passes its own options through; express-rate-limit accepts them silently.
  'delayAfter',
  'delayMs',
  'maxDelayMs',
  'now',
  'maxKeys',
]
const DRAFTS: readonly DropInHeaderDraft[] = ['draft-6', 'draft-7', 'draft-8']
const SILENT: DropInLogger = Object.freeze({ warn(): void {}, error(): void {} })
/** express-rate-limit's header names, in its case. */
const HEADER_CASE: Readonly<Record<string, string>> = Object.freeze({
  'ratelimit-policy': 'RateLimit-Policy',
  ratelimit: 'RateLimit',
  'ratelimit-limit': 'RateLimit-Limit',
  'ratelimit-remaining': 'RateLimit-Remaining',
  'ratelimit-reset': 'RateLimit-Reset',
  'x-ratelimit-limit': 'X-RateLimit-Limit',
  'x-ratelimit-remaining': 'X-RateLimit-Remaining',
  'x-ratelimit-reset': 'X-RateLimit-Reset',
})
const NOT_COUNTED: DropInResult = Object.freeze({ counted: false })

const isFunction = (value: unknown): value is (...args: never[]) => unknown =>
  typeof value === 'function'

function isLegacyStore(store: object): store is DropInLegacyStore {
  const s = store as Partial<DropInLegacyStore & DropInStore>
  return typeof s.incr === 'function' && typeof s.increment !== 'function'
}

function promisifyLegacyStore(legacy: DropInLegacyStore): DropInStore {
  return {
    increment: (key) =>
      new Promise((resolve, reject) =>
        legacy.incr(key, (error, totalHits, resetTime) =>
          error ? reject(error) : resolve({ totalHits, resetTime }),
        ),
      ),
    decrement: (key) => legacy.decrement(key),
    resetKey: (key) => legacy.resetKey(key),
    resetAll: () => legacy.resetAll?.(),
  }
}

/** express-rate-limit's default policy name: `5-in-1min`, `100-in-1.5hrs`, `10-in-30sec`. */
function windowName(windowMs: number): string {
  const seconds = windowMs / 1000
  const minutes = seconds / 60
  const hours = minutes / 60
  const days = hours / 24
  if (seconds < 60) return `${seconds}sec`
  if (minutes < 60) return `${minutes}min`
  if (hours < 24) return `${hours}hr${hours > 1 ? 's' : ''}`
  return `${days}day${days > 1 ? 's' : ''}`
}

/** The draft-8 partition key: base64 of the first 12 hex digits of SHA-256(key). */
function partitionKey(key: string): string {
  const hex = createHash('sha256').update(key).digest('hex').slice(0, 12)
  return Buffer.from(hex).toString('base64')
}

/** Checks every option once; a wrong type or value throws, unknown names are warned. */
function resolveDropInOptions<TRequest extends DropInRequest, TResponse, TNext>(
  options: Readonly<DropInLimiterOptions<TRequest, TResponse, TNext>>,
): DropInOptionsUsed<TRequest, TResponse, TNext> & { readonly now: Clock } {
  type TValueFn<TValue> = DropInValue<TRequest, TResponse, TValue>
  const given: Record<string, unknown> = {}
  for (const [k, value] of Object.entries(options)) if (value !== undefined) given[k] = value
  const v = new TypeValidator('rateLimit')
  v.knownKeys(given, KNOWN_OPTIONS)

  const optional = <TValue>(
    name: string,
    check: (value: unknown) => TValue | undefined,
  ): TValue | undefined => (given[name] === undefined ? undefined : check(given[name]))
  const bool = (name: string, fallback: boolean): boolean =>
    optional(name, (x) => v.boolean(name, x)) ?? fallback
  const fn = <TFn>(name: string): TFn | undefined =>
    optional(name, (x) => v.function(name, x) as TFn | undefined)
  const numberOrFn = <TValue>(name: string, min: number): number | TValue | undefined =>
    optional(name, (x) =>
      isFunction(x)
        ? (x as TValue)
        : typeof x === 'number'
          ? v.number(name, x, { min })
          : v.fail(name, `must be a number >= ${min} or a function, received ${describeValue(x)}`),
    )

  let logger = SILENT
  if (given.logger !== undefined) {
    const l = given.logger as Partial<DropInLogger> | null
    if (typeof l !== 'object' || l === null || !isFunction(l.warn) || !isFunction(l.error))
      v.fail('logger', `must have warn and error functions, received ${describeValue(l)}`)
    else logger = l as DropInLogger
  }
  const windowMs =
    optional('windowMs', (x) => v.number('windowMs', x, { min: 1 })) ?? DROP_IN_DEFAULTS.windowMs
  const limit =
    numberOrFn<TValueFn<number>>('limit', 0) ??
    numberOrFn<TValueFn<number>>('max', 0) ??
    DROP_IN_DEFAULTS.limit
  const statusCode =
    optional('statusCode', (x) => v.integer('statusCode', x, { min: 100, max: 999 })) ??
    DROP_IN_DEFAULTS.statusCode
  const legacyHeaders = bool('legacyHeaders', bool('headers', DROP_IN_DEFAULTS.legacyHeaders))
  const standard = optional('standardHeaders', (x) =>
    typeof x === 'boolean' ? x : v.oneOf('standardHeaders', x, DRAFTS, 'header draft'),
  )
  const identifier = optional('identifier', (x) =>
    typeof x === 'string' || isFunction(x)
      ? (x as string | TValueFn<string>)
      : v.fail('identifier', `must be a string or a function, received ${describeValue(x)}`),
  )
  const retryAfter = numberOrFn<TValueFn<number>>('retryAfter', 0)
  const requestPropertyName =
    optional('requestPropertyName', (x) => v.string('requestPropertyName', x)) ??
    DROP_IN_DEFAULTS.requestPropertyName
  const ipv6Subnet =
    optional('ipv6Subnet', (x) =>
      x === false || isFunction(x)
        ? (x as false | TValueFn<number | false>)
        : v.integer('ipv6Subnet', x, { min: 1, max: 128 }),
    ) ?? DROP_IN_DEFAULTS.ipv6Subnet
  const validate =
    optional('validate', (x) =>
      typeof x === 'boolean' || (typeof x === 'object' && x !== null)
        ? (x as boolean | Readonly<Record<string, boolean>>)
        : v.fail('validate', `must be a boolean or an object, received ${describeValue(x)}`),
    ) ?? true
  const now = fn<Clock>('now') ?? systemClock
  const maxKeys =
    optional('maxKeys', (x) => v.integer('maxKeys', x, { min: 1 })) ?? DEFAULT_RATE_LIMIT_MAX_KEYS
  let store: DropInStore | undefined
  if (given.store !== undefined) {
    const s = given.store as Record<string, unknown> | null
    if (typeof s === 'object' && s !== null && isLegacyStore(s)) store = promisifyLegacyStore(s)
    else if (
      typeof s !== 'object' ||
      s === null ||
      !isFunction(s.increment) ||
      !isFunction(s.decrement) ||
      !isFunction(s.resetKey) ||
      (s.resetAll !== undefined && !isFunction(s.resetAll)) ||
      (s.init !== undefined && !isFunction(s.init))
    )
      v.fail(
        'store',
        `must implement express-rate-limit's Store (increment, decrement, resetKey), received ${describeValue(s)}`,
      )
    else store = s as unknown as DropInStore
  }
  const keyGenerator = fn<TValueFn<string>>('keyGenerator')
  const handler = fn<DropInHandler<TRequest, TResponse, TNext>>('handler')
  const skip = fn<TValueFn<boolean>>('skip')
  const requestWasSuccessful = fn<TValueFn<boolean>>('requestWasSuccessful')
  const skipFailedRequests = bool('skipFailedRequests', DROP_IN_DEFAULTS.skipFailedRequests)
  const skipSuccessfulRequests = bool(
    'skipSuccessfulRequests',
    DROP_IN_DEFAULTS.skipSuccessfulRequests,
  )
  const passOnStoreError = bool('passOnStoreError', DROP_IN_DEFAULTS.passOnStoreError)
  v.assert((message) => logger.warn({}, message))

  const defaultKeyGenerator = async (request: TRequest, response: TResponse): Promise<string> => {
    const ip = request.ip
    // express-rate-limit keys a missing address as `undefined`; one shared bucket is safer.
    if (ip === undefined) return 'unknown'
    if (!isIPv6(ip)) return ip
    const subnet =
      typeof ipv6Subnet === 'function' ? await ipv6Subnet(request, response) : ipv6Subnet
    return ipKeyGenerator(ip, subnet)
  }
  const defaultIdentifier = (request: TRequest): string => {
    const info = (request as unknown as Record<string, DropInRateLimitInfo>)[requestPropertyName]
    return `${info?.limit}-in-${windowName(windowMs)}`
  }
  return {
    ...given,
    windowMs,
    limit,
    message: given.message ?? DROP_IN_DEFAULTS.message,
    statusCode,
    legacyHeaders,
    standardHeaders: standard === true ? 'draft-6' : (standard ?? DROP_IN_DEFAULTS.standardHeaders),
    identifier: identifier ?? defaultIdentifier,
    retryAfter,
    requestPropertyName,
    skipFailedRequests,
    skipSuccessfulRequests,
    keyGenerator: keyGenerator ?? defaultKeyGenerator,
    ipv6Subnet,
    handler,
    skip: skip ?? (() => false),
    requestWasSuccessful:
      requestWasSuccessful ??
      ((_request, response) => Number((response as { statusCode?: unknown }).statusCode) < 400),
    store: store ?? new BoundedMemoryStore({ maxKeys, now }),
    validate,
    passOnStoreError,
    logger,
    now,
  }
}

/**
 * Creates the express-rate-limit 8 engine. Options are resolved and checked here, once; the
 * store's `init` is called with them (errors logged, as express-rate-limit does).
 * @throws {ConfigError} for a bad option (unknown names are only warned through `logger`)
 * @example
 * ```ts
 * const limiter = createDropInLimiter<MyRequest, MyResponse>({ limit: 100, standardHeaders: 'draft-8' })
 * const result = await limiter.hit(request, response)
 * if (result.counted && result.limited) reply(result.statusCode, await result.message())
 * ```
 */
export function createDropInLimiter<
  TRequest extends DropInRequest = DropInRequest,
  TResponse = unknown,
  TNext = DropInNext,
>(
  options: Readonly<DropInLimiterOptions<TRequest, TResponse, TNext>> = {},
): DropInLimiter<TRequest, TResponse, TNext> {
  const { now, ...used } = resolveDropInOptions(options)
  const resolved = used as DropInOptionsUsed<TRequest, TResponse, TNext>
  const store = resolved.store
  if (store.init !== undefined) {
    try {
      const init = store.init(resolved)
      if (init instanceof Promise)
        init.catch((error: unknown) =>
          resolved.logger.error(
            error,
            'express-rate-limit: async error during store initialization.',
          ),
        )
    } catch (error) {
      resolved.logger.error(error, 'express-rate-limit: error during store initialization.')
    }
  }
  return new DropInEngine(resolved, now)
}

class DropInEngine<TRequest extends DropInRequest, TResponse, TNext> implements DropInLimiter<
  TRequest,
  TResponse,
  TNext
> {
  constructor(
    readonly options: DropInOptionsUsed<TRequest, TResponse, TNext>,
    private readonly now: Clock,
  ) {}

  async hit(request: TRequest, response: TResponse): Promise<DropInResult> {
    const o = this.options
    if (await o.skip(request, response)) return NOT_COUNTED
    const key = await o.keyGenerator(request, response)
    const giveBack = o.skipFailedRequests || o.skipSuccessfulRequests
    let totalHits: number
    let resetTime: Date | undefined
    try {
      const counted = await o.store.increment(key)
      totalHits = counted.totalHits
      // A store may keep mutating its own Date; the decrement check needs this hit's.
      resetTime =
        counted.resetTime && giveBack ? new Date(counted.resetTime.getTime()) : counted.resetTime
    } catch (error) {
      if (o.passOnStoreError) {
        o.logger.error(
          error,
          'express-rate-limit: error from store, allowing request without rate-limiting.',
        )
        return NOT_COUNTED
      }
      throw new AuthError('ERR_RATELIMIT_UNAVAILABLE', 'Rate limiting is unavailable', {
        cause: error,
        reason: 'rate limit store failed to increment',
      })
    }
    const limit = await (typeof o.limit === 'function' ? o.limit(request, response) : o.limit)
    const info: DropInRateLimitInfo = {
      limit,
      used: totalHits,
      remaining: Math.max(limit - totalHits, 0),
      resetTime,
      key,
    }
    Object.defineProperty(info, 'current', { enumerable: false, value: totalHits })
    // Set before `identifier` runs: the default one (and users' ones) read it from the request.
    ;(request as unknown as Record<string, unknown>)[o.requestPropertyName] = info
    const headers = await this.#headers(request, response, info)
    const limited = totalHits > limit
    if (limited && (o.legacyHeaders || o.standardHeaders !== false)) {
      const custom = await (typeof o.retryAfter === 'function'
        ? o.retryAfter(request, response)
        : o.retryAfter)
      headers.push({
        name: 'Retry-After',
        value: String(custom ?? this.#resetSeconds(resetTime)),
        append: false,
      })
    }
    return {
      counted: true,
      info,
      headers,
      limited,
      statusCode: o.statusCode,
      message: async () =>
        typeof o.message === 'function' ? await o.message(request, response) : o.message,
      settle: giveBack ? this.#settler(request, response, key, resetTime) : undefined,
    }
  }

  #resetSeconds(resetTime: Date | undefined): string {
    return toHeaderSeconds(resetTime ? resetTime.getTime() - this.now() : this.options.windowMs)
  }

  async #headers(
    request: TRequest,
    response: TResponse,
    info: DropInRateLimitInfo,
  ): Promise<DropInHeader[]> {
    const o = this.options
    const now = this.now()
    const report: LimitReport = {
      name: '',
      limit: info.limit,
      remaining: info.remaining,
      resetMs: info.resetTime ? info.resetTime.getTime() - now : o.windowMs,
      windowMs: o.windowMs,
    }
    const out: DropInHeader[] = []
    const push = (name: string, value: string, append = false): void => {
      out.push({ name: HEADER_CASE[name] ?? name, value, append })
    }
    if (o.legacyHeaders) {
      const legacy = rateLimitHeaders([report], false, true, now)
      push('x-ratelimit-limit', legacy['x-ratelimit-limit'] as string)
      push('x-ratelimit-remaining', legacy['x-ratelimit-remaining'] as string)
      // Without a reset time express-rate-limit sends neither the reset nor its own Date.
      if (info.resetTime instanceof Date) {
        push('Date', new Date(now).toUTCString())
        push('x-ratelimit-reset', legacy['x-ratelimit-reset'] as string)
      }
    }
    if (o.standardHeaders === 'draft-8') {
      // Core's draft-8 lists (`"name";q=5;w=60`) differ from express-rate-limit's bytes, which
      // carry spaces and a partition key; a drop-in must send the latter.
      const name = await (typeof o.identifier === 'function'
        ? o.identifier(request, response)
        : o.identifier)
      const reset = toHeaderSeconds(report.resetMs)
      const window = toHeaderSeconds(o.windowMs)
      push('ratelimit', `"${name}"; r=${info.remaining}; t=${reset}`, true)
      push(
        'ratelimit-policy',
        `"${name}"; q=${info.limit}; w=${window}; pk=:${partitionKey(info.key)}:`,
        true,
      )
    } else if (o.standardHeaders !== false) {
      const standard = rateLimitHeaders([report], o.standardHeaders, false, now)
      for (const [name, value] of Object.entries(standard)) push(name, value)
    }
    return out
  }

  #settler(
    request: TRequest,
    response: TResponse,
    key: string,
    resetTime: Date | undefined,
  ): (success?: boolean) => Promise<void> {
    const o = this.options
    let done = false
    return async (success?: boolean): Promise<void> => {
      let ok = success
      if (ok === undefined) {
        try {
          ok = await o.requestWasSuccessful(request, response)
        } catch (error) {
          o.logger.error(error, 'express-rate-limit: error in requestWasSuccessful callback.')
          return
        }
      }
      if (done || !(ok ? o.skipSuccessfulRequests : o.skipFailedRequests)) return
      done = true
      // A hit of an ended window is gone already; giving it back would eat into the next one.
      if (resetTime && this.now() >= resetTime.getTime()) return
      try {
        await o.store.decrement(key)
      } catch (error) {
        o.logger.error(error, 'express-rate-limit: error from store during decrement.')
      }
    }
  }

  async resetKey(key: string): Promise<void> {
    await this.options.store.resetKey(key)
  }

  getKey(key: string): Promise<DropInClientInfo | undefined> {
    const store = this.options.store
    if (store.get === undefined)
      throw new Error('The current store does not support the get/getKey method')
    return Promise.resolve(store.get(key))
  }
}
