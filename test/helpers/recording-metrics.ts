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
