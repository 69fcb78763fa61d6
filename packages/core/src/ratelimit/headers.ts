/**
 * IETF RateLimit header fields: the current draft's `RateLimit-Policy` / `RateLimit` structured
 * lists (draft-ietf-httpapi-ratelimit-headers-08 onward, named policies), and the older draft-7
 * and draft-6 forms and `X-RateLimit-*` legacy headers, selectable as in express-rate-limit.
 *
 * Reachable from `@portcullis/core`.
 * @packageDocumentation
 */
import { toHeaderSeconds } from '../validation/type-converter.js'

/** Which header syntax to send. */
export type RateLimitHeaderStyle = 'draft-8' | 'draft-7' | 'draft-6'

/** The header styles, newest first. */
export const RATE_LIMIT_HEADER_STYLES: readonly RateLimitHeaderStyle[] = Object.freeze([
  'draft-8',
  'draft-7',
  'draft-6',
])

/** The state of one named limit after a request. */
export interface LimitReport {
  /** Policy name (a structured-field token or string). */
  readonly name: string
  readonly limit: number
  readonly remaining: number
  /** Until the window resets, in ms. */
  readonly resetMs: number
  /** Window length, in ms. */
  readonly windowMs: number
}

// Policy names are a handful of fixed strings: quote each once (two regex replacements per name
// and request showed in the full gate's CPU profile). Bounded in case names come from requests.
const sfQuoted = new Map<string, string>()
const sfString = (name: string): string => {
  let quoted = sfQuoted.get(name)
  if (quoted === undefined) {
    quoted = `"${name.replace(/[^\x20-\x7e]/g, '').replace(/["\\]/g, '\\$&')}"`
    if (sfQuoted.size >= 256) sfQuoted.clear()
    sfQuoted.set(name, quoted)
  }
  return quoted
}

// A policy's `RateLimit-Policy` item changes only when its limit or window does: the last one
// built per name is reused while they stay the same.
const policyItems = new Map<string, { limit: number; windowMs: number; item: string }>()
function policyItem(r: LimitReport): string {
  const last = policyItems.get(r.name)
  if (last !== undefined && last.limit === r.limit && last.windowMs === r.windowMs) return last.item
  const item = `${sfString(r.name)};q=${r.limit};w=${toHeaderSeconds(r.windowMs)}`
  if (policyItems.size >= 256) policyItems.clear()
  policyItems.set(r.name, { limit: r.limit, windowMs: r.windowMs, item })
  return item
}

/** The most constraining report: least remaining share of its limit, then soonest reset. */
export function tightest(reports: readonly LimitReport[]): LimitReport | undefined {
  let best: LimitReport | undefined
  for (const r of reports) {
    if (best === undefined) best = r
    else {
      const a = r.remaining / Math.max(1, r.limit)
      const b = best.remaining / Math.max(1, best.limit)
      if (a < b || (a === b && r.resetMs < best.resetMs)) best = r
    }
  }
  return best
}

/**
 * Header fields (lower-case names) for the given limits. Draft-8 lists every policy; draft-7/6,
 * which carry one policy, report the tightest. Legacy headers carry the tightest as
 * `X-RateLimit-Limit/Remaining/Reset` (reset as a Unix time, as express-rate-limit sends it).
 */
export function rateLimitHeaders(
  reports: readonly LimitReport[],
  style: RateLimitHeaderStyle | false,
  legacy: boolean,
  nowMs: number,
): Record<string, string> {
  const out: Record<string, string> = {}
  if (reports.length === 0) return out
  const t = tightest(reports) as LimitReport
  if (style === 'draft-8') {
    let policy = ''
    let state = ''
    for (const r of reports) {
      const sep = policy === '' ? '' : ', '
      policy += sep + policyItem(r)
      state += `${sep}${sfString(r.name)};r=${r.remaining};t=${toHeaderSeconds(r.resetMs)}`
    }
    out['ratelimit-policy'] = policy
    out.ratelimit = state
  } else if (style === 'draft-7') {
    out['ratelimit-policy'] = `${t.limit};w=${toHeaderSeconds(t.windowMs)}`
    out.ratelimit = `limit=${t.limit}, remaining=${t.remaining}, reset=${toHeaderSeconds(t.resetMs)}`
  } else if (style === 'draft-6') {
    out['ratelimit-policy'] = `${t.limit};w=${toHeaderSeconds(t.windowMs)}`
    out['ratelimit-limit'] = String(t.limit)
    out['ratelimit-remaining'] = String(t.remaining)
    out['ratelimit-reset'] = toHeaderSeconds(t.resetMs)
  }
  if (legacy) {
    out['x-ratelimit-limit'] = String(t.limit)
    out['x-ratelimit-remaining'] = String(t.remaining)
    out['x-ratelimit-reset'] = String(Math.ceil((nowMs + t.resetMs) / 1000))
  }
  return out
}
