/**
 * The limits stage of the gate: named limits, several per request (e.g. a burst limit AND a daily
 * one), each keyed by client IP, principal, API key, route or a function; limits and windows may
 * be functions of the principal (per-plan, per-key). Counters come from a backend (memory here,
 * Redis in `@portcullis/redis`); every answer carries IETF RateLimit headers.
 *
 * Reachable from `@portcullis/core`.
 * @packageDocumentation
 */
import { LRUCache } from 'lru-cache'
import { BurstyRateLimiter, RateLimiterRes } from 'rate-limiter-flexible'
import { DEFAULT_IPV6_SUBNET, DEFAULT_RATE_LIMIT_HEADERS } from '../defaults.js'
import { RateLimitedError } from '../errors.js'
import type { GateStage, StageContext, StageResult, StoreFailureMode } from '../pipeline/stage.js'
import type { GateRequest } from '../pipeline/gate-request.js'
import { systemClock, type Clock } from '../internal/clock.js'
import type { MetricLabels } from '../integrations/metrics.js'
import { silentLogger, type Logger } from '../logger.js'
import type { LimitKey, Principal, PrincipalLimits, RateLimitRule } from '../types.js'
import { parseDurationMs, type DurationInput } from '../validation/type-converter.js'
import { TypeValidator } from '../validation/type-validator.js'
import {
  createMemoryBackend,
  insuredBy,
  markInsured,
  type RateLimitBackend,
  type RateLimiterLike,
} from './backend.js'
import { isMemoryLimiter } from './memory-fast-path.js'
import { clientIpKey } from './client-ip.js'
import {
  RATE_LIMIT_HEADER_STYLES,
  rateLimitHeaders,
  type LimitReport,
  type RateLimitHeaderStyle,
} from './headers.js'
import {
  RATE_LIMIT_STORE,
  storeAnswered,
  storeFailure,
  storeInsured,
  type Outage,
} from '../pipeline/store-failure.js'

/** What limit functions see. */
export interface LimitContext {
  readonly request: GateRequest
  readonly principal: Principal | null
  /** The client IP key (IPv6 grouped by `ipv6Subnet`). */
  readonly clientIp: string
  /**
   * The step counting: `authenticate` for the stage's own (global) limits, `authorize` for a
   * route's `rateLimits`. A `route` key is the concrete path in the first (the router has not
   * matched yet behind Express's and Koa's global middleware, so every framework counts paths
   * there) and the route pattern in the second.
   */
  readonly step: 'authenticate' | 'authorize'
}

/** One named limit of the stage. */
export interface LimitDefinition {
  /** Policy name in headers, traces and problem bodies. */
  readonly name: string
  /** Units per window, or a function of the request (per plan, per key). */
  readonly limit: number | ((ctx: LimitContext) => number)
  /** Window length (`1s`, `15m`, ms), or a function of the request returning ms. */
  readonly windowMs: DurationInput | ((ctx: LimitContext) => number)
  /** What to count per. @default 'principal' (the client IP for anonymous requests) */
  readonly key?: LimitKey | readonly LimitKey[] | ((ctx: LimitContext) => string)
  /** Units one request costs. @default 1 */
  readonly cost?: number | ((ctx: LimitContext) => number)
  /**
   * `fixed` windows (rate-limiter-flexible), `burst` (its BurstyRateLimiter: the base limit, then
   * `burst` extra units per burst window), or `sliding` (a weighted two-window estimate that has
   * no edge bursts). @default 'fixed'
   */
  readonly algorithm?: 'fixed' | 'burst' | 'sliding'
  /** The extra allowance of the `burst` algorithm. */
  readonly burst?: { readonly limit: number; readonly windowMs: DurationInput }
  /** After exceeding, refuse the key this long (a ban). */
  readonly blockDurationMs?: DurationInput
  /** Requests for which this limit does not count. */
  readonly skip?: (ctx: LimitContext) => boolean
  /** Keys (IPs, principal ids) never limited. */
  readonly allowList?: readonly string[]
  /** Failure mode when the store fails. @default the stage's `onStoreError` */
  readonly onStoreError?: StoreFailureMode
}

/** Options of {@link createRateLimitStage}. */
export interface RateLimitStageOptions {
  /** Limits applied to every request (route limits come from `requirements.rateLimits`). */
  readonly limits?: readonly LimitDefinition[]
  /** Counter store. @default createMemoryBackend() */
  readonly backend?: RateLimitBackend
  /** Header syntax; `false` sends none. @default 'draft-8' */
  readonly headers?: RateLimitHeaderStyle | false
  /** Also send `X-RateLimit-*`. @default false */
  readonly legacyHeaders?: boolean
  /** IPv6 prefix length grouping clients; `false` keys full addresses. @default 56 */
  readonly ipv6Subnet?: number | false
  /** Failure mode of every limit without its own. @default 'closed' */
  readonly onStoreError?: StoreFailureMode
  readonly now?: Clock
  readonly logger?: Logger
}

/** The stage, with per-key administration. */
export interface RateLimitStage extends GateStage {
  /** Forgets the counters of `key` (as computed by the limit's key) for a named global limit. */
  reset(name: string, key: string): Promise<void>
}

interface CompiledLimit {
  readonly name: string
  readonly limit: (ctx: LimitContext) => number
  readonly windowMs: (ctx: LimitContext) => number
  readonly key: (ctx: LimitContext) => string
  readonly cost: (ctx: LimitContext) => number
  readonly algorithm: 'fixed' | 'burst' | 'sliding'
  readonly burst: { readonly limit: number; readonly windowMs: number } | undefined
  readonly blockDurationMs: number
  readonly skip: ((ctx: LimitContext) => boolean) | undefined
  readonly allowList: ReadonlySet<string>
  readonly onStoreError: StoreFailureMode
  /** `{ limit: name }`, built once: counting a rejection allocates nothing. */
  readonly labels: MetricLabels
}

const ALGORITHMS = ['fixed', 'burst', 'sliding'] as const
const MODES = ['closed', 'open', 'insurance'] as const
const LIMIT_KEYS = ['ip', 'principal', 'apikey', 'route', 'global'] as const
const OPTION_NAMES = [
  'limits',
  'backend',
  'headers',
  'legacyHeaders',
  'ipv6Subnet',
  'onStoreError',
  'now',
  'logger',
]
const LIMIT_NAMES = [
  'name',
  'limit',
  'windowMs',
  'key',
  'cost',
  'algorithm',
  'burst',
  'blockDurationMs',
  'skip',
  'allowList',
  'onStoreError',
]

function keyPart(kind: LimitKey, ctx: LimitContext): string {
  const p = ctx.principal
  switch (kind) {
    case 'ip':
      return `ip:${ctx.clientIp}`
    case 'principal':
      return p === null ? `ip:${ctx.clientIp}` : `p:${p.id}`
    case 'apikey':
      return p?.method === 'apikey' && p.tokenId !== undefined
        ? `k:${p.tokenId}`
        : p === null
          ? `ip:${ctx.clientIp}`
          : `p:${p.id}`
    case 'route':
      return ctx.step === 'authenticate'
        ? `r:${ctx.request.method} ${ctx.request.path}`
        : `r:${ctx.request.method} ${ctx.request.route ?? ctx.request.path}`
    case 'global':
      return 'all'
  }
}

function keyFunction(key: LimitDefinition['key']): (ctx: LimitContext) => string {
  if (typeof key === 'function') return key
  const kinds: readonly LimitKey[] =
    key === undefined ? ['principal'] : typeof key === 'string' ? [key] : key
  if (kinds.length === 1) {
    const only = kinds[0] as LimitKey
    return (ctx) => keyPart(only, ctx)
  }
  return (ctx) => kinds.map((k) => keyPart(k, ctx)).join('|')
}

const constant =
  <TValue>(value: TValue): (() => TValue) =>
  () =>
    value

/** Validates one definition; `where` is its path for messages. */
function compileLimit(
  v: TypeValidator,
  def: LimitDefinition,
  defaultMode: StoreFailureMode,
): CompiledLimit | undefined {
  v.knownKeys(def as unknown as Record<string, unknown>, LIMIT_NAMES)
  const name = v.string('name', def.name, { pattern: /^[A-Za-z0-9_.:-]{1,64}$/ })
  const limit =
    typeof def.limit === 'function' ? def.limit : v.integer('limit', def.limit, { min: 0 })
  let windowMs: ((ctx: LimitContext) => number) | undefined
  if (typeof def.windowMs === 'function') windowMs = def.windowMs
  else {
    const ms = parseDurationMs(def.windowMs)
    if (ms === undefined || ms < 1)
      v.fail(
        'windowMs',
        `must be a positive duration (ms or "15m"), received ${JSON.stringify(def.windowMs)}`,
      )
    else windowMs = constant(ms)
  }
  if (def.key !== undefined && typeof def.key !== 'function') {
    for (const k of typeof def.key === 'string' ? [def.key] : def.key)
      v.oneOf('key', k, LIMIT_KEYS, 'limit key')
  }
  const cost =
    def.cost === undefined
      ? 1
      : typeof def.cost === 'function'
        ? def.cost
        : v.integer('cost', def.cost, { min: 1 })
  const algorithm =
    def.algorithm === undefined
      ? 'fixed'
      : v.oneOf('algorithm', def.algorithm, ALGORITHMS, 'algorithm')
  let burst: CompiledLimit['burst']
  if (algorithm === 'burst') {
    const b = v.object('burst', def.burst)
    const bl = b === undefined ? undefined : v.child('burst').integer('limit', b.limit, { min: 1 })
    const bw = b === undefined ? undefined : parseDurationMs(b.windowMs)
    if (b !== undefined && (bw === undefined || bw < 1))
      v.child('burst').fail('windowMs', 'must be a positive duration')
    if (bl !== undefined && bw !== undefined) burst = { limit: bl, windowMs: bw }
  }
  const block = def.blockDurationMs === undefined ? 0 : parseDurationMs(def.blockDurationMs)
  if (block === undefined)
    v.fail('blockDurationMs', `must be a duration, received ${JSON.stringify(def.blockDurationMs)}`)
  const skip =
    def.skip === undefined
      ? undefined
      : v.function<(ctx: LimitContext) => boolean>('skip', def.skip)
  const allowList =
    def.allowList === undefined
      ? []
      : (v.array('allowList', def.allowList, (av, i, x) => av.string(i, x)) ?? [])
  const mode =
    def.onStoreError === undefined
      ? defaultMode
      : v.oneOf('onStoreError', def.onStoreError, MODES, 'failure mode')
  if (
    name === undefined ||
    limit === undefined ||
    windowMs === undefined ||
    cost === undefined ||
    algorithm === undefined ||
    mode === undefined
  )
    return undefined
  return {
    name,
    limit: typeof limit === 'number' ? constant(limit) : limit,
    windowMs,
    key: keyFunction(def.key),
    cost: typeof cost === 'number' ? constant(cost) : cost,
    algorithm,
    burst,
    blockDurationMs: block ?? 0,
    skip,
    allowList: new Set(allowList),
    onStoreError: mode,
    labels: Object.freeze({ limit: name }),
  }
}

/** Route limits compiled once per rule object. */
const routeLimits = new WeakMap<RateLimitRule, CompiledLimit>()

function compileRouteRule(rule: RateLimitRule, mode: StoreFailureMode): CompiledLimit {
  let c = routeLimits.get(rule)
  if (c === undefined) {
    const name = rule.name ?? `route-${rule.limit}-${rule.windowMs}`
    c = {
      name,
      limit: constant(rule.limit),
      windowMs: constant(rule.windowMs),
      // Route limits count per route by default, and per principal within it.
      key: keyFunction(rule.key ?? ['principal', 'route']),
      cost: constant(rule.cost ?? 1),
      algorithm: 'fixed',
      burst: undefined,
      blockDurationMs: 0,
      skip: undefined,
      allowList: new Set(),
      onStoreError: mode,
      labels: Object.freeze({ limit: name }),
    }
    routeLimits.set(rule, c)
  }
  return c
}

const CREDENTIAL_LIMIT_LABELS: MetricLabels = Object.freeze({ limit: 'apikey' })

/** A credential's own limits (an API key's usage policy), compiled once per limits array. */
const credentialLimits = new WeakMap<
  NonNullable<PrincipalLimits['rateLimits']>,
  readonly CompiledLimit[]
>()

function compileCredentialLimits(
  rules: NonNullable<PrincipalLimits['rateLimits']>,
  mode: StoreFailureMode,
): readonly CompiledLimit[] {
  let c = credentialLimits.get(rules)
  if (c === undefined) {
    c = rules.map((rule) => ({
      // Same name for the same rule on every key: counters are per credential (`apikey` key).
      name: `apikey-${rule.limit}-per-${rule.windowMs}ms`,
      limit: constant(rule.limit),
      windowMs: constant(rule.windowMs),
      key: keyFunction('apikey'),
      cost: constant(1),
      algorithm: 'fixed' as const,
      burst: undefined,
      blockDurationMs: 0,
      skip: undefined,
      allowList: new Set<string>(),
      onStoreError: mode,
      // One label for every per-key limit keeps the metric's cardinality bounded.
      labels: CREDENTIAL_LIMIT_LABELS,
    }))
    credentialLimits.set(rules, c)
  }
  return c
}

/**
 * Creates the limits stage. Global limits run in the authentication step; a route's
 * `rateLimits` run in its authorization step, before the requirement check.
 * @throws {ConfigError} for a bad option
 * @example
 * ```ts
 * const limits = createRateLimitStage({
 *   limits: [
 *     { name: 'burst', limit: 10, windowMs: '1s' },
 *     { name: 'daily', limit: (ctx) => (ctx.principal?.attributes.plan === 'pro' ? 100_000 : 1_000), windowMs: '1d' },
 *   ],
 * })
 * const gate = createGate({ apiKeys, stages: [limits] })
 * ```
 */
export function createRateLimitStage(
  options: Readonly<RateLimitStageOptions> = {},
): RateLimitStage {
  const v = new TypeValidator('ratelimit')
  v.knownKeys(options as Record<string, unknown>, OPTION_NAMES)
  const mode =
    options.onStoreError === undefined
      ? 'closed'
      : (v.oneOf('onStoreError', options.onStoreError, MODES, 'failure mode') ?? 'closed')
  const limits =
    v.array('limits', options.limits ?? [], (lv, i, def) =>
      lv.object(i, def) === undefined
        ? undefined
        : compileLimit(lv.child(i), def as LimitDefinition, mode),
    ) ?? []
  const names = new Set<string>()
  for (const [i, l] of limits.entries()) {
    if (names.has(l.name))
      v.child('limits')
        .child(i)
        .fail('name', `duplicate limit name ${JSON.stringify(l.name)}`)
    names.add(l.name)
  }
  const headers =
    options.headers === undefined
      ? DEFAULT_RATE_LIMIT_HEADERS
      : options.headers === false
        ? false
        : v.oneOf('headers', options.headers, RATE_LIMIT_HEADER_STYLES, 'header style')
  const legacy =
    options.legacyHeaders === undefined
      ? false
      : (v.boolean('legacyHeaders', options.legacyHeaders) ?? false)
  const ipv6Subnet =
    options.ipv6Subnet === undefined
      ? DEFAULT_IPV6_SUBNET
      : options.ipv6Subnet === false
        ? false
        : v.integer('ipv6Subnet', options.ipv6Subnet, { min: 1, max: 128 })
  const logger = options.logger ?? silentLogger
  v.assert((m) => logger.warn({}, m))
  const now = options.now ?? systemClock
  const backend = options.backend ?? createMemoryBackend({ now })
  return new Stage(
    limits,
    backend,
    headers ?? DEFAULT_RATE_LIMIT_HEADERS,
    legacy,
    ipv6Subnet ?? DEFAULT_IPV6_SUBNET,
    mode,
    now,
    logger,
  )
}

/** A limit's last limiter, reused while its points and window stay the same. */
interface LastLimiter {
  readonly points: number
  readonly windowMs: number
  readonly limiter: RateLimiterLike
}

/** Largest number of distinct (points, window) limiters kept per stage. */
const MAX_LIMITERS = 1024

class Stage implements RateLimitStage {
  readonly name = 'ratelimit'
  readonly #limiters = new LRUCache<string, RateLimiterLike>({
    max: MAX_LIMITERS,
    // A limiter dropped here must not live on in `#last`: its counts would split from the new one's.
    dispose: (limiter) => this.#dropped.add(limiter),
  })
  /** The limiter each limit used last, with its points and window: the common case, no key string. */
  readonly #last = new WeakMap<CompiledLimit, LastLimiter>()
  readonly #dropped = new WeakSet<RateLimiterLike>()
  /** The store's outage answered by insurance limiters, if one is under way. */
  readonly #outage: Outage = { since: undefined }
  /** The requests (by their reports) counted by an insurance limiter: their decision says so. */
  readonly #insured = new WeakSet<LimitReport[]>()

  constructor(
    private readonly limits: readonly CompiledLimit[],
    private readonly backend: RateLimitBackend,
    private readonly headers: RateLimitHeaderStyle | false,
    private readonly legacy: boolean,
    private readonly ipv6Subnet: number | false,
    private readonly mode: StoreFailureMode,
    private readonly now: Clock,
    private readonly logger: Logger,
  ) {}

  #limiter(l: CompiledLimit, points: number, windowMs: number): RateLimiterLike {
    const last = this.#last.get(l)
    if (
      last !== undefined &&
      last.points === points &&
      last.windowMs === windowMs &&
      !this.#dropped.has(last.limiter)
    )
      return last.limiter
    const limiter = this.#limiterById(l, points, windowMs)
    this.#last.set(l, { points, windowMs, limiter })
    return limiter
  }

  #limiterById(l: CompiledLimit, points: number, windowMs: number): RateLimiterLike {
    const id = `${l.name}|${points}|${windowMs}`
    let limiter = this.#limiters.get(id)
    if (limiter === undefined) {
      const make = (p: number, w: number, suffix: string): RateLimiterLike =>
        this.backend.create({
          keyPrefix: `ptcl:rl:${l.name}:${p}:${w}${suffix}`,
          points: p,
          durationMs: w,
          blockDurationMs: l.blockDurationMs,
        })
      if (l.algorithm === 'burst' && l.burst !== undefined) {
        limiter = new BurstyRateLimiter(
          make(points, windowMs, '') as never,
          make(l.burst.limit, l.burst.windowMs, ':burst') as never,
        ) as unknown as RateLimiterLike
      } else if (l.algorithm === 'sliding') {
        limiter = new SlidingWindow(
          make(Number.MAX_SAFE_INTEGER, windowMs * 2, ':sliding'),
          points,
          windowMs,
          this.now,
        )
      } else {
        limiter = make(points, windowMs, '')
      }
      this.#limiters.set(id, limiter)
    }
    return limiter
  }

  /** Synchronous while every limiter counts in this process's memory; a promise otherwise. */
  run(context: StageContext): StageResult | Promise<StageResult> {
    const route = context.requirements?.rateLimits
    // Global limits belong to the authentication step; route limits to the authorization step.
    const own = context.principal?.limits?.rateLimits
    const applicable =
      context.requirements === undefined
        ? own === undefined || own.length === 0
          ? this.limits
          : [...this.limits, ...compileCredentialLimits(own, this.mode)]
        : route === undefined || route.length === 0
          ? []
          : route.map((r) => compileRouteRule(r, this.mode))
    if (applicable.length === 0) return OK
    const ctx: LimitContext = {
      request: context.request,
      principal: context.principal,
      clientIp: clientIpKey(context.request.ip, this.ipv6Subnet),
      step: context.requirements === undefined ? 'authenticate' : 'authorize',
    }
    return this.#consumeFrom(applicable, 0, ctx, context, [])
  }

  /** Counts the limits from `from` on, in order; the first over its limit denies. */
  #consumeFrom(
    applicable: readonly CompiledLimit[],
    from: number,
    ctx: LimitContext,
    context: StageContext,
    reports: LimitReport[],
  ): StageResult | Promise<StageResult> {
    for (let i = from; i < applicable.length; i++) {
      const l = applicable[i] as CompiledLimit
      if (l.skip?.(ctx) === true) continue
      const key = l.key(ctx)
      if (
        l.allowList.size > 0 &&
        (l.allowList.has(ctx.clientIp) ||
          (ctx.principal !== null && l.allowList.has(ctx.principal.id)) ||
          l.allowList.has(key))
      )
        continue
      const points = l.limit(ctx)
      const windowMs = l.windowMs(ctx)
      const cost = l.cost(ctx)
      let pending: Promise<RateLimiterRes>
      try {
        const limiter = this.#limiter(l, points, windowMs)
        if (isMemoryLimiter(limiter)) {
          // In memory: counted now, no promise and no turn of the microtask queue.
          const res = limiter.consumeNow(key, cost)
          const denied = this.#counted(
            l,
            res,
            res.consumedPoints > points,
            points,
            windowMs,
            reports,
            context,
          )
          if (denied !== undefined) return denied
          continue
        }
        pending = limiter.consume(key, cost)
      } catch (e) {
        pending = Promise.reject(e)
      }
      const next = i + 1
      return pending.then(
        (res) =>
          this.#counted(l, res, false, points, windowMs, reports, context) ??
          this.#consumeFrom(applicable, next, ctx, context, reports),
        (e: unknown) => {
          if (e instanceof RateLimiterRes)
            return this.#counted(l, e, true, points, windowMs, reports, context) as StageResult
          return (
            storeFailure(RATE_LIMIT_STORE, l.name, l.onStoreError, e, context, this.logger) ??
            this.#consumeFrom(applicable, next, ctx, context, reports)
          )
        },
      )
    }
    const insured = this.#insured.has(reports)
    if (reports.length === 0 || (this.headers === false && !this.legacy))
      return insured ? INSURED : OK
    return insured
      ? { ok: true, by: 'insurance', headers: this.#headers(reports) }
      : { ok: true, headers: this.#headers(reports) }
  }

  /** Reports one counted limit; returns the denial when it is over. */
  #counted(
    l: CompiledLimit,
    res: RateLimiterRes,
    limited: boolean,
    points: number,
    windowMs: number,
    reports: LimitReport[],
    context: StageContext,
  ): StageResult | undefined {
    const insured = this.#storeHealth(l, res, reports, context)
    reports.push({
      name: l.name,
      limit: points,
      remaining: limited ? 0 : res.remainingPoints,
      resetMs: res.msBeforeNext,
      windowMs,
    })
    if (!limited) return undefined
    context.metrics?.increment('rateLimitRejections', l.labels)
    return {
      ok: false,
      by: l.name,
      error: new RateLimitedError(
        'ERR_RATE_LIMITED',
        { policy: l.name, limit: points, remaining: 0, retryAfterMs: res.msBeforeNext },
        {
          reason:
            `${l.name}: ${res.consumedPoints}/${points} in ${windowMs} ms` +
            (insured ? ' (insurance: store unavailable)' : ''),
        },
      ),
      headers: {
        ...this.#headers(reports),
        'retry-after': String(Math.max(1, Math.ceil(res.msBeforeNext / 1000))),
      },
    }
  }

  /**
   * Notes whether the store or its insurance limiter answered (backends mark insurance answers,
   * see `markInsured`); true for an insurance answer.
   */
  #storeHealth(
    l: CompiledLimit,
    res: RateLimiterRes,
    reports: LimitReport[],
    context: StageContext,
  ): boolean {
    const insured = insuredBy(res)
    if (insured === undefined) {
      if (this.#outage.since !== undefined)
        storeAnswered(RATE_LIMIT_STORE, l.name, this.logger, this.#outage, this.now())
      return false
    }
    this.#insured.add(reports)
    storeInsured(
      RATE_LIMIT_STORE,
      l.name,
      insured.error,
      context,
      this.logger,
      this.#outage,
      this.now(),
    )
    return true
  }

  #headers(reports: readonly LimitReport[]): Record<string, string> {
    // The time is read only by legacy headers (`X-RateLimit-Reset` as a Unix time).
    return rateLimitHeaders(reports, this.headers, this.legacy, this.legacy ? this.now() : 0)
  }

  async reset(name: string, key: string): Promise<void> {
    const matching = [...this.#limiters.entries()].filter(([id]) => id.startsWith(`${name}|`))
    await Promise.all(matching.map(([, limiter]) => limiter.delete(key)))
  }
}

const OK: StageResult = Object.freeze({ ok: true })
/** Allowed, counted by an insurance limiter while the store failed: the trace entry's `by`. */
const INSURED: StageResult = Object.freeze({ ok: true, by: 'insurance' })

/**
 * Sliding window estimate over two fixed windows (as Cloudflare describes it): the previous
 * window's count weighted by how much of it still overlaps the sliding window, plus the current
 * count. Smooth at window edges; approximate under races across processes.
 */
class SlidingWindow implements RateLimiterLike {
  constructor(
    private readonly base: RateLimiterLike,
    private readonly points: number,
    private readonly windowMs: number,
    private readonly now: Clock,
  ) {}

  async consume(key: string, points = 1): Promise<RateLimiterRes> {
    const t = this.now()
    const index = Math.floor(t / this.windowMs)
    const elapsed = t - index * this.windowMs
    const current = await this.base.consume(`${key}:${index}`, points)
    const previous = await this.base.get(`${key}:${index - 1}`)
    const weight = 1 - elapsed / this.windowMs
    const estimate = (previous?.consumedPoints ?? 0) * weight + current.consumedPoints
    const remaining = Math.max(0, Math.floor(this.points - estimate))
    // An insurance answer stays one (the stage reports the store's outage).
    const insured = insuredBy(current)
    const mark = (res: RateLimiterRes) =>
      insured === undefined ? res : markInsured(res, insured.error)
    if (estimate > this.points) {
      await this.base.reward(`${key}:${index}`, points)
      // The estimate falls as the previous window slides out; at worst wait for the next window.
      throw mark(new RateLimiterRes(0, this.windowMs - elapsed, Math.ceil(estimate), false))
    }
    return mark(
      new RateLimiterRes(
        remaining,
        this.windowMs - elapsed,
        Math.ceil(estimate),
        current.isFirstInDuration,
      ),
    )
  }

  get(key: string): Promise<RateLimiterRes | null> {
    return this.base.get(`${key}:${Math.floor(this.now() / this.windowMs)}`)
  }

  reward(key: string, points = 1): Promise<RateLimiterRes> {
    return this.base.reward(`${key}:${Math.floor(this.now() / this.windowMs)}`, points)
  }

  async delete(key: string): Promise<boolean> {
    const index = Math.floor(this.now() / this.windowMs)
    const [a, b] = await Promise.all([
      this.base.delete(`${key}:${index}`),
      this.base.delete(`${key}:${index - 1}`),
    ])
    return a || b
  }
}
