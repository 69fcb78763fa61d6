/**
 * `@portcullis/opentelemetry`: Portcullis metrics and spans on `@opentelemetry/api` alone. Metrics:
 * every entry of {@link PORTCULLIS_METRICS} as an OpenTelemetry instrument (counters without the
 * Prometheus `_total` suffix, UCUM units, the catalogue's buckets as advice). Spans: one per gate
 * stage (`portcullis.authenticate`, `portcullis.ratelimit`, `portcullis.quota`,
 * `portcullis.authorize`), children of the active span (your HTTP server span).
 *
 * @example
 * ```ts
 * import { createGate } from '@portcullis/core'
 * import { createOpenTelemetryMetrics, createOpenTelemetryTracer } from '@portcullis/opentelemetry'
 *
 * const gate = createGate({
 *   apiKeys,
 *   metrics: createOpenTelemetryMetrics(),
 *   tracer: createOpenTelemetryTracer(),
 * })
 * ```
 * @packageDocumentation
 */
import {
  PORTCULLIS_METRICS,
  TypeValidator,
  type PortcullisMetric,
  type GateRequest,
  type GateTracer,
  type MetricDefinition,
  type MetricLabels,
  type MetricsClient,
  type TraceEntry,
} from '@portcullis/core'
import {
  metrics as otelMetrics,
  trace,
  SpanKind,
  SpanStatusCode,
  type Counter,
  type Gauge,
  type Histogram,
  type Meter,
  type Span,
  type Tracer,
} from '@opentelemetry/api'

/** The instrumentation scope name used for the default meter and tracer. */
export const INSTRUMENTATION_SCOPE = '@portcullis/opentelemetry'

/** Options of {@link createOpenTelemetryMetrics}. */
export interface OpenTelemetryMetricsOptions {
  /** Where instruments are created. @default metrics.getMeter('@portcullis/opentelemetry') */
  readonly meter?: Meter
}

/** Options of {@link createOpenTelemetryTracer}. */
export interface OpenTelemetryTracerOptions {
  /** Where spans are started. @default trace.getTracer('@portcullis/opentelemetry') */
  readonly tracer?: Tracer
}

type Instrument = Counter | Gauge | Histogram

/**
 * Checks an options object that takes one provider object (`meter` or `tracer`): the value, when
 * given, must have the method that identifies it; other keys get the validator's unknown-key
 * warning. Returns the value, or `fallback()` (the global provider) when absent.
 * @throws {ConfigError} for a value that is not what `what` names
 */
function onlyOption<TKey extends string, TValue>(
  options: Readonly<Partial<Record<TKey, TValue>>>,
  key: TKey,
  method: string,
  what: string,
  fallback: () => TValue,
): TValue {
  const v = new TypeValidator('opentelemetry')
  v.knownKeys(options as Record<string, unknown>, [key])
  const given = options[key]
  if (
    given !== undefined &&
    typeof (given as Record<string, unknown> | null)?.[method] !== 'function'
  )
    v.fail(key, `must be ${what}`)
  v.assert()
  return given ?? fallback()
}

/** The OpenTelemetry name of a catalogue metric: Prometheus exporters add `_total` back. */
export function openTelemetryName(definition: MetricDefinition): string {
  return definition.kind === 'counter' ? definition.name.replace(/_total$/, '') : definition.name
}

/** The UCUM unit of a catalogue unit (`seconds` → `s`, `bytes` → `By`, others as annotations). */
export function openTelemetryUnit(unit: string): string {
  if (unit === 'seconds') return 's'
  if (unit === 'bytes') return 'By'
  if (unit === '1') return '1'
  return `{${unit}}`
}

/**
 * Creates the OpenTelemetry {@link MetricsClient}: one instrument per catalogue metric, created
 * now. Labels become attributes. Reporting never throws.
 * @throws {ConfigError} for a bad option
 * @example
 * ```ts
 * const gate = createGate({ jwt, metrics: createOpenTelemetryMetrics({ meter: provider.getMeter('api') }) })
 * ```
 */
export function createOpenTelemetryMetrics(
  options: Readonly<OpenTelemetryMetricsOptions> = {},
): MetricsClient {
  const m = onlyOption(options, 'meter', 'createCounter', 'an OpenTelemetry Meter', () =>
    otelMetrics.getMeter(INSTRUMENTATION_SCOPE),
  )
  const instruments = {} as Record<PortcullisMetric, Instrument>
  for (const [key, def] of Object.entries(PORTCULLIS_METRICS) as [
    PortcullisMetric,
    MetricDefinition,
  ][]) {
    const opts = { description: def.help, unit: openTelemetryUnit(def.unit) }
    const name = openTelemetryName(def)
    instruments[key] =
      def.kind === 'counter'
        ? m.createCounter(name, opts)
        : def.kind === 'gauge'
          ? m.createGauge(name, opts)
          : m.createHistogram(name, {
              ...opts,
              advice: { explicitBucketBoundaries: [...(def.buckets ?? [])] },
            })
  }
  return new OtelMetrics(instruments)
}

class OtelMetrics implements MetricsClient {
  readonly #i: Readonly<Record<PortcullisMetric, Instrument>>

  constructor(instruments: Readonly<Record<PortcullisMetric, Instrument>>) {
    this.#i = instruments
  }

  increment(metric: PortcullisMetric, labels?: MetricLabels, value = 1): void {
    try {
      ;(this.#i[metric] as Counter | undefined)?.add?.(value, labels)
    } catch {
      // Metrics must never fail a request.
    }
  }

  set(metric: PortcullisMetric, value: number, labels?: MetricLabels): void {
    try {
      ;(this.#i[metric] as Gauge | undefined)?.record?.(value, labels)
    } catch {
      // As above.
    }
  }

  observe(metric: PortcullisMetric, value: number, labels?: MetricLabels): void {
    try {
      ;(this.#i[metric] as Histogram | undefined)?.record?.(value, labels)
    } catch {
      // As above.
    }
  }
}

/**
 * Creates the {@link GateTracer} on OpenTelemetry: a span `portcullis.<stage>` per stage, child of
 * the active span, with attributes `portcullis.stage`, `portcullis.outcome`, `portcullis.by` and
 * (on denial) `portcullis.code`; a stage that failed with a 5xx (store down) sets status ERROR.
 * Denials are not errors of the service: their status stays UNSET.
 * @throws {ConfigError} for a bad option
 * @example
 * ```ts
 * const gate = createGate({ apiKeys, tracer: createOpenTelemetryTracer() })
 * ```
 */
export function createOpenTelemetryTracer(
  options: Readonly<OpenTelemetryTracerOptions> = {},
): GateTracer {
  return new OtelTracer(
    onlyOption(options, 'tracer', 'startSpan', 'an OpenTelemetry Tracer', () =>
      trace.getTracer(INSTRUMENTATION_SCOPE),
    ),
  )
}

class OtelTracer implements GateTracer {
  readonly #tracer: Tracer
  /** Span names by stage, so starting a span does not build a string. */
  readonly #names = new Map<string, string>()

  constructor(tracer: Tracer) {
    this.#tracer = tracer
  }

  startStage(stage: string, request: GateRequest): Span {
    let name = this.#names.get(stage)
    if (name === undefined) {
      name = `portcullis.${stage}`
      if (this.#names.size < 256) this.#names.set(stage, name)
    }
    return this.#tracer.startSpan(name, {
      kind: SpanKind.INTERNAL,
      attributes: {
        'portcullis.stage': stage,
        'http.request.method': request.method,
        ...(request.route === undefined ? {} : { 'http.route': request.route }),
      },
    })
  }

  endStage(span: unknown, entry: TraceEntry): void {
    const s = span as Span | undefined
    if (s === undefined) return
    s.setAttribute('portcullis.outcome', entry.outcome)
    if (entry.by !== undefined) s.setAttribute('portcullis.by', entry.by)
    if (entry.code !== undefined) s.setAttribute('portcullis.code', entry.code)
    if (entry.riskScore !== undefined) s.setAttribute('portcullis.risk_score', entry.riskScore)
    if (entry.outcome === 'error') s.setStatus({ code: SpanStatusCode.ERROR, message: entry.code })
    s.end()
  }
}
