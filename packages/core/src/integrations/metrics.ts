/**
 * The metrics client: what the gate counts and times, and the small interface a metrics system
 * (prom-client in `@portcullis/prometheus`, OpenTelemetry in `@portcullis/opentelemetry`) implements.
 *
 * Every metric Portcullis reports is declared once in {@link PORTCULLIS_METRICS}: its name, kind,
 * unit, help text and the only label names it carries. Labels are low-cardinality by
 * construction (outcome, stage, framework-neutral error codes, sink and store names), never key
 * ids, principals or raw paths.
 *
 * Reachable from `@portcullis/core`.
 * @packageDocumentation
 */

/** The kinds of metric. Counters only go up; gauges are set; histograms observe values. */
export type MetricKind = 'counter' | 'gauge' | 'histogram'

/** The declaration of one metric. */
export interface MetricDefinition {
  /** `portcullis_*`, base units, `_total` for counters (Prometheus naming). */
  readonly name: string
  readonly kind: MetricKind
  /** Unit in words (`seconds`, `events`, `1` for ratios and counts). */
  readonly unit: string
  readonly help: string
  /** The only label names the metric carries. */
  readonly labels: readonly string[]
  /** Histogram bucket upper bounds, in the metric's unit. */
  readonly buckets?: readonly number[]
}

/** Seconds buckets from 10 µs to 1 s: the gate decides in microseconds, stores answer in milliseconds. */
const DECISION_BUCKETS = Object.freeze([
  0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
  0.25, 0.5, 1,
])

function define(definition: MetricDefinition): MetricDefinition {
  return Object.freeze({ ...definition, labels: Object.freeze([...definition.labels]) })
}

/** The short keys of {@link PORTCULLIS_METRICS}. */
export type PortcullisMetric =
  | 'requests'
  | 'decisionDuration'
  | 'stageDuration'
  | 'rateLimitRejections'
  | 'quotaRejections'
  | 'keyCacheLookups'
  | 'auditQueueDepth'
  | 'auditSpoolBytes'
  | 'auditEvents'
  | 'auditSinkErrors'
  | 'auditSinkHealthy'
  | 'auditEventsDropped'
  | 'storeFailures'
  | 'failureModeActivations'
  | 'brokerMessagesRejected'
  | 'dependencyTimeouts'

/**
 * Every metric Portcullis reports, by a short key. Implementations register these up front
 * (so a scrape shows them at zero) and may rely on the label names listed here.
 */
export const PORTCULLIS_METRICS: Readonly<Record<PortcullisMetric, MetricDefinition>> =
  Object.freeze({
    requests: define({
      name: 'portcullis_requests_total',
      kind: 'counter',
      unit: 'requests',
      help: 'Gate decisions by step (authenticate, authorize), outcome (allow, deny, error), the stage that decided and the error code (none when allowed).',
      labels: ['step', 'outcome', 'stage', 'code'],
    }),
    decisionDuration: define({
      name: 'portcullis_decision_duration_seconds',
      kind: 'histogram',
      unit: 'seconds',
      help: 'Time the gate took to decide one step of a request (authenticate: credentials, limits, quotas; authorize: route limits, policy).',
      labels: ['step', 'outcome'],
      buckets: DECISION_BUCKETS,
    }),
    stageDuration: define({
      name: 'portcullis_stage_duration_seconds',
      kind: 'histogram',
      unit: 'seconds',
      help: 'Time spent in one stage of the gate.',
      labels: ['stage'],
      buckets: DECISION_BUCKETS,
    }),
    rateLimitRejections: define({
      name: 'portcullis_ratelimit_rejections_total',
      kind: 'counter',
      unit: 'requests',
      help: 'Requests refused by a named rate limit.',
      labels: ['limit'],
    }),
    quotaRejections: define({
      name: 'portcullis_quota_rejections_total',
      kind: 'counter',
      unit: 'requests',
      help: 'Requests refused because a quota was used up.',
      labels: ['quota'],
    }),
    keyCacheLookups: define({
      name: 'portcullis_key_cache_lookups_total',
      kind: 'counter',
      unit: 'lookups',
      help: 'Credential cache lookups by cache (apikey, jwt, keystore) and result (hit, miss, negative_hit).',
      labels: ['cache', 'result'],
    }),
    auditQueueDepth: define({
      name: 'portcullis_audit_queue_depth',
      kind: 'gauge',
      unit: 'events',
      help: 'Audit events queued in memory and not yet acknowledged, per sink.',
      labels: ['sink'],
    }),
    auditSpoolBytes: define({
      name: 'portcullis_audit_spool_bytes',
      kind: 'gauge',
      unit: 'bytes',
      help: 'Size of the local disk spool holding audit events for a sink that is down, per sink.',
      labels: ['sink'],
    }),
    auditEvents: define({
      name: 'portcullis_audit_events_total',
      kind: 'counter',
      unit: 'events',
      help: 'Audit events written, per sink.',
      labels: ['sink'],
    }),
    auditSinkErrors: define({
      name: 'portcullis_audit_sink_errors_total',
      kind: 'counter',
      unit: 'errors',
      help: 'Failed audit sink writes (each retried) and failed appends to its disk spool (a full or failing disk), per sink.',
      labels: ['sink'],
    }),
    auditSinkHealthy: define({
      name: 'portcullis_audit_sink_healthy',
      kind: 'gauge',
      unit: '1',
      help: 'Whether an audit sink takes writes: 1, or 0 from its first failed write until one succeeds again, per sink.',
      labels: ['sink'],
    }),
    auditEventsDropped: define({
      name: 'portcullis_audit_events_dropped_total',
      kind: 'counter',
      unit: 'events',
      help: 'Audit events refused because the sink queue was full (maxQueue), per sink; each episode is also recorded in the trail as an audit.dropped event.',
      labels: ['sink'],
    }),
    storeFailures: define({
      name: 'portcullis_store_failures_total',
      kind: 'counter',
      unit: 'errors',
      help: 'Failed calls to a backing store (keystore, ratelimit, quota, cache, broker).',
      labels: ['store'],
    }),
    failureModeActivations: define({
      name: 'portcullis_failure_mode_activations_total',
      kind: 'counter',
      unit: 'activations',
      help: 'Times a failure mode decided a request while its store was down (open, closed, insurance).',
      labels: ['store', 'mode'],
    }),
    brokerMessagesRejected: define({
      name: 'portcullis_broker_messages_rejected_total',
      kind: 'counter',
      unit: 'messages',
      help: 'Malformed or foreign messages ignored on a broker channel.',
      labels: ['topic'],
    }),
    dependencyTimeouts: define({
      name: 'portcullis_dependency_timeouts_total',
      kind: 'counter',
      unit: 'calls',
      help: 'Calls to a dependency (apikeys, jwt, an authenticator, a stage, authorize) that missed their deadline; each request was answered 503 ERR_DEPENDENCY_TIMEOUT.',
      labels: ['dependency'],
    }),
  })

/** Label values by label name. Only the names declared for the metric are used. */
export type MetricLabels = Readonly<Record<string, string>>

/**
 * What the gate reports to. Calls are on the hot path: implementations must not allocate more
 * than they must, must not do I/O inline, and must never throw.
 */
export interface MetricsClient {
  /** Adds `value` (default 1) to a counter. */
  increment(metric: PortcullisMetric, labels?: MetricLabels, value?: number): void
  /** Sets a gauge. */
  set(metric: PortcullisMetric, value: number, labels?: MetricLabels): void
  /** Records one observation of a histogram, in the metric's unit. */
  observe(metric: PortcullisMetric, value: number, labels?: MetricLabels): void
}

/** The metrics client that records nothing: the default. */
export const noopMetrics: MetricsClient = Object.freeze({
  increment(): void {},
  set(): void {},
  observe(): void {},
})
