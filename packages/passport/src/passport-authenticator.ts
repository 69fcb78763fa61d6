/**
 * Any passport strategy as a Portcullis {@link Authenticator}: the gate runs the strategy on a
 * minimal request, without sessions, on Express, Koa and Fastify alike.
 *
 * Reachable from `@portcullis/passport`.
 * @packageDocumentation
 */
import {
  AuthError,
  describeValue,
  isAuthError,
  parseRoleId,
  parseTokenId,
  parseUserId,
  silentLogger,
  TypeValidator,
  type Authenticator,
  type AuthenticatorResult,
  type GateRequest,
  type Logger,
  type Principal,
  type RoleID,
} from '@portcullis/core'
import { DEFAULT_STRATEGY_TIMEOUT_MS } from './defaults.js'
import { detectAuthorizationScheme, type DetectCredential } from './detect.js'
import { createPassportRequest, createRedactor } from './internal/passport-request.js'
import type { PassportRequest } from './passport-request.js'

/** A passport strategy, as far as the gate needs one (any `passport-strategy` subclass fits). */
export interface PassportStrategyLike {
  /** The strategy's own name (`basic`, `jwt`, ...). */
  readonly name?: string | undefined
  /** Passport's entry point; reports through `this.success/fail/error/pass/redirect`. */
  authenticate(req: PassportRequest, options?: { readonly session?: boolean }): unknown
}

/** What passport adds to a strategy for one request; the gate supplies its own. */
export interface PassportActions {
  success(user: unknown, info?: unknown): void
  fail(challenge?: unknown, status?: number): void
  error(err: unknown): void
  pass(): void
  redirect(url: string, status?: number): void
}

/** The principal `toPrincipal` describes; `Principal` itself fits. */
export interface PrincipalInit {
  /** Stable subject id: 1-256 printable ASCII characters (see `parseUserId`). */
  readonly id: string
  /** How it authenticated. @default the authenticator's name */
  readonly method?: string
  /** Granted scopes. @default [] */
  readonly scopes?: readonly string[]
  /** Granted roles (see `parseRoleId`). @default [] */
  readonly roles?: readonly string[]
  /** The credential's own id, when there is one. */
  readonly tokenId?: string
  /** Attributes for policies. Never put the credential itself here. @default {} */
  readonly attributes?: Readonly<Record<string, unknown>>
}

/** Options of {@link passportAuthenticator}. */
export interface PassportAuthenticatorOptions<TUser = unknown> {
  /** Name in traces and audit events, and the principal's default `method`. @default strategy.name */
  readonly name?: string
  /**
   * Whether a request carries this strategy's credential (cheap and synchronous). Required,
   * except for passport-http's `BasicStrategy` (name `basic`), where it defaults to
   * `detectAuthorizationScheme('basic')`.
   */
  readonly detect?: DetectCredential
  /** Maps the strategy's user (and `info`) to a principal. Passport users are arbitrary objects. */
  readonly toPrincipal: (user: TUser, info: unknown) => PrincipalInit
  /** A strategy that has not called back by then fails the request with 503. @default 5000 */
  readonly timeoutMs?: number
  /**
   * Challenge added to every 401 after the Bearer one, so clients learn this scheme is accepted.
   * @default 'Basic realm="api"' for passport-http's BasicStrategy, none otherwise
   */
  readonly challenge?: string
  /** Receives unknown-option warnings. @default silent */
  readonly logger?: Logger
}

/** {@link PassportAuthenticatorOptions} with every field resolved. @internal */
export interface ResolvedPassportAuthenticatorOptions {
  readonly name: string
  readonly detect: DetectCredential
  readonly toPrincipal: (user: unknown, info: unknown) => PrincipalInit
  readonly timeoutMs: number
  readonly challenge: string | undefined
}

const OPTION_NAMES = ['name', 'detect', 'toPrincipal', 'timeoutMs', 'challenge', 'logger']
const NAME = /^[A-Za-z0-9][A-Za-z0-9_.:-]*$/

/**
 * Validates options and fills defaults.
 * @throws {ConfigError} for a bad option
 */
export function resolvePassportAuthenticatorOptions(
  strategy: PassportStrategyLike,
  options: Readonly<PassportAuthenticatorOptions<never>>,
): ResolvedPassportAuthenticatorOptions {
  const v = new TypeValidator()
  if (typeof (strategy as PassportStrategyLike | undefined)?.authenticate !== 'function') {
    v.fail('strategy', `must be a passport strategy, received ${describeValue(strategy)}`)
  }
  const o = v.object('options', options) ?? {}
  v.knownKeys(o, OPTION_NAMES)
  const fallbackName = typeof strategy?.name === 'string' ? strategy.name : undefined
  const name = v.string('name', options?.name ?? fallbackName, { pattern: NAME, maxLength: 64 })
  let detect: DetectCredential | undefined
  if (options?.detect !== undefined) detect = v.function<DetectCredential>('detect', options.detect)
  else if (fallbackName === 'basic') detect = detectAuthorizationScheme('basic')
  else {
    v.fail(
      'detect',
      `is required for strategy ${describeValue(fallbackName)}; e.g. detectHeader('x-token') or detectAuthorizationScheme('basic')`,
    )
  }
  const toPrincipal = v.function<(user: unknown, info: unknown) => PrincipalInit>(
    'toPrincipal',
    options?.toPrincipal,
  )
  const timeoutMs = v.integer('timeoutMs', options?.timeoutMs ?? DEFAULT_STRATEGY_TIMEOUT_MS, {
    min: 1,
    max: 2_147_483_647,
  })
  const challenge =
    options?.challenge !== undefined
      ? v.string('challenge', options.challenge, {
          pattern: /^[A-Za-z][\x20-\x7e]*$/,
          maxLength: 200,
        })
      : fallbackName === 'basic'
        ? 'Basic realm="api"'
        : undefined
  v.assert((m) => (options?.logger ?? silentLogger).warn({}, m))
  return Object.freeze({
    challenge,
    name: name as string,
    detect: detect as DetectCredential,
    toPrincipal: toPrincipal as (user: unknown, info: unknown) => PrincipalInit,
    timeoutMs: timeoutMs as number,
  })
}

/**
 * Wraps a passport strategy as a Portcullis authenticator. Each request runs the strategy on a
 * fresh `Object.create(strategy)` with the gate's own `success/fail/error/pass/redirect`:
 * `success` → the principal from `toPrincipal`; `fail` → 401 `ERR_AUTH_INVALID` (400
 * `ERR_AUTH_MALFORMED` for a 400 failure); `pass`/`redirect` → 401 `ERR_AUTH_REQUIRED`; `error`,
 * a throw, or no answer within `timeoutMs` → 503.
 * @throws {ConfigError} for a bad option, at creation
 * @example
 * ```ts
 * import { BasicStrategy } from 'passport-http'
 * const basic = passportAuthenticator(
 *   new BasicStrategy((user, password, done) => done(null, users.check(user, password))),
 *   { toPrincipal: (user) => ({ id: user.id, roles: user.roles }) },
 * )
 * const gate = createGate({ authenticators: [basic], apiKeys: { store, pepper } })
 * ```
 */
export function passportAuthenticator<TUser = unknown>(
  strategy: PassportStrategyLike,
  options: Readonly<PassportAuthenticatorOptions<TUser>>,
): Authenticator {
  const config = resolvePassportAuthenticatorOptions(
    strategy,
    options as PassportAuthenticatorOptions<never>,
  )
  return Object.freeze({
    name: config.name,
    detect: config.detect,
    ...(config.challenge === undefined ? {} : { challenge: config.challenge }),
    authenticate: (request: GateRequest): Promise<AuthenticatorResult> =>
      runStrategy(strategy, request, config),
  })
}

type Outcome =
  | { readonly kind: 'success'; readonly user: unknown; readonly info: unknown }
  | { readonly kind: 'fail'; readonly challenge: unknown; readonly status: number | undefined }
  | { readonly kind: 'pass' | 'redirect' }

async function runStrategy(
  strategy: PassportStrategyLike,
  request: GateRequest,
  config: ResolvedPassportAuthenticatorOptions,
): Promise<AuthenticatorResult> {
  const { name } = config
  const shim = createPassportRequest(request)
  const redact = (text: string): string => createRedactor(shim.readValues())(text)
  const outcome = await new Promise<Outcome>((resolve, reject) => {
    let settled = false
    const settle = (done: () => void): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      done()
    }
    const timer = setTimeout(() => {
      settle(() =>
        reject(
          new Error(`passport strategy "${name}" did not answer within ${config.timeoutMs} ms`),
        ),
      )
    }, config.timeoutMs)
    timer.unref()
    const fail = (error: unknown): void =>
      settle(() =>
        reject(
          isAuthError(error)
            ? error
            : new Error(`passport strategy "${name}" failed: ${redact(describeError(error))}`, {
                cause: error,
              }),
        ),
      )
    const run = Object.create(strategy) as PassportStrategyLike & PassportActions
    run.success = (user, info) => settle(() => resolve({ kind: 'success', user, info }))
    run.fail = (challenge, status) =>
      settle(() =>
        resolve(
          typeof challenge === 'number'
            ? { kind: 'fail', challenge: undefined, status: challenge }
            : { kind: 'fail', challenge, status: typeof status === 'number' ? status : undefined },
        ),
      )
    run.error = fail
    run.pass = () => settle(() => resolve({ kind: 'pass' }))
    run.redirect = () => settle(() => resolve({ kind: 'redirect' }))
    try {
      const returned = run.authenticate(shim.request, { session: false })
      // An `async authenticate` would otherwise turn its throw into an unhandled rejection.
      if (typeof (returned as PromiseLike<unknown> | undefined)?.then === 'function')
        (returned as PromiseLike<unknown>).then(undefined, fail)
    } catch (error) {
      fail(error)
    }
  })
  switch (outcome.kind) {
    case 'success': {
      if (outcome.user === undefined || outcome.user === null || outcome.user === false) {
        return denied('ERR_AUTH_INVALID', `${name}: strategy succeeded without a user`)
      }
      let init: PrincipalInit
      try {
        init = config.toPrincipal(outcome.user, outcome.info)
      } catch (error) {
        throw new Error(`toPrincipal of passport authenticator "${name}" threw`, { cause: error })
      }
      return { ok: true, principal: toPrincipal(init, name) }
    }
    case 'fail': {
      const { challenge, status } = outcome
      // A strategy written for Portcullis may fail with a Portcullis error: keep its code.
      if (isAuthError(challenge) && challenge.status < 500) return { ok: false, error: challenge }
      const reason = `${name}: ${redact(describeChallenge(challenge))}${status === undefined ? '' : ` (status ${status})`}`
      return status === 400
        ? denied('ERR_AUTH_MALFORMED', reason)
        : denied('ERR_AUTH_INVALID', reason)
    }
    case 'pass':
      return denied('ERR_AUTH_REQUIRED', `${name}: strategy passed without a decision`)
    case 'redirect':
      return denied('ERR_AUTH_REQUIRED', `${name}: strategy redirected (not supported by the gate)`)
  }
}

const MESSAGES = {
  ERR_AUTH_INVALID: 'The credentials are invalid',
  ERR_AUTH_MALFORMED: 'The credentials are malformed',
  ERR_AUTH_REQUIRED: 'Authentication is required',
} as const

function denied(code: keyof typeof MESSAGES, reason: string): AuthenticatorResult {
  return { ok: false, error: new AuthError(code, MESSAGES[code], { reason }) }
}

function describeError(error: unknown): string {
  if (error instanceof Error) return `${error.name}: ${error.message}`
  return typeof error === 'string' ? error : describeValue(error)
}

function describeChallenge(challenge: unknown): string {
  if (challenge === undefined || challenge === null) return 'failed'
  // A challenge string is a WWW-Authenticate value: its scheme says enough.
  if (typeof challenge === 'string') return `challenge ${challenge.trim().split(/\s+/)[0] ?? ''}`
  if (challenge instanceof Error) return describeError(challenge)
  const message = (challenge as { message?: unknown }).message
  return typeof message === 'string' ? message : 'failed'
}

function invalid(name: string, what: string): TypeError {
  return new TypeError(`toPrincipal of passport authenticator "${name}" returned ${what}`)
}

/** Checks `toPrincipal`'s result and freezes it. Values are never quoted: they may be secrets. */
function toPrincipal(init: PrincipalInit, name: string): Principal {
  if (typeof init !== 'object' || init === null) throw invalid(name, 'no object')
  const id = parseUserId(init.id)
  if (id === undefined) throw invalid(name, 'an id that is not 1-256 printable ASCII characters')
  const method = init.method ?? name
  if (typeof method !== 'string' || method.length === 0) throw invalid(name, 'an invalid method')
  const scopes = init.scopes ?? []
  if (
    !Array.isArray(scopes) ||
    !scopes.every((s) => typeof s === 'string' && s.length > 0 && !/\s/.test(s))
  )
    throw invalid(name, 'scopes that are not an array of non-empty strings without spaces')
  const givenRoles: unknown = init.roles ?? []
  if (!Array.isArray(givenRoles)) throw invalid(name, 'roles that are not an array')
  const roles: RoleID[] = []
  for (const role of givenRoles as readonly unknown[]) {
    const parsed = parseRoleId(role)
    if (parsed === undefined) throw invalid(name, 'an invalid role id')
    roles.push(parsed)
  }
  const tokenId = init.tokenId === undefined ? undefined : parseTokenId(init.tokenId)
  if (init.tokenId !== undefined && tokenId === undefined) throw invalid(name, 'an invalid tokenId')
  const attributes = init.attributes ?? {}
  if (typeof attributes !== 'object' || attributes === null || Array.isArray(attributes))
    throw invalid(name, 'attributes that are not an object')
  return Object.freeze({
    id,
    method,
    scopes: Object.freeze([...scopes]),
    roles: Object.freeze(roles),
    ...(tokenId === undefined ? {} : { tokenId }),
    attributes: Object.freeze({ ...attributes }),
  })
}
