/**
 * The drop-in's options, every one resolved and checked once (express-rate-limit's `parseOptions` and the option checks of its `validations.ts`).
 * @packageDocumentation
 */
import { isIPv6 } from 'node:net'
import { DEFAULT_RATE_LIMIT_MAX_KEYS } from '../../defaults.js'
import { systemClock, type Clock } from '../../internal/clock.js'
import { describeValue, TypeValidator } from '../../validation/type-validator.js'
import { ipKeyGenerator } from './ip-key-generator.js'
import { DROP_IN_DEFAULTS } from './defaults.js'
import { BoundedMemoryStore } from './memory-store.js'
import type {
  DropInHandler,
  DropInHeaderDraft,
  DropInLegacyStore,
  DropInLimiterOptions,
  DropInLogger,
  DropInOptionsUsed,
  DropInRateLimitInfo,
  DropInRequest,
  DropInStore,
  DropInValue,
} from './types.js'

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

/** Checks every option once; a wrong type or value throws, unknown names are warned. @internal */
export function resolveDropInOptions<TRequest extends DropInRequest, TResponse, TNext>(
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
