/**
 * `@portcullis/core/adapter`: the kit framework adapters are built from (modelled on tRPC's
 * node-http layer). It holds everything an adapter would otherwise write again: the request
 * wrapper, the choice of gate call per step, the headers still to set, the deferred access event,
 * the error answer without a gate, and controller routes. An adapter keeps only what is specific
 * to its framework: reading its request and writing its response.
 *
 * @example
 * ```ts
 * import { NodeGateRequest, decideGlobal } from '@portcullis/core/adapter'
 * const request = new NodeGateRequest({ method, url, route: undefined, ip, headers, rawHeaders, adapter: 'mine' })
 * const decision = await decideGlobal(gate, request)
 * ```
 * @packageDocumentation
 */
export { NodeGateRequest, type NodeGateRequestInit, type NodeHeaders } from './node-gate-request.js'
export { decideGlobal, decideRoute, finishRequest, headersToSet } from './route-step.js'
export { problemAnswer } from './problem-answer.js'
export {
  controllerRoutes,
  type BoundControllerRoute,
  type ControllerInput,
} from './controller-routes.js'
export { routeNotFoundError } from '../http/problem.js'
export { PROBLEM_CONTENT_TYPE, type ErrorResponse } from '../http/problem.js'
