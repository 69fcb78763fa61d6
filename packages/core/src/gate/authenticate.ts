/**
 * The authentication step: finds the request's one credential, verifies it with the API-key or
 * JWT verifier or a custom authenticator (each under its deadline), then runs the step's stages.
 * Synchronous when nothing waits (a cached key or token, counters in memory).
 * @internal
 * @packageDocumentation
 */
import { AuthError } from '../errors.js'
import { monotonicMicros } from '../internal/clock.js'
import type { GateRequest } from '../pipeline/gate-request.js'
import { isThenable, type MaybePromise } from '../pipeline/maybe-async.js'
import type { AuthenticatorResult } from '../pipeline/stage.js'
import { authThrottledError, authThrottledHeaders } from '../authn/failure-throttle.js'
import type { TraceEntry } from '../types.js'
import { extractCredential } from './credentials.js'
import type { GateConfig } from './options.js'
import { runStages } from './stages.js'
import { COUNTED_FAILURES, ThrottleSubject } from './throttle-subject.js'
import {
  dependencyFailed,
  EMPTY_HEADERS,
  entry,
  pushEntry,
  startSpan,
  withinDeadline,
  type StepResult,
} from './step.js'

/** An authenticator's answer, or an anonymous request let through (no credential, none required). */
type Authenticated = AuthenticatorResult | { readonly ok: true; readonly principal: null }
const ANONYMOUS: Authenticated = Object.freeze({ ok: true, principal: null })

const AMBIGUOUS = (): AuthError =>
  new AuthError('ERR_AUTH_AMBIGUOUS', 'The request carries more than one credential', {
    reason: 'a custom authenticator also found a credential',
  })

/** Authentication and the step's stages; `isPublic` when the route serves anonymous callers. */
export function authenticateStep(
  c: GateConfig,
  request: GateRequest,
  trace: TraceEntry[],
  isPublic: boolean,
): MaybePromise<StepResult> {
  const span = startSpan(c, 'authenticate', request)
  const started = monotonicMicros()
  let credential = extractCredential(request, c.credentialRules)
  if (
    c.credentialRules.rejectAmbiguous &&
    c.authenticators.length > 0 &&
    (credential.kind === 'bearer' || credential.kind === 'apikey-header') &&
    c.authenticators.some((a) => a.detect(request))
  ) {
    // A custom authenticator also sees a credential of its own kind: two credentials.
    credential = { kind: 'error', error: AMBIGUOUS() }
  }
  let by = 'none'
  let deadline: number | false = false
  let verified: Authenticated | PromiseLike<AuthenticatorResult>
  let subject: ThrottleSubject | undefined
  const throttle = c.authFailureThrottle
  if (throttle !== undefined && credential.kind !== 'none' && credential.kind !== 'error') {
    const token = 'token' in credential ? credential.token : ''
    subject = new ThrottleSubject(
      request.ip,
      token,
      credential.kind === 'apikey-header' || c.apiKeys?.looksLikeKey(token) === true
        ? 'apikey'
        : credential.kind === 'bearer'
          ? 'jwt'
          : 'other',
    )
    const lock = throttle.check(subject)
    // The shipped throttles answer from memory; a custom one that waits is not awaited here
    // (never a round trip before every credential): its lock-outs then apply to what it decides.
    if (lock !== undefined && !isThenable(lock)) {
      const error = authThrottledError(lock)
      pushEntry(c, trace, entry('authenticate', error, 'throttle', started), span)
      return { principal: null, error, headers: authThrottledHeaders(lock), stage: 'authenticate' }
    }
  }
  try {
    switch (credential.kind) {
      case 'error':
        verified = { ok: false, error: credential.error }
        break
      case 'apikey-header':
        by = 'apikey'
        deadline = c.timeouts.apiKeys
        verified = apiKey(c, credential.token, request)
        break
      case 'bearer':
        if (
          c.apiKeys !== undefined &&
          (c.jwt === undefined || c.apiKeys.looksLikeKey(credential.token))
        ) {
          by = 'apikey'
          deadline = c.timeouts.apiKeys
          verified = apiKey(c, credential.token, request)
        } else {
          by = 'jwt'
          deadline = c.timeouts.jwt
          verified = jwt(c, credential.token)
        }
        break
      default: {
        const custom =
          c.authenticators.length === 0
            ? undefined
            : c.authenticators.find((a) => a.detect(request))
        if (custom !== undefined) {
          by = custom.name
          deadline = custom.timeoutMs ?? c.timeouts.authenticators
          verified = custom.authenticate(request)
        } else if (c.credentialsRequired && !isPublic) {
          verified = {
            ok: false,
            error: new AuthError('ERR_AUTH_REQUIRED', 'Authentication is required', {
              reason: credential.kind === 'other-scheme' ? credential.reason : 'no credentials',
            }),
          }
        } else {
          verified = ANONYMOUS
        }
      }
    }
  } catch (e) {
    verified = authenticatorFailed(c, e, by)
  }
  if (!isThenable(verified))
    return authenticated(c, request, trace, span, started, by, verified, subject)
  const authenticator = by
  return Promise.resolve(
    withinDeadline(c, verified, deadline, authenticator, (error): AuthenticatorResult => ({
      ok: false,
      error,
    })),
  ).then(
    (v) => authenticated(c, request, trace, span, started, authenticator, v, subject),
    (e: unknown) =>
      authenticated(
        c,
        request,
        trace,
        span,
        started,
        authenticator,
        authenticatorFailed(c, e, authenticator),
        subject,
      ),
  )
}

function authenticatorFailed(c: GateConfig, e: unknown, by: string): AuthenticatorResult {
  return {
    ok: false,
    error: dependencyFailed(c, e, 'ERR_STORE_UNAVAILABLE', `authenticator ${by} failed`),
  }
}

/** Records the authentication's trace entry, then runs the step's stages. */
function authenticated(
  c: GateConfig,
  request: GateRequest,
  trace: TraceEntry[],
  span: unknown,
  started: number,
  by: string,
  verified: Authenticated,
  subject: ThrottleSubject | undefined,
): MaybePromise<StepResult> {
  const principal = verified.ok ? verified.principal : null
  const error = verified.ok ? undefined : verified.error
  const ended = monotonicMicros()
  pushEntry(c, trace, entry('authenticate', error, by, started, ended), span)
  if (subject !== undefined) throttled(c, subject, error)
  if (error !== undefined)
    return { principal, error, headers: EMPTY_HEADERS, stage: 'authenticate' }
  // No stages: answered here, without another async step.
  if (c.stages.length === 0) return { principal, error, headers: EMPTY_HEADERS, stage: 'stage' }
  return runStages(c, request, principal, undefined, trace, ended)
}

/** The API-key verifier's answer: synchronous for a cached key. */
function apiKey(
  c: GateConfig,
  token: string,
  request: GateRequest,
): AuthenticatorResult | Promise<AuthenticatorResult> {
  if (c.apiKeys === undefined)
    return {
      ok: false,
      error: new AuthError('ERR_APIKEY_INVALID', 'API keys are not accepted', {
        reason: 'no API-key authenticator',
      }),
    }
  return c.apiKeys.verifyNow(token, request)
}

/** The JWT verifier's answer: synchronous with static keys or a cached token. */
function jwt(c: GateConfig, token: string): AuthenticatorResult | Promise<AuthenticatorResult> {
  if (c.jwt === undefined)
    return {
      ok: false,
      error: new AuthError('ERR_JWT_INVALID', 'Bearer tokens are not accepted', {
        reason: 'no JWT authenticator',
      }),
    }
  return c.jwt.verifyNow(token)
}

/** Tells the throttle how a presented credential fared: a failure it counts, or a success. */
function throttled(c: GateConfig, subject: ThrottleSubject, error: AuthError | undefined): void {
  const throttle = c.authFailureThrottle as NonNullable<GateConfig['authFailureThrottle']>
  if (error === undefined) return throttle.succeeded(subject)
  if (!COUNTED_FAILURES.has(error.code)) return
  const counted = throttle.failed(subject)
  // Documented never to reject; a custom throttle that does must not become an unhandled rejection.
  if (isThenable(counted)) Promise.resolve(counted).catch(() => undefined)
}
