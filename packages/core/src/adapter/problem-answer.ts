/**
 * The error answer of an adapter's error handler when no gate decided the request (an error
 * before the gate, or a handler mounted on its own): the same problem body and content type as the
 * gate's, with the default problem type base and no challenge, built without a gate.
 *
 * Reachable from `@portcullis/core/adapter`.
 * @packageDocumentation
 */
import { randomUUID } from 'node:crypto'
import { DEFAULT_PROBLEM_TYPE_BASE } from '../defaults.js'
import type { Gate } from '../gate/gate.js'
import {
  PROBLEM_CONTENT_TYPE,
  toAuthError,
  toProblemDetails,
  type ErrorResponse,
} from '../http/problem.js'
import type { Decision } from '../pipeline/decision.js'

const PLAIN_HEADERS = Object.freeze({ 'content-type': PROBLEM_CONTENT_TYPE })

/**
 * The answer to `error`: through the gate that decided the request when there is one (its
 * challenge, realm and problem type base), otherwise with the defaults. A 5xx reveals nothing.
 */
export function problemAnswer(
  error: unknown,
  gate: Gate | undefined,
  decision: Decision | undefined,
): ErrorResponse {
  const requestId = decision?.requestId ?? randomUUID()
  if (gate !== undefined) return gate.errorResponse(error, requestId)
  const e = toAuthError(error)
  return {
    status: e.status,
    headers: PLAIN_HEADERS,
    problem: toProblemDetails(e, requestId, DEFAULT_PROBLEM_TYPE_BASE),
  }
}
