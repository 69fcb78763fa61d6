/**
 * The stages step: limits and quotas (pluggable {@link GateStage}s) in order, each under its
 * deadline. Synchronous while every stage answers synchronously (counters in memory).
 * @internal
 * @packageDocumentation
 */
import type { CompiledRequirements } from '../authz/requirements.js'
import type { AuthError } from '../errors.js'
import { monotonicMicros } from '../internal/clock.js'
import type { HeaderBag } from '../pipeline/decision.js'
import type { GateRequest } from '../pipeline/gate-request.js'
import { isThenable, type MaybePromise } from '../pipeline/maybe-async.js'
import type { GateStage, StageContext, StageResult } from '../pipeline/stage.js'
import type { Principal, TraceEntry } from '../types.js'
import type { GateConfig } from './options.js'
import {
  chain,
  dependencyFailed,
  EMPTY_HEADERS,
  entry,
  mergeHeaders,
  pushEntry,
  startSpan,
  withinDeadline,
  type StepResult,
} from './step.js'

/** One step's run through its stages, carried across the stages that wait. */
interface StagesRun {
  readonly c: GateConfig
  readonly stages: readonly GateStage[]
  readonly context: StageContext
  readonly trace: TraceEntry[]
  headers: HeaderBag
  settle: ((status: number) => void) | undefined
  /** When the next stage began (the previous trace entry's end). */
  started: number
}

/**
 * Runs the authentication step's stages (`requirements` undefined) or the route's (its limits);
 * `started` is when the first began (the previous entry's end).
 */
export function runStages(
  c: GateConfig,
  request: GateRequest,
  principal: Principal | null,
  requirements: CompiledRequirements | undefined,
  trace: TraceEntry[],
  started: number,
): MaybePromise<StepResult> {
  const run: StagesRun = {
    c,
    stages: requirements === undefined ? c.stages : c.routeStages,
    // One context for every stage of the step: they all see the same request and principal.
    context: { request, principal, requirements, audit: c.audit, metrics: c.metricsClient },
    trace,
    headers: EMPTY_HEADERS,
    settle: undefined,
    started,
  }
  return stagesFrom(run, 0)
}

function stagesFrom(run: StagesRun, from: number): MaybePromise<StepResult> {
  const { c, stages } = run
  for (let i = from; i < stages.length; i++) {
    const stage = stages[i] as GateStage
    const span = startSpan(c, stage.name, run.context.request)
    let r: StageResult | PromiseLike<StageResult>
    try {
      r = stage.run(run.context)
    } catch (error) {
      r = stageFailed(c, stage, error)
    }
    if (isThenable(r)) {
      const next = i + 1
      return Promise.resolve(
        withinDeadline(c, r, stage.timeoutMs ?? c.timeouts.stages, `stage ${stage.name}`, timedOut),
      ).then(
        (v) => stageDone(run, stage, v, span) ?? stagesFrom(run, next),
        (e: unknown) =>
          stageDone(run, stage, stageFailed(c, stage, e), span) ?? stagesFrom(run, next),
      )
    }
    const denied = stageDone(run, stage, r, span)
    if (denied !== undefined) return denied
  }
  return {
    principal: run.context.principal,
    error: undefined,
    headers: run.headers,
    stage: 'stage',
    settle: run.settle,
  }
}

function timedOut(error: AuthError): StageResult {
  return { ok: false, error }
}

function stageFailed(c: GateConfig, stage: GateStage, error: unknown): StageResult {
  return {
    ok: false,
    error: dependencyFailed(c, error, 'ERR_STORE_UNAVAILABLE', `stage ${stage.name} failed`),
  }
}

/** Records a stage's answer in the step; returns the step's result when the stage denied. */
function stageDone(
  run: StagesRun,
  stage: GateStage,
  r: StageResult,
  span: unknown,
): StepResult | undefined {
  if (r.headers !== undefined) run.headers = mergeHeaders(run.headers, r.headers)
  // One clock read ends this stage's timing and starts the next one's.
  const ended = monotonicMicros()
  pushEntry(
    run.c,
    run.trace,
    entry(stage.name, r.ok ? undefined : r.error, r.by ?? stage.name, run.started, ended),
    span,
  )
  run.started = ended
  if (!r.ok)
    return {
      principal: run.context.principal,
      error: r.error,
      headers: run.headers,
      stage: 'stage',
    }
  if (r.settle !== undefined) run.settle = chain(run.settle, r.settle)
  return undefined
}
