/**
 * The audit event schema.
 *
 * Reachable from `@portcullis/core`.
 * @packageDocumentation
 */
import type { AuthErrorCode } from '../errors.js'
import type { TraceEntry } from '../types.js'

/** What happened. Handlers may record their own types; unknown ones are kept as `custom`. */
export type AuditEventType =
  | 'authn.success'
  | 'authn.failure'
  | 'authz.allow'
  | 'authz.deny'
  | 'ratelimit.exceeded'
  | 'quota.exceeded'
  | 'ratelimit.unavailable'
  | 'quota.unavailable'
  | 'store.unavailable'
  | 'dependency.timeout'
  | 'ratelimit.degraded'
  | 'key.created'
  | 'key.rotated'
  | 'key.revoked'
  | 'key.updated'
  | 'key.deleted'
  | 'policy.changed'
  | 'config.changed'
  | 'audit.checkpoint'
  | 'audit.clock_jump'
  | 'audit.sink.degraded'
  | 'audit.sink.recovered'
  | 'audit.dropped'
  | 'token.revoked'
  | 'custom'
  | 'authn.throttled'

/** The known event types. */
export const AUDIT_EVENT_TYPES: readonly AuditEventType[] = Object.freeze([
  'authn.success',
  'authn.failure',
  'authz.allow',
  'authz.deny',
  'ratelimit.exceeded',
  'quota.exceeded',
  'ratelimit.unavailable',
  'quota.unavailable',
  'store.unavailable',
  'dependency.timeout',
  'ratelimit.degraded',
  'key.created',
  'key.rotated',
  'key.revoked',
  'key.updated',
  'key.deleted',
  'policy.changed',
  'config.changed',
  'audit.checkpoint',
  'audit.clock_jump',
  'audit.sink.degraded',
  'audit.sink.recovered',
  'audit.dropped',
  'token.revoked',
  'custom',
  'authn.throttled',
])

/**
 * Security events: never dropped. When their spool is full the trail reports backpressure and the
 * gate fails closed (see `failClosedOnAuditBackpressure`).
 */
export function isSecurityEvent(type: AuditEventType): boolean {
  // A caller outside TypeScript may pass anything: a non-string type is recorded as `custom`.
  if (typeof type !== 'string') return false
  return (
    type === 'authn.failure' ||
    type === 'authz.deny' ||
    type.startsWith('key.') ||
    type === 'token.revoked' ||
    type.startsWith('policy.') ||
    // The trail's own account of itself: checkpoints, sink health and dropped events.
    type.startsWith('audit.')
  )
}

/** How much is written: `minimal` keeps failures, denials and changes; `standard` adds successes; `verbose` adds stage timings. */
export type AuditLevel = 'minimal' | 'standard' | 'verbose'

/** How the action ended. */
export type AuditOutcome = 'success' | 'failure'

/** Who acted. */
export interface AuditActor {
  /** Principal id; `null` when unauthenticated. */
  readonly id: string | null
  /** How it authenticated. */
  readonly method?: string
  /** The credential used (API key id, JWT `jti`); never the credential itself. */
  readonly tokenId?: string
}

/** The request an event belongs to. */
export interface AuditRequestContext {
  readonly id: string
  readonly method: string
  readonly path: string
  readonly route?: string
  readonly ip?: string
  readonly userAgent?: string
  /**
   * The adapter that answered the request (`express`, `koa`, `fastify`, `passport`; `custom` when application
   * code called the gate directly). Set on every event the gate writes for a request.
   */
  readonly adapter?: string
}

/** One audit event. Never contains a credential. */
export interface AuditEvent {
  /** Unique id (UUID). */
  readonly id: string
  /** ISO 8601 time. */
  readonly time: string
  /** The audit level of the trail that wrote it (which fields were kept). */
  readonly level?: AuditLevel
  readonly type: AuditEventType
  /** The type a handler asked for, when it was not a known type and was recorded as `custom`. */
  readonly customType?: string
  readonly outcome: AuditOutcome
  readonly actor: AuditActor
  /** What was attempted: `GET /docs/:id`, `key.create`, ... */
  readonly action: string
  /** What it was attempted on. */
  readonly target?: { readonly type: string; readonly id?: string }
  /** Why: the error code and the gate's trace. */
  readonly reason?: {
    readonly code?: AuthErrorCode
    readonly detail?: string
    readonly trace?: readonly TraceEntry[]
  }
  readonly request?: AuditRequestContext
  /** Compliance or custom tags. */
  readonly tags?: readonly string[]
  /** Event-specific data (never secrets). */
  readonly data?: Readonly<Record<string, unknown>>
  /**
   * The compliance profiles the trail prepared it under, the version of their event→control
   * mapping and the retention class that applies (absent without a profile).
   */
  readonly compliance?: AuditComplianceStamp
  /** The event's link in its sink's hash chain (see `verifyAuditChain`). */
  readonly chain?: AuditChainLink
}

/** One link of a keyed hash chain: `mac = HMAC-SHA-256(key, JCS(event without mac) + prev mac)`. */
export interface AuditChainLink {
  /** The chain (one per sink per trail instance). */
  readonly id: string
  /** 1, 2, 3, ... within the chain. */
  readonly seq: number
  /** Id of the HMAC key (for rotation). */
  readonly key: string
  /** The previous link's mac (the chain id for seq 1), stored so a partial trail can be checked. */
  readonly prev: string
  /** HMAC-SHA-256, hex. */
  readonly mac: string
}

/** An event as handed to the trail; id and time are filled in. */
export type AuditEventInput = Omit<AuditEvent, 'id' | 'time' | 'chain' | 'level' | 'compliance'> & {
  readonly id?: string
  readonly time?: string
}

/** Where audit events go. `write` resolves once the batch is durable; it may be retried. */
export interface AuditSink {
  /** Short name, for logs and metrics. */
  readonly name: string
  /**
   * Writes a batch in order. Rejects on failure; the trail retries the same batch, after its
   * back-off or, when the error carries a numeric `retryAfterMs` (a collector's `Retry-After`), no
   * sooner than that.
   */
  write(events: readonly AuditEvent[]): Promise<void>
  /** Flushes and releases resources. */
  close?(): Promise<void>
}

/** What every event prepared under compliance profiles carries (`event.compliance`). */
export interface AuditComplianceStamp {
  /** The trail's profiles, in the order configured. */
  readonly profiles: readonly ComplianceProfileName[]
  /** {@link COMPLIANCE_MAPPING_VERSION} when the event was prepared. */
  readonly mappingVersion: string
  /** The longest retention class of the profiles. */
  readonly retention: AuditRetentionClass
}

/** A compliance standard. */
export type ComplianceProfileName = 'SOC2' | 'ISO27001' | 'GDPR' | 'HIPAA'

/**
 * How long a profile's evidence is usually kept: `6m` six months, `1y` one year, `6y` six years.
 * These are defaults drawn from each standard's usual evidence-retention expectations, to confirm
 * with the auditor (a contract or a national law may ask for more).
 */
export type AuditRetentionClass = '6m' | '1y' | '6y'
