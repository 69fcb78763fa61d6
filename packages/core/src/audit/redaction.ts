/**
 * What an audit event may contain: hostile content made safe (huge fields truncated with a marker,
 * deep nesting cut, `__proto__` kept as a plain data key, values JSON cannot hold turned into
 * strings), credentials removed everywhere (by field name and by shape: JWTs, bearer tokens, API
 * keys), configured PII fields masked at any depth, and client IPs truncated or keyed-hashed.
 *
 * Reachable from `@gatehouse/core`.
 * @packageDocumentation
 */
import { createHmac } from 'node:crypto'
import { isIP } from 'node:net'

/** How client IPs are written. */
export type AuditIpMode = 'keep' | 'truncate' | 'hmac'

/** Options of {@link createAuditRedactor}. */
export interface AuditRedactionOptions {
  /** Field names masked (case-insensitively, at any depth), e.g. `['email', 'phone']`. @default [] */
  readonly piiFields?: readonly string[]
  /** Client IPs: kept, truncated (IPv4 /24, IPv6 /48) or keyed-hashed. @default 'keep' */
  readonly ip?: AuditIpMode
  /** HMAC key for `ip: 'hmac'`. */
  readonly ipKey?: string | Uint8Array
  /** Longest string kept; longer ones end in a `…[truncated N chars]` marker. @default 4096 */
  readonly maxFieldLength?: number
  /** Deepest nesting kept. @default 8 */
  readonly maxDepth?: number
}

/** The marker that replaces a removed credential. */
export const REDACTED = '[REDACTED]'
/** The marker that replaces a masked PII value. */
export const MASKED = '[MASKED]'

/**
 * Field names whose values are credentials, compared lower-cased without `-` and `_`. They are
 * removed wherever they occur, whatever the configuration.
 */
const CREDENTIAL_FIELDS = new Set([
  'authorization',
  'proxyauthorization',
  'cookie',
  'cookies',
  'setcookie',
  'xapikey',
  'apikey',
  'apisecret',
  'password',
  'passwd',
  'secret',
  'clientsecret',
  'token',
  'accesstoken',
  'refreshtoken',
  'idtoken',
  'bearer',
  'jwt',
  'privatekey',
  'pepper',
  'credential',
  'credentials',
  'sessionid',
  'xauthtoken',
  'xcsrftoken',
])

// JWS compact serialization: the protected header is base64url JSON, so it starts with `eyJ` (`{"`).
const JWT_PATTERN = /eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*/g
// Gatehouse API keys: `<prefix>_<54 base62>` (apikey/format.ts); also any long token after a scheme.
const API_KEY_PATTERN = /\b[a-z][a-z0-9]{0,15}(?:_[a-z0-9]{1,16}){0,2}_[0-9A-Za-z]{54}\b/g
const SCHEME_PATTERN = /\b(Bearer|Basic|Digest|Token|ApiKey)\s+[A-Za-z0-9._~+/=-]{4,}/gi
const QUERY_SECRET_PATTERN =
  /([?&;\s]|^)((?:access_token|id_token|refresh_token|api_key|apikey|token|password|secret|client_secret)=)[^&\s;#]+/gi
const QUICK_CHECK = /eyJ|_[0-9A-Za-z]{54}|Bearer|Basic|Digest|Token|ApiKey|=/i

/** Removes credentials recognised by shape from a string (JWTs, bearer tokens, API keys, `token=`). */
export function scrubSecrets(text: string): string {
  if (!QUICK_CHECK.test(text)) return text
  return text
    .replace(JWT_PATTERN, '[REDACTED:jwt]')
    .replace(SCHEME_PATTERN, (_m, scheme: string) => `${scheme} ${REDACTED}`)
    .replace(API_KEY_PATTERN, '[REDACTED:apikey]')
    .replace(QUERY_SECRET_PATTERN, (_m, lead: string, name: string) => `${lead}${name}${REDACTED}`)
}

/** Whether a field name names a credential (`Authorization`, `x-api-key`, `client_secret`, ...). */
export function isCredentialField(name: string): boolean {
  return CREDENTIAL_FIELDS.has(normalizeName(name))
}

function normalizeName(name: string): string {
  return name.toLowerCase().replace(/[-_]/g, '')
}

/** Truncates an IP: IPv4 to its /24 (`203.0.113.0`), IPv6 to its /48 (`2001:db8:1::`). */
export function truncateIp(ip: string): string {
  const mapped = ip.startsWith('::ffff:') ? ip.slice(7) : ip
  const kind = isIP(mapped)
  if (kind === 4) return mapped.replace(/\.\d+$/, '.0')
  if (kind === 6) {
    const [head = ''] = mapped.split('::')
    const groups = head.split(':').filter((g) => g !== '')
    return `${groups.slice(0, 3).join(':')}::`
  }
  return REDACTED
}

/** A function that makes one event value safe to write. */
export type AuditRedactor = (value: unknown) => unknown

/**
 * Compiles a redactor: it returns a deep copy of `value` with hostile content bounded, credentials
 * removed, PII masked and `ip` fields rewritten. The input is never modified.
 */
export function createAuditRedactor(options: Readonly<AuditRedactionOptions> = {}): AuditRedactor {
  const pii = new Set((options.piiFields ?? []).map(normalizeName))
  const ipMode = options.ip ?? 'keep'
  const ipKey = options.ipKey
  const maxLength = options.maxFieldLength ?? 4096
  const maxDepth = options.maxDepth ?? 8
  const ip = (value: string): string =>
    ipMode === 'truncate'
      ? truncateIp(value)
      : ipMode === 'hmac' && ipKey !== undefined
        ? `ip_${createHmac('sha256', ipKey).update(value).digest('hex').slice(0, 32)}`
        : value

  const text = (value: string): string => {
    const s = scrubSecrets(value)
    if (s.length <= maxLength) return s
    return `${s.slice(0, maxLength)}…[truncated ${s.length - maxLength} chars]`
  }

  const clean = (value: unknown, depth: number, seen: Set<object>): unknown => {
    switch (typeof value) {
      case 'string':
        return text(value)
      case 'number':
        return Number.isFinite(value) ? value : String(value)
      case 'boolean':
        return value
      case 'undefined':
        return undefined
      case 'bigint':
        return value.toString()
      case 'object':
        break
      default:
        return `[${typeof value}]`
    }
    if (value === null) return null
    if (seen.has(value)) return '[cycle]'
    if (depth >= maxDepth) return '[too deep]'
    if (value instanceof Date) return Number.isNaN(value.getTime()) ? null : value.toISOString()
    if (value instanceof Error) return text(`${value.name}: ${value.message}`)
    seen.add(value)
    let out: unknown
    if (Array.isArray(value)) {
      const n = Math.min(value.length, 1000)
      const arr: unknown[] = new Array(n)
      for (let i = 0; i < n; i++) arr[i] = clean(value[i], depth + 1, seen) ?? null
      if (value.length > n) arr.push(`…[truncated ${value.length - n} items]`)
      out = arr
    } else if (ArrayBuffer.isView(value) || value instanceof ArrayBuffer) {
      out = `[binary ${value.byteLength} bytes]`
    } else {
      const obj: Record<string, unknown> = {}
      const keys = Object.keys(value)
      const n = Math.min(keys.length, 256)
      for (let i = 0; i < n; i++) {
        const rawKey = keys[i] as string
        const key = rawKey.length > 256 ? text(rawKey.slice(0, 256)) : rawKey
        const norm = normalizeName(key)
        let v: unknown
        if (CREDENTIAL_FIELDS.has(norm)) v = REDACTED
        else if (pii.has(norm)) v = MASKED
        else {
          v = clean((value as Record<string, unknown>)[rawKey], depth + 1, seen)
          if (norm === 'ip' && typeof v === 'string') v = ip(v)
        }
        if (v === undefined) continue
        // `__proto__` stays a plain own data key, never the prototype.
        if (key === '__proto__')
          Object.defineProperty(obj, key, {
            value: v,
            enumerable: true,
            writable: true,
            configurable: true,
          })
        else obj[key] = v
      }
      if (keys.length > n) obj['…truncated'] = `${keys.length - n} more keys`
      out = obj
    }
    seen.delete(value)
    return out
  }
  return (value) => clean(value, 0, new Set())
}
