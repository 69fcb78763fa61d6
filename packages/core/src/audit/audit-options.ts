/**
 * The audit trail's options: their types, their validation and defaults, resolved once when the
 * trail is made (see {@link createAuditTrail}).
 *
 * Reachable from `@portcullis/core` (the types, through `./audit-trail.js`).
 * @packageDocumentation
 */
import {
  DEFAULT_AUDIT_BATCH_SIZE,
  DEFAULT_AUDIT_CLOCK_JUMP_THRESHOLD_MS,
  DEFAULT_AUDIT_FLUSH_INTERVAL_MS,
  DEFAULT_AUDIT_MAX_QUEUE,
} from '../defaults.js'
import type { MetricsClient } from '../integrations/metrics.js'
import type { Clock } from '../internal/clock.js'
import { optionNames } from '../internal/option-names.js'
import { silentLogger, type Logger } from '../logger.js'
import { TypeValidator } from '../validation/type-validator.js'
import type { AuditIntegrityOptions } from './audit-chain.js'
import type { AuditLevel, AuditSink } from './audit-event.js'
import { COMPLIANCE_PROFILES, resolveCompliance, type ComplianceProfileName } from './compliance.js'
import type { Pseudonymizer } from './pseudonyms.js'
import type { AuditIpMode, AuditRedactionOptions } from './redaction.js'

/** Options of the disk spool (`audit.spool`). */
export interface AuditSpoolOptions {
  /** Folder of the spool files, one pair per sink (named after the sink). */
  readonly dir: string
  /** Pending bytes per sink before the spool counts as full. @default 256 MiB */
  readonly maxBytes?: number
  /** `fdatasync` each append before acknowledging it. @default true */
  readonly fsync?: boolean
}

/** Options of {@link createAuditTrail}. */
export interface AuditOptions {
  /** Where events go; several sinks each get every event. @default [] (events are discarded) */
  readonly sinks?: readonly AuditSink[]
  /** Which events and fields are written. @default 'standard' */
  readonly level?: AuditLevel
  /** Events per sink write. @default 256 */
  readonly batchSize?: number
  /** Longest an event waits in memory. @default 50 */
  readonly flushIntervalMs?: number
  /** Events held in memory per sink before {@link AuditTrail.emit} returns `false`. @default 100000 */
  readonly maxQueue?: number
  /** A sink write slower than this counts as failed (the batch goes to the spool). @default 10000 */
  readonly writeTimeoutMs?: number
  /**
   * The longest {@link AuditTrail.close} takes, even while a sink does not answer: three quarters
   * of it wait for the sinks to take what is queued, the rest moves what is left to the spool and
   * closes the sinks; then it resolves with what it left behind (see {@link AuditCloseReport}).
   * Above `writeTimeoutMs` by default, so a hung write times out and its events reach the spool
   * before close gives up. @default 15000
   */
  readonly closeTimeoutMs?: number
  /** Keyed hash chain and checkpoints; without it events carry no chain link. */
  readonly integrity?: AuditIntegrityOptions
  /** Disk spool for sinks that are down or slow; without it events wait in memory. */
  readonly spool?: AuditSpoolOptions
  /** Compliance profiles: they add controls' tags and tighten redaction. @default [] */
  readonly compliance?: readonly ComplianceProfileName[]
  /** Redaction beyond the credential scrubbing that is always on. */
  readonly redaction?: AuditRedactionOptions
  /** Replaces principal ids by pseudonyms (GDPR, HIPAA). */
  readonly pseudonyms?: Pseudonymizer
  /** Retention the operator keeps the trail for, in days (checked by the compliance report). */
  readonly retentionDays?: number
  /** Reports queue depth, spool bytes, events written and sink errors. @default no metrics */
  readonly metrics?: MetricsClient
  /** Clock. @default Date.now */
  readonly now?: Clock
  /**
   * The monotonic clock (ms) the wall clock `now` is checked against on each flush: a step of
   * `now` backwards, or forwards by more than `clockJumpThresholdMs`, is recorded as an
   * `audit.clock_jump` event. When `now` is given without it, the check is off (an injected wall
   * clock is usually a test's, whose time travel is no jump). @default performance.now
   */
  readonly monotonicNow?: () => number
  /**
   * A forward step of the wall clock larger than this is recorded (`audit.clock_jump`); a
   * backward step always is. Five minutes: smaller forward corrections are what time daemons
   * routinely make, and it is the clock skew Kerberos tolerates (RFC 4120 §1.7). @default 300000
   */
  readonly clockJumpThresholdMs?: number
  /** Where write failures are reported. */
  readonly logger?: Logger
  /**
   * Durable mode, for the gate: a request is answered only once its audit event is durable (every
   * sink acknowledged it, or it is fsync'd in the sink's spool), and with a 503
   * `ERR_AUDIT_UNAVAILABLE` when it cannot be (see {@link AuditTrail.commit}). Routes can ask for
   * it one by one with `durableAudit: true` in their requirements (a route of a trail without
   * sinks is served without waiting: there is nothing to wait for). @default false
   * @throws {ConfigError} when `true` without a sink
   */
  readonly durable?: boolean
}

const OPTION_NAMES = optionNames<AuditOptions>()([
  'sinks',
  'level',
  'batchSize',
  'flushIntervalMs',
  'maxQueue',
  'writeTimeoutMs',
  'closeTimeoutMs',
  'integrity',
  'spool',
  'compliance',
  'redaction',
  'pseudonyms',
  'retentionDays',
  'metrics',
  'now',
  'monotonicNow',
  'clockJumpThresholdMs',
  'logger',
  'durable',
])
const REDACTION_NAMES = optionNames<AuditRedactionOptions>()([
  'piiFields',
  'ip',
  'ipKey',
  'maxFieldLength',
  'maxDepth',
])
const INTEGRITY_NAMES = optionNames<AuditIntegrityOptions>()([
  'key',
  'keyId',
  'checkpointEvery',
  'checkpointIntervalMs',
  'signingKey',
  'onCheckpoint',
])
const SPOOL_NAMES = optionNames<AuditSpoolOptions>()(['dir', 'maxBytes', 'fsync'])
const LEVELS = ['minimal', 'standard', 'verbose'] as const
const IP_MODES = ['keep', 'truncate', 'hmac'] as const
const DEFAULT_SPOOL_MAX_BYTES = 256 * 1024 * 1024
const DEFAULT_WRITE_TIMEOUT_MS = 10_000
const DEFAULT_CLOSE_TIMEOUT_MS = 15_000

/** The options as the trail uses them: validated, with defaults filled in. */
export interface ResolvedAuditOptions {
  readonly sinks: readonly AuditSink[]
  readonly level: AuditLevel
  readonly batchSize: number
  readonly flushIntervalMs: number
  readonly maxQueue: number
  readonly writeTimeoutMs: number
  readonly closeTimeoutMs: number
  readonly clockJumpThresholdMs: number
  readonly durable: boolean
  readonly compliance: readonly ComplianceProfileName[]
  readonly redaction: AuditRedactionOptions
  /** The IP mode after the compliance profiles tightened `redaction.ip`. */
  readonly ip: AuditIpMode
  /** The spool's settings with their defaults (absent: no spool). */
  readonly spool:
    { readonly dir: string; readonly maxBytes: number; readonly fsync: boolean } | undefined
  readonly logger: Logger
}

/**
 * Validates `options` and fills the defaults.
 * @throws {ConfigError} for a bad option
 */
export function resolveAuditOptions(options: Readonly<AuditOptions>): ResolvedAuditOptions {
  const v = new TypeValidator('audit')
  v.knownKeys(options as Record<string, unknown>, OPTION_NAMES)
  const sinks = v.array('sinks', options.sinks ?? [], (sv, i, s) =>
    typeof (s as AuditSink | undefined)?.write === 'function'
      ? (s as AuditSink)
      : sv.fail(i, 'must be an AuditSink with write(events)'),
  )
  const level =
    options.level === undefined
      ? 'standard'
      : v.oneOf('level', options.level, LEVELS, 'audit level')
  const int = (name: keyof AuditOptions, fallback: number, min: number): number =>
    options[name] === undefined ? fallback : (v.integer(name, options[name], { min }) ?? fallback)
  const batchSize = int('batchSize', DEFAULT_AUDIT_BATCH_SIZE, 1)
  const flushIntervalMs = int('flushIntervalMs', DEFAULT_AUDIT_FLUSH_INTERVAL_MS, 0)
  const maxQueue = int('maxQueue', DEFAULT_AUDIT_MAX_QUEUE, 1)
  const writeTimeoutMs = int('writeTimeoutMs', DEFAULT_WRITE_TIMEOUT_MS, 1)
  const clockJumpThresholdMs = int('clockJumpThresholdMs', DEFAULT_AUDIT_CLOCK_JUMP_THRESHOLD_MS, 1)
  if (options.monotonicNow !== undefined) v.function('monotonicNow', options.monotonicNow)
  const closeTimeoutMs = int('closeTimeoutMs', DEFAULT_CLOSE_TIMEOUT_MS, 1)
  if (options.retentionDays !== undefined)
    v.integer('retentionDays', options.retentionDays, { min: 0 })
  const durable =
    options.durable === undefined ? false : v.boolean('durable', options.durable) === true
  if (durable && (sinks ?? []).length === 0)
    v.fail('durable', 'needs at least one sink (nothing could make an event durable)')
  const compliance =
    v.array('compliance', options.compliance ?? [], (cv, i, p) =>
      cv.oneOf(i, p, COMPLIANCE_PROFILES, 'compliance profile'),
    ) ?? []
  const resolved = resolveCompliance(compliance)
  const redaction = options.redaction ?? {}
  if (options.redaction !== undefined) {
    const rv = v.child('redaction')
    rv.knownKeys(redaction as Record<string, unknown>, REDACTION_NAMES)
    if (redaction.piiFields !== undefined)
      rv.array('piiFields', redaction.piiFields, (pv, i, f) => pv.string(i, f))
    if (redaction.ip !== undefined) rv.oneOf('ip', redaction.ip, IP_MODES, 'ip mode')
    if (redaction.maxFieldLength !== undefined)
      rv.integer('maxFieldLength', redaction.maxFieldLength, { min: 16 })
    if (redaction.maxDepth !== undefined) rv.integer('maxDepth', redaction.maxDepth, { min: 2 })
  }
  // Profiles only tighten: GDPR truncates IPs even if the redaction options say "keep".
  const ipRank: Record<AuditIpMode, number> = { keep: 0, truncate: 1, hmac: 2 }
  let ip: AuditIpMode = redaction.ip ?? 'keep'
  if (ipRank[resolved.ip] > ipRank[ip]) ip = resolved.ip
  if (ip === 'hmac' && redaction.ipKey === undefined) {
    if (redaction.ip === 'hmac') v.fail('redaction.ipKey', 'is required with ip: "hmac"')
    else ip = 'truncate' // HIPAA asks for hashing; without a key, truncation is the safe fallback
  }
  if (options.integrity !== undefined) {
    const iv = v.child('integrity')
    const integ = v.object('integrity', options.integrity)
    if (integ !== undefined) {
      iv.knownKeys(integ, INTEGRITY_NAMES)
      const key = integ.key
      if (!(key instanceof Uint8Array) && (typeof key !== 'string' || key.length < 16))
        iv.fail('key', 'must be a secret string of at least 16 characters or a Uint8Array')
      if (integ.checkpointEvery !== undefined)
        iv.integer('checkpointEvery', integ.checkpointEvery, { min: 1 })
      if (integ.checkpointIntervalMs !== undefined)
        iv.integer('checkpointIntervalMs', integ.checkpointIntervalMs, { min: 1 })
      if (integ.onCheckpoint !== undefined) iv.function('onCheckpoint', integ.onCheckpoint)
    }
  }
  if (options.spool !== undefined) {
    const so = v.object('spool', options.spool)
    const sv = v.child('spool')
    if (so !== undefined) {
      sv.knownKeys(so, SPOOL_NAMES)
      sv.string('dir', so.dir)
      if (so.maxBytes !== undefined) sv.integer('maxBytes', so.maxBytes, { min: 1024 })
      if (so.fsync !== undefined) sv.boolean('fsync', so.fsync)
    }
    const names = (sinks ?? []).map((s) => s.name)
    const dup = names.find((n, i) => names.indexOf(n) !== i)
    if (dup !== undefined)
      v.fail('sinks', `sink names must be unique with a spool (each has its own file): ${dup}`)
  }
  if (options.pseudonyms !== undefined && typeof options.pseudonyms?.pseudonymFor !== 'function')
    v.fail('pseudonyms', 'must be a Pseudonymizer (createPseudonymizer)')
  const logger = options.logger ?? silentLogger
  v.assert((m) => logger.warn({}, m))
  return {
    sinks: sinks ?? [],
    level: level as AuditLevel,
    batchSize,
    flushIntervalMs,
    maxQueue,
    writeTimeoutMs,
    closeTimeoutMs,
    clockJumpThresholdMs,
    durable,
    compliance,
    redaction,
    ip,
    spool:
      options.spool === undefined
        ? undefined
        : {
            dir: options.spool.dir,
            maxBytes: options.spool.maxBytes ?? DEFAULT_SPOOL_MAX_BYTES,
            fsync: options.spool.fsync ?? true,
          },
    logger,
  }
}
