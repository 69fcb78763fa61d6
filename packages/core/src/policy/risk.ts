/**
 * Risk assessment: pluggable signals, each worth 0-1 of its weight, add up to a score 0-100.
 *
 * Reachable from `@portcullis/core`.
 * @packageDocumentation
 */
import { LRUCache } from 'lru-cache'
import type { Principal } from '../types.js'
import type { CompiledRisk } from './compile.js'
import type { EvalContext } from './conditions.js'

/** What a risk signal sees. */
export interface RiskSignalContext {
  readonly principal: Principal
  readonly ip: string | undefined
  /** Epoch ms. */
  readonly now: number
  readonly action: string
  /** What this process has seen of the principal. */
  readonly history: PrincipalHistory
  /** The compiled risk settings. */
  readonly settings: CompiledRisk
  /** The evaluation context (for signals that read attributes). */
  readonly context: EvalContext
}

/** A risk signal: how strongly (0 = not at all, 1 = fully) it fires for this request. */
export type RiskSignal = (context: RiskSignalContext) => number

/** What the risk state remembers per principal (bounded, in memory, per process). */
export interface PrincipalHistory {
  /** Recently seen client IPs of allowed requests, newest last (at most 16). */
  readonly ips: readonly string[]
  /** Start of the current one-minute window and the requests counted in it. */
  readonly windowStart: number
  readonly count: number
  /** Times of recent denials (at most 32, newest last). */
  readonly failures: readonly number[]
}

interface MutableHistory {
  ips: string[]
  windowStart: number
  count: number
  failures: number[]
}

const FAILURE_WINDOW_MS = 15 * 60_000
const MAX_IPS = 16
const MAX_FAILURES = 32

function keyCreatedMs(v: unknown): number | undefined {
  if (typeof v === 'number' && Number.isFinite(v)) return v < 1e12 ? v * 1000 : v
  if (typeof v === 'string') {
    const t = Date.parse(v)
    return Number.isNaN(t) ? undefined : t
  }
  return undefined
}

/** The built-in signals. */
export const BUILTIN_RISK_SIGNALS: Readonly<Record<string, RiskSignal>> = Object.freeze({
  // Only once the principal has a history: a first request has no baseline to differ from.
  newIp: ({ ip, history }) =>
    ip !== undefined && history.ips.length > 0 && !history.ips.includes(ip) ? 1 : 0,
  unusualHour: ({ now, settings }) => (settings.usualHours(now) ? 0 : 1),
  recentFailures: ({ now, history, settings }) => {
    let n = 0
    for (const t of history.failures) if (now - t < FAILURE_WINDOW_MS) n++
    return Math.min(1, n / settings.failures)
  },
  requestRate: ({ history, settings }) => Math.min(1, history.count / settings.ratePerMinute),
  keyAge: ({ settings, context, now }) => {
    const created = keyCreatedMs(settings.keyCreated(context))
    if (created === undefined) return 0
    return Math.max(0, Math.min(1, (now - created) / (settings.keyMaxAgeDays * 86_400_000)))
  },
  missingMfa: ({ settings, context }) =>
    settings.stepUpSatisfiedBy.test(context) === true ? 0 : 1,
})

/** Per-process memory of principals for the stateful signals, bounded by an LRU. */
export class RiskState {
  readonly #byPrincipal: LRUCache<string, MutableHistory>

  constructor(maxPrincipals = 10_000) {
    this.#byPrincipal = new LRUCache({ max: maxPrincipals })
  }

  /** Counts a request of `principalId` at `now` and returns its history. */
  touch(principalId: string, now: number): PrincipalHistory {
    let h = this.#byPrincipal.get(principalId)
    if (h === undefined) {
      h = { ips: [], windowStart: now, count: 0, failures: [] }
      this.#byPrincipal.set(principalId, h)
    }
    if (now - h.windowStart >= 60_000 || now < h.windowStart) {
      h.windowStart = now
      h.count = 0
    }
    h.count++
    return h
  }

  /** The history of `principalId` without counting a request. */
  peek(principalId: string): PrincipalHistory | undefined {
    return this.#byPrincipal.peek(principalId)
  }

  /** Records the outcome of a request. */
  settle(principalId: string, ip: string | undefined, allowed: boolean, now: number): void {
    let h = this.#byPrincipal.get(principalId)
    if (h === undefined) {
      h = { ips: [], windowStart: now, count: 0, failures: [] }
      this.#byPrincipal.set(principalId, h)
    }
    if (allowed) {
      if (ip !== undefined && !h.ips.includes(ip)) {
        h.ips.push(ip)
        if (h.ips.length > MAX_IPS) h.ips.shift()
      }
    } else {
      h.failures.push(now)
      if (h.failures.length > MAX_FAILURES) h.failures.shift()
    }
  }

  /** Records a failure seen elsewhere (e.g. a failed login) for `principalId`. */
  noteFailure(principalId: string, now: number): void {
    this.settle(principalId, undefined, false, now)
  }
}

/**
 * Scores a request: the weighted sum of the configured signals, capped at 100. Returns the score
 * and, when `detail` is given, fills it with each firing signal's points.
 * @internal
 */
export function assessRisk(
  ctx: RiskSignalContext,
  signals: Readonly<Record<string, RiskSignal>>,
  detail?: Record<string, number>,
): number {
  let score = 0
  for (const [name, weight] of ctx.settings.weights) {
    const signal = Object.hasOwn(signals, name) ? signals[name] : undefined
    if (signal === undefined) continue
    let raw: number
    try {
      raw = signal(ctx)
    } catch {
      // A broken signal must not lower the score: it counts as firing fully.
      raw = 1
    }
    const strength = Number.isFinite(raw) ? Math.max(0, Math.min(1, raw)) : 1
    if (strength > 0) {
      const points = weight * strength
      score += points
      if (detail !== undefined) detail[name] = Math.round(points * 10) / 10
    }
  }
  return Math.min(100, Math.round(score))
}
