/**
 * The minimal request object a passport strategy runs on when the gate drives it, and the
 * redaction of what that request carried from anything said about a failure.
 * @internal
 */
import type { GateRequest } from '@portcullis/core'
import type { PassportRequest } from '../passport-request.js'

/** A strategy's request plus the header values it could have read (the credentials among them). */
export interface PassportRequestShim {
  readonly request: PassportRequest
  /** Header values the strategy could have read. */
  readValues(): string[]
}

/** Builds the request a strategy sees: headers, method, URL and query; no body, no session. */
export function createPassportRequest(gateRequest: GateRequest): PassportRequestShim {
  const url =
    gateRequest.query.length === 0 ? gateRequest.path : `${gateRequest.path}?${gateRequest.query}`
  const read = new Map<string, string>()
  const header = (name: string): string | undefined => {
    const lower = name.toLowerCase()
    const value = gateRequest.header(lower)
    if (value !== undefined) read.set(lower, value)
    return value
  }
  const raw = gateRequest.rawHeaders
  let headers: Record<string, string | undefined>
  if (raw !== undefined) {
    // A null prototype: a header named `__proto__` or `constructor` stays a plain key.
    headers = Object.create(null) as Record<string, string | undefined>
    for (let i = 0; i < raw.length; i += 2) {
      const name = (raw[i] as string).toLowerCase()
      if (!(name in headers)) headers[name] = header(name)
    }
  } else {
    // Without rawHeaders the names are unknown: answer each lookup through GateRequest.header.
    headers = new Proxy(Object.create(null) as Record<string, string | undefined>, {
      get: (_target, key) => (typeof key === 'string' ? header(key) : undefined),
      has: (_target, key) => typeof key === 'string' && header(key) !== undefined,
    })
  }
  const request: PassportRequest = {
    method: gateRequest.method,
    url,
    originalUrl: url,
    path: gateRequest.path,
    headers,
    query: parseQuery(gateRequest.query),
    body: undefined,
    ip: gateRequest.ip,
    get: header,
    header,
  }
  return { request, readValues: () => [...read.values()] }
}

function parseQuery(query: string): Record<string, string | string[]> {
  const out = Object.create(null) as Record<string, string | string[]>
  if (query.length === 0) return out
  for (const [key, value] of new URLSearchParams(query)) {
    const prev = out[key]
    out[key] = prev === undefined ? value : Array.isArray(prev) ? [...prev, value] : [prev, value]
  }
  return out
}

const MIN_SECRET_LENGTH = 4
// Auth schemes (RFC 9110 §11.1 and common custom ones): said in reasons, never secret themselves.
const SCHEMES = new Set([
  'basic',
  'bearer',
  'digest',
  'negotiate',
  'ntlm',
  'jwt',
  'token',
  'apikey',
])
const MAX_REASON_LENGTH = 200

/**
 * A function that replaces every credential-looking part of the given header values (and the
 * decoded user-id and password of a Basic credential) with `[redacted]`, and truncates.
 */
export function createRedactor(values: readonly string[]): (text: string) => string {
  const secrets = new Set<string>()
  for (const value of values) {
    secrets.add(value.trim())
    for (const part of value.split(/[\s,;]+/))
      if (part.length >= MIN_SECRET_LENGTH && !SCHEMES.has(part.toLowerCase())) secrets.add(part)
    // RFC 7617: a message may quote the decoded `user-id:password`; both halves are secret.
    const basic = /^basic\s+(\S+)/i.exec(value.trim())
    if (basic !== null) {
      const decoded = Buffer.from(basic[1] as string, 'base64').toString('utf8')
      const colon = decoded.indexOf(':')
      secrets.add(decoded)
      if (colon !== -1) {
        for (const half of [decoded.slice(0, colon), decoded.slice(colon + 1)])
          if (half.length >= MIN_SECRET_LENGTH) secrets.add(half)
      }
    }
  }
  secrets.delete('')
  const ordered = [...secrets].sort((a, b) => b.length - a.length)
  return (text: string): string => {
    let out = text
    for (const secret of ordered)
      if (out.includes(secret)) out = out.split(secret).join('[redacted]')
    return out.length > MAX_REASON_LENGTH ? `${out.slice(0, MAX_REASON_LENGTH)}…` : out
  }
}
