/**
 * Quotas: requests (or weighted units) per calendar day or month (UTC), per API key or principal,
 * with reset times and remaining counts in the RateLimit headers, a 429 `quota-exceeded` problem,
 * usage readable and resettable per key (for billing and dashboards).
 *
 * Reachable from `@portcullis/core`.
 * @packageDocumentation
 */
import { createHash } from 'node:crypto'
import { LRUCache } from 'lru-cache'
import { RateLimiterRes } from 'rate-limiter-flexible'
import { DEFAULT_RATE_LIMIT_HEADERS } from '../defaults.js'
import { RateLimitedError } from '../errors.js'
import type { GateStage, StageContext, StageResult } from '../pipeline/stage.js'
import type { GateRequest } from '../pipeline/gate-request.js'
import { systemClock, type Clock } from '../internal/clock.js'
import type { MetricLabels } from '../integrations/metrics.js'
import { silentLogger, type Logger } from '../logger.js'
import type { Principal, PrincipalLimits } from '../types.js'
import { TypeValidator } from '../validation/type-validator.js'
import {
  createMemoryBackend,
  type RateLimitBackend,
  type RateLimiterLike,
} from '../ratelimit/backend.js'
import {
  RATE_LIMIT_HEADER_STYLES,
  rateLimitHeaders,
  type LimitReport,
  type RateLimitHeaderStyle,
} from '../ratelimit/headers.js'
import { isMemoryLimiter } from '../ratelimit/memory-fast-path.js'
import type { StoreFailureMode } from '../pipeline/stage.js'
import { QUOTA_STORE, storeFailure } from '../pipeline/store-failure.js'

/** A calendar period, in UTC. */
export type QuotaPeriod = 'day' | 'month'

/** One quota. */
export interface QuotaDefinition {
  /** Policy name in headers and problem bodies. */
  readonly name: string
  /** Units per period, or a function of the principal (per plan, per key). */
  readonly limit: number | ((principal: Principal) => number)
  readonly period: QuotaPeriod
  /** Count per API key (falling back to the principal for other credentials) or per principal. @default 'apikey' */
  readonly key?: 'apikey' | 'principal'
  /** Units one request costs. @default 1 */
  readonly cost?: number | ((principal: Principal) => number)
  /** Failure mode when the store fails. @default the stage's */
  readonly onStoreError?: Exclude<StoreFailureMode, 'insurance'>
}

/** Header the idempotency records are keyed by, unless configured. */
export const DEFAULT_QUOTA_IDEMPOTENCY_HEADER = 'idempotency-key'
/** How long a charged request's idempotency record lasts: 24 hours. */
export const DEFAULT_QUOTA_IDEMPOTENCY_TTL_MS = 86_400_000
/** Idempotency records kept in process memory (memory backend) before the oldest are dropped. */
export const DEFAULT_QUOTA_IDEMPOTENCY_MAX_ENTRIES = 10_000

/**
 * Counting retries of one request once: a request carrying the header is charged the first time;
 * a retry by the same principal (and API key) with the same header value, method and path within
 * `ttlMs` is not charged again (it is admitted, and still sees the quota headers).
 */
export interface QuotaIdempotencyOptions {
  /** Request header holding the key (case-insensitive). @default 'idempotency-key' */
  readonly header?: string
  /** How long a charged request is remembered, in ms. @default 86400000 (24 h) */
  readonly ttlMs?: number
  /**
   * Records kept in process memory when the backend has no shared store for them (the memory
   * backend); the least recently used are dropped beyond it (a dropped record's retry is charged).
   * @default 10000
   */
  readonly maxEntries?: number
}

/** Options of {@link createQuotaStage}. */
export interface QuotaStageOptions {
  readonly quotas: readonly QuotaDefinition[]
  /**
   * Where counters live. A shared backend (`@portcullis/redis`) also gives the clock that decides
   * the calendar period (the store's, so skewed nodes agree) and keeps the idempotency records.
   * @default createMemoryBackend()
   */
  readonly backend?: RateLimitBackend
  /** @default 'draft-8' */
  readonly headers?: RateLimitHeaderStyle | false
  /** @default 'closed' */
  readonly onStoreError?: Exclude<StoreFailureMode, 'insurance'>
  /** Give the units back when the handler answers 5xx (the caller was not served). @default false */
  readonly refundOnServerError?: boolean
  /**
   * Charge requests that the authorization step refuses with a 403. `false` gives their units back
   * once the 403 is answered: the gate settles the authentication step's stages with it (in
   * `gate.evaluate`, and through the adapter's settle when a route guard authorizes). Any 403
   * answer counts as refused, including one the handler sends itself. `true`: charged, as before.
   * @default false
   */
  readonly chargeDenied?: boolean
  /**
   * Count retries of one request once when it carries an `Idempotency-Key` header: `true` for the
   * defaults, or {@link QuotaIdempotencyOptions}. Off by default: while a record lives, repeating
   * the same method and path with the same key is free, which a client could use to read one
   * resource beyond its quota.
   * @default false
   */
  readonly idempotency?: boolean | QuotaIdempotencyOptions
  /**
   * Clock of the calendar periods and of in-memory idempotency records. A backend with its own
   * clock (Redis `TIME`) decides the period instead. @default Date.now
   */
  readonly now?: Clock
  readonly logger?: Logger
}

/** Usage of one key under one quota. */
export interface QuotaUsage {
  readonly name: string
  readonly used: number
  readonly limit: number
  readonly remaining: number
  /** When the period ends (epoch ms). */
  readonly resetAt: number
}

/** The quota stage, with usage reading and resetting. */
export interface QuotaStage extends GateStage {
  /**
   * Usage of `key` (an API key id or principal id) under each quota, for billing and dashboards.
   * Quotas whose limit is a function are reported only when `principal` is given.
   */
  usage(key: string, principal?: Principal): Promise<readonly QuotaUsage[]>
  /** Resets `key`'s usage for the current period (one quota by name, or all). */
  reset(key: string, name?: string): Promise<void>
  /** Gives units back, e.g. when the handler failed with a 5xx. */
  refund(key: string, units: number, name?: string): Promise<void>
}

/** Start and end (epoch ms) of the UTC period containing `t`, and its id. */
export function periodBounds(period: QuotaPeriod, t: number): PeriodBounds {
  // Every request asks for the current period: reuse the last answer while it holds, instead of
  // two Dates and an ISO string per request (seen in the full gate's CPU profile).
  const last = lastBounds[period]
  if (last !== undefined && t >= last.start && t < last.end) return last
  const d = new Date(t)
  const y = d.getUTCFullYear()
  const m = d.getUTCMonth()
  let bounds: PeriodBounds
  if (period === 'day') {
    const start = Date.UTC(y, m, d.getUTCDate())
    bounds = { id: new Date(start).toISOString().slice(0, 10), start, end: start + 86_400_000 }
  } else {
    const start = Date.UTC(y, m, 1)
    bounds = { id: new Date(start).toISOString().slice(0, 7), start, end: Date.UTC(y, m + 1, 1) }
  }
  lastBounds[period] = Object.freeze(bounds)
  return bounds
}

type PeriodBounds = { readonly id: string; readonly start: number; readonly end: number }
const lastBounds: Partial<Record<QuotaPeriod, PeriodBounds>> = {}

interface CompiledQuota {
  readonly name: string
  readonly limit: (p: Principal) => number
  /** The limit when it does not depend on the principal. */
  readonly constantLimit: number | undefined
  readonly period: QuotaPeriod
  readonly byKey: boolean
  readonly cost: (p: Principal) => number
  readonly mode: 'closed' | 'open'
  /** `{ quota: name }`, built once: counting a rejection allocates nothing. */
  readonly labels: MetricLabels
}

const OPTION_NAMES = [
  'quotas',
  'backend',
  'headers',
  'onStoreError',
  'refundOnServerError',
  'chargeDenied',
  'idempotency',
  'now',
  'logger',
]
const QUOTA_NAMES = ['name', 'limit', 'period', 'key', 'cost', 'onStoreError']

const CREDENTIAL_QUOTA_LABELS: MetricLabels = Object.freeze({ quota: 'apikey' })

/** A credential's own quota (an API key's usage policy), compiled once per quota object. */
const credentialQuotas = new WeakMap<NonNullable<PrincipalLimits['quota']>, CompiledQuota>()

function credentialQuota(
  quota: NonNullable<PrincipalLimits['quota']>,
  mode: 'closed' | 'open',
): CompiledQuota {
  let c = credentialQuotas.get(quota)
  if (c === undefined) {
    const limit = quota.limit
    c = {
      name: `apikey-${quota.period}`,
      limit: () => limit,
      constantLimit: limit,
      period: quota.period,
      byKey: true,
      cost: () => 1,
      mode,
      labels: CREDENTIAL_QUOTA_LABELS,
    }
    credentialQuotas.set(quota, c)
  }
  return c
}

const keyOf = (q: CompiledQuota, p: Principal): string =>
  q.byKey && p.method === 'apikey' && p.tokenId !== undefined ? `k:${p.tokenId}` : `p:${p.id}`

/**
 * Creates the quota stage. Quotas apply to authenticated requests in the authentication step.
 * @throws {ConfigError} for a bad option
 * @example
 * ```ts
 * const quotas = createQuotaStage({ quotas: [{ name: 'monthly', limit: 10_000, period: 'month' }] })
 * const gate = createGate({ apiKeys, stages: [limits, quotas] })
 * ```
 */
export function createQuotaStage(options: Readonly<QuotaStageOptions>): QuotaStage {
  const v = new TypeValidator('quota')
  v.knownKeys(options as unknown as Record<string, unknown>, OPTION_NAMES)
  const mode =
    options.onStoreError === undefined
      ? 'closed'
      : (v.oneOf(
          'onStoreError',
          options.onStoreError,
          ['closed', 'open'] as const,
          'failure mode',
        ) ?? 'closed')
  const quotas =
    v.array(
      'quotas',
      options.quotas,
      (qv, i, raw) => {
        const q = qv.object(i, raw) as QuotaDefinition | undefined
        if (q === undefined) return undefined
        const c = qv.child(i)
        c.knownKeys(q as unknown as Record<string, unknown>, QUOTA_NAMES)
        const name = c.string('name', q.name, { pattern: /^[A-Za-z0-9_.:-]{1,64}$/ })
        const limit =
          typeof q.limit === 'function' ? q.limit : c.integer('limit', q.limit, { min: 0 })
        const period = c.oneOf('period', q.period, ['day', 'month'] as const, 'quota period')
        const key =
          q.key === undefined
            ? 'apikey'
            : c.oneOf('key', q.key, ['apikey', 'principal'] as const, 'quota key')
        const cost =
          q.cost === undefined
            ? 1
            : typeof q.cost === 'function'
              ? q.cost
              : c.integer('cost', q.cost, { min: 1 })
        const m =
          q.onStoreError === undefined
            ? mode
            : c.oneOf('onStoreError', q.onStoreError, ['closed', 'open'] as const, 'failure mode')
        if (
          name === undefined ||
          limit === undefined ||
          period === undefined ||
          key === undefined ||
          cost === undefined ||
          m === undefined
        )
          return undefined
        return {
          name,
          limit: typeof limit === 'number' ? () => limit : limit,
          constantLimit: typeof limit === 'number' ? limit : undefined,
          period,
          byKey: key === 'apikey',
          cost: typeof cost === 'number' ? () => cost : cost,
          mode: m,
          labels: Object.freeze({ quota: name }),
        } satisfies CompiledQuota
      },
      { nonEmpty: true },
    ) ?? []
  const headers =
    options.headers === undefined
      ? DEFAULT_RATE_LIMIT_HEADERS
      : options.headers === false
        ? false
        : v.oneOf('headers', options.headers, RATE_LIMIT_HEADER_STYLES, 'header style')
  const refund =
    options.refundOnServerError === undefined
      ? false
      : (v.boolean('refundOnServerError', options.refundOnServerError) ?? false)
  const chargeDenied =
    options.chargeDenied === undefined
      ? false
      : (v.boolean('chargeDenied', options.chargeDenied) ?? false)
  const idempotency = resolveIdempotency(v, options.idempotency)
  const logger = options.logger ?? silentLogger
  v.assert((msg) => logger.warn({}, msg))
  const now = options.now ?? systemClock
  return new Quotas(
    quotas,
    options.backend ?? createMemoryBackend({ now }),
    headers ?? false,
    { refundOnServerError: refund, chargeDenied, idempotency },
    now,
    logger,
  )
}

interface ResolvedIdempotency {
  readonly header: string
  readonly ttlMs: number
  readonly maxEntries: number
}

const IDEMPOTENCY_NAMES = ['header', 'ttlMs', 'maxEntries']

function resolveIdempotency(
  v: TypeValidator,
  raw: boolean | QuotaIdempotencyOptions | undefined,
): ResolvedIdempotency | undefined {
  if (raw === undefined || raw === false) return undefined
  const o: QuotaIdempotencyOptions =
    raw === true
      ? {}
      : ((v.object('idempotency', raw) as QuotaIdempotencyOptions | undefined) ?? {})
  const c = v.child('idempotency')
  c.knownKeys(o as unknown as Record<string, unknown>, IDEMPOTENCY_NAMES)
  const header =
    o.header === undefined
      ? DEFAULT_QUOTA_IDEMPOTENCY_HEADER
      : c.string('header', o.header, { pattern: /^[A-Za-z0-9-]{1,64}$/ })
  const ttlMs =
    o.ttlMs === undefined
      ? DEFAULT_QUOTA_IDEMPOTENCY_TTL_MS
      : c.integer('ttlMs', o.ttlMs, { min: 1 })
  const maxEntries =
    o.maxEntries === undefined
      ? DEFAULT_QUOTA_IDEMPOTENCY_MAX_ENTRIES
      : c.integer('maxEntries', o.maxEntries, { min: 1 })
  if (header === undefined || ttlMs === undefined || maxEntries === undefined) return undefined
  return { header: header.toLowerCase(), ttlMs, maxEntries }
}

/** An `Idempotency-Key` value we accept: visible ASCII, at most 255 characters. */
const IDEMPOTENCY_VALUE = /^[\x21-\x7e]{1,255}$/

/** Units taken from one quota's counter, given back when the request is refused or refunded. */
interface Consumed {
  readonly limiter: RateLimiterLike
  readonly key: string
  readonly cost: number
}

interface SettlePolicy {
  readonly refundOnServerError: boolean
  readonly chargeDenied: boolean
  readonly idempotency: ResolvedIdempotency | undefined
}

class Quotas implements QuotaStage {
  readonly name = 'quota'
  readonly #limiters = new Map<string, RateLimiterLike>()
  /** The limiter each quota used last (limiters are never dropped, so it stays the map's). */
  readonly #last = new WeakMap<CompiledQuota, { points: number; limiter: RateLimiterLike }>()
  /** Idempotency records (key to expiry, epoch ms) when the backend keeps none. */
  readonly #seen: LRUCache<string, number> | undefined

  constructor(
    private readonly quotas: readonly CompiledQuota[],
    private readonly backend: RateLimitBackend,
    private readonly headers: RateLimitHeaderStyle | false,
    private readonly policy: SettlePolicy,
    private readonly now: Clock,
    private readonly logger: Logger,
  ) {
    const idem = policy.idempotency
    this.#seen =
      idem === undefined || backend.claim !== undefined
        ? undefined
        : new LRUCache<string, number>({ max: idem.maxEntries })
  }

  #limiter(q: CompiledQuota, points: number): RateLimiterLike {
    // The common case asks for the same limiter as last time: no key string, no map lookup.
    const last = this.#last.get(q)
    if (last !== undefined && last.points === points) return last.limiter
    const l = this.#limiterById(q, points)
    this.#last.set(q, { points, limiter: l })
    return l
  }

  #limiterById(q: CompiledQuota, points: number): RateLimiterLike {
    const id = `${q.name}|${points}`
    let l = this.#limiters.get(id)
    if (l === undefined) {
      // The window is the calendar period: the key carries the period id and each consume sets the
      // duration to the period's end, so counters roll over at 00:00 UTC (or the 1st), not 24 h after first use.
      l = this.backend.create({
        keyPrefix: `ptcl:q:${q.name}:${points}`,
        points,
        durationMs: q.period === 'day' ? 86_400_000 : 31 * 86_400_000,
        blockDurationMs: 0,
        // Issue 18: a request costing more than what is left is refused without spending the rest.
        allOrNothing: true,
      })
      this.#limiters.set(id, l)
    }
    return l
  }

  /**
   * "Now" for the period boundary: the shared store's clock when the backend has one (issue 18:
   * nodes with skewed clocks must agree on the period), else the stage's own.
   */
  #time(): number | Promise<number> {
    const b = this.backend
    return b.now === undefined ? this.now() : b.now()
  }

  /** Synchronous while every quota counts in this process's memory; a promise otherwise. */
  run(context: StageContext): StageResult | Promise<StageResult> {
    const p = context.principal
    if (context.requirements !== undefined || p === null) return OK
    const own = p.limits?.quota
    const quotas =
      own === undefined
        ? this.quotas
        : [...this.quotas, credentialQuota(own, this.quotas[0]?.mode ?? 'closed')]
    const record = this.#idempotencyRecord(context.request, p)
    if (record === undefined) return this.#charge(quotas, p, context, undefined)
    const claimed = this.#claim(record)
    if (claimed === true) return this.#charge(quotas, p, context, record)
    if (claimed === false) return this.#replay(quotas, p)
    return claimed.then((first) =>
      first ? this.#charge(quotas, p, context, record) : this.#replay(quotas, p),
    )
  }

  #charge(
    quotas: readonly CompiledQuota[],
    p: Principal,
    context: StageContext,
    record: string | undefined,
  ): StageResult | Promise<StageResult> {
    let t: number | Promise<number>
    try {
      t = this.#time()
    } catch (e) {
      t = Promise.reject(e)
    }
    if (typeof t === 'number') return this.#consumeFrom(quotas, 0, p, t, context, [], [], record)
    return t.then(
      (now) => this.#consumeFrom(quotas, 0, p, now, context, [], [], record),
      (e: unknown) => {
        // Without the store's time no quota can be counted: one failure for all of them.
        const first = quotas[0] as CompiledQuota
        const failed = storeFailure(QUOTA_STORE, first.name, first.mode, e, context, this.logger)
        // Nothing was charged: a retry must not pass as already counted.
        if (record !== undefined) this.#release(record)
        return failed ?? this.#passed([], [], undefined)
      },
    )
  }

  /** Counts the quotas from `from` on, in order; the first one exceeded denies. */
  #consumeFrom(
    quotas: readonly CompiledQuota[],
    from: number,
    p: Principal,
    t: number,
    context: StageContext,
    reports: LimitReport[],
    consumed: Consumed[],
    record: string | undefined,
  ): StageResult | Promise<StageResult> {
    for (let i = from; i < quotas.length; i++) {
      const q = quotas[i] as CompiledQuota
      const points = q.limit(p)
      const { id, start, end } = periodBounds(q.period, t)
      const key = `${keyOf(q, p)}:${id}`
      const cost = q.cost(p)
      // A new window lasts until the period ends.
      const customDuration = Math.ceil((end - t) / 1000)
      let limiter: RateLimiterLike | undefined
      let pending: Promise<RateLimiterRes>
      try {
        limiter = this.#limiter(q, points)
        if (isMemoryLimiter(limiter)) {
          // In memory: counted now, no promise and no turn of the microtask queue.
          const res = limiter.consumeNow(key, cost, customDuration)
          const exceeded = res.consumedPoints > points
          let remaining = res.remainingPoints
          if (exceeded) {
            // All or nothing: undone in the same synchronous turn, so no other request saw it.
            void limiter.reward(key, cost)
            remaining = Math.max(0, points - (res.consumedPoints - cost))
          } else consumed.push({ limiter, key, cost })
          const denied = this.#counted(
            q,
            cost,
            remaining,
            exceeded,
            points,
            t,
            start,
            end,
            reports,
            context,
          )
          if (denied !== undefined) return this.#refused(denied, consumed, record)
          continue
        }
        pending = limiter.consume(key, cost, { customDuration })
      } catch (e) {
        pending = Promise.reject(e)
      }
      const next = i + 1
      const counting = limiter
      return pending.then(
        (res) => {
          if (counting !== undefined) consumed.push({ limiter: counting, key, cost })
          return (
            this.#counted(
              q,
              cost,
              res.remainingPoints,
              false,
              points,
              t,
              start,
              end,
              reports,
              context,
            ) ?? this.#consumeFrom(quotas, next, p, t, context, reports, consumed, record)
          )
        },
        (e: unknown) => {
          if (e instanceof RateLimiterRes) {
            // The backend refused without adding (LimiterSpec.allOrNothing): what is left is real.
            const denied = this.#counted(
              q,
              cost,
              e.remainingPoints,
              true,
              points,
              t,
              start,
              end,
              reports,
              context,
            )
            return this.#refused(denied as StageResult, consumed, record)
          }
          const failed = storeFailure(QUOTA_STORE, q.name, q.mode, e, context, this.logger)
          return failed === undefined
            ? this.#consumeFrom(quotas, next, p, t, context, reports, consumed, record)
            : this.#refused(failed, consumed, record)
        },
      )
    }
    return this.#passed(reports, consumed, record)
  }

  /** A refused request spends nothing: the quotas counted before the one that refused give back. */
  #refused(
    result: StageResult,
    consumed: readonly Consumed[],
    record: string | undefined,
  ): StageResult {
    this.#giveBack(consumed, record)
    return result
  }

  #giveBack(consumed: readonly Consumed[], record: string | undefined): void {
    for (const c of consumed) {
      c.limiter.reward(c.key, c.cost).catch((e: unknown) => {
        this.logger.warn({ error: String(e) }, 'quota: refund failed')
      })
    }
    if (record !== undefined) this.#release(record)
  }

  /** Reports one counted quota; returns the denial when it is exceeded. */
  #counted(
    q: CompiledQuota,
    cost: number,
    remaining: number,
    exceeded: boolean,
    points: number,
    t: number,
    start: number,
    end: number,
    reports: LimitReport[],
    context: StageContext,
  ): StageResult | undefined {
    reports.push({
      name: q.name,
      limit: points,
      remaining: Math.max(0, remaining),
      resetMs: end - t,
      windowMs: end - start,
    })
    if (!exceeded) return undefined
    context.metrics?.increment('quotaRejections', q.labels)
    return {
      ok: false,
      by: q.name,
      error: new RateLimitedError(
        'ERR_QUOTA_EXCEEDED',
        { policy: q.name, limit: points, remaining: Math.max(0, remaining), retryAfterMs: end - t },
        {
          reason: `${q.name}: costs ${cost}, ${Math.max(0, remaining)}/${points} left this ${q.period}`,
        },
      ),
      headers: {
        ...this.#headers(reports),
        'retry-after': String(Math.ceil((end - t) / 1000)),
      },
    }
  }

  /** Every quota passed: the headers, and the settle that refunds a request not served. */
  #passed(
    reports: readonly LimitReport[],
    consumed: readonly Consumed[],
    record: string | undefined,
  ): StageResult {
    const { refundOnServerError, chargeDenied } = this.policy
    // Refunded when the caller was not served: a 5xx (when configured), or a 403 from the
    // authorization step unless denied requests are charged (issue 18).
    const settle =
      (refundOnServerError || !chargeDenied) && (consumed.length > 0 || record !== undefined)
        ? (status: number): void => {
            if ((status >= 500 && refundOnServerError) || (status === 403 && !chargeDenied))
              this.#giveBack(consumed, record)
          }
        : undefined
    const headers =
      reports.length === 0 || this.headers === false ? undefined : this.#headers(reports)
    if (settle === undefined) return headers === undefined ? OK : { ok: true, headers }
    return headers === undefined ? { ok: true, settle } : { ok: true, headers, settle }
  }

  #headers(reports: readonly LimitReport[]): Record<string, string> {
    // The time is read only by legacy headers, which quotas never send.
    return rateLimitHeaders(reports, this.headers, false, 0)
  }

  /**
   * The idempotency record of a request carrying the header: bound to the principal (and API key),
   * the method and the path, so a key is never trusted across principals or for another request.
   */
  #idempotencyRecord(request: GateRequest, p: Principal): string | undefined {
    const idem = this.policy.idempotency
    if (idem === undefined) return undefined
    const value = request.header(idem.header)
    if (value === undefined || !IDEMPOTENCY_VALUE.test(value)) return undefined
    const digest = createHash('sha256')
      .update(
        JSON.stringify([
          p.id,
          p.tokenId ?? null,
          request.method,
          request.path,
          request.query,
          value,
        ]),
      )
      .digest('base64url')
    return `ptcl:qi:${digest}`
  }

  /** Whether this request is the first with its record (then it is charged). */
  #claim(record: string): boolean | Promise<boolean> {
    const idem = this.policy.idempotency as ResolvedIdempotency
    const seen = this.#seen
    if (seen === undefined) {
      // A store that cannot say: charge (counting twice is safer than never counting).
      return (this.backend.claim as NonNullable<RateLimitBackend['claim']>)
        .call(this.backend, record, idem.ttlMs)
        .catch((e: unknown) => {
          this.logger.warn({ error: String(e) }, 'quota: idempotency record failed; charged')
          return true
        })
    }
    const t = this.now()
    const until = seen.get(record)
    if (until !== undefined && until > t) return false
    seen.set(record, t + idem.ttlMs)
    return true
  }

  #release(record: string): void {
    if (this.#seen !== undefined) {
      this.#seen.delete(record)
      return
    }
    this.backend.release?.(record).catch((e: unknown) => {
      this.logger.warn({ error: String(e) }, 'quota: idempotency record not released')
    })
  }

  /** A retry already charged: admitted without counting, with the quotas' current headers. */
  async #replay(quotas: readonly CompiledQuota[], p: Principal): Promise<StageResult> {
    if (this.headers === false) return OK
    const reports: LimitReport[] = []
    try {
      const t = await this.#time()
      for (const q of quotas) {
        const points = q.limit(p)
        const { id, start, end } = periodBounds(q.period, t)
        const res = await this.#limiter(q, points).get(`${keyOf(q, p)}:${id}`)
        const used = res?.consumedPoints ?? 0
        reports.push({
          name: q.name,
          limit: points,
          remaining: Math.max(0, points - used),
          resetMs: end - t,
          windowMs: end - start,
        })
      }
    } catch (e) {
      // Already charged once: a store that cannot tell the usage costs the headers, not the request.
      this.logger.warn(
        { error: String(e) },
        'quota: usage unreadable; retry admitted without headers',
      )
      return OK
    }
    return { ok: true, headers: this.#headers(reports) }
  }

  async usage(key: string, principal?: Principal): Promise<readonly QuotaUsage[]> {
    const t = await this.#time()
    const out: QuotaUsage[] = []
    for (const q of this.quotas) {
      const limit = principal === undefined ? q.constantLimit : q.limit(principal)
      if (limit === undefined) continue
      const { id, end } = periodBounds(q.period, t)
      const prefix = q.byKey ? 'k' : 'p'
      const res = await this.#limiter(q, limit).get(`${prefix}:${key}:${id}`)
      const used = res?.consumedPoints ?? 0
      out.push({ name: q.name, used, limit, remaining: Math.max(0, limit - used), resetAt: end })
    }
    return out
  }

  async reset(key: string, name?: string): Promise<void> {
    const t = await this.#time()
    for (const q of this.quotas) {
      if (name !== undefined && q.name !== name) continue
      const { id } = periodBounds(q.period, t)
      const k = `${q.byKey ? 'k' : 'p'}:${key}:${id}`
      for (const [lid, limiter] of this.#limiters)
        if (lid.startsWith(`${q.name}|`)) await limiter.delete(k)
    }
  }

  async refund(key: string, units: number, name?: string): Promise<void> {
    const t = await this.#time()
    for (const q of this.quotas) {
      if (name !== undefined && q.name !== name) continue
      const { id } = periodBounds(q.period, t)
      const k = `${q.byKey ? 'k' : 'p'}:${key}:${id}`
      for (const [lid, limiter] of this.#limiters)
        if (lid.startsWith(`${q.name}|`)) await limiter.reward(k, units)
    }
  }
}

const OK: StageResult = Object.freeze({ ok: true })
