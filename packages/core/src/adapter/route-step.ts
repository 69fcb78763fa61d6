/**
 * The protocol between a framework adapter and the gate, written once: which gate call a step
 * makes, which headers it must still set, and when the deferred access event is written.
 *
 * Reachable from `@portcullis/core/adapter`.
 * @packageDocumentation
 */
import type { CompiledRequirements } from '../authz/requirements.js'
import type { Gate } from '../gate/gate.js'
import type { Decision, HeaderBag } from '../pipeline/decision.js'
import type { NodeGateRequest } from './node-gate-request.js'

/**
 * The global middleware's step: authenticates, leaving an allowed request's access event to the
 * route step (or to {@link finishRequest} when no route step runs).
 */
export function decideGlobal(gate: Gate, request: NodeGateRequest): Promise<Decision> {
  return gate.authenticate(request, DEFER)
}
const DEFER = Object.freeze({ deferAudit: true })

/**
 * A route guard's step: authorizes on top of an allowed earlier decision of the same request (one
 * Decision, one access event), or runs the whole gate when there is none (the route guards itself).
 */
export function decideRoute(
  gate: Gate,
  request: NodeGateRequest,
  prior: Decision | undefined,
  requirements: CompiledRequirements,
): Promise<Decision> {
  request.routeDecided = true
  return prior?.allowed === true
    ? gate.authorize(request, prior, requirements)
    : gate.evaluate(request, requirements)
}

/**
 * The headers a step must still set on an allowed response: the decision's, unless they are the
 * bag already set by the earlier step (`before`), which is the case when the route added none.
 */
export function headersToSet(
  decision: Decision,
  before: HeaderBag | undefined,
): HeaderBag | undefined {
  return decision.headers === before ? undefined : decision.headers
}

/**
 * Once the response is done: tells the decision's stages the final status (a quota refunds a unit
 * on 5xx) and writes the access event the global step deferred when no route step ran.
 */
export function finishRequest(
  gate: Gate,
  request: NodeGateRequest,
  decision: Decision,
  status: number,
): void {
  if (decision.allowed) decision.settle?.(status)
  if (!request.routeDecided) gate.record(request, decision)
}
