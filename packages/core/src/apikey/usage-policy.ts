/**
 * Per-key usage policies: validation of what a manager is given, and the compiled form the
 * verifier checks on every request (an IP matcher and origin matchers, built once per record).
 *
 * Reachable from `@portcullis/core`.
 * @packageDocumentation
 */
import { IpMatcher, parseCidr, type Cidr } from '../internal/ip.js'
import { parseDurationMs, type DurationInput } from '../validation/type-converter.js'
import { suggest, type TypeValidator } from '../validation/type-validator.js'
import type { ApiKeyUsagePolicy } from './key-store.js'

/** What a caller writes for a key's usage policy; durations may be strings (`1m`). */
export interface ApiKeyUsagePolicyInput {
  /** Client IPs allowed to use the key: CIDRs (`10.0.0.0/8`, `2001:db8::/32`) or addresses. */
  readonly allowedCidrs?: readonly string[]
  /**
   * `Origin` values allowed: exact origins (`https://app.example.com`), or a host wildcard
   * (`*.example.com`, any scheme; `https://*.example.com`, that scheme). A request without an
   * `Origin` header is refused when this is set.
   */
  readonly allowedOrigins?: readonly string[]
  /** Per-key rate limits, enforced by the limits stage in addition to the global limits. */
  readonly rateLimits?: readonly { readonly limit: number; readonly windowMs: DurationInput }[]
  /** Per-key quota per UTC day or month, enforced by the quota stage. */
  readonly quota?: { readonly limit: number; readonly period: 'day' | 'month' }
}

const POLICY_FIELDS = ['allowedCidrs', 'allowedOrigins', 'rateLimits', 'quota']
const WILDCARD_ORIGIN = /^(?:([a-z][a-z0-9+.-]*):\/\/)?\*\.([a-z0-9-]+(?:\.[a-z0-9-]+)*)$/

function isOrigin(value: string): boolean {
  if (WILDCARD_ORIGIN.test(value)) return true
  try {
    return new URL(value).origin === value
  } catch {
    return false
  }
}

/**
 * Validates a usage policy input under `path` of `v` and returns its stored form (durations in
 * ms), or `undefined` when it is invalid (the issues are recorded on `v`).
 */
export function resolveUsagePolicy(
  v: TypeValidator,
  path: string,
  input: unknown,
): ApiKeyUsagePolicy | undefined {
  const raw = v.object(path, input) as ApiKeyUsagePolicyInput | undefined
  if (raw === undefined) return undefined
  const pv = v.child(path)
  // An unknown field fails rather than warns: a typo such as `allowedCidr` must not leave a key
  // unrestricted while its owner believes it is pinned.
  for (const key of Object.keys(raw)) {
    if (POLICY_FIELDS.includes(key)) continue
    const hint = suggest(key, POLICY_FIELDS)
    pv.fail(
      key,
      `unknown usage policy field${hint === undefined ? '' : `; did you mean ${JSON.stringify(hint)}?`}`,
    )
  }
  const out: {
    allowedCidrs?: string[]
    allowedOrigins?: string[]
    rateLimits?: { limit: number; windowMs: number }[]
    quota?: { limit: number; period: 'day' | 'month' }
  } = {}
  if (raw.allowedCidrs !== undefined) {
    const list = pv.array('allowedCidrs', raw.allowedCidrs, (cv, i, c) => {
      const text = cv.string(i, c, { maxLength: 64 })
      if (text === undefined) return undefined
      return parseCidr(text) === undefined
        ? cv.fail(i, `must be an IPv4/IPv6 address or CIDR, received ${JSON.stringify(text)}`)
        : text
    })
    if (list !== undefined) out.allowedCidrs = list
  }
  if (raw.allowedOrigins !== undefined) {
    const list = pv.array('allowedOrigins', raw.allowedOrigins, (ov, i, o) => {
      const text = ov.string(i, o, { maxLength: 256 })
      if (text === undefined) return undefined
      return isOrigin(text)
        ? text
        : ov.fail(
            i,
            `must be an origin (https://app.example.com) or *.example.com, received ${JSON.stringify(text)}`,
          )
    })
    if (list !== undefined) out.allowedOrigins = list
  }
  if (raw.rateLimits !== undefined) {
    const list = pv.array('rateLimits', raw.rateLimits, (rv, i, r) => {
      const rule = rv.object(i, r) as { limit?: unknown; windowMs?: unknown } | undefined
      if (rule === undefined) return undefined
      const rc = rv.child(i)
      const limit = rc.integer('limit', rule.limit, { min: 1 })
      const windowMs = parseDurationMs(rule.windowMs as DurationInput)
      if (windowMs === undefined || windowMs < 1)
        return rc.fail(
          'windowMs',
          `must be a positive duration, received ${JSON.stringify(rule.windowMs)}`,
        )
      return limit === undefined ? undefined : { limit, windowMs }
    })
    if (list !== undefined) out.rateLimits = list
  }
  if (raw.quota !== undefined) {
    const q = pv.object('quota', raw.quota) as { limit?: unknown; period?: unknown } | undefined
    if (q !== undefined) {
      const qv = pv.child('quota')
      const limit = qv.integer('limit', q.limit, { min: 0 })
      const period = qv.oneOf('period', q.period, ['day', 'month'] as const, 'quota period')
      if (limit !== undefined && period !== undefined) out.quota = { limit, period }
    }
  }
  return out
}

/** A usage policy compiled for per-request checks. */
export interface CompiledUsagePolicy {
  /** `undefined`: any client IP. */
  readonly ips: IpMatcher | undefined
  /** `undefined`: any origin. */
  readonly origins: ((origin: string | undefined) => boolean) | undefined
}

const ANY: CompiledUsagePolicy = Object.freeze({ ips: undefined, origins: undefined })

/** Compiles `policy` (once per key record; the verifier caches the result with the record). */
export function compileUsagePolicy(policy: ApiKeyUsagePolicy | undefined): CompiledUsagePolicy {
  if (
    policy === undefined ||
    (policy.allowedCidrs === undefined && policy.allowedOrigins === undefined)
  )
    return ANY
  let ips: IpMatcher | undefined
  if (policy.allowedCidrs !== undefined) {
    const cidrs: Cidr[] = []
    for (const c of policy.allowedCidrs) {
      const parsed = parseCidr(c)
      // A stored entry that does not parse allows nothing (fail closed), rather than everything.
      if (parsed !== undefined) cidrs.push(parsed)
    }
    ips = new IpMatcher(cidrs)
  }
  let origins: ((origin: string | undefined) => boolean) | undefined
  if (policy.allowedOrigins !== undefined) {
    const exact = new Set<string>()
    const wild: Array<{ scheme: string | undefined; suffix: string }> = []
    for (const o of policy.allowedOrigins) {
      const m = WILDCARD_ORIGIN.exec(o)
      if (m === null) exact.add(o.toLowerCase())
      else wild.push({ scheme: m[1], suffix: `.${m[2] as string}` })
    }
    origins = (origin) => {
      if (origin === undefined) return false
      const o = origin.toLowerCase()
      if (exact.has(o)) return true
      if (wild.length === 0) return false
      let url: URL
      try {
        url = new URL(o)
      } catch {
        return false
      }
      if (url.origin !== o) return false
      const scheme = url.protocol.slice(0, -1)
      return wild.some(
        (w) => (w.scheme === undefined || w.scheme === scheme) && url.hostname.endsWith(w.suffix),
      )
    }
  }
  return Object.freeze({ ips, origins })
}

/** Whether `ip` is allowed by `ips` (every spelling of an address alike; IPv4-mapped as IPv4). */
export function ipAllowed(ips: IpMatcher, ip: string | undefined): boolean {
  return ip !== undefined && ips.has(ip) === true
}
