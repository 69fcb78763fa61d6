/**
 * The audit pipeline. On the request path `emit` only queues the event (per sink, bounded). Off it,
 * each sink's queue prepares events once (level, pseudonyms, redaction, compliance tags), links
 * them into the sink's keyed hash chain, and writes them in batches, in order. A sink that fails or
 * is slower than `writeTimeoutMs` switches its queue to the disk spool (when configured): events go
 * to an fsync'd local file and are replayed in order when the sink answers again. `flush()` and
 * `close()` wait until every sink has everything.
 *
 * Reachable from `@portcullis/core`.
 * @packageDocumentation
 */
import { randomUUID } from 'node:crypto'
import {
  DEFAULT_AUDIT_BATCH_SIZE,
  DEFAULT_AUDIT_CLOCK_JUMP_THRESHOLD_MS,
  DEFAULT_AUDIT_FLUSH_INTERVAL_MS,
  DEFAULT_AUDIT_MAX_QUEUE,
} from '../defaults.js'
import { getAccessContext } from '../context/access-context.js'
import { AuthError } from '../errors.js'
import { noopMetrics, type MetricsClient } from '../integrations/metrics.js'
import { monotonicMicros, systemClock, unrefTimeout, type Clock } from '../internal/clock.js'
import { silentLogger, type Logger } from '../logger.js'
import { TypeValidator } from '../validation/type-validator.js'
import {
  AuditChainer,
  canonicalBody,
  type AuditIntegrityOptions,
  type CanonicalBody,
} from './audit-chain.js'
import {
  AUDIT_EVENT_TYPES,
  isSecurityEvent,
  type AuditEvent,
  type AuditEventInput,
  type AuditEventType,
  type AuditLevel,
  type AuditSink,
} from './audit-event.js'
import { AuditSpool } from './audit-spool.js'
import { ClockWatch } from './clock-watch.js'
import { rememberAuditEventJson } from './event-json.js'
import {
  auditComplianceReport,
  COMPLIANCE_PROFILES,
  complianceStamp,
  resolveCompliance,
  type AuditComplianceReport,
  type AuditComplianceStamp,
  type ComplianceProfileName,
} from './compliance.js'
import type { Pseudonymizer } from './pseudonyms.js'
import {
  compileAuditRedaction,
  MASKED,
  REDACTED,
  type AuditIpMode,
  type AuditRedactionOptions,
  type CompiledAuditRedaction,
} from './redaction.js'

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

/** The audit trail the gate and the key manager write to. */
export interface AuditTrail {
  /** The configured level. */
  readonly level: AuditLevel
  /** Whether the gate waits for each request's event to be durable before answering (`durable`). */
  readonly durable?: boolean
  /**
   * Queues an event (filling id and time). Returns `false` when a sink's queue is full, which the
   * gate treats as a reason to fail closed. A security event is kept even then (within a reserve).
   */
  emit(event: AuditEventInput): boolean
  /**
   * Records an event from application code. The request context (request id, route, principal)
   * comes from AsyncLocalStorage; an unknown `type` is kept as `custom` with `customType` set.
   */
  record(type: string, details?: Omit<Partial<AuditEventInput>, 'type'>): boolean
  /**
   * Queues an event and resolves once every sink has it durably (written, or fsync'd in its spool).
   * It does not wait for a batching interval: its queue is written at once. The event stays queued
   * (and is written when the sink recovers) even when the promise rejects.
   * @throws {AuthError} `ERR_AUDIT_UNAVAILABLE` when the queue refused it, or when a sink's write of
   * it failed (or timed out after `writeTimeoutMs`) and no spool took it, or the sink is failing
   * already (between retries) and its spool cannot take events
   */
  commit(event: AuditEventInput): Promise<AuditEvent>
  /** Whether an event of `type` and outcome is written (at this level, to at least one sink). */
  accepts(type: AuditEventType, outcome: 'success' | 'failure'): boolean
  /** Events queued in memory and not yet acknowledged by every sink. */
  readonly pending: number
  /** Which events and controls this configuration covers, and its gaps. */
  report(options?: { readonly failClosed?: boolean }): AuditComplianceReport
  /** Resolves when everything queued so far is written (or rejects if a sink keeps failing past `timeoutMs`). */
  flush(timeoutMs?: number): Promise<void>
  /**
   * Writes a final checkpoint, flushes (leaving what a dead sink has not taken in its spool), then
   * closes the sinks. Settles within `timeoutMs` (default `closeTimeoutMs`) even while a sink does
   * not answer, with a report of what each sink was left without; it never rejects.
   */
  close(timeoutMs?: number): Promise<AuditCloseReport>
}

/** What {@link AuditTrail.close} left behind for one sink. */
export interface AuditSinkCloseReport {
  /** The sink's name. */
  readonly sink: string
  /** Events the sink did not get that were only in memory: lost with the process. */
  readonly unwritten: number
  /** Whether the sink's spool still holds events (the next trail on the same spool replays them). */
  readonly spooled: boolean
  /** Bytes of the events waiting in the spool. */
  readonly spoolBytes: number
}

/** The result of {@link AuditTrail.close}. */
export interface AuditCloseReport {
  /** Whether every sink got every event (nothing lost, nothing left in a spool). */
  readonly complete: boolean
  /** Whether close gave up at its deadline (a sink did not answer in time). */
  readonly timedOut: boolean
  /** One entry per sink, in the order of `sinks`. */
  readonly sinks: readonly AuditSinkCloseReport[]
}

const OPTION_NAMES = [
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
]
const LEVELS = ['minimal', 'standard', 'verbose'] as const
const IP_MODES = ['keep', 'truncate', 'hmac'] as const
const MAX_RETRY_DELAY_MS = 5_000
const DEFAULT_SPOOL_MAX_BYTES = 256 * 1024 * 1024
const DEFAULT_WRITE_TIMEOUT_MS = 10_000
const DEFAULT_CLOSE_TIMEOUT_MS = 15_000

/**
 * Creates an audit trail.
 * @throws {ConfigError} for a bad option
 * @example
 * ```ts
 * const audit = createAuditTrail({
 *   sinks: [createJsonLinesFileSink({ path: 'data/audit.jsonl', maxBytes: 64 * 1024 * 1024 })],
 *   integrity: { key: process.env.AUDIT_CHAIN_KEY as string },
 *   spool: { dir: 'data/audit-spool' },
 *   compliance: ['SOC2', 'GDPR'],
 * })
 * ```
 */
export function createAuditTrail(options: Readonly<AuditOptions> = {}): AuditTrail {
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
    rv.knownKeys(redaction as Record<string, unknown>, [
      'piiFields',
      'ip',
      'ipKey',
      'maxFieldLength',
      'maxDepth',
    ])
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
      iv.knownKeys(integ, [
        'key',
        'keyId',
        'checkpointEvery',
        'checkpointIntervalMs',
        'signingKey',
        'onCheckpoint',
      ])
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
      sv.knownKeys(so, ['dir', 'maxBytes', 'fsync'])
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

  const now = options.now ?? systemClock
  const metrics = options.metrics ?? noopMetrics
  const prep = new Preparer(
    level as AuditLevel,
    compileAuditRedaction({ ...redaction, ip }),
    options.pseudonyms,
    complianceTags(compliance),
    // Several sinks without a chain get the same event object: serialize it once for all.
    (sinks ?? []).length > 1 && options.integrity === undefined,
    complianceStamp(compliance),
  )
  // The watch reports into the trail, which is made after the queues that hold the watch.
  const made: { trail?: Trail } = {}
  const clock =
    (sinks ?? []).length > 0 && (now === systemClock || options.monotonicNow !== undefined)
      ? new ClockWatch({
          wall: now,
          monotonic: options.monotonicNow ?? monotonicMs,
          thresholdMs: clockJumpThresholdMs,
          report: (event) => made.trail?.emit(event),
        })
      : undefined
  const queues = (sinks ?? []).map(
    (s) =>
      new SinkQueue(s, {
        batchSize,
        intervalMs: flushIntervalMs,
        maxQueue,
        writeTimeoutMs,
        logger,
        metrics,
        now,
        prep,
        clock,
        chainer: options.integrity === undefined ? undefined : new AuditChainer(options.integrity),
        spool:
          options.spool === undefined
            ? undefined
            : new AuditSpool(
                options.spool.dir,
                s.name,
                options.spool.maxBytes ?? DEFAULT_SPOOL_MAX_BYTES,
                options.spool.fsync ?? true,
              ),
      }),
  )
  const reportInput = {
    profiles: compliance,
    level: level as AuditLevel,
    sinks: queues.length,
    integrity: options.integrity !== undefined,
    spool: options.spool !== undefined,
    ...(options.retentionDays === undefined ? {} : { retentionDays: options.retentionDays }),
    ip,
    pseudonymize: options.pseudonyms !== undefined,
  }
  const trail = new Trail(
    queues,
    level as AuditLevel,
    durable,
    now,
    (failClosed) =>
      auditComplianceReport({
        ...reportInput,
        ...(failClosed === undefined ? {} : { failClosed }),
      }),
    closeTimeoutMs,
    logger,
  )
  made.trail = trail
  return trail
}

function complianceTags(
  profiles: readonly ComplianceProfileName[],
): Map<string, readonly string[]> {
  const tags = new Map<string, string[]>()
  for (const control of resolveCompliance(profiles).controls) {
    for (const type of control.events) {
      let list = tags.get(type)
      if (list === undefined) tags.set(type, (list = []))
      list.push(`${control.profile}:${control.id}`)
    }
  }
  return tags
}

const KNOWN_TYPES = new Set<string>(AUDIT_EVENT_TYPES)

/** The field names of the event schema (top level and the known nested objects). */
const SCHEMA_FIELDS = [
  'id',
  'time',
  'level',
  'type',
  'customType',
  'outcome',
  'actor',
  'action',
  'target',
  'reason',
  'request',
  'tags',
  'data',
  'chain',
  'method',
  'tokenId',
  'code',
  'detail',
  'trace',
  'path',
  'route',
  'userAgent',
]
/** The fields an audit level may trim. */
interface Levelled {
  readonly reason: AuditEventInput['reason']
  readonly request: AuditEventInput['request']
}

/** The latest time a `Date` holds (ms). */
const MAX_TIME = 8.64e15
const EPOCH = new Date(0).toISOString()

/** Top-level fields with more keys than this go the generic way (which truncates them). */
const FAST_MAX_KEYS = 64

/** Turns a queued event into what sinks receive. Runs once per event, off the request path. */
class Preparer {
  /**
   * Whether the schema's own field names are all plain `keep` fields under this configuration
   * (no PII field list names one of them). Then events are prepared in one pass that cleans the
   * top level itself (no intermediate copy) and hands each nested value to the redactor.
   */
  readonly #fast: boolean

  constructor(
    readonly level: AuditLevel,
    readonly redaction: CompiledAuditRedaction,
    readonly pseudonyms: Pseudonymizer | undefined,
    readonly tags: Map<string, readonly string[]>,
    readonly shareJson: boolean,
    readonly compliance: AuditComplianceStamp | undefined,
  ) {
    this.#fast = SCHEMA_FIELDS.every((f) => redaction.kind(f) === 'keep')
  }

  #isoSecond = Number.NaN
  #isoPrefix = ''

  /**
   * `new Date(at).toISOString()`, which costs more than the rest of an event's preparation:
   * events come many per second, so the text up to the second is made once per second.
   */
  #iso(at: number): string {
    const ms = at % 1000
    if (!Number.isInteger(at) || at < 0 || at > MAX_TIME) {
      const d = new Date(at)
      // A clock answering nonsense must not stop the trail: such an event gets the epoch.
      return Number.isNaN(d.getTime()) ? EPOCH : d.toISOString()
    }
    const second = at - ms
    if (second !== this.#isoSecond) {
      // `2026-11-28T15:18:32.` (the year may be longer: keep everything before the millis).
      this.#isoPrefix = new Date(second).toISOString().slice(0, -4)
      this.#isoSecond = second
    }
    return `${this.#isoPrefix}${ms < 10 ? '00' : ms < 100 ? '0' : ''}${ms}Z`
  }

  prepare(raw: AuditEventInput, at: number): AuditEvent {
    let e: AuditEvent
    try {
      e = (this.#fast ? this.#prepareFast(raw, at) : undefined) ?? this.#prepareGeneric(raw, at)
    } catch {
      e = this.#unreadable(raw, at)
    }
    // The trail's own field, like `level`: one frozen object shared by every event.
    if (this.compliance !== undefined)
      (e as { compliance?: AuditComplianceStamp }).compliance = this.compliance
    if (this.shareJson) rememberAuditEventJson(e, JSON.stringify(e))
    return e
  }

  /**
   * An event whose fields cannot be read (a getter or proxy that throws, a pseudonym store that
   * fails) is still written, as what could be read and a note: throwing here would stop the
   * queue, and dropping it could drop a security event.
   */
  #unreadable(raw: AuditEventInput, at: number): AuditEvent {
    let type: unknown
    let outcome: unknown
    try {
      type = raw.type
      outcome = raw.outcome
    } catch {
      // nothing readable
    }
    const known = typeof type === 'string' && KNOWN_TYPES.has(type)
    const e: Record<string, unknown> = {
      id: randomUUID(),
      time: this.#iso(at),
      level: this.level,
      type: known ? type : 'custom',
      outcome: outcome === 'success' ? 'success' : 'failure',
      actor: { id: null },
      action: known ? type : 'custom',
      data: { error: 'the event could not be prepared: its fields could not be read' },
    }
    if (!known) e.customType = 'unreadable'
    return e as unknown as AuditEvent
  }

  /** The event's fields before cleaning, filtered by level (a copy only where a field changes). */
  #levelled(raw: AuditEventInput): Levelled {
    let reason = raw.reason
    let request = raw.request
    if (this.level !== 'verbose') {
      // Fields by level: the trace of an allowed request is verbose-only; minimal keeps neither
      // traces nor user agents.
      if (reason?.trace !== undefined && (this.level === 'minimal' || raw.outcome === 'success')) {
        const { trace: _t, ...rest } = reason
        reason = rest
      }
      if (this.level === 'minimal' && request?.userAgent !== undefined) {
        const { userAgent: _u, ...rest } = request
        request = rest
      }
    }
    return { reason, request }
  }

  #actor(raw: AuditEventInput): unknown {
    const actor = raw.actor as AuditEventInput['actor'] | undefined
    if (this.pseudonyms !== undefined && typeof actor?.id === 'string')
      return { ...actor, id: this.pseudonyms.pseudonymFor(actor.id) }
    return actor
  }

  #tags(raw: AuditEventInput, type: string): unknown {
    const extra = this.tags.get(type)
    if (extra === undefined) return raw.tags
    return Array.isArray(raw.tags) ? [...new Set([...raw.tags, ...extra])] : extra
  }

  /**
   * One pass over the input: the fields the trail makes itself (id, time, level, type, outcome)
   * are written as they are; every other value goes through the redactor as the generic path
   * would clean it. Returns `undefined` for input the generic path must handle (odd keys).
   */
  #prepareFast(raw: AuditEventInput, at: number): AuditEvent | undefined {
    const r = this.redaction
    const keys = Object.keys(raw)
    if (keys.length > FAST_MAX_KEYS) return undefined
    const known = KNOWN_TYPES.has(raw.type)
    const type = known ? raw.type : 'custom'
    const id = raw.id
    const time = raw.time
    const e: Record<string, unknown> = {
      id: typeof id === 'string' && id !== '' ? r.text(id) : randomUUID(),
      time: typeof time === 'string' ? r.text(time) : this.#iso(at),
      level: this.level,
      type,
      outcome: raw.outcome === 'success' ? 'success' : 'failure',
    }
    if (!known) e.customType = r.text(String(raw.customType ?? raw.type))
    let levelled: Levelled | undefined
    for (const key of keys) {
      let value: unknown
      switch (key) {
        case 'id':
        case 'time':
        case 'level':
        case 'type':
        case 'outcome':
        case 'tags':
          continue
        case 'customType':
          if (!known) continue
          value = r.field(raw.customType, 1)
          break
        case 'actor': {
          const actor = r.field(this.#actor(raw), 1)
          value = typeof actor === 'object' && actor !== null ? actor : { id: null }
          break
        }
        case 'reason':
          levelled ??= this.#levelled(raw)
          value = r.field(levelled.reason, 1)
          break
        case 'request':
          levelled ??= this.#levelled(raw)
          value = r.field(levelled.request, 1)
          break
        case 'action':
          value = r.field(raw.action, 1)
          break
        default: {
          if (key === '__proto__' || key.length > 256) return undefined
          const kind = r.kind(key)
          const v = (raw as unknown as Record<string, unknown>)[key]
          if (kind === 'credential') value = REDACTED
          else if (kind === 'pii') value = MASKED
          else {
            value = r.field(v, 1)
            if (kind === 'ip' && typeof value === 'string') value = r.ip(value)
          }
        }
      }
      if (value !== undefined) e[key] = value
    }
    const tags = r.field(this.#tags(raw, type), 1)
    if (tags !== undefined) e.tags = tags
    if (typeof e.action !== 'string') e.action = type
    if (e.actor === undefined) e.actor = { id: null }
    return e as unknown as AuditEvent
  }

  /** The general path: a copy of the input with the trail's fields, cleaned as a whole. */
  #prepareGeneric(raw: AuditEventInput, at: number): AuditEvent {
    // id and time are made here, off the request path; `at` is when it was emitted.
    let e: Record<string, unknown> = {
      ...raw,
      id: typeof raw.id === 'string' && raw.id !== '' ? raw.id : randomUUID(),
      time: typeof raw.time === 'string' ? raw.time : this.#iso(at),
    }
    if (!KNOWN_TYPES.has(raw.type)) {
      e.customType = String(raw.customType ?? raw.type)
      e.type = 'custom'
    }
    const { reason, request } = this.#levelled(raw)
    if (reason !== raw.reason) e.reason = reason
    if (request !== raw.request) e.request = request
    if (this.pseudonyms !== undefined) e.actor = this.#actor(raw)
    const tags = this.#tags(raw, e.type as string)
    if (tags !== raw.tags) e.tags = tags
    e.level = this.level
    e = this.redaction.redact(e) as Record<string, unknown>
    // The schema's own fields must survive hostile input with their types.
    if (typeof e.id !== 'string') e.id = randomUUID()
    if (typeof e.time !== 'string') e.time = new Date(0).toISOString()
    if (e.outcome !== 'success' && e.outcome !== 'failure') e.outcome = 'failure'
    if (typeof e.action !== 'string') e.action = String(e.type)
    if (typeof e.actor !== 'object' || e.actor === null) e.actor = { id: null }
    return e as unknown as AuditEvent
  }
}

/** Stands in the queue for a checkpoint to be made when its turn comes. */
const CHECKPOINT_MARKER = Object.freeze({}) as AuditEventInput

/** One queued event, shared by every sink's queue. */
class Entry {
  #prepared: AuditEvent | undefined
  #body: CanonicalBody | undefined
  #failed = false
  remaining: number
  constructor(
    readonly raw: AuditEventInput,
    readonly at: number,
    readonly security: boolean,
    sinks: number,
    readonly onDone?: (event: AuditEvent) => void,
    /** Set by `commit()`: told (once) when a sink could not make the event durable. */
    readonly onFail?: (error: unknown) => void,
  ) {
    this.remaining = sinks
  }

  /** Tells the committer that a sink failed it; the entry itself stays queued for the retry. */
  fail(error: unknown): void {
    if (this.onFail === undefined || this.#failed || this.remaining === 0) return
    this.#failed = true
    this.onFail(error)
  }

  prepared(prep: Preparer): AuditEvent {
    return (this.#prepared ??= prep.prepare(this.raw, this.at))
  }

  /** The prepared event's canonical members, made once for every sink's chain. */
  body(prep: Preparer): CanonicalBody {
    return (this.#body ??= canonicalBody(this.prepared(prep)))
  }

  ack(prep: Preparer): void {
    if (--this.remaining === 0) this.onDone?.(this.prepared(prep))
  }
}

interface QueueConfig {
  readonly batchSize: number
  readonly intervalMs: number
  readonly maxQueue: number
  readonly writeTimeoutMs: number
  readonly logger: Logger
  readonly metrics: MetricsClient
  readonly now: Clock
  readonly prep: Preparer
  /** Checks the wall clock for jumps on each flush timer (absent: not watched). */
  readonly clock: ClockWatch | undefined
  readonly chainer: AuditChainer | undefined
  readonly spool: AuditSpool | undefined
}

// Retries are scheduled on real elapsed time, not the injected clock: a frozen test clock must
// not stop a recovering sink from being retried.
const monotonicMs = (): number => monotonicMicros() / 1000

const sleep = (ms: number): Promise<void> =>
  new Promise((resolve) => {
    unrefTimeout(resolve, ms)
  })

/** Exponential back-off with jitter after `failures` failures in a row (ms). */
function retryDelay(failures: number): number {
  const base = Math.min(MAX_RETRY_DELAY_MS, 50 * 2 ** Math.min(failures, 10))
  // Full jitter keeps many instances from retrying a recovering sink in lockstep.
  return Math.round(base / 2 + Math.random() * (base / 2))
}

/** An injected clock's time as ISO 8601 (the epoch for a clock that answers nonsense). */
function isoTime(at: number): string {
  const d = new Date(at)
  return Number.isNaN(d.getTime()) ? EPOCH : d.toISOString()
}

/** The wait a failed write asked for (`retryAfterMs` on its error), or 0. */
function retryAfterOf(error: unknown): number {
  const ms = (error as { retryAfterMs?: unknown } | null)?.retryAfterMs
  return typeof ms === 'number' && Number.isFinite(ms) && ms > 0 ? ms : 0
}

class SinkQueue {
  readonly queue: Entry[] = []
  readonly labels: Readonly<Record<string, string>>
  #running: Promise<void> | undefined
  #timer: NodeJS.Timeout | undefined
  /** Whether the pending timer is a drain at once (delay 0), not the batching interval. */
  #timerNow = false
  /** When the queue last went from empty to not empty (monotonic ms): its oldest entry's age. */
  #since = 0
  #failures = 0
  #retryAt = 0
  #lastError: unknown
  /** Spool appends failed in a row (a full disk), and when the next may be tried (monotonic ms). */
  #appendFailures = 0
  #appendRetryAt = 0
  /** Whether the queue may hold entries whose `commit()` waits: then it is written at once. */
  #urgent = false
  /** Linked events taken out of memory and not yet acknowledged (direct mode). */
  #inflight: { entries: Entry[]; events: AuditEvent[] } | undefined
  #spooling = false
  #spoolReady: Promise<void> | undefined
  #closing = false
  /** The current episode of a full queue: events refused, and when the first and last were. */
  #episode: { count: number; from: number; to: number } | undefined
  /** When the sink began failing (the injected clock), and how many events have waited since. */
  #degraded: { since: number; error: string; waited: number } | undefined
  /** Where this queue reports its sink's health and its dropped events (set by the trail). */
  onTrailEvent: ((from: SinkQueue, event: AuditEventInput) => void) | undefined
  readonly #waiters: Array<() => void> = []
  readonly #reserve: number

  constructor(
    readonly sink: AuditSink,
    readonly c: QueueConfig,
  ) {
    this.labels = Object.freeze({ sink: sink.name })
    c.metrics.set('auditSinkHealthy', 1, this.labels)
    this.#reserve = Math.max(1000, Math.ceil(c.maxQueue / 10))
    if (c.spool !== undefined) {
      this.#spoolReady = c.spool.open().then(
        () => {
          // Leftovers from a previous run (crash, or a sink that never came back) replay first.
          if (c.spool!.pendingBytes > 0) {
            this.#spooling = true
            this.#kick(0)
          }
        },
        (error: unknown) => {
          c.logger.error(
            { sink: sink.name, error: String(error) },
            'audit spool cannot be opened; events stay in memory',
          )
          this.#spoolBroken = true
        },
      )
    }
  }

  #spoolBroken = false
  #spoolFullLogged = false

  get depth(): number {
    return this.queue.length + (this.#inflight?.entries.length ?? 0) + this.#moving
  }

  /** Entries being appended to the spool right now. */
  #moving = 0

  get busy(): boolean {
    return (
      this.queue.length > 0 ||
      this.#inflight !== undefined ||
      (this.c.spool !== undefined && this.c.spool.pendingBytes > 0)
    )
  }

  push(entry: Entry): boolean {
    const n = this.queue.length
    if (n >= this.c.maxQueue) {
      // Security events are never refused while the reserve lasts; the caller still hears "full"
      // so the gate fails closed.
      if (entry.security && n < this.c.maxQueue + this.#reserve) {
        this.queue.push(entry)
        this.#kick(0)
      } else {
        entry.ack(this.c.prep)
        this.c.metrics.increment('auditEventsDropped', this.labels)
        const at = this.c.now()
        if (this.#episode === undefined) {
          this.#episode = { count: 0, from: at, to: at }
          // Once per episode; its end is told by the audit.dropped event and a warning.
          this.c.logger.error(
            { sink: this.sink.name, type: entry.raw.type, maxQueue: this.c.maxQueue },
            'audit queue full: events are being dropped',
          )
        }
        this.#episode.count++
        this.#episode.to = at
      }
      return false
    }
    if (this.#degraded !== undefined) this.#degraded.waited++
    this.queue.push(entry)
    if (n === 0) this.#since = monotonicMs()
    if (entry.onFail !== undefined) {
      // A committer waits: fail it now if the sink is down and nothing can take the event (it
      // stays queued for the retry), else write at once rather than after the interval.
      if (this.#unavailable()) entry.fail(this.#lastError)
      this.#urgent = true
      this.#kick(0)
      return true
    }
    // A full batch drains at once; otherwise the batching interval runs from the oldest entry.
    // While a write is in flight, the drain loop takes what is queued when it ends.
    if (this.#running === undefined) {
      if (n + 1 >= this.c.batchSize) {
        if (!this.#timerNow) this.#kick(0)
      } else if (this.#timer === undefined) this.#kick(this.c.intervalMs)
    }
    return true
  }

  /** Whether a sink write failed last and neither memory's spool can take events now. */
  #unavailable(): boolean {
    if (this.#failures === 0) return false
    const spool = this.c.spool
    return spool === undefined || this.#spoolBroken || this.#appendFailures > 0 || spool.full
  }

  /** Fails the committers waiting on this queue (its entries stay queued for the retry). */
  #failWaiting(error: unknown): void {
    for (const e of this.#inflight?.entries ?? []) e.fail(error)
    if (this.#urgent) for (const e of this.queue) e.fail(error)
  }

  #kick(delayMs: number): void {
    if (this.#running !== undefined) return
    if (this.#timer !== undefined) {
      if (delayMs > 0) return
      clearTimeout(this.#timer)
    }
    this.#timerNow = delayMs <= 0
    this.#timer = unrefTimeout(() => {
      this.c.clock?.check()
      this.#timer = undefined
      this.#timerNow = false
      this.#running ??= this.#runSafely().finally(() => {
        this.#running = undefined
        if (this.busy && !this.#closed) this.#kick(this.#untilDue())
        else if (!this.busy) for (const w of this.#waiters.splice(0)) w()
      })
    }, delayMs)
  }

  /** How long the queue's oldest entry may still wait for a fuller batch (0: due now). */
  #untilDue(): number {
    if (this.queue.length >= this.c.batchSize || this.#waiters.length > 0 || this.#urgent) return 0
    return Math.max(0, Math.ceil(this.c.intervalMs - (monotonicMs() - this.#since)))
  }

  #closed = false

  /**
   * Runs the drain loop; an error it did not expect (the spool cannot be read, or its offset not
   * recorded: a failing disk) is reported and retried after a back-off instead of rejecting
   * unheard (an unhandled rejection would end the process).
   */
  #runSafely(): Promise<void> {
    return this.#run().catch((error: unknown) => {
      this.#failures++
      this.#lastError = error
      this.#retryAt = monotonicMs() + retryDelay(this.#failures)
      this.c.metrics.increment('auditSinkErrors', this.labels)
      this.c.logger.error(
        { sink: this.sink.name, error: String(error) },
        'audit queue: unexpected error; will retry',
      )
      this.#failWaiting(error)
    })
  }

  async #run(): Promise<void> {
    await this.#spoolReady
    for (let first = true; ; first = false) {
      if (this.#closed) return
      if (this.#spooling) {
        if (!(await this.#spoolStep())) return
        continue
      }
      if (this.#inflight === undefined) {
        if (this.queue.length === 0) return
        // After a write, what arrived meanwhile waits for a full batch or its interval (unless
        // someone waits for the queue to empty, or it is closing): under load, a write per
        // handful of events cost more than the events (a promise, a thread-pool hop and a
        // syscall each).
        if (!first && !this.#closing && this.#untilDue() > 0) return
        const entries = this.queue.splice(0, this.c.batchSize)
        if (this.queue.length === 0) this.#urgent = false
        this.#inflight = { entries, events: this.#link(entries) }
        this.#endEpisode()
      }
      const { entries, events } = this.#inflight
      if (await this.#write(events)) {
        this.#inflight = undefined
        for (const e of entries) e.ack(this.c.prep)
        this.#report()
        continue
      }
      // Committers hear of it now unless the spool can take their events.
      if (this.#unavailable()) this.#failWaiting(this.#lastError)
      if (this.c.spool !== undefined && !this.#spoolBroken) {
        this.#spooling = true
        continue
      }
      this.#report()
      const wait = this.#retryAt - monotonicMs()
      if (wait > 0) {
        if (this.#closing) return
        await sleep(wait)
      }
    }
  }

  /** One step in spool mode; returns false when there is nothing left to do now. */
  async #spoolStep(): Promise<boolean> {
    const spool = this.c.spool as AuditSpool
    // 1. Whatever left memory (an in-flight batch first, to keep order) goes to disk, unless the
    // last append failed (a full disk) and its back-off has not run out.
    if (
      (this.#inflight !== undefined || this.queue.length > 0) &&
      monotonicMs() >= this.#appendRetryAt
    ) {
      if (spool.full) {
        if (!this.#spoolFullLogged)
          this.c.logger.error(
            { sink: this.sink.name, bytes: spool.pendingBytes },
            'audit spool full: events wait in memory',
          )
        this.#spoolFullLogged = true
        if (this.#unavailable()) this.#failWaiting(new Error('the audit spool is full'))
      } else {
        this.#spoolFullLogged = false
        const parts: { entries: Entry[]; events: AuditEvent[] } = this.#inflight ?? {
          entries: [],
          events: [],
        }
        this.#inflight = undefined
        const more = this.queue.splice(0, 4096)
        parts.entries.push(...more)
        parts.events.push(...this.#link(more))
        this.#moving = parts.entries.length
        try {
          await spool.append(parts.events)
        } catch (error) {
          this.#moving = 0
          this.c.logger.error(
            { sink: this.sink.name, error: String(error) },
            'audit spool append failed; events stay in memory',
          )
          // The append was cut back off the spool: the events wait in memory, in order, and the
          // append is tried again after a back-off (a full disk frees up).
          this.#inflight = parts
          this.#lastError = error
          this.#appendFailures++
          this.#appendRetryAt = monotonicMs() + retryDelay(this.#appendFailures)
          this.c.metrics.increment('auditSinkErrors', this.labels)
          this.#failWaiting(error)
          return true
        }
        this.#appendFailures = 0
        this.#appendRetryAt = 0
        this.#moving = 0
        for (const e of parts.entries) e.ack(this.c.prep)
        this.#endEpisode()
        this.#report()
        return true
      }
    }
    // 2. Replay from disk when the sink is due another try.
    if (spool.pendingBytes === 0) {
      if (this.#inflight === undefined && this.queue.length === 0) {
        this.#spooling = false
        return true
      }
      if (monotonicMs() >= this.#appendRetryAt) return true
      // Nothing older waits on disk, and the spool refused what is in memory: the sink, when due,
      // may take it directly (back here if it fails).
      if (monotonicMs() >= this.#retryAt) {
        this.#spooling = false
        return true
      }
    }
    const wait = this.#retryAt - monotonicMs()
    if (wait > 0) {
      if (this.#closing) return false
      await sleep(Math.min(wait, Math.max(this.c.intervalMs, 10)))
      return true
    }
    const { events, next } = await spool.read(this.c.batchSize)
    if (events.length === 0) {
      await spool.commit(next)
      return true
    }
    if (await this.#write(events)) {
      await spool.commit(next)
      this.#report()
      return true
    }
    this.#report()
    return !this.#closing || this.queue.length > 0
  }

  #link(entries: readonly Entry[]): AuditEvent[] {
    const prep = this.c.prep
    const chainer = this.c.chainer
    const out: AuditEvent[] = []
    for (const entry of entries) {
      if (entry.raw === CHECKPOINT_MARKER) {
        if (chainer !== undefined)
          out.push(chainer.checkpoint(new Date(this.c.now()).toISOString()))
        continue
      }
      const event = entry.prepared(prep)
      if (chainer === undefined) {
        out.push(event)
        continue
      }
      out.push(chainer.link(event, entry.body(prep)))
      const now = this.c.now()
      if (chainer.checkpointDue(now)) out.push(chainer.checkpoint(new Date(now).toISOString()))
    }
    return out
  }

  /** Queues a checkpoint (on close) so the chain's end is signed. */
  finalCheckpoint(): void {
    if (this.c.chainer === undefined || this.#closed) return
    this.queue.push(new Entry(CHECKPOINT_MARKER, 0, true, 1))
    this.#kick(0)
  }

  async #write(events: readonly AuditEvent[]): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined
    try {
      await Promise.race([
        this.sink.write(events),
        new Promise<never>((_, reject) => {
          timer = unrefTimeout(
            () => reject(new Error(`write timed out after ${this.c.writeTimeoutMs} ms`)),
            this.c.writeTimeoutMs,
          )
        }),
      ])
      this.#failures = 0
      this.#retryAt = 0
      this.c.metrics.increment('auditEvents', this.labels, events.length)
      if (this.#degraded !== undefined) this.#recovered()
      return true
    } catch (error) {
      this.#failures++
      this.#lastError = error
      // A sink may say how long to leave it alone (a collector's Retry-After): that wait is kept
      // even past the back-off's cap; the sink bounds it (the webhook's maxRetryAfterMs).
      const delay = Math.max(retryDelay(this.#failures), retryAfterOf(error))
      this.#retryAt = monotonicMs() + delay
      this.c.metrics.increment('auditSinkErrors', this.labels)
      this.c.logger.error(
        {
          sink: this.sink.name,
          error: String(error),
          retryInMs: delay,
          spool: this.c.spool !== undefined && !this.#spoolBroken,
        },
        'audit sink write failed; will retry',
      )
      if (this.#degraded === undefined) this.#degrade(error)
      return false
    } finally {
      clearTimeout(timer)
    }
  }

  /** The sink's first failed write after working: told once, until it writes again. */
  #degrade(error: unknown): void {
    const message = String(error).slice(0, 1024)
    this.#degraded = { since: this.c.now(), error: message, waited: this.depth }
    this.c.metrics.set('auditSinkHealthy', 0, this.labels)
    this.c.logger.error({ sink: this.sink.name, error: message }, 'audit sink degraded')
    this.onTrailEvent?.(this, {
      type: 'audit.sink.degraded',
      outcome: 'failure',
      actor: { id: null },
      action: 'audit.sink.degraded',
      target: { type: 'audit.sink', id: this.sink.name },
      data: { sink: this.sink.name, error: message },
    })
  }

  /** The sink's first successful write after failing. */
  #recovered(): void {
    const d = this.#degraded!
    this.#degraded = undefined
    const downMs = Math.max(0, this.c.now() - d.since)
    this.c.metrics.set('auditSinkHealthy', 1, this.labels)
    this.c.logger.warn({ sink: this.sink.name, downMs, waited: d.waited }, 'audit sink recovered')
    this.onTrailEvent?.(this, {
      type: 'audit.sink.recovered',
      outcome: 'success',
      actor: { id: null },
      action: 'audit.sink.recovered',
      target: { type: 'audit.sink', id: this.sink.name },
      data: {
        sink: this.sink.name,
        since: isoTime(d.since),
        downMs,
        waited: d.waited,
        error: d.error,
      },
    })
  }

  /**
   * Ends an episode of a full queue once it has room again (half of `maxQueue`, so that a queue
   * that stays at its limit is one episode, not one per batch): the count and time range go into
   * this sink's own trail (an `audit.dropped` event), so the gap is visible where it is.
   */
  #endEpisode(): void {
    const e = this.#episode
    if (e === undefined || this.queue.length > this.c.maxQueue / 2) return
    this.#episode = undefined
    this.c.logger.warn(
      { sink: this.sink.name, dropped: e.count },
      'audit queue has room again: events were dropped',
    )
    this.addOwn({
      type: 'audit.dropped',
      outcome: 'failure',
      actor: { id: null },
      action: 'audit.dropped',
      target: { type: 'audit.sink', id: this.sink.name },
      data: { sink: this.sink.name, count: e.count, from: isoTime(e.from), to: isoTime(e.to) },
    })
  }

  /** Queues an event of the trail's own for this sink alone. */
  addOwn(event: AuditEventInput): void {
    this.add(new Entry(event, this.c.now(), true, 1))
  }

  /** Queues one of the trail's own events (within the reserve) and writes it without waiting. */
  add(entry: Entry): void {
    this.push(entry)
    this.#urgent = true
    this.#kick(0)
  }

  #report(): void {
    this.c.metrics.set('auditQueueDepth', this.depth, this.labels)
    if (this.c.spool !== undefined)
      this.c.metrics.set('auditSpoolBytes', this.c.spool.pendingBytes, this.labels)
  }

  /** Resolves when nothing is pending for this sink (a spool left by a previous run included). */
  async idle(): Promise<void> {
    await this.#spoolReady
    if (!this.busy && this.#running === undefined) return
    return new Promise((resolve) => {
      this.#waiters.push(resolve)
      this.#kick(0)
    })
  }

  /** What this sink was left without (for the close report). */
  leftBehind(): AuditSinkCloseReport {
    const spoolBytes = this.c.spool?.pendingBytes ?? 0
    return { sink: this.sink.name, unwritten: this.depth, spooled: spoolBytes > 0, spoolBytes }
  }

  /**
   * Gives up at close's deadline: no more retries, the drain loop ends at its next step (a write
   * that never settles is left to itself), and flush waiters are released.
   */
  abandon(): void {
    this.#closing = true
    this.#closed = true
    if (this.#timer !== undefined) clearTimeout(this.#timer)
    this.#timer = undefined
    for (const w of this.#waiters.splice(0)) w()
  }

  /** Stops retrying; memory that can still go to the spool goes there. */
  async stop(): Promise<void> {
    this.#closing = true
    if (this.#timer !== undefined) clearTimeout(this.#timer)
    this.#timer = undefined
    await this.#running
    if (this.depth > 0) {
      if (this.c.spool !== undefined && !this.#spoolBroken) this.#spooling = true
      await this.#runSafely()
    }
    this.#closed = true
    await this.c.spool?.close()
    for (const w of this.#waiters.splice(0)) w()
  }
}

class Trail implements AuditTrail {
  constructor(
    readonly queues: readonly SinkQueue[],
    readonly level: AuditLevel,
    readonly durable: boolean,
    readonly now: Clock,
    readonly makeReport: (failClosed: boolean | undefined) => AuditComplianceReport,
    readonly closeTimeoutMs: number,
    readonly logger: Logger,
  ) {
    for (const q of queues) q.onTrailEvent = (from, event) => this.#tell(from, event)
  }

  /**
   * A sink's health event goes to the other sinks at once and to its own queue behind what waits
   * there, so each sink's trail tells the whole story in its own order.
   */
  #tell(from: SinkQueue, event: AuditEventInput): void {
    const entry = new Entry(event, this.now(), true, this.queues.length)
    for (const q of this.queues) if (q !== from) q.add(entry)
    from.add(entry)
  }

  get pending(): number {
    let n = 0
    for (const q of this.queues) n = Math.max(n, q.depth)
    return n
  }

  accepts(type: AuditEventType, outcome: 'success' | 'failure'): boolean {
    // No sink: nothing to build (the gate skips the event entirely).
    if (this.queues.length === 0) return false
    return (
      this.level !== 'minimal' ||
      outcome === 'failure' ||
      (type !== 'authn.success' && type !== 'authz.allow')
    )
  }

  #enqueue(
    input: AuditEventInput,
    onDone?: (e: AuditEvent) => void,
    onFail?: (error: unknown) => void,
  ): boolean {
    const entry = new Entry(
      input,
      this.now(),
      isSecurityEvent(input.type),
      this.queues.length,
      onDone,
      onFail,
    )
    let ok = true
    for (const q of this.queues) ok = q.push(entry) && ok
    return ok
  }

  emit(input: AuditEventInput): boolean {
    if (!this.accepts(input.type, input.outcome)) return true
    return this.#enqueue(input)
  }

  commit(input: AuditEventInput): Promise<AuditEvent> {
    return new Promise((resolve, reject) => {
      if (this.queues.length === 0) {
        reject(new AuthError('ERR_AUDIT_UNAVAILABLE', 'No audit sink is configured'))
        return
      }
      let done: AuditEvent | undefined
      let queued = false
      const ok = this.#enqueue(
        input,
        (e) => {
          done = e
          if (queued) resolve(e)
        },
        (error) =>
          reject(
            new AuthError('ERR_AUDIT_UNAVAILABLE', 'The audit event could not be written', {
              cause: error,
              reason: 'audit write failed',
            }),
          ),
      )
      queued = true
      if (!ok) {
        reject(
          new AuthError('ERR_AUDIT_UNAVAILABLE', 'The audit queue is full', {
            reason: 'audit queue full',
          }),
        )
      } else if (done !== undefined) resolve(done)
    })
  }

  record(type: string, details: Omit<Partial<AuditEventInput>, 'type'> = {}): boolean {
    const ctx = getAccessContext()
    const known = KNOWN_TYPES.has(type)
    return this.emit({
      outcome: 'success',
      action: type,
      actor:
        ctx?.principal == null
          ? { id: null }
          : {
              id: ctx.principal.id,
              method: ctx.principal.method,
              ...(ctx.principal.tokenId === undefined ? {} : { tokenId: ctx.principal.tokenId }),
            },
      ...(ctx === undefined
        ? {}
        : {
            request: {
              id: ctx.requestId,
              method: ctx.method,
              path: ctx.path,
              ...(ctx.route === undefined ? {} : { route: ctx.route }),
              ...(ctx.ip === undefined ? {} : { ip: ctx.ip }),
              ...(ctx.userAgent === undefined ? {} : { userAgent: ctx.userAgent }),
            },
          }),
      ...details,
      type: known ? (type as AuditEventType) : 'custom',
      ...(known ? {} : { customType: String(type).slice(0, 128) }),
    })
  }

  report(options: { readonly failClosed?: boolean } = {}): AuditComplianceReport {
    return this.makeReport(options.failClosed)
  }

  async flush(timeoutMs = 30_000): Promise<void> {
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<never>((_, reject) => {
      timer = unrefTimeout(
        () => reject(new Error(`audit flush timed out with ${this.pending} events pending`)),
        timeoutMs,
      )
      // The drain timers are unref'd; a caller awaiting a flush (a script, a shutdown hook) must
      // keep the process alive until it settles.
      timer.ref()
    })
    try {
      await Promise.race([this.#allIdle(), timeout])
    } finally {
      clearTimeout(timer)
    }
  }

  /**
   * Resolves when every queue is idle at once: one sink's recovery queues an event for the others,
   * which may have been idle already.
   */
  async #allIdle(): Promise<void> {
    do await Promise.all(this.queues.map((q) => q.idle()))
    while (this.queues.some((q) => q.busy))
  }

  async close(timeoutMs = this.closeTimeoutMs): Promise<AuditCloseReport> {
    for (const q of this.queues) q.finalCheckpoint()
    const timers: NodeJS.Timeout[] = []
    const after = (ms: number): Promise<void> =>
      new Promise((resolve) => {
        const t = unrefTimeout(resolve, ms)
        // A caller awaiting close (a shutdown hook) keeps the process alive until it settles.
        t.ref()
        timers.push(t)
      })
    let timedOut = false
    const deadline = after(timeoutMs).then(() => {
      timedOut = true
    })
    const work = (async () => {
      // A sink that never answers must not hold the shutdown: the queues get most of the time to
      // drain, and the rest is for moving what is left to the spool and closing the sinks.
      await Promise.race([this.#allIdle(), after(Math.floor((timeoutMs * 3) / 4))])
      await Promise.all(this.queues.map((q) => q.stop()))
      await Promise.all(
        this.queues.map((q) =>
          Promise.resolve()
            .then(() => q.sink.close?.())
            .catch((error: unknown) =>
              this.logger.error(
                { sink: q.sink.name, error: String(error) },
                'audit sink close failed',
              ),
            ),
        ),
      )
    })()
    await Promise.race([work, deadline])
    for (const t of timers) clearTimeout(t)
    if (timedOut) for (const q of this.queues) q.abandon()
    const sinks = this.queues.map((q) => q.leftBehind())
    const report: AuditCloseReport = {
      complete: sinks.every((s) => s.unwritten === 0 && !s.spooled),
      timedOut,
      sinks,
    }
    if (!report.complete)
      this.logger.error(
        { timedOut, sinks: sinks.filter((s) => s.unwritten > 0 || s.spooled) },
        timedOut
          ? 'audit trail close timed out: events left behind'
          : 'audit trail closed with events left behind',
      )
    return report
  }
}
