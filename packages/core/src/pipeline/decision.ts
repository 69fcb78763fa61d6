/**
 * The gate's answer: a value, never an exception.
 *
 * Reachable from `@portcullis/core`.
 * @packageDocumentation
 */
import type { AuthError } from '../errors.js'
import type { ProblemDetails } from '../http/problem.js'
import type { RequestID } from '../ids.js'
import type { DecisionTrace, Principal } from '../types.js'

/** Response headers a decision asks the adapter to set (lower-case names). */
export type HeaderBag = Readonly<Record<string, string>>

/** An allowed request. */
export interface AllowDecision<TPrincipal = Principal> {
  readonly allowed: true
  /** 200: carry on to the handler. */
  readonly status: 200
  /** The authenticated principal, or `null` for an anonymous request on a route that allows it. */
  readonly principal: TPrincipal | null
  readonly headers: HeaderBag
  readonly trace: DecisionTrace
  readonly requestId: RequestID
  /**
   * Present when a stage wants the outcome (a quota refunding its unit on 5xx): adapters call it
   * with the final HTTP status once the response is sent.
   */
  readonly settle?: (status: number) => void
}

/** A denied request. */
export interface DenyDecision<TPrincipal = Principal> {
  readonly allowed: false
  /** HTTP status from the code table. */
  readonly status: number
  /** Who was denied, when authentication succeeded (e.g. on 403). */
  readonly principal: TPrincipal | null
  /** The error; `error.code` is stable. */
  readonly error: AuthError
  /** The RFC 9457 body to send. */
  readonly problem: ProblemDetails
  /** Headers to send: `www-authenticate`, `retry-after`, `ratelimit`... */
  readonly headers: HeaderBag
  readonly trace: DecisionTrace
  readonly requestId: RequestID
}

/** What the gate decided about a request. */
export type Decision<TPrincipal = Principal> = AllowDecision<TPrincipal> | DenyDecision<TPrincipal>
