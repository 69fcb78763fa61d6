// A MetricsClient that remembers counter totals by metric and labels, for assertions.
import type { PortcullisMetric, MetricLabels, MetricsClient } from '@portcullis/core'

export interface RecordingMetrics extends MetricsClient {
  /** The counter's total for exactly these labels (0 when never incremented). */
  count(metric: PortcullisMetric, labels?: MetricLabels): number
}

const id = (metric: string, labels: MetricLabels = {}): string =>
  `${metric}${JSON.stringify(Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : 1)))}`

export function createRecordingMetrics(): RecordingMetrics {
  const counters = new Map<string, number>()
  return {
    increment(metric, labels, value = 1) {
      const k = id(metric, labels)
      counters.set(k, (counters.get(k) ?? 0) + value)
    },
    set() {},
    observe() {},
    count: (metric, labels) => counters.get(id(metric, labels)) ?? 0,
  }
}

/** A MetricsClient keyed by metric and `sink` label (`auditEvents{main}`), for the audit tests. */
export interface SinkMetrics extends MetricsClient {
  /** Counter totals. */
  readonly counts: Map<string, number>
  /** Every value each gauge was set to, in order. */
  readonly gauges: Map<string, number[]>
}

/** Creates {@link SinkMetrics}. */
export function createSinkMetrics(): SinkMetrics {
  const gauges = new Map<string, number[]>()
  const counts = new Map<string, number>()
  const key = (m: PortcullisMetric, l?: MetricLabels): string => `${m}{${l?.sink ?? ''}}`
  return {
    gauges,
    counts,
    increment(m, l, v = 1) {
      counts.set(key(m, l), (counts.get(key(m, l)) ?? 0) + v)
    },
    set(m, v, l) {
      gauges.set(key(m, l), [...(gauges.get(key(m, l)) ?? []), v])
    },
    observe() {},
  }
}
