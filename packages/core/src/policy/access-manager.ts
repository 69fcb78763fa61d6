/**
 * The AccessManager: evaluates requests against a compiled policy set. Rules are decided by
 * priority (highest first); within one priority deny overrides allow; when no rule matches, the
 * answer is deny. Risk assessment runs before the rules (rules may read `environment.riskScore`)
 * and can deny or demand step-up authentication after an allow.
 *
 * Reachable from `@portcullis/core`.
 * @packageDocumentation
 */
import { AuthError } from '../errors.js'
import { systemClock, type Clock } from '../internal/clock.js'
import { silentLogger, type Logger } from '../logger.js'
import type { AccessLevel, Principal, ResourceType } from '../types.js'
import { ACCESS_LEVELS } from '../types.js'
import { TypeValidator } from '../validation/type-validator.js'
import {
  compilePolicySet,
  isCompiledPolicySet,
  type ActionPlan,
  type CompiledPolicySet,
  type CompiledRule,
} from './compile.js'
import type { EvalContext, Tri } from './conditions.js'
import type {
  AccessRequest,
  PolicyAccessResult,
  PolicyExplanation,
  PolicySetInput,
  RuleExplanation,
} from './model.js'
import {
  assessRisk,
  BUILTIN_RISK_SIGNALS,
  RiskState,
  type RiskSignal,
  type RiskSignalContext,
} from './risk.js'

/** Anything holding the current compiled set: a {@link PolicyStore}, or a fixed set. */
export interface PolicySource {
  /** The set in force. Read once per evaluation, so a swap is atomic for each request. */
  readonly current: CompiledPolicySet
}

/** Options of {@link createAccessManager}. */
export interface AccessManagerOptions {
  /** The policy: a set as data, a compiled set, or a {@link PolicySource} such as a `PolicyStore`. */
  readonly policy: PolicySetInput | CompiledPolicySet | PolicySource
  /** Extra risk signals by name (weights come from the set's `risk.signals`). */
  readonly signals?: Readonly<Record<string, RiskSignal>>
  /**
   * Dry-run the whole set: denials are reported (`shadowDenied`, logged) and the request is
   * allowed. For rolling out a first policy. @default false
   */
  readonly shadow?: boolean
  /** Principals remembered for the stateful risk signals. @default 10000 */
  readonly maxTrackedPrincipals?: number
  /** Clock, epoch ms. @default Date.now */
  readonly now?: Clock
  /** Logger. @default silent */
  readonly logger?: Logger
}

/** Evaluates access requests against the policy in force. */
export interface AccessManager {
  /** Decides a request (synchronous; the resource, if any, is already loaded). */
  evaluate(request: AccessRequest): PolicyAccessResult
  /** Like `evaluate`, with every candidate rule and risk signal explained. Records nothing. */
  explain(request: AccessRequest): PolicyExplanation
  /** The highest level `principal` has on a resource: tries `<permission>:admin|write|read`. */
  accessLevel(
    principal: Principal | null,
    permission: string,
    options?: { readonly resourceType?: ResourceType; readonly resource?: unknown },
  ): AccessLevel
  /** Counts a failure (e.g. a failed step-up) against a principal, for the `recentFailures` signal. */
  noteFailure(principalId: string): void
  /** The set in force now. */
  readonly policy: CompiledPolicySet
  /** Whether the whole set runs in dry-run. */
  readonly shadow: boolean
}

const MANAGER: unique symbol = Symbol.for('@portcullis/core/access-manager') as never

/** Whether `value` is an {@link AccessManager} made by {@link createAccessManager}. */
export function isAccessManager(value: unknown): value is AccessManager {
  return (
    typeof value === 'object' &&
    value !== null &&
    (value as Record<symbol, unknown>)[MANAGER] === true
  )
}

/** Whether `value` holds a current set. */
export function isPolicySource(value: unknown): value is PolicySource {
  return (
    typeof value === 'object' &&
    value !== null &&
    !isCompiledPolicySet(value) &&
    'current' in value &&
    isCompiledPolicySet((value as PolicySource).current)
  )
}

const EMPTY: readonly string[] = Object.freeze([])
const DEFAULT_DENY = 'default-deny'
const DEFAULT_DENY_IDS: readonly string[] = Object.freeze([DEFAULT_DENY])

/**
 * Whether the principal holds one of `wanted` (directly or by inheritance). Roles are compared
 * exactly, as ASCII identifiers: a non-string, a look-alike Unicode name or `__proto__` is simply
 * a role no rule names.
 */
function holdsRole(
  principal: Principal | null,
  wanted: readonly string[],
  closures: ReadonlyMap<string, ReadonlySet<string>>,
): boolean {
  if (principal === null) return false
  const roles: unknown = principal.roles
  if (!Array.isArray(roles)) return false
  for (const r of roles as unknown[]) {
    // Rule roles are validated ASCII identifiers, so exact equality is already confusable-safe.
    if (typeof r !== 'string') continue
    const closure = closures.get(r)
    for (const w of wanted) if (closure === undefined ? r === w : closure.has(w)) return true
  }
  return false
}

/** A rule matches: allow rules need `true`, deny rules fire unless `false` (fail closed). */
function fires(rule: CompiledRule, r: Tri): boolean {
  return rule.effect === 'allow' ? r === true : r !== false
}

/**
 * A denial. Its error is built on first read: constructing an `Error` captures a stack trace,
 * which would cost more than the whole evaluation, and callers that only ask `allowed` never
 * need it.
 */
class Denied implements PolicyAccessResult {
  readonly allowed = false
  readonly level = 'none'
  readonly decision: 'deny' | 'step-up'
  readonly matchedRules: readonly string[]
  readonly riskScore: number
  readonly explanation: string
  readonly shadowDenied: readonly string[] = EMPTY
  #error: AuthError | undefined

  constructor(
    decision: 'deny' | 'step-up',
    matchedRules: readonly string[],
    riskScore: number,
    explanation: string,
  ) {
    this.decision = decision
    this.matchedRules = matchedRules
    this.riskScore = riskScore
    this.explanation = explanation
  }

  get error(): AuthError {
    this.#error ??=
      this.decision === 'step-up'
        ? new AuthError(
            'ERR_AUTHZ_STEP_UP_REQUIRED',
            'A stronger authentication is required for this request',
            { reason: this.explanation },
          )
        : new AuthError('ERR_POLICY_DENIED', 'Access denied by policy', {
            reason: this.explanation,
          })
    return this.#error
  }

  toJSON(): Record<string, unknown> {
    return {
      allowed: false,
      decision: this.decision,
      level: this.level,
      matchedRules: this.matchedRules,
      riskScore: this.riskScore,
      explanation: this.explanation,
      shadowDenied: this.shadowDenied,
      error: { code: this.error.code, message: this.error.message },
    }
  }
}

/**
 * Creates an AccessManager over a policy set (compiled now, if given as data).
 * @throws {ConfigError} for an invalid set or options
 * @example
 * ```ts
 * const access = createAccessManager({
 *   policy: { roles: { viewer: { permissions: ['documents:read'] } } },
 * })
 * access.evaluate({ principal, action: 'documents:read' }).allowed // true for a viewer
 * ```
 */
export function createAccessManager(options: Readonly<AccessManagerOptions>): AccessManager {
  const v = new TypeValidator()
  v.object('options', options)
  v.knownKeys(options as unknown as Record<string, unknown>, [
    'policy',
    'signals',
    'shadow',
    'maxTrackedPrincipals',
    'now',
    'logger',
  ])
  const now =
    options.now === undefined ? systemClock : (v.function<Clock>('now', options.now) ?? systemClock)
  const logger = options.logger ?? silentLogger
  const shadowAll =
    options.shadow === undefined ? false : (v.boolean('shadow', options.shadow) ?? false)
  const signals: Record<string, RiskSignal> = { ...BUILTIN_RISK_SIGNALS }
  if (options.signals !== undefined) {
    const s = v.object('signals', options.signals)
    if (s !== undefined)
      for (const [name, fn] of Object.entries(s)) {
        const f = v.child('signals').function<RiskSignal>(name, fn)
        if (f !== undefined) signals[name] = f
      }
  }
  const maxTracked =
    options.maxTrackedPrincipals === undefined
      ? 10_000
      : (v.integer('maxTrackedPrincipals', options.maxTrackedPrincipals, { min: 1 }) ?? 10_000)
  v.assert((m) => logger.warn({}, `access manager: ${m}`))
  const source: PolicySource = isPolicySource(options.policy)
    ? options.policy
    : { current: compilePolicySet(options.policy) }
  const checkSignals = (set: CompiledPolicySet): void => {
    for (const name of set.risk?.weights.keys() ?? [])
      if (!Object.hasOwn(signals, name))
        logger.warn({}, `access manager: risk signal "${name}" is not defined; it never fires`)
  }
  checkSignals(source.current)
  return new Manager(source, signals, shadowAll, new RiskState(maxTracked), now, logger)
}

class Manager implements AccessManager {
  readonly [MANAGER] = true
  readonly #source: PolicySource
  readonly #signals: Readonly<Record<string, RiskSignal>>
  readonly shadow: boolean
  readonly #state: RiskState
  readonly #now: Clock
  readonly #logger: Logger

  constructor(
    source: PolicySource,
    signals: Readonly<Record<string, RiskSignal>>,
    shadow: boolean,
    state: RiskState,
    now: Clock,
    logger: Logger,
  ) {
    this.#source = source
    this.#signals = signals
    this.shadow = shadow
    this.#state = state
    this.#now = now
    this.#logger = logger
  }

  get policy(): CompiledPolicySet {
    return this.#source.current
  }

  noteFailure(principalId: string): void {
    this.#state.noteFailure(principalId, this.#now())
  }

  #context(request: AccessRequest, action: string, now: number): EvalContext {
    return {
      principal: request.principal,
      action,
      resourceType: request.resourceType,
      resource: request.resource,
      request: request.request,
      environment: request.environment,
      now,
      riskScore: 0,
    }
  }

  evaluate(request: AccessRequest): PolicyAccessResult {
    const set = this.#source.current
    const action = typeof request.action === 'string' ? request.action : ''
    const plan = set.plan(action)
    if (plan.simple && !this.shadow) return this.#simple(set, plan, request)
    const now = this.#now()
    const ctx = this.#context(request, action, now)
    const p = request.principal
    const tracked = plan.risky && p !== null && typeof p.id === 'string'
    if (tracked) ctx.riskScore = this.#risk(set, ctx, p, undefined)
    let decided: CompiledRule | undefined
    for (const rule of plan.rules) {
      if (rule.resourceType !== null && rule.resourceType !== ctx.resourceType) continue
      if (rule.roles !== null && !holdsRole(p, rule.roles, set.roles)) continue
      if (!fires(rule, rule.condition === null ? true : rule.condition.test(ctx))) continue
      decided = rule
      break
    }
    const result = this.#result(set, plan, ctx, decided)
    // Every outcome feeds the history (new IPs, recent failures), not only risky actions'.
    if (set.risk !== undefined && p !== null && typeof p.id === 'string')
      this.#state.settle(p.id, request.request?.ip, result.allowed, now)
    if (result.shadowDenied.length > 0)
      this.#logger.warn(
        { action, principal: p?.id, rules: result.shadowDenied },
        'policy: shadow rules would deny',
      )
    return result
  }

  /** Roles and resource types only: no clock, no context, shared results. */
  #simple(set: CompiledPolicySet, plan: ActionPlan, request: AccessRequest): PolicyAccessResult {
    const p = request.principal
    for (const rule of plan.rules) {
      if (rule.resourceType !== null && rule.resourceType !== request.resourceType) continue
      if (rule.roles !== null && !holdsRole(p, rule.roles, set.roles)) continue
      return this.#result(set, plan, NO_CONTEXT, rule)
    }
    return this.#result(set, plan, NO_CONTEXT, undefined)
  }

  #risk(
    set: CompiledPolicySet,
    ctx: EvalContext,
    p: Principal,
    detail: Record<string, number> | undefined,
  ): number {
    const settings = set.risk
    if (settings === undefined) return 0
    const ip = ctx.request?.ip
    const history =
      detail === undefined
        ? this.#state.touch(p.id, ctx.now)
        : (this.#state.peek(p.id) ?? EMPTY_HISTORY)
    const signalContext: RiskSignalContext = {
      principal: p,
      ip,
      now: ctx.now,
      action: ctx.action,
      history,
      settings,
      context: ctx,
    }
    return assessRisk(signalContext, this.#signals, detail)
  }

  #result(
    set: CompiledPolicySet,
    plan: ActionPlan,
    ctx: EvalContext,
    decided: CompiledRule | undefined,
  ): PolicyAccessResult {
    const score = ctx.riskScore
    let out: PolicyAccessResult
    if (decided === undefined || decided.effect === 'deny') {
      const key = decided ?? null
      const shared = score === 0 ? (plan.shared.get(key) as Denied | undefined) : undefined
      if (shared !== undefined) out = shared
      else {
        out = new Denied(
          'deny',
          decided === undefined ? DEFAULT_DENY_IDS : decided.ids,
          score,
          decided === undefined ? plan.defaultDeny : decided.deniedBy,
        )
        // Frozen and shared; its lazily built error lives in a private field, which freezing allows.
        if (score === 0) plan.shared.set(key, Object.freeze(out))
      }
    } else {
      out = this.#riskGate(set, plan, ctx, decided)
    }
    if (out.allowed && plan.shadow.length > 0) {
      const would = this.#shadowRules(set, plan, ctx)
      if (would.length > 0) out = { ...out, shadowDenied: would }
    }
    if (!out.allowed && this.shadow) {
      return {
        allowed: true,
        decision: 'allow',
        level: plan.level,
        matchedRules: out.matchedRules,
        riskScore: score,
        explanation: `shadow mode: would deny: ${out.explanation}`,
        shadowDenied: out.matchedRules,
      }
    }
    return out
  }

  #riskGate(
    set: CompiledPolicySet,
    plan: ActionPlan,
    ctx: EvalContext,
    decided: CompiledRule,
  ): PolicyAccessResult {
    const score = ctx.riskScore
    const risk = set.risk
    if (risk !== undefined && plan.risky) {
      if (score >= risk.denyAt) {
        const explanation = `allowed by rule "${decided.id}" but risk score ${score} >= ${risk.denyAt}`
        return new Denied('deny', [decided.id, 'risk:deny'], score, explanation)
      }
      if (score >= risk.stepUpAt && risk.stepUpSatisfiedBy.test(ctx) !== true) {
        const explanation = `allowed by rule "${decided.id}" after step-up: risk score ${score} >= ${risk.stepUpAt}`
        return new Denied('step-up', [decided.id, 'risk:step-up'], score, explanation)
      }
    }
    if (score === 0) {
      // The common case has no per-request data: share one frozen result per rule and action.
      const shared = plan.shared.get(decided) as PolicyAccessResult | undefined
      if (shared !== undefined) return shared
    }
    const result: PolicyAccessResult = {
      allowed: true,
      decision: 'allow',
      level: plan.level,
      matchedRules: decided.ids,
      riskScore: score,
      explanation: decided.allowedBy,
      shadowDenied: EMPTY,
    }
    if (score === 0) plan.shared.set(decided, Object.freeze(result))
    return result
  }

  #shadowRules(set: CompiledPolicySet, plan: ActionPlan, ctx: EvalContext): string[] {
    const out: string[] = []
    for (const rule of plan.shadow) {
      if (rule.effect !== 'deny') continue
      if (rule.resourceType !== null && rule.resourceType !== ctx.resourceType) continue
      if (rule.roles !== null && !holdsRole(ctx.principal, rule.roles, set.roles)) continue
      if (fires(rule, rule.condition === null ? true : rule.condition.test(ctx))) out.push(rule.id)
    }
    return out
  }

  explain(request: AccessRequest): PolicyExplanation {
    const set = this.#source.current
    const action = typeof request.action === 'string' ? request.action : ''
    const plan = set.plan(action)
    const ctx = this.#context(request, action, this.#now())
    const p = request.principal
    const signals: Record<string, number> = {}
    if (plan.risky && p !== null && typeof p.id === 'string')
      ctx.riskScore = this.#risk(set, ctx, p, signals)
    const rules: RuleExplanation[] = []
    let decided: CompiledRule | undefined
    for (const rule of [...plan.rules, ...plan.shadow]) {
      const base = {
        id: rule.id,
        effect: rule.effect,
        priority: rule.priority,
        shadow: rule.shadow,
      }
      if (rule.resourceType !== null && rule.resourceType !== ctx.resourceType) {
        rules.push({
          ...base,
          outcome: 'resource',
          detail: [
            `applies to resource type ${rule.resourceType}, request has ${ctx.resourceType ?? 'none'}`,
          ],
        })
        continue
      }
      if (rule.roles !== null && !holdsRole(p, rule.roles, set.roles)) {
        rules.push({
          ...base,
          outcome: 'roles',
          detail: [`needs one of roles ${rule.roles.join(', ')}`],
        })
        continue
      }
      const detail: string[] = []
      const r = rule.condition === null ? true : rule.condition.explain(ctx, detail)
      const matched = fires(rule, r)
      rules.push({
        ...base,
        outcome: matched ? 'match' : r === undefined ? 'unknown' : 'no-match',
        detail,
      })
      if (matched && decided === undefined && !rule.shadow) decided = rule
    }
    const result = this.#result(set, plan, ctx, decided)
    return {
      allowed: result.allowed,
      decision: result.decision,
      level: result.level,
      matchedRules: result.matchedRules,
      riskScore: result.riskScore,
      explanation: result.explanation,
      shadowDenied: result.shadowDenied,
      ...(result.allowed ? {} : { error: result.error }),
      rules,
      signals,
    }
  }

  accessLevel(
    principal: Principal | null,
    permission: string,
    options: { readonly resourceType?: ResourceType; readonly resource?: unknown } = {},
  ): AccessLevel {
    for (let i = ACCESS_LEVELS.length - 1; i > 0; i--) {
      const level = ACCESS_LEVELS[i] as AccessLevel
      const r = this.explain({
        principal,
        action: `${permission}:${level}`,
        ...(options.resourceType === undefined ? {} : { resourceType: options.resourceType }),
        ...(options.resource === undefined ? {} : { resource: options.resource }),
      })
      if (r.allowed) return level
    }
    return 'none'
  }
}

// The context of simple plans: nothing reads it but the (zero) risk score.
const NO_CONTEXT: EvalContext = Object.freeze({
  principal: null,
  action: '',
  resourceType: undefined,
  resource: undefined,
  request: undefined,
  environment: undefined,
  now: 0,
  riskScore: 0,
}) as EvalContext

const EMPTY_HISTORY = Object.freeze({
  ips: EMPTY,
  windowStart: 0,
  count: 0,
  failures: Object.freeze([]) as readonly number[],
})
