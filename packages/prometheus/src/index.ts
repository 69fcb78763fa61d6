/**
 * `@portcullis/prometheus`: Portcullis's {@link MetricsClient} on prom-client. Every metric of
 * {@link PORTCULLIS_METRICS} is registered up front on your `Registry` (so a scrape shows it at
 * zero), counters end in `_total`, values are in base units (seconds, bytes), histograms use the
 * catalogue's buckets, and labels are the catalogue's low-cardinality ones only.
 *
 * @example
 * ```ts
 * import { Registry } from 'prom-client'
 * import { createGate } from '@portcullis/core'
 * import { createPrometheusMetrics } from '@portcullis/prometheus'
 *
 * const registry = new Registry()
 * const gate = createGate({ apiKeys, metrics: createPrometheusMetrics({ registry }) })
 * app.get('/metrics', async (req, res) => {
 *   res.type(registry.contentType).send(await registry.metrics())
 * })
 * ```
 * @packageDocumentation
 */
import {
  PORTCULLIS_METRICS,
  TypeValidator,
  type PortcullisMetric,
  type MetricDefinition,
  type MetricLabels,
  type MetricsClient,
} from '@portcullis/core'
import { Counter, Gauge, Histogram, register as globalRegistry, type Registry } from 'prom-client'

/** Options of {@link createPrometheusMetrics}. */
export interface PrometheusMetricsOptions {
  /** Where the metrics are registered. @default prom-client's global registry */
  readonly registry?: Registry
  /**
   * Prepended to every name (`myapp_` gives `myapp_portcullis_requests_total`); must match
   * `[a-zA-Z_:][a-zA-Z0-9_:]*`. @default ''
   */
  readonly prefix?: string
  /** Histogram buckets (in seconds) by metric key, replacing the catalogue's. @default the catalogue's */
  readonly buckets?: Readonly<Partial<Record<PortcullisMetric, readonly number[]>>>
}

/** The client, with the prom-client metrics it reports to. */
export interface PrometheusMetrics extends MetricsClient {
  /** The registry the metrics live in. */
  readonly registry: Registry
  /** The prom-client metric behind each key (e.g. for `.reset()` in tests). */
  readonly metrics: Readonly<Record<PortcullisMetric, Counter | Gauge | Histogram>>
}

const OPTION_NAMES = ['registry', 'prefix', 'buckets']

interface Child {
  inc?(value: number): void
  set?(value: number): void
  observe?(value: number): void
}

type PromMetric = Counter | Gauge | Histogram

/**
 * Creates the prom-client {@link MetricsClient}. Registering twice on one registry reuses the
 * metrics already there (two gates may share a registry). Reporting never throws.
 * @throws {ConfigError} for a bad option
 * @example
 * ```ts
 * const metrics = createPrometheusMetrics({ registry: new Registry() })
 * const gate = createGate({ jwt, metrics })
 * ```
 */
export function createPrometheusMetrics(
  options: Readonly<PrometheusMetricsOptions> = {},
): PrometheusMetrics {
  const v = new TypeValidator('prometheus')
  v.knownKeys(options as Record<string, unknown>, OPTION_NAMES)
  const registry =
    options.registry === undefined
      ? globalRegistry
      : typeof (options.registry as Registry | undefined)?.registerMetric === 'function'
        ? options.registry
        : v.fail('registry', 'must be a prom-client Registry')
  const prefix =
    options.prefix === undefined
      ? ''
      : (v.string('prefix', options.prefix, { pattern: /^[a-zA-Z_:][a-zA-Z0-9_:]*$|^$/ }) ?? '')
  const buckets = new Map<string, number[]>()
  if (options.buckets !== undefined) {
    const b = v.object('buckets', options.buckets) ?? {}
    const bv = v.child('buckets')
    for (const [key, list] of Object.entries(b)) {
      const def = (PORTCULLIS_METRICS as Record<string, MetricDefinition | undefined>)[key]
      if (def?.kind !== 'histogram') {
        bv.fail(key, 'is not a Portcullis histogram')
        continue
      }
      const values = bv.array(key, list, (iv, i, x) => iv.number(i, x, { min: 0 }), {
        nonEmpty: true,
      })
      if (values !== undefined) buckets.set(key, values)
    }
  }
  v.assert()
  const target = registry as Registry
  const metrics = {} as Record<PortcullisMetric, PromMetric>
  for (const [key, def] of Object.entries(PORTCULLIS_METRICS) as [
    PortcullisMetric,
    MetricDefinition,
  ][]) {
    const name = `${prefix}${def.name}`
    metrics[key] =
      (target.getSingleMetric(name) as PromMetric | undefined) ??
      make(def, name, target, buckets.get(key))
  }
  return new PromClient(target, Object.freeze(metrics))
}

function make(
  def: MetricDefinition,
  name: string,
  registry: Registry,
  buckets: number[] | undefined,
): PromMetric {
  const common = {
    name,
    help: def.help,
    labelNames: [...def.labels],
    registers: [registry],
  }
  switch (def.kind) {
    case 'counter':
      return new Counter(common)
    case 'gauge':
      return new Gauge(common)
    case 'histogram':
      return new Histogram({ ...common, buckets: buckets ?? [...(def.buckets ?? [])] })
  }
}

class PromClient implements PrometheusMetrics {
  readonly registry: Registry
  readonly metrics: Readonly<Record<PortcullisMetric, PromMetric>>
  /**
   * Label children by metric and by the label object itself: core passes label objects it built
   * once, so after the first report a lookup is one WeakMap get and nothing is allocated.
   */
  readonly #children: Record<string, WeakMap<MetricLabels, Child>>

  constructor(registry: Registry, metrics: Readonly<Record<PortcullisMetric, PromMetric>>) {
    this.registry = registry
    this.metrics = metrics
    this.#children = {}
    for (const key of Object.keys(metrics)) this.#children[key] = new WeakMap()
  }

  #child(metric: PortcullisMetric, labels: MetricLabels | undefined): Child | undefined {
    const m = this.metrics[metric] as PromMetric | undefined
    if (m === undefined) return undefined
    if (labels === undefined) return m as unknown as Child
    const cache = this.#children[metric] as WeakMap<MetricLabels, Child>
    let child = cache.get(labels)
    if (child === undefined) {
      child = (m as Counter).labels(labels as Record<string, string>) as unknown as Child
      cache.set(labels, child)
    }
    return child
  }

  increment(metric: PortcullisMetric, labels?: MetricLabels, value = 1): void {
    try {
      this.#child(metric, labels)?.inc?.(value)
    } catch {
      // A wrong label or value must not fail the request being counted.
    }
  }

  set(metric: PortcullisMetric, value: number, labels?: MetricLabels): void {
    try {
      this.#child(metric, labels)?.set?.(value)
    } catch {
      // As above.
    }
  }

  observe(metric: PortcullisMetric, value: number, labels?: MetricLabels): void {
    try {
      this.#child(metric, labels)?.observe?.(value)
    } catch {
      // As above.
    }
  }
}
