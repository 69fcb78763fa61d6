/**
 * Failed-authentication throttling: failures counted per client address (IPv6 grouped by a
 * prefix) and per presented credential id, with lock-outs that double on each further failure.
 * The gate asks {@link AuthFailureThrottle.check} before verifying a credential and reports
 * {@link AuthFailureThrottle.failed} after a credential did not verify.
 *
 * This file holds the contract, the options, the key derivation, the bounded table both backends
 * keep in process memory, and the memory backend. The Redis backend is in `@portcullis/redis`.
 *
 * Reachable from `@portcullis/core`.
 * @packageDocumentation
 */
import { createHash } from 'node:crypto'
import { LRUCache } from 'lru-cache'
import { AuthError } from '../errors.js'
import { systemClock, type Clock } from '../internal/clock.js'
import { silentLogger, type Logger } from '../logger.js'
import { TypeValidator } from '../validation/type-validator.js'
import { clientIpKey } from '../ratelimit/client-ip.js'

/** `addressThreshold`: failures from one address (or IPv6 prefix) that start its first lock. */
export const DEFAULT_AUTH_FAILURE_ADDRESS_THRESHOLD = 10
/** `credentialThreshold`: failures of one credential id that start its first lock. */
export const DEFAULT_AUTH_FAILURE_CREDENTIAL_THRESHOLD = 5
/** `windowMs`: 15 min. A counter is forgotten this long after its last failure (or lock end). */
export const DEFAULT_AUTH_FAILURE_WINDOW_MS = 900_000
/** `baseLockSeconds`: the first lock-out; each further failure doubles it. */
export const DEFAULT_AUTH_FAILURE_BASE_LOCK_SECONDS = 1
/** `maxLockSeconds`: 15 min, the longest lock-out. */
export const DEFAULT_AUTH_FAILURE_MAX_LOCK_SECONDS = 900
/** `ipv6Prefix`: IPv6 clients are counted per /64 (one customer's subnet). */
export const DEFAULT_AUTH_FAILURE_IPV6_PREFIX = 64
/** `maxKeys`: counters kept in process memory; least recently failed are dropped beyond it. */
export const DEFAULT_AUTH_FAILURE_MAX_KEYS = 100_000

/** What the gate knows about a request before it verifies the credential. */
export interface AuthFailureSubject {
  /** The client address as the adapter resolved it (trust-proxy rules applied). */
  readonly ip?: string | undefined
  /**
   * The presented credential's id, read WITHOUT trusting it: an API key's public id part, or a
   * JWT's `sub` decoded before the signature is checked.
   */
  readonly credentialId?: string | undefined
}

/** Which counter locked the request. */
export type AuthFailureKeyKind = 'ip' | 'credential'

/** A lock-out: the request is answered `ERR_AUTH_THROTTLED` (429) without verifying anything. */
export interface AuthFailureLockout {
  /** The counter that is locked: the address (or its IPv6 prefix), or the credential id. */
  readonly key: AuthFailureKeyKind
  /** Whole seconds until the lock ends (the `Retry-After` value), at least 1. */
  readonly retryAfterSeconds: number
  /** Failures counted on that key within its window. */
  readonly failures: number
}

/** The throttle the gate calls around credential verification. */
export interface AuthFailureThrottle {
  /** `memory`, `redis`, ... */
  readonly name: string
  /**
   * Whether `subject` is locked out: called BEFORE verifying the credential. Answers
   * synchronously from process memory in both shipped backends (a custom one may return a
   * promise); never throws or rejects.
   */
  check(
    subject: AuthFailureSubject,
  ): AuthFailureLockout | undefined | Promise<AuthFailureLockout | undefined>
  /**
   * Records a credential that did not verify (an unknown, wrong, revoked, expired or forged
   * credential), never a store outage. Resolves the lock-out that starts now, if one does;
   * never rejects.
   */
  failed(
    subject: AuthFailureSubject,
  ): AuthFailureLockout | undefined | Promise<AuthFailureLockout | undefined>
  /**
   * Forgets the credential's consecutive-failure counter after it verified (not the address's:
   * an attacker holding one valid key must not reset the address counter between guesses).
   * Never throws or rejects.
   */
  succeeded(subject: AuthFailureSubject): void
}

/** Options of {@link createAuthFailureThrottle} (and, with its own additions, the Redis throttle). */
export interface AuthFailureThrottleOptions {
  /**
   * Failures from one client address (IPv4 /32, IPv6 by `ipv6Prefix`) that start a lock-out of
   * the address; `false` counts no addresses. @default 10
   */
  readonly addressThreshold?: number | false
  /**
   * Failures of one presented credential id that start a lock-out of it; `false` counts no
   * credentials. @default 5
   */
  readonly credentialThreshold?: number | false
  /**
   * What a credential counter counts: `address`, the credential id presented from one address
   * (rate-limiter-flexible's "consecutive fails by username and IP"): a lock-out refuses that id
   * from that address only, so nobody can lock a key's owner out by presenting its id with wrong
   * secrets; `global`, the id from anywhere: also slows guessing one id from many addresses, at
   * the price that anyone who knows an id can lock its owner out. @default 'address'
   */
  readonly credentialScope?: 'address' | 'global'
  /** A counter is forgotten this long after its last failure or the end of its lock (ms). @default 900000 */
  readonly windowMs?: number
  /** The first lock-out, in seconds; each further failure doubles it. @default 1 */
  readonly baseLockSeconds?: number
  /** The longest lock-out, in seconds. @default 900 */
  readonly maxLockSeconds?: number
  /** IPv6 addresses are counted per prefix of this many bits (1 to 128). @default 64 */
  readonly ipv6Prefix?: number
  /** Counters (and locks) kept in process memory; the least recently failed are dropped. @default 100000 */
  readonly maxKeys?: number
  /** Clock, epoch ms. @default Date.now */
  readonly now?: Clock
  /** Receives warnings about unknown options. @default silent */
  readonly logger?: Logger
}

/** {@link AuthFailureThrottleOptions} resolved: every field set, validated, frozen. */
export interface ResolvedAuthFailureThrottleOptions {
  readonly addressThreshold: number | false
  readonly credentialThreshold: number | false
  readonly credentialScope: 'address' | 'global'
  readonly windowMs: number
  readonly baseLockSeconds: number
  readonly maxLockSeconds: number
  readonly ipv6Prefix: number
  readonly maxKeys: number
  readonly now: Clock
  readonly logger: Logger
}

const OPTION_NAMES = [
  'addressThreshold',
  'credentialThreshold',
  'credentialScope',
  'windowMs',
  'baseLockSeconds',
  'maxLockSeconds',
  'ipv6Prefix',
  'maxKeys',
  'now',
  'logger',
]

/**
 * Validates and completes throttle options. `extraKeys` names options a backend adds (they are
 * not reported as unknown).
 * @throws {ConfigError} for a bad option
 */
export function resolveAuthFailureThrottleOptions(
  options: Readonly<AuthFailureThrottleOptions>,
  extraKeys: readonly string[] = [],
): ResolvedAuthFailureThrottleOptions {
  const v = new TypeValidator('authFailureThrottle')
  if (v.object('options', options) === undefined) v.assert()
  v.knownKeys(options as unknown as Record<string, unknown>, [...OPTION_NAMES, ...extraKeys])
  const threshold = (field: string, value: unknown, fallback: number): number | false =>
    value === undefined
      ? fallback
      : value === false
        ? false
        : (v.integer(field, value, { min: 1, max: 1_000_000 }) ?? fallback)
  const addressThreshold = threshold(
    'addressThreshold',
    options.addressThreshold,
    DEFAULT_AUTH_FAILURE_ADDRESS_THRESHOLD,
  )
  const credentialThreshold = threshold(
    'credentialThreshold',
    options.credentialThreshold,
    DEFAULT_AUTH_FAILURE_CREDENTIAL_THRESHOLD,
  )
  if (addressThreshold === false && credentialThreshold === false)
    v.fail('addressThreshold', 'and credentialThreshold are both false: nothing would be counted')
  const credentialScope =
    options.credentialScope === undefined
      ? 'address'
      : (v.oneOf('credentialScope', options.credentialScope, ['address', 'global']) ?? 'address')
  const windowMs =
    v.integerOr('windowMs', options.windowMs, DEFAULT_AUTH_FAILURE_WINDOW_MS, {
      min: 1000,
      max: 30 * 86_400_000,
    }) ?? DEFAULT_AUTH_FAILURE_WINDOW_MS
  const baseLockSeconds =
    v.integerOr(
      'baseLockSeconds',
      options.baseLockSeconds,
      DEFAULT_AUTH_FAILURE_BASE_LOCK_SECONDS,
      {
        min: 1,
        max: 86_400,
      },
    ) ?? DEFAULT_AUTH_FAILURE_BASE_LOCK_SECONDS
  const maxLockSeconds =
    v.integerOr('maxLockSeconds', options.maxLockSeconds, DEFAULT_AUTH_FAILURE_MAX_LOCK_SECONDS, {
      min: 1,
      max: 7 * 86_400,
    }) ?? DEFAULT_AUTH_FAILURE_MAX_LOCK_SECONDS
  if (maxLockSeconds < baseLockSeconds)
    v.fail(
      'maxLockSeconds',
      `must be >= baseLockSeconds (${baseLockSeconds}), received ${maxLockSeconds}`,
    )
  const ipv6Prefix =
    v.integerOr('ipv6Prefix', options.ipv6Prefix, DEFAULT_AUTH_FAILURE_IPV6_PREFIX, {
      min: 1,
      max: 128,
    }) ?? DEFAULT_AUTH_FAILURE_IPV6_PREFIX
  const maxKeys =
    v.integerOr('maxKeys', options.maxKeys, DEFAULT_AUTH_FAILURE_MAX_KEYS, {
      min: 1,
      max: 10_000_000,
    }) ?? DEFAULT_AUTH_FAILURE_MAX_KEYS
  const now =
    options.now === undefined ? systemClock : (v.function<Clock>('now', options.now) ?? systemClock)
  const logger = options.logger ?? silentLogger
  v.assert((m) => logger.warn({}, m))
  return Object.freeze({
    addressThreshold,
    credentialThreshold,
    credentialScope,
    windowMs,
    baseLockSeconds,
    maxLockSeconds,
    ipv6Prefix,
    maxKeys,
    now,
    logger,
  })
}

/** The counter keys of one request: `undefined` where that key is not counted. */
export interface AuthFailureKeys {
  /** `i:<address or IPv6 prefix>`. */
  readonly ip: string | undefined
  /** `c:<address>|<id>` (scope `address`) or `c:<id>` (scope `global`). */
  readonly credential: string | undefined
}

/** Longest credential id kept as is in a key; longer ids (attacker-chosen) are hashed. */
const MAX_ID_IN_KEY = 64

/**
 * The counter keys of `subject`. The address goes through `clientIpKey` (IPv4 as is, IPv4-mapped
 * IPv6 as IPv4, IPv6 masked to `ipv6Prefix`); a request without an address counts no address
 * (one shared `unknown` counter would let one client lock out every other). Credential ids
 * longer than 64 characters are replaced by their SHA-256, so the memory bound holds in bytes.
 */
export function authFailureKeys(
  subject: AuthFailureSubject,
  config: ResolvedAuthFailureThrottleOptions,
): AuthFailureKeys {
  const ip =
    subject.ip === undefined || subject.ip === ''
      ? undefined
      : clientIpKey(subject.ip, config.ipv6Prefix)
  const id = subject.credentialId
  let credential: string | undefined
  if (config.credentialThreshold !== false && id !== undefined && id !== '') {
    const part =
      id.length > MAX_ID_IN_KEY ? `#${createHash('sha256').update(id).digest('base64url')}` : id
    credential = config.credentialScope === 'global' ? `c:${part}` : `c:${ip ?? ''}|${part}`
  }
  return {
    ip: config.addressThreshold === false || ip === undefined ? undefined : `i:${ip}`,
    credential,
  }
}

/** The lock-out after the `level`-th lock (0-based), in ms: base·2^level, capped. */
export function authFailureLockMs(
  level: number,
  config: Pick<ResolvedAuthFailureThrottleOptions, 'baseLockSeconds' | 'maxLockSeconds'>,
): number {
  return Math.min(config.baseLockSeconds * 2 ** Math.min(level, 40), config.maxLockSeconds) * 1000
}

/** One counter. */
interface FailureRecord {
  failures: number
  /** Locks so far (the next lock lasts base·2^locks). */
  locks: number
  /** End of the current lock, epoch ms (0: none). */
  lockedUntil: number
  /** When the record is forgotten. */
  expiresAt: number
  /** When a shared store last told this process the key's state (epoch ms; 0: never). */
  syncedAt: number
}

/** The outcome of counting one failure on one key. */
export interface AuthFailureCount {
  /** Failures counted before this one (within the window). */
  readonly before: number
  /** Failures counted, this one included. */
  readonly failures: number
  /** Milliseconds until the key's lock ends; 0 when not locked. */
  readonly lockedForMs: number
  /** Whether this failure started (or lengthened) a lock. */
  readonly locked: boolean
}

/**
 * The bounded in-memory table of counters and locks. The memory throttle counts in it; the Redis
 * throttle mirrors into it the locks Redis reports and counts in it while Redis fails.
 *
 * At most `maxKeys` records are kept in an LRU ordered by the last failure (a `check` does not
 * refresh a record), so a flood of distinct addresses or ids costs at most `maxKeys` records of
 * bounded size and drops the least recently failed ones.
 */
export class AuthFailureTable {
  readonly #config: ResolvedAuthFailureThrottleOptions
  readonly #records: LRUCache<string, FailureRecord>
  /** The latest end of any lock set: past it, nothing can be locked and `check` reads nothing. */
  #horizon = 0

  constructor(config: ResolvedAuthFailureThrottleOptions) {
    this.#config = config
    this.#records = new LRUCache<string, FailureRecord>({ max: config.maxKeys })
  }

  /** Records kept. */
  get size(): number {
    return this.#records.size
  }

  /** The lock-out of `subject`, if any. Reads nothing and allocates nothing while no lock is live. */
  check(subject: AuthFailureSubject): AuthFailureLockout | undefined {
    const now = this.#config.now()
    if (now >= this.#horizon) return undefined
    const keys = authFailureKeys(subject, this.#config)
    const ip = keys.ip === undefined ? undefined : this.#lock(keys.ip, 'ip', now)
    const credential =
      keys.credential === undefined ? undefined : this.#lock(keys.credential, 'credential', now)
    if (ip === undefined) return credential
    if (credential === undefined) return ip
    return credential.retryAfterSeconds > ip.retryAfterSeconds ? credential : ip
  }

  #lock(key: string, kind: AuthFailureKeyKind, now: number): AuthFailureLockout | undefined {
    const r = this.#records.peek(key)
    if (r === undefined || r.lockedUntil <= now) return undefined
    return lockout(kind, r.lockedUntil - now, r.failures)
  }

  /** Counts one failure on `key` against `threshold`. */
  count(key: string, threshold: number): AuthFailureCount {
    const now = this.#config.now()
    let r = this.#records.get(key)
    if (r === undefined || r.expiresAt <= now) {
      r = { failures: 0, locks: 0, lockedUntil: 0, expiresAt: 0, syncedAt: 0 }
    }
    const before = r.failures
    r.failures += 1
    let locked = false
    // Every failure from the threshold on locks again, for twice as long as the previous lock
    // (fail2ban's bantime.increment): a guesser gets `threshold` tries, then one per lock.
    if (r.failures >= threshold) {
      r.lockedUntil = Math.max(r.lockedUntil, now + authFailureLockMs(r.locks, this.#config))
      r.locks += 1
      locked = true
    }
    r.expiresAt = Math.max(r.lockedUntil, now) + this.#config.windowMs
    this.#records.set(key, r)
    if (r.lockedUntil > this.#horizon) this.#horizon = r.lockedUntil
    return { before, failures: r.failures, lockedForMs: Math.max(0, r.lockedUntil - now), locked }
  }

  /**
   * Mirrors what a shared store reported for `key`: `failures` counted there, locked for
   * `lockedForMs` from now (0: not locked).
   */
  mirror(key: string, failures: number, lockedForMs: number): void {
    const now = this.#config.now()
    const until = lockedForMs > 0 ? now + lockedForMs : 0
    const r = this.#records.get(key)
    if (r === undefined || r.expiresAt <= now) {
      this.#records.set(key, {
        failures,
        locks: 0,
        lockedUntil: until,
        expiresAt: Math.max(until, now) + this.#config.windowMs,
        syncedAt: now,
      })
    } else {
      r.failures = failures
      r.lockedUntil = until
      r.expiresAt = Math.max(r.expiresAt, Math.max(until, now) + this.#config.windowMs)
      r.syncedAt = now
      this.#records.set(key, r)
    }
    if (until > this.#horizon) this.#horizon = until
  }

  /**
   * Whether a shared store should be asked about `key` now: only for a key with a live record here
   * (a failure of it was seen by this process within its window) whose last answer is at least
   * `intervalMs` old. Claims the refresh (marks it synced now), so concurrent checks ask once.
   */
  claimSync(key: string, intervalMs: number): boolean {
    if (this.#records.size === 0) return false
    const r = this.#records.peek(key)
    const now = this.#config.now()
    if (r === undefined || r.expiresAt <= now || now - r.syncedAt < intervalMs) return false
    r.syncedAt = now
    return true
  }

  /** Whether `key` has a record (failures counted here within its window). */
  has(key: string): boolean {
    return this.#records.size > 0 && this.#records.has(key)
  }

  /** Forgets `key`. */
  delete(key: string): void {
    if (this.#records.size > 0) this.#records.delete(key)
  }
}

function lockout(key: AuthFailureKeyKind, ms: number, failures: number): AuthFailureLockout {
  return Object.freeze({ key, retryAfterSeconds: Math.max(1, Math.ceil(ms / 1000)), failures })
}

/**
 * The lock-out that a set of counts started, for {@link AuthFailureThrottle.failed}: the longer
 * of the locks started now, `undefined` when none started.
 */
export function startedAuthFailureLockout(
  ip: AuthFailureCount | undefined,
  credential: AuthFailureCount | undefined,
): AuthFailureLockout | undefined {
  const a = ip?.locked === true ? lockout('ip', ip.lockedForMs, ip.failures) : undefined
  const b =
    credential?.locked === true
      ? lockout('credential', credential.lockedForMs, credential.failures)
      : undefined
  if (a === undefined) return b
  if (b === undefined) return a
  return b.retryAfterSeconds > a.retryAfterSeconds ? b : a
}

/**
 * Whether a failure should also count on the address: not when the credential counter was
 * already at its threshold before it. Those repeats are the credential counter's to lock; counting
 * them on the address too would let one client stuck retrying a revoked key lock out every
 * client behind its NAT.
 */
export function countsOnAddress(
  credential: AuthFailureCount | undefined,
  config: ResolvedAuthFailureThrottleOptions,
): boolean {
  return (
    credential === undefined ||
    config.credentialThreshold === false ||
    credential.before < config.credentialThreshold
  )
}

/**
 * Creates the in-memory throttle: exact on one process, not shared between processes (use
 * `createRedisAuthFailureThrottle` from `@portcullis/redis` for that).
 * @throws {ConfigError} for a bad option
 * @example
 * ```ts
 * const throttle = createAuthFailureThrottle({ credentialThreshold: 5, maxLockSeconds: 900 })
 * const locked = throttle.check({ ip: req.ip, credentialId: keyId })
 * if (locked) return tooManyRequests(locked.retryAfterSeconds)
 * ```
 */
export function createAuthFailureThrottle(
  options: Readonly<AuthFailureThrottleOptions> = {},
): AuthFailureThrottle {
  const config = resolveAuthFailureThrottleOptions(options)
  const table = new AuthFailureTable(config)
  return Object.freeze({
    name: 'memory',
    check: (subject: AuthFailureSubject) => table.check(subject),
    failed(subject: AuthFailureSubject): AuthFailureLockout | undefined {
      const keys = authFailureKeys(subject, config)
      const credential =
        keys.credential === undefined
          ? undefined
          : table.count(keys.credential, config.credentialThreshold as number)
      const ip =
        keys.ip !== undefined && countsOnAddress(credential, config)
          ? table.count(keys.ip, config.addressThreshold as number)
          : undefined
      return startedAuthFailureLockout(ip, credential)
    },
    succeeded(subject: AuthFailureSubject): void {
      if (table.size === 0 || subject.credentialId === undefined) return
      const key = authFailureKeys(subject, config).credential
      if (key !== undefined) table.delete(key)
    },
  })
}

/**
 * The denial for a lock-out: `ERR_AUTH_THROTTLED` (429). Its internal `reason` names the locked
 * counter (`throttled: ip` or `throttled: credential`), never the address or the id.
 */
export function authThrottledError(lockout: AuthFailureLockout): AuthError {
  return new AuthError(
    'ERR_AUTH_THROTTLED',
    `Too many failed authentication attempts; retry in ${lockout.retryAfterSeconds} s`,
    { reason: `throttled: ${lockout.key}` },
  )
}

/** The headers of a lock-out's answer: `Retry-After` in whole seconds (RFC 9110 §10.2.3). */
export function authThrottledHeaders(
  lockout: AuthFailureLockout,
): Readonly<Record<'retry-after', string>> {
  return Object.freeze({ 'retry-after': String(lockout.retryAfterSeconds) })
}
