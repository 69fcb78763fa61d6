/**
 * Compliance profiles (SOC 2, ISO 27001, GDPR, HIPAA): each maps to the controls it serves and
 * derives the events and fields that must be written, a minimum retention and the redaction that
 * applies. Profiles combine: the union of controls, events and fields, the longest retention and the
 * strictest redaction. {@link auditComplianceReport} says what a configuration covers and what is
 * missing (`portcullis audit report`).
 *
 * Reachable from `@portcullis/core`.
 * @packageDocumentation
 */
import type {
  AuditComplianceStamp,
  AuditEventType,
  AuditLevel,
  AuditRetentionClass,
  ComplianceProfileName,
} from './audit-event.js'

export type {
  AuditComplianceStamp,
  AuditRetentionClass,
  ComplianceProfileName,
} from './audit-event.js'
import type { AuditIpMode } from './redaction.js'

/** The profile names. */
export const COMPLIANCE_PROFILES: readonly ComplianceProfileName[] = Object.freeze([
  'SOC2',
  'ISO27001',
  'GDPR',
  'HIPAA',
])

/**
 * The version of the event→control mapping below ({@link COMPLIANCE_PROFILE_DEFINITIONS}): the
 * date it last changed (`.2` for a second change that day). Every event prepared under a profile records it (`compliance.mappingVersion`)
 * so an auditor reading an old event knows which mapping tagged it. Bumped in the same commit as
 * any change to the controls, their events or fields, or a profile's retention class.
 */
export const COMPLIANCE_MAPPING_VERSION = '2026-12-08.2'

/** The retention classes, shortest first, with the days each stands for. */
export const AUDIT_RETENTION_CLASS_DAYS: Readonly<Record<AuditRetentionClass, number>> =
  Object.freeze({ '6m': 183, '1y': 365, '6y': 6 * 365 })

/** One control of a standard. */
export interface ComplianceControl {
  readonly profile: ComplianceProfileName
  /** `CC6.1`, `A.8.15`, `164.312(b)`, `Art. 30`, ... */
  readonly id: string
  readonly title: string
  /** Event types the control needs written. */
  readonly events: readonly AuditEventType[]
  /** Event fields (dotted paths) the control needs. */
  readonly fields: readonly string[]
  /** Whether the control needs tamper evidence (a keyed chain). */
  readonly integrity?: boolean
}

/** What a profile demands beyond its controls. */
export interface ComplianceProfile {
  readonly name: ComplianceProfileName
  readonly controls: readonly ComplianceControl[]
  /** Minimum retention in days (0: the standard sets none). */
  readonly minRetentionDays: number
  /** The evidence-retention class events written under the profile carry (a default to confirm with the auditor). */
  readonly retention: AuditRetentionClass
  /** How client IPs must be written. */
  readonly ip: AuditIpMode
  /** Whether principal ids must be pseudonymized. */
  readonly pseudonymize: boolean
}

const AUTHN: readonly AuditEventType[] = ['authn.success', 'authn.failure']
const ACCESS: readonly AuditEventType[] = ['authz.allow', 'authz.deny']
const CHANGES: readonly AuditEventType[] = [
  'key.created',
  'key.rotated',
  'key.revoked',
  'policy.changed',
  'config.changed',
]
/** Outages of a store the gate depends on: a denial (503) or a degraded (insurance) decision. */
const OUTAGES: readonly AuditEventType[] = [
  'ratelimit.unavailable',
  'quota.unavailable',
  'store.unavailable',
  'dependency.timeout',
  'ratelimit.degraded',
]
const BASE_FIELDS = ['id', 'time', 'type', 'outcome', 'actor.id', 'action']

const c = (
  profile: ComplianceProfileName,
  id: string,
  title: string,
  events: readonly AuditEventType[],
  fields: readonly string[],
  integrity = false,
): ComplianceControl => Object.freeze({ profile, id, title, events, fields, integrity })

/** The built-in profiles. */
export const COMPLIANCE_PROFILE_DEFINITIONS: Readonly<
  Record<ComplianceProfileName, ComplianceProfile>
> = Object.freeze({
  SOC2: {
    name: 'SOC2',
    minRetentionDays: 365,
    // No period in the Trust Services Criteria: auditors sample the whole (up to 12-month) Type 2
    // period, so a year of evidence is the usual expectation.
    retention: '1y',
    ip: 'keep',
    pseudonymize: false,
    controls: [
      c(
        'SOC2',
        'CC6.1',
        'Logical access security: who authenticated, with which credential',
        [...AUTHN, ...CHANGES],
        [...BASE_FIELDS, 'actor.method', 'request.id'],
      ),
      c(
        'SOC2',
        'CC6.6',
        'Access from outside the system boundary is restricted and recorded',
        ['authn.failure', 'authz.deny', 'ratelimit.exceeded'],
        [...BASE_FIELDS, 'request.ip', 'target'],
      ),
      c(
        'SOC2',
        'CC7.2',
        'Monitoring for anomalies: denials and failures are kept, tamper-evident',
        ['authn.failure', 'authz.deny', 'ratelimit.exceeded', 'quota.exceeded', ...OUTAGES],
        [...BASE_FIELDS, 'reason'],
        true,
      ),
    ],
  },
  ISO27001: {
    name: 'ISO27001',
    minRetentionDays: 365,
    // A.8.15 leaves the period to the organization's policy; a year covers the annual
    // surveillance audit.
    retention: '1y',
    ip: 'keep',
    pseudonymize: false,
    controls: [
      c(
        'ISO27001',
        'A.8.15',
        'Logging: events produced, stored and protected against tampering',
        [...AUTHN, ...ACCESS, ...CHANGES],
        [...BASE_FIELDS, 'request.id', 'request.ip', 'target'],
        true,
      ),
      c(
        'ISO27001',
        'A.8.16',
        'Monitoring activities: anomalous access is visible',
        ['authn.failure', 'authz.deny', 'ratelimit.exceeded', ...OUTAGES],
        [...BASE_FIELDS, 'reason'],
      ),
      c(
        'ISO27001',
        'A.8.17',
        'Clock synchronization: a jump of the clock the events are stamped with is recorded',
        ['audit.clock_jump'],
        [...BASE_FIELDS, 'data'],
      ),
    ],
  },
  GDPR: {
    name: 'GDPR',
    minRetentionDays: 0,
    // No minimum, and storage limitation (Art. 5(1)(e)) caps it: CNIL's 2021 recommendation on
    // logging keeps access logs six months to a year.
    retention: '6m',
    ip: 'truncate',
    pseudonymize: true,
    controls: [
      c(
        'GDPR',
        'Art. 30',
        'Records of processing: who accessed personal data, when, for what',
        [...ACCESS, 'custom'],
        [...BASE_FIELDS, 'target'],
      ),
      c(
        'GDPR',
        'Art. 32',
        'Security of processing: integrity of the records, pseudonymisation',
        ['authn.failure', 'authz.deny', ...CHANGES],
        BASE_FIELDS,
        true,
      ),
    ],
  },
  HIPAA: {
    name: 'HIPAA',
    // 45 CFR 164.316(b)(2)(i): documentation retained six years.
    minRetentionDays: 6 * 365,
    retention: '6y',
    ip: 'hmac',
    pseudonymize: true,
    controls: [
      c(
        'HIPAA',
        '164.312(b)',
        'Audit controls: record and examine activity in systems with ePHI',
        [...AUTHN, ...ACCESS, ...CHANGES],
        [...BASE_FIELDS, 'request.id', 'target'],
        true,
      ),
    ],
  },
})

/** The combined demands of several profiles. */
export interface ResolvedCompliance {
  readonly profiles: readonly ComplianceProfileName[]
  readonly controls: readonly ComplianceControl[]
  readonly requiredEvents: readonly AuditEventType[]
  readonly requiredFields: readonly string[]
  readonly minRetentionDays: number
  /** The longest retention class of the profiles (`undefined` without a profile). */
  readonly retention: AuditRetentionClass | undefined
  readonly ip: AuditIpMode
  readonly pseudonymize: boolean
  readonly integrity: boolean
}

const IP_STRICTNESS: Record<AuditIpMode, number> = { keep: 0, truncate: 1, hmac: 2 }

/** Combines profiles. */
export function resolveCompliance(profiles: readonly ComplianceProfileName[]): ResolvedCompliance {
  const defs = [...new Set(profiles)].map((p) => COMPLIANCE_PROFILE_DEFINITIONS[p])
  const controls = defs.flatMap((d) => d.controls)
  let ip: AuditIpMode = 'keep'
  for (const d of defs) if (IP_STRICTNESS[d.ip] > IP_STRICTNESS[ip]) ip = d.ip
  let retention: AuditRetentionClass | undefined
  for (const d of defs)
    if (
      retention === undefined ||
      AUDIT_RETENTION_CLASS_DAYS[d.retention] > AUDIT_RETENTION_CLASS_DAYS[retention]
    )
      retention = d.retention
  return {
    profiles: defs.map((d) => d.name),
    controls,
    requiredEvents: [...new Set(controls.flatMap((x) => x.events))],
    requiredFields: [...new Set(controls.flatMap((x) => x.fields))],
    minRetentionDays: Math.max(0, ...defs.map((d) => d.minRetentionDays)),
    retention,
    ip,
    pseudonymize: defs.some((d) => d.pseudonymize),
    integrity: controls.some((x) => x.integrity === true),
  }
}

/** The stamp events prepared under `profiles` carry; `undefined` without a profile. */
export function complianceStamp(
  profiles: readonly ComplianceProfileName[],
): AuditComplianceStamp | undefined {
  const resolved = resolveCompliance(profiles)
  if (resolved.retention === undefined) return undefined
  return Object.freeze({
    profiles: Object.freeze([...resolved.profiles]),
    mappingVersion: COMPLIANCE_MAPPING_VERSION,
    retention: resolved.retention,
  })
}

/** What {@link auditComplianceReport} looks at: the audit configuration in plain terms. */
export interface AuditComplianceInput {
  readonly profiles: readonly ComplianceProfileName[]
  readonly level: AuditLevel
  /** Number of sinks. */
  readonly sinks: number
  /** Whether a chain key is configured. */
  readonly integrity: boolean
  /** Whether a disk spool is configured. */
  readonly spool: boolean
  /** Configured retention in days (`undefined`: not stated). */
  readonly retentionDays?: number
  /** The effective IP mode. */
  readonly ip: AuditIpMode
  /** Whether a pseudonymizer is configured. */
  readonly pseudonymize: boolean
  /** Whether the gate fails closed on audit backpressure. */
  readonly failClosed?: boolean
}

/** One control's coverage. */
export interface ComplianceControlReport {
  readonly profile: ComplianceProfileName
  readonly id: string
  readonly title: string
  readonly covered: boolean
  readonly gaps: readonly string[]
}

/** The result of {@link auditComplianceReport}. */
export interface AuditComplianceReport {
  readonly profiles: readonly ComplianceProfileName[]
  /** Event types written at this level, and the required ones that are not. */
  readonly events: {
    readonly written: readonly AuditEventType[]
    readonly missing: readonly AuditEventType[]
  }
  readonly controls: readonly ComplianceControlReport[]
  readonly minRetentionDays: number
  /** The retention class the events carry (the longest of the profiles; absent without one). */
  readonly retention?: AuditRetentionClass
  /** The version of the event→control mapping the report (and the events) follow. */
  readonly mappingVersion: string
  /** Every gap, one sentence each. Empty when the configuration covers every control. */
  readonly gaps: readonly string[]
}

/** Event types written at `level` (mirrors the trail's filter). */
export function auditEventsAtLevel(
  level: AuditLevel,
  all: readonly AuditEventType[],
): AuditEventType[] {
  return level === 'minimal'
    ? all.filter((t) => t !== 'authn.success' && t !== 'authz.allow')
    : [...all]
}

/** Which events and controls a configuration covers, and its gaps. */
export function auditComplianceReport(
  input: Readonly<AuditComplianceInput>,
): AuditComplianceReport {
  const resolved = resolveCompliance(input.profiles)
  const written = input.sinks === 0 ? [] : auditEventsAtLevel(input.level, resolved.requiredEvents)
  const writtenSet = new Set(written)
  const controls: ComplianceControlReport[] = []
  const all: string[] = []
  if (input.sinks === 0) all.push('no audit sink is configured: nothing is written')
  for (const control of resolved.controls) {
    const gaps: string[] = []
    const missing = control.events.filter((e) => !writtenSet.has(e))
    if (missing.length > 0)
      gaps.push(`events not written at level "${input.level}": ${missing.join(', ')}`)
    if (control.integrity === true && !input.integrity)
      gaps.push('no tamper evidence: set audit.integrity.key')
    if (control.fields.includes('reason') && input.level === 'minimal')
      gaps.push('level "minimal" omits the decision trace')
    controls.push({
      profile: control.profile,
      id: control.id,
      title: control.title,
      covered: gaps.length === 0 && input.sinks > 0,
      gaps,
    })
    for (const g of gaps) all.push(`${control.profile} ${control.id}: ${g}`)
  }
  if (input.profiles.length > 0 && !input.spool)
    all.push('no disk spool: events queued for a sink that is down are lost if the process dies')
  if (input.failClosed === false)
    all.push('failClosedOnAuditBackpressure is off: requests may be served unaudited')
  if (resolved.minRetentionDays > 0 && (input.retentionDays ?? 0) < resolved.minRetentionDays)
    all.push(
      `retention ${input.retentionDays === undefined ? 'is not stated' : `of ${input.retentionDays} days`}; ${resolved.profiles.join('+')} need at least ${resolved.minRetentionDays} days`,
    )
  if (IP_STRICTNESS[input.ip] < IP_STRICTNESS[resolved.ip])
    all.push(`client IPs are written as "${input.ip}"; the profiles need "${resolved.ip}"`)
  if (resolved.pseudonymize && !input.pseudonymize)
    all.push('principal ids are not pseudonymized: set audit.pseudonyms (GDPR erasure)')
  return {
    profiles: resolved.profiles,
    events: { written, missing: resolved.requiredEvents.filter((e) => !writtenSet.has(e)) },
    controls,
    minRetentionDays: resolved.minRetentionDays,
    ...(resolved.retention === undefined ? {} : { retention: resolved.retention }),
    mappingVersion: COMPLIANCE_MAPPING_VERSION,
    gaps: all,
  }
}
