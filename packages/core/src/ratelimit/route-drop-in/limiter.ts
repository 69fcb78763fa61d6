/**
 * The `@fastify/rate-limit` drop-in's limiter, apart from the framework: the key and count of a
 * request, the headers of its answer and what a limited request is answered with.
 * @packageDocumentation
 */
import { AuthError, RateLimitedError } from '../../errors.js'
import { formatDuration, toHeaderSeconds } from '../../validation/type-converter.js'
import { formatIp, parseIp } from '../../internal/ip.js'
import { ipKeyGenerator } from '../drop-in/ip-key-generator.js'
import type {
  ErrorResponseBuilderContext,
  RateLimitResult,
  RouteLimitParams,
  RouteLimitStore,
} from './types.js'

/**
 * `@fastify/rate-limit`'s `normalizeIP`, for custom key generators: IPv4 as is, IPv4-mapped IPv6
 * as IPv4, other IPv6 as the first address of its `/ipv6Subnet` network (`2001:db8:1:2::`).
 */
export function normalizeIP(ip: string, ipv6Subnet = 64): string {
  const parsed = parseIp(ip)
  if (parsed === undefined) return ip.toLowerCase()
  if (parsed.family === 4) return formatIp(parsed)
  // From the parsed form, not the text: core keys `::1.2.3.4` (IPv4-compatible) as IPv4,
  // @fastify/rate-limit maps only `::ffff:0:0/96` to IPv4.
  return ipKeyGenerator(formatIp(parsed), ipv6Subnet).replace(/\/\d+$/, '')
}

/**
 * Counts (or, with `increment: false`, only reads) one request: its key, the allow list, `max` and
 * `timeWindow` for it, the store's answer. A failing store rejects with
 * `ERR_RATELIMIT_UNAVAILABLE` (503), unless `skipOnError`.
 */
export async function checkRouteLimit<TRequest extends { readonly ip: string }>(
  p: RouteLimitParams<TRequest>,
  store: RouteLimitStore,
  request: TRequest,
  groupId: string | undefined,
  increment = true,
): Promise<RateLimitResult> {
  let key = p.keyGenerator ? await p.keyGenerator(request) : normalizeIP(request.ip, p.ipv6Subnet)
  if (groupId) key += groupId
  const k = key as string
  const allowList = p.allowList
  if (typeof allowList === 'function' ? await allowList(request, k) : allowList?.includes(k))
    return { isAllowed: true, key: k }
  const max = typeof p.max === 'number' ? p.max : await p.max(request, k)
  const timeWindow =
    typeof p.timeWindow === 'number' ? p.timeWindow : await p.timeWindow(request, k)
  const method = increment ? store.incr : store.read
  if (method === undefined)
    throw new Error('The configured rate-limit store does not implement a `read` method')
  let counted = { current: 0, ttl: 0 }
  try {
    counted = await new Promise((resolve, reject) => {
      method.call(store, k, (e, r) => (e ? reject(e) : resolve(r!)), timeWindow, max)
    })
  } catch (cause) {
    if (!p.skipOnError)
      throw new AuthError('ERR_RATELIMIT_UNAVAILABLE', 'Rate limiting is unavailable', { cause })
  }
  const { current, ttl } = counted
  return {
    isAllowed: false,
    key: k,
    max,
    timeWindow,
    remaining: Math.max(0, max - current),
    ttl,
    ttlInSeconds: Math.ceil(ttl / 1000),
    isExceeded: current > max,
    isBanned: p.ban !== -1 && current - max > p.ban,
  }
}

/** The headers of a counted answer, in the order `@fastify/rate-limit` sets them. */
export function routeLimitHeaders(
  p: RouteLimitParams<never>,
  r: Extract<RateLimitResult, { isAllowed: false }>,
): [string, number][] {
  const [limit, remaining, reset] = p.labels
  const show = r.isExceeded ? p.addHeaders : p.addHeadersOnExceeding
  const out: [string, number][] = []
  if (show[limit]) out.push([limit, r.max])
  if (show[remaining]) out.push([remaining, r.remaining])
  if (show[reset]) out.push([reset, r.ttlInSeconds])
  if (r.isExceeded && show['retry-after']) out.push(['retry-after', r.ttlInSeconds])
  return out
}

/** What `errorResponseBuilder` is given for a limited request. */
export function routeLimitContext(
  r: Extract<RateLimitResult, { isAllowed: false }>,
): ErrorResponseBuilderContext {
  return {
    statusCode: r.isBanned ? 403 : 429,
    ban: r.isBanned,
    max: r.max,
    ttl: r.ttl,
    after: formatDuration(r.ttlInSeconds * 1000),
  }
}

/** The error a limited request's RFC 9457 problem is made from (`problemDetails: true`). */
export function routeLimitProblem(r: Extract<RateLimitResult, { isAllowed: false }>): AuthError {
  return r.isBanned
    ? new AuthError('ERR_POLICY_DENIED', 'Banned for sending too many requests over the limit')
    : new RateLimitedError('ERR_RATE_LIMITED', {
        policy: `${r.max}-in-${toHeaderSeconds(r.timeWindow)}s`,
        limit: r.max,
        remaining: 0,
        retryAfterMs: r.ttl,
      })
}
