/**
 * The tracing hook: the gate calls it around each of its stages (authenticate, each pluggable
 * stage such as `ratelimit` and `quota`, authorize) so a tracing system can open one span per
 * stage. `@portcullis/opentelemetry` implements it on `@opentelemetry/api`. Absent by default: the
 * gate then only checks that the option is unset.
 *
 * Reachable from `@portcullis/core`.
 * @packageDocumentation
 */
import type { GateRequest } from '../pipeline/gate-request.js'
import type { TraceEntry } from '../types.js'

/**
 * Opens and closes one span per gate stage. Calls are on the hot path and must never throw.
 * @example
 * ```ts
 * const tracer: GateTracer = {
 *   startStage: (stage) => ({ stage, t: performance.now() }),
 *   endStage: (span, entry) => console.log(entry.stage, entry.outcome, entry.micros),
 * }
 * const gate = createGate({ apiKeys, tracer })
 * ```
 */
export interface GateTracer {
  /**
   * Called as a stage starts (`authenticate`, a stage's name, `authorize`); whatever it returns is
   * handed back to {@link GateTracer.endStage}.
   */
  startStage(stage: string, request: GateRequest): unknown
  /** Called as the stage ends, with the span it started and the stage's trace entry. */
  endStage(span: unknown, entry: TraceEntry): void
}

/** Whether `value` implements {@link GateTracer}. */
export function isGateTracer(value: unknown): value is GateTracer {
  return (
    typeof (value as GateTracer | undefined)?.startStage === 'function' &&
    typeof (value as GateTracer).endStage === 'function'
  )
}
