/**
 * The `@fastify/rate-limit` drop-in's options, every one resolved and checked once, for the plugin
 * and for each route over it.
 * @packageDocumentation
 */
import { parseDurationMs } from '../../validation/type-converter.js'
import { describeValue, TypeValidator } from '../../validation/type-validator.js'
import type {
  ErrorResponseBuilderContext,
  RateLimitHook,
  RouteLimitParams,
  RouteLimitPerRequest,
} from './types.js'

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
function defaultErrorResponse(_r: unknown, context: ErrorResponseBuilderContext): Error {
  const error = new Error(`Rate limit exceeded, retry in ${context.after}`)
  return Object.assign(error, { statusCode: context.statusCode })
}

/**
 * Checks `given` over `base` (the plugin's options, for a route); a wrong value throws.
 * @throws {ConfigError} for a bad option, or one that cannot be supported (`redis`)
 */
export function resolveRouteLimitOptions<TRequest>(
  given: object,
  base: RouteLimitParams<TRequest> | undefined,
  path: string,
  warn: (message: string) => void,
): RouteLimitParams<TRequest> {
  type Params = RouteLimitParams<TRequest>
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
    typeof x === 'function' ? (x as RouteLimitPerRequest<TRequest, number>) : check(x)
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
