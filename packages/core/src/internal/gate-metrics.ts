/**
 * Reports the gate's decisions to a {@link MetricsClient} with label objects built once and
 * reused, so that counting a request allocates nothing.
 * @internal
 */
import type { Decision } from '../pipeline/decision.js'
import type { MetricLabels, MetricsClient } from '../integrations/metrics.js'
import type { TraceEntry } from '../types.js'

/** The two decisions a request can get: at authentication, and at a route's authorization. */
export type GateStep = 'authenticate' | 'authorize'

type Outcome = 'allow' | 'deny' | 'error'

/** What `decided` receives for a step that passed but is not the request's last (no Decision yet). */
export const STEP_PASSED: Pick<Decision, 'allowed'> = Object.freeze({ allowed: true })

/** Label sets are bounded anyway (stage names and error codes are finite); this guards a bug. */
const MAX_LABEL_SETS = 512

const ALLOW_STAGE = 'none'

/** Label objects per step, stage and code, and per step and outcome. */
export class GateMetrics {
  readonly #client: MetricsClient
  readonly #requests = new Map<GateStep, Map<string, Map<string, MetricLabels>>>()
  readonly #durations = new Map<GateStep, Readonly<Record<Outcome, MetricLabels>>>()
  readonly #stages = new Map<string, MetricLabels>()
  readonly #allowed = new Map<GateStep, MetricLabels>()
  #size = 0

  constructor(client: MetricsClient) {
    this.#client = client
    for (const step of ['authenticate', 'authorize'] as const) {
      this.#requests.set(step, new Map())
      this.#allowed.set(
        step,
        Object.freeze({ step, outcome: 'allow', stage: step, code: ALLOW_STAGE }),
      )
      this.#durations.set(
        step,
        Object.freeze({
          allow: Object.freeze({ step, outcome: 'allow' }),
          deny: Object.freeze({ step, outcome: 'deny' }),
          error: Object.freeze({ step, outcome: 'error' }),
        }),
      )
    }
  }

  /**
   * Counts one decision and observes its latency (seconds, from `startedMicros`) and the
   * durations of the stages it ran (trace entries from index `from` on).
   */
  decided(
    step: GateStep,
    decision: Pick<Decision, 'allowed'> | Decision,
    trace: readonly TraceEntry[],
    from: number,
    startedMicros: number,
    nowMicros: number,
  ): void {
    const m = this.#client
    try {
      let outcome: Outcome
      if (decision.allowed) {
        outcome = 'allow'
        m.increment('requests', this.#allowed.get(step))
      } else {
        const denied = decision as Extract<Decision, { allowed: false }>
        outcome = denied.status >= 500 ? 'error' : 'deny'
        const last = trace[trace.length - 1]
        // Every stage allowed: the audit queue refused the event (failClosedOnAuditBackpressure).
        const stage =
          last === undefined || trace.length <= from || last.outcome === 'allow'
            ? 'audit'
            : last.stage
        m.increment('requests', this.#denied(step, outcome, stage, denied.error.code))
      }
      m.observe(
        'decisionDuration',
        (nowMicros - startedMicros) / 1e6,
        (this.#durations.get(step) as Record<Outcome, MetricLabels>)[outcome],
      )
      for (let i = from; i < trace.length; i++) {
        const e = trace[i] as TraceEntry
        m.observe('stageDuration', e.micros / 1e6, this.#stage(e.stage))
      }
    } catch {
      // A metrics client must never throw; if one does, the request still gets its decision.
    }
  }

  #denied(step: GateStep, outcome: Outcome, stage: string, code: string): MetricLabels {
    const byStage = this.#requests.get(step) as Map<string, Map<string, MetricLabels>>
    let byCode = byStage.get(stage)
    if (byCode === undefined) {
      if (this.#size >= MAX_LABEL_SETS) return Object.freeze({ step, outcome, stage, code })
      byCode = new Map()
      byStage.set(stage, byCode)
    }
    let labels = byCode.get(code)
    if (labels === undefined) {
      labels = Object.freeze({ step, outcome, stage, code })
      if (this.#size < MAX_LABEL_SETS) {
        byCode.set(code, labels)
        this.#size++
      }
    }
    return labels
  }

  #stage(stage: string): MetricLabels {
    let labels = this.#stages.get(stage)
    if (labels === undefined) {
      labels = Object.freeze({ stage })
      if (this.#stages.size < MAX_LABEL_SETS) this.#stages.set(stage, labels)
    }
    return labels
  }
}

/** Wraps a client so that one breaking its never-throw contract cannot fail a request. */
export function guardMetrics(client: MetricsClient): MetricsClient {
  return {
    increment(metric, labels, value): void {
      try {
        client.increment(metric, labels, value)
      } catch {
        // Metrics are best effort.
      }
    },
    set(metric, value, labels): void {
      try {
        client.set(metric, value, labels)
      } catch {
        // As above.
      }
    },
    observe(metric, value, labels): void {
      try {
        client.observe(metric, value, labels)
      } catch {
        // As above.
      }
    },
  }
}
