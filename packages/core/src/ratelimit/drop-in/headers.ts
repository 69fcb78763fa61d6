/**
 * The drop-in's headers (express-rate-limit's `headers.ts`): the exact bytes express-rate-limit
 * sends, legacy `X-RateLimit-*` and the IETF drafts 6, 7 and 8.
 * @packageDocumentation
 */
import { Buffer } from 'node:buffer'
import { createHash } from 'node:crypto'
import { toHeaderSeconds } from '../../validation/type-converter.js'
import { rateLimitHeaders, type LimitReport } from '../headers.js'
import type { DropInHeader, DropInOptionsUsed, DropInRateLimitInfo } from './types.js'

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
/** The draft-8 partition key: base64 of the first 12 hex digits of SHA-256(key). */
function partitionKey(key: string): string {
  const hex = createHash('sha256').update(key).digest('hex').slice(0, 12)
  return Buffer.from(hex).toString('base64')
}

/** The headers of one counted request, `Retry-After` aside (the engine adds it when limited). */
export async function dropInHeaders<TRequest, TResponse, TNext>(
  o: DropInOptionsUsed<TRequest, TResponse, TNext>,
  request: TRequest,
  response: TResponse,
  info: DropInRateLimitInfo,
  now: number,
): Promise<DropInHeader[]> {
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
