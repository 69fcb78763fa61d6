/**
 * JWT revocation: deny one token by its `jti` (RFC 7519 §4.1.7), or every token of a subject issued
 * before an instant (log out everywhere, a compromised account). The in-memory list here is the
 * reference implementation; `@portcullis/redis` shares one across instances.
 *
 * Reachable from `@portcullis/core`.
 * @packageDocumentation
 */
import { ConfigError } from '../errors.js'
import { parseTokenId, parseUserId } from '../ids.js'
import type { Clock } from '../internal/clock.js'
import { DEFAULT_MAX_TOKEN_LIFETIME_SECONDS, MAX_CLOCK_TOLERANCE_SECONDS } from '../defaults.js'
import { describeValue, TypeValidator } from '../validation/type-validator.js'

/** Claims as the revocation check reads them (the verified claims of a JWT). */
export type RevocationClaims = Readonly<Record<string, unknown>>

/** Which rule denied a token. */
export type RevocationRule = 'jti' | 'subject'

/** One revocation, as stored and as spread between instances. */
export type RevocationEntry =
  | {
      readonly kind: 'jti'
      /** The token's `jti`. */
      readonly jti: string
      /** When the entry may be forgotten (ms since the epoch): no token it matches is valid later. */
      readonly retainUntilMs: number
    }
  | {
      readonly kind: 'subject'
      /** The token's `sub`. */
      readonly subject: string
      /** Tokens whose `iat` is before this instant (ms since the epoch) are denied. */
      readonly beforeMs: number
      /** When the entry may be forgotten (ms since the epoch): `beforeMs` + the longest lifetime. */
      readonly retainUntilMs: number
    }

/** What {@link RevocationList.revokeToken} takes. */
export interface RevokeTokenInput {
  /** The token's `jti`: 1-256 printable ASCII characters. */
  readonly jti: string
  /**
   * The token's `exp`, in ms since the epoch, when known: the entry is kept until then (plus the
   * largest clock tolerance). @default now + `maxTokenLifetimeSeconds`
   */
  readonly expiresAtMs?: number
}

/** What {@link RevocationList.revokeSubject} takes. */
export interface RevokeSubjectInput {
  /** The tokens' `sub`: 1-256 printable ASCII characters. */
  readonly subject: string
  /** Deny the subject's tokens issued (`iat`) before this instant, in ms since the epoch; not in the future. */
  readonly beforeMs: number
}

/**
 * A revocation list the JWT verifier consults once per request (`jwt.revocations`). The lookup is
 * synchronous and allocates nothing for a token that is not revoked.
 */
export interface RevocationList {
  /**
   * The rule that denies a token with these (verified) claims, or `undefined`. A subject rule
   * denies a token with `iat` before its cut-off, and a token without `iat`.
   */
  check(claims: RevocationClaims): RevocationRule | undefined
  /** Denies the token with this `jti`. Resolves with the stored entry. */
  revokeToken(input: Readonly<RevokeTokenInput>): Promise<RevocationEntry>
  /** Denies every token of a subject issued before an instant. Resolves with the stored entry. */
  revokeSubject(input: Readonly<RevokeSubjectInput>): Promise<RevocationEntry>
  /**
   * Longest token lifetime the list keeps entries for, in seconds. The verifier refuses a list
   * whose bound is shorter than its own `maxTokenLifetimeSeconds` (or `maxExpiresInSeconds`).
   */
  readonly maxTokenLifetimeSeconds: number
  /** Entries held now (expired ones may remain until the next prune). */
  readonly size: number
}

/** The in-memory {@link RevocationList}, which also takes entries made elsewhere. */
export interface MemoryRevocationList extends RevocationList {
  /**
   * Adds an entry made elsewhere (another instance, a shared store). A subject entry keeps the
   * later cut-off of the two. Returns `false` for an entry already expired (not added).
   */
  add(entry: RevocationEntry): boolean
  /** Forgets every expired entry now; returns how many were removed. */
  prune(): number
}

/** Options of {@link createMemoryRevocationList}. */
export interface RevocationListOptions {
  /**
   * Longest token lifetime accepted by the verifiers using the list, in seconds: a subject entry
   * is kept until its cut-off plus this, a `jti` entry without `expiresAtMs` until now plus this.
   * Set it to the verifier's `maxTokenLifetimeSeconds` (or `maxExpiresInSeconds` when the lifetime
   * bound is off); the verifier refuses a smaller value at creation.
   * @default 86400 (the verifier's default `maxTokenLifetimeSeconds`)
   */
  readonly maxTokenLifetimeSeconds?: number
  /** Clock, in ms since the epoch. @default Date.now */
  readonly now?: Clock
}

const OPTION_NAMES = ['maxTokenLifetimeSeconds', 'now']
// Entries outlive the token by the largest clock tolerance a verifier may grant.
const SLACK_MS = MAX_CLOCK_TOLERANCE_SECONDS * 1000

/** The resolved options of a revocation list (validated). */
export interface ResolvedRevocationListOptions {
  readonly maxTokenLifetimeSeconds: number
  readonly now: Clock
}

/**
 * Validates the options of a revocation list (memory or shared).
 * @throws {ConfigError} for an unknown or ill-typed option
 */
export function resolveRevocationListOptions(
  options: Readonly<RevocationListOptions>,
  name = 'revocations',
  extraNames: readonly string[] = [],
): ResolvedRevocationListOptions {
  const v = new TypeValidator(name)
  v.knownKeys(options as Record<string, unknown>, [...OPTION_NAMES, ...extraNames])
  const max = v.integerOr(
    'maxTokenLifetimeSeconds',
    options.maxTokenLifetimeSeconds,
    DEFAULT_MAX_TOKEN_LIFETIME_SECONDS,
    { min: 1 },
  )
  const now = options.now === undefined ? Date.now : v.function<Clock>('now', options.now)
  // Unknown keys are errors here, not warnings: a misspelt bound would silently shorten retention.
  const { warnings } = v.result()
  if (warnings.length > 0) throw new ConfigError(warnings)
  v.assert()
  if (max === undefined || now === undefined) throw new ConfigError(`${name}: invalid options`)
  return Object.freeze({ maxTokenLifetimeSeconds: max, now })
}

/**
 * Builds the entry a revocation stores, checking its input: a `jti` entry is kept until the
 * token's `exp` (or now + the longest lifetime), a subject entry until its cut-off + the longest
 * lifetime, each plus the largest clock tolerance (300 s).
 * @throws {ConfigError} for an ill-formed `jti` or subject, or a cut-off in the future
 */
export function revocationEntry(
  input:
    | ({ readonly kind: 'jti' } & Readonly<RevokeTokenInput>)
    | ({ readonly kind: 'subject' } & Readonly<RevokeSubjectInput>),
  options: ResolvedRevocationListOptions,
): RevocationEntry {
  const nowMs = options.now()
  const lifetimeMs = options.maxTokenLifetimeSeconds * 1000
  if (input.kind === 'jti') {
    if (parseTokenId(input.jti) === undefined)
      throw new ConfigError(
        `jti must be 1-256 printable ASCII characters, received ${describeValue(input.jti)}`,
      )
    const exp = input.expiresAtMs
    if (exp !== undefined && (typeof exp !== 'number' || !Number.isFinite(exp)))
      throw new ConfigError(`expiresAtMs must be a finite number, received ${describeValue(exp)}`)
    return Object.freeze({
      kind: 'jti',
      jti: input.jti,
      // Whole milliseconds: shared stores set it as an absolute expiry (Redis PXAT).
      retainUntilMs: Math.ceil((exp ?? nowMs + lifetimeMs) + SLACK_MS),
    })
  }
  if (parseUserId(input.subject) === undefined)
    throw new ConfigError(
      `subject must be 1-256 printable ASCII characters, received ${describeValue(input.subject)}`,
    )
  const before = input.beforeMs
  if (typeof before !== 'number' || !Number.isFinite(before))
    throw new ConfigError(`beforeMs must be a finite number, received ${describeValue(before)}`)
  if (before > nowMs + SLACK_MS)
    throw new ConfigError(`beforeMs must not be in the future, received ${before}`)
  return Object.freeze({
    kind: 'subject',
    subject: input.subject,
    beforeMs: before,
    retainUntilMs: Math.ceil(before + lifetimeMs + SLACK_MS),
  })
}

/** Whether `value` looks like a {@link RevocationList} (the verifier's option check). */
export function isRevocationList(value: unknown): value is RevocationList {
  const l = value as Partial<Record<keyof RevocationList, unknown>> | null
  return (
    typeof l === 'object' &&
    l !== null &&
    typeof l.check === 'function' &&
    typeof l.revokeToken === 'function' &&
    typeof l.revokeSubject === 'function' &&
    typeof l.maxTokenLifetimeSeconds === 'number'
  )
}

interface SubjectCutOff {
  readonly beforeMs: number
  readonly retainUntilMs: number
}

class MemoryList implements MemoryRevocationList {
  readonly #jtis = new Map<string, number>()
  readonly #subjects = new Map<string, SubjectCutOff>()
  /** Earliest retainUntilMs held: no prune is needed before it. */
  #nextExpiryMs = Infinity

  constructor(private readonly options: ResolvedRevocationListOptions) {}

  get maxTokenLifetimeSeconds(): number {
    return this.options.maxTokenLifetimeSeconds
  }

  get size(): number {
    return this.#jtis.size + this.#subjects.size
  }

  check(claims: RevocationClaims): RevocationRule | undefined {
    // Size checks first: an empty list costs two comparisons and no clock read.
    if (this.#jtis.size > 0) {
      const jti = claims.jti
      if (typeof jti === 'string') {
        const until = this.#jtis.get(jti)
        if (until !== undefined) {
          if (this.options.now() < until) return 'jti'
          this.#jtis.delete(jti)
        }
      }
    }
    if (this.#subjects.size > 0) {
      const sub = claims.sub
      if (typeof sub === 'string') {
        const cut = this.#subjects.get(sub)
        if (cut !== undefined) {
          if (this.options.now() < cut.retainUntilMs) {
            const iat = claims.iat
            // Without iat the issue time is unknown: the cut-off cannot clear it.
            if (typeof iat !== 'number' || !Number.isFinite(iat) || iat * 1000 < cut.beforeMs)
              return 'subject'
          } else this.#subjects.delete(sub)
        }
      }
    }
    return undefined
  }

  async revokeToken(input: Readonly<RevokeTokenInput>): Promise<RevocationEntry> {
    const entry = revocationEntry({ kind: 'jti', ...input }, this.options)
    this.add(entry)
    return entry
  }

  async revokeSubject(input: Readonly<RevokeSubjectInput>): Promise<RevocationEntry> {
    const entry = revocationEntry({ kind: 'subject', ...input }, this.options)
    this.add(entry)
    return entry
  }

  add(entry: RevocationEntry): boolean {
    const nowMs = this.options.now()
    // Pruned on writes, never by a timer per entry: the list only grows through revocations.
    if (nowMs >= this.#nextExpiryMs) this.#prune(nowMs)
    if (entry.retainUntilMs <= nowMs) return false
    if (entry.kind === 'jti') {
      const held = this.#jtis.get(entry.jti)
      this.#jtis.set(entry.jti, Math.max(held ?? 0, entry.retainUntilMs))
    } else {
      const held = this.#subjects.get(entry.subject)
      this.#subjects.set(
        entry.subject,
        held === undefined
          ? { beforeMs: entry.beforeMs, retainUntilMs: entry.retainUntilMs }
          : {
              beforeMs: Math.max(held.beforeMs, entry.beforeMs),
              retainUntilMs: Math.max(held.retainUntilMs, entry.retainUntilMs),
            },
      )
    }
    this.#nextExpiryMs = Math.min(this.#nextExpiryMs, entry.retainUntilMs)
    return true
  }

  prune(): number {
    return this.#prune(this.options.now())
  }

  #prune(nowMs: number): number {
    let removed = 0
    let next = Infinity
    for (const [jti, until] of this.#jtis) {
      if (until <= nowMs) {
        this.#jtis.delete(jti)
        removed++
      } else next = Math.min(next, until)
    }
    for (const [sub, cut] of this.#subjects) {
      if (cut.retainUntilMs <= nowMs) {
        this.#subjects.delete(sub)
        removed++
      } else next = Math.min(next, cut.retainUntilMs)
    }
    this.#nextExpiryMs = next
    return removed
  }
}

/**
 * Creates an in-memory revocation list (one process). Entries are kept only until the longest
 * token they can match expires, and pruned on writes (no timer).
 * @throws {ConfigError} for an unknown or ill-typed option
 * @example
 * ```ts
 * const revocations = createMemoryRevocationList()
 * const gate = createGate({ jwt: { secret, issuer: 'https://id.example', audience: 'api', revocations } })
 * await revocations.revokeSubject({ subject: 'u-42', beforeMs: Date.now() })
 * ```
 */
export function createMemoryRevocationList(
  options: Readonly<RevocationListOptions> = {},
): MemoryRevocationList {
  return new MemoryList(resolveRevocationListOptions(options))
}
