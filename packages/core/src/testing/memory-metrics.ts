/**
 * A {@link MetricsClient} that keeps every value in memory, for tests.
 * @packageDocumentation
 */
import type { PortcullisMetric, MetricLabels, MetricsClient } from '../integrations/metrics.js'

/** {@link createMemoryMetrics}'s client: records counters, gauges and observations by labels. */
export interface MemoryMetrics extends MetricsClient {
  /** A counter's total or a gauge's last value for exactly these labels (0 when never reported). */
  value(metric: PortcullisMetric, labels?: MetricLabels): number
  /** The sum of a counter (or the gauges) over every label set containing `filter`'s labels. */
  sum(metric: PortcullisMetric, filter?: MetricLabels): number
  /** A histogram's observations over every label set containing `filter`'s labels. */
  observations(metric: PortcullisMetric, filter?: MetricLabels): readonly number[]
  /** Every label set reported for `metric`. */
  labelSets(metric: PortcullisMetric): readonly MetricLabels[]
  /** Forgets everything. */
  reset(): void
}

interface Series {
  readonly labels: MetricLabels
  value: number
  readonly observed: number[]
}

const seriesId = (labels: MetricLabels = {}): string =>
  JSON.stringify(
    Object.keys(labels)
      .sort()
      .map((k) => [k, labels[k]]),
  )

const contains = (labels: MetricLabels, filter: MetricLabels): boolean =>
  Object.entries(filter).every(([k, v]) => labels[k] === v)

/**
 * Creates a {@link MemoryMetrics}.
 * @example
 * ```ts
 * const metrics = createMemoryMetrics()
 * const gate = createGate({ apiKeys, metrics })
 * await gate.evaluate(fakeRequest())
 * metrics.sum('requests', { outcome: 'deny' }) // 1
 * ```
 */
export function createMemoryMetrics(): MemoryMetrics {
  const metrics = new Map<PortcullisMetric, Map<string, Series>>()
  const series = (metric: PortcullisMetric, labels: MetricLabels = {}): Series => {
    let byId = metrics.get(metric)
    if (byId === undefined) metrics.set(metric, (byId = new Map()))
    const id = seriesId(labels)
    let s = byId.get(id)
    if (s === undefined) byId.set(id, (s = { labels: { ...labels }, value: 0, observed: [] }))
    return s
  }
  const matching = (metric: PortcullisMetric, filter: MetricLabels = {}): Series[] =>
    [...(metrics.get(metric)?.values() ?? [])].filter((s) => contains(s.labels, filter))
  return {
    increment(metric, labels, value = 1) {
      series(metric, labels).value += value
    },
    set(metric, value, labels) {
      series(metric, labels).value = value
    },
    observe(metric, value, labels) {
      series(metric, labels).observed.push(value)
    },
    value: (metric, labels) => metrics.get(metric)?.get(seriesId(labels))?.value ?? 0,
    sum: (metric, filter) => matching(metric, filter).reduce((t, s) => t + s.value, 0),
    observations: (metric, filter) => matching(metric, filter).flatMap((s) => s.observed),
    labelSets: (metric) => [...(metrics.get(metric)?.values() ?? [])].map((s) => s.labels),
    reset: () => metrics.clear(),
  }
}
