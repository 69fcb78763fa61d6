/**
 * What an audit event may contain: hostile content made safe (huge fields truncated with a marker,
 * deep nesting cut, `__proto__` kept as a plain data key, values JSON cannot hold turned into
 * strings), credentials removed everywhere (by field name and by shape: JWTs, bearer tokens, API
 * keys), configured PII fields masked at any depth, and client IPs truncated or keyed-hashed.
 *
 * Reachable from `@portcullis/core`.
 * @packageDocumentation
 */
import { createHmac, createSecretKey } from 'node:crypto'
import { formatIp, maskIp, normalizeIp, parseIp } from '../internal/ip.js'

/** How client IPs are written. */
export type AuditIpMode = 'keep' | 'truncate' | 'hmac'

/** Options of {@link createAuditRedactor}. */
export interface AuditRedactionOptions {
  /** Field names masked (case-insensitively, at any depth), e.g. `['email', 'phone']`. @default [] */
  readonly piiFields?: readonly string[]
  /**
   * Client IPs: kept as given, truncated (IPv4 /24, IPv6 /48) or keyed-hashed. Truncation and the
   * hash work on the address, not its spelling: `::ffff:1.2.3.4` is `1.2.3.4`, `2001:DB8::1` is
   * `2001:db8::1`. @default 'keep'
   */
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
// Portcullis API keys: `<prefix>_<54 base62>` (apikey/format.ts); also any long token after a scheme.
const API_KEY_PATTERN = /\b[a-z][a-z0-9]{0,15}(?:_[a-z0-9]{1,16}){0,2}_[0-9A-Za-z]{54}\b/g
const SCHEME_PATTERN = /\b(Bearer|Basic|Digest|Token|ApiKey)\s+[A-Za-z0-9._~+/=-]{4,}/gi
const QUERY_SECRET_PATTERN =
  /([?&;\s]|^)((?:access_token|id_token|refresh_token|api_key|apikey|token|password|secret|client_secret)=)[^&\s;#]+/gi
// What every pattern above needs, checked first: most strings have none of it. A scheme counts
// only before whitespace, as in SCHEME_PATTERN, so a plain `apikey` (a principal's method) or
// `Token` passes without the four replacements.
const QUICK_CHECK = /eyJ|_[0-9A-Za-z]{54}|(?:Bearer|Basic|Digest|Token|ApiKey)\s|=/i

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

/**
 * Truncates an IP: IPv4 to its /24 (`203.0.113.0`), IPv6 to its /48 in RFC 5952 form
 * (`2001:db8:1::`); an IPv4-mapped IPv6 address counts as IPv4. Every spelling of an address gives
 * the same answer; what is not an address gives {@link REDACTED}.
 */
export function truncateIp(ip: string): string {
  const parsed = parseIp(ip)
  if (parsed === undefined) return REDACTED
  return formatIp(maskIp(parsed, parsed.family === 4 ? 24 : 48))
}

/** A function that makes one event value safe to write. */
export type AuditRedactor = (value: unknown) => unknown

/**
 * Compiles a redactor: it returns a deep copy of `value` with hostile content bounded, credentials
 * removed, PII masked and `ip` fields rewritten. The input is never modified.
 */
export function createAuditRedactor(options: Readonly<AuditRedactionOptions> = {}): AuditRedactor {
  return compileAuditRedaction(options).redact
}

/**
 * What the redactor does with a field, by its name: clean and keep it, replace a credential by
 * {@link REDACTED}, mask configured PII with {@link MASKED}, or clean then rewrite a client IP.
 * @internal
 */
export type FieldKind = 'keep' | 'credential' | 'pii' | 'ip'

/**
 * The parts of a compiled redactor, for the trail's event preparation, which cleans the event's
 * own top-level fields itself and hands every nested value to {@link CompiledAuditRedaction.field}.
 * @internal
 */
export interface CompiledAuditRedaction {
  /** The whole redactor (see {@link createAuditRedactor}). */
  readonly redact: AuditRedactor
  /** Cleans the value of a `keep` field found at `depth` (the event is depth 0). */
  field(value: unknown, depth: number): unknown
  /** How a field of this name is treated. */
  kind(name: string): FieldKind
  /** Scrubs credentials from a string and bounds its length. */
  text(value: string): string
  /** Rewrites a (cleaned) client IP per the `ip` mode. */
  ip(value: string): string
}

/** Field names whose kind is remembered per redactor (cleared when full: names come from input). */
const KIND_MEMO_MAX = 4096
/** Client IPs whose rewritten form is remembered per redactor (cleared when full). */
const IP_MEMO_MAX = 1024

/** Compiles the redaction options once. @internal */
export function compileAuditRedaction(
  options: Readonly<AuditRedactionOptions> = {},
): CompiledAuditRedaction {
  const pii = new Set((options.piiFields ?? []).map(normalizeName))
  const ipMode = options.ip ?? 'keep'
  const ipKey = options.ipKey
  const maxLength = options.maxFieldLength ?? 4096
  const maxDepth = options.maxDepth ?? 8
  // The key is imported once, not on every event.
  const hmacKey =
    ipKey === undefined || ipKey.length === 0
      ? ipKey
      : createSecretKey(typeof ipKey === 'string' ? Buffer.from(ipKey, 'utf8') : ipKey)
  const rewrite = (value: string): string =>
    ipMode === 'truncate'
      ? truncateIp(value)
      : ipMode === 'hmac' && hmacKey !== undefined
        ? `ip_${createHmac('sha256', hmacKey)
            .update(normalizeIp(value) ?? value)
            .digest('hex')
            .slice(0, 32)}`
        : value
  // The same clients come back: remember recent answers (bounded; cleared when full).
  const ips = new Map<string, string>()
  const ip =
    ipMode === 'keep'
      ? (value: string): string => value
      : (value: string): string => {
          let out = ips.get(value)
          if (out === undefined) {
            out = rewrite(value)
            if (ips.size >= IP_MEMO_MAX) ips.clear()
            ips.set(value, out)
          }
          return out
        }

  const text = (value: string): string => {
    const s = scrubSecrets(value)
    if (s.length <= maxLength) return s
    return `${s.slice(0, maxLength)}…[truncated ${s.length - maxLength} chars]`
  }

  // Field names repeat (the schema's own, a handler's data keys): remember what each one is, so
  // the lower-casing and the regex of `normalizeName` run once per name, not once per event.
  const kinds = new Map<string, FieldKind>()
  const kind = (name: string): FieldKind => {
    let k = kinds.get(name)
    if (k === undefined) {
      const norm = normalizeName(name)
      k = CREDENTIAL_FIELDS.has(norm)
        ? 'credential'
        : pii.has(norm)
          ? 'pii'
          : norm === 'ip'
            ? 'ip'
            : 'keep'
      if (kinds.size >= KIND_MEMO_MAX) kinds.clear()
      kinds.set(name, k)
    }
    return k
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
        const k = kind(key)
        let v: unknown
        if (k === 'credential') v = REDACTED
        else if (k === 'pii') v = MASKED
        else {
          v = clean((value as Record<string, unknown>)[rawKey], depth + 1, seen)
          if (k === 'ip' && typeof v === 'string') v = ip(v)
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
  // One ancestor set for `field`, which only the trail's preparation calls (never re-entered:
  // nothing it runs can reach this redactor). `clean` removes what it adds; after a throw (a
  // hostile getter or proxy) it is emptied, so no stale entry reads as a cycle later.
  const ancestors = new Set<object>()
  return {
    redact: (value) => clean(value, 0, new Set()),
    field: (value, depth) => {
      if (typeof value === 'string') return text(value)
      try {
        return clean(value, depth, ancestors)
      } finally {
        if (ancestors.size > 0) ancestors.clear()
      }
    },
    kind,
    text,
    ip,
  }
}
