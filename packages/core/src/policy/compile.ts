/**
 * Compiles and lints policy sets. A set is validated once (every issue located by file and path,
 * unknown operators and attributes refused, role cycles refused) and turned into closures and
 * indexes, so that evaluating a request costs microseconds.
 *
 * Reachable from `@portcullis/core`.
 * @packageDocumentation
 */
import { ConfigError } from '../errors.js'
import type { AccessLevel } from '../types.js'
import { ACCESS_LEVELS } from '../types.js'
import { canonicalHash } from '../validation/type-serializer.js'
import { describeValue, TypeValidator } from '../validation/type-validator.js'
import {
  compileAttribute,
  compileCondition,
  compileTimeWindow,
  type AttributeGetter,
  type CondNode,
  type WindowTest,
} from './conditions.js'
import {
  POLICY_CATEGORIES,
  type PolicyCategory,
  type PolicyDiagnostic,
  type PolicyEffect,
  type PolicySetInput,
  type RiskInput,
} from './model.js'

/** A compiled rule. */
export interface CompiledRule {
  readonly id: string
  readonly effect: PolicyEffect
  readonly category: PolicyCategory
  readonly priority: number
  readonly shadow: boolean
  readonly description: string | undefined
  /** Permission patterns. */
  readonly actions: readonly string[]
  /** Roles required (any of), or `null` for everyone. */
  readonly roles: readonly string[] | null
  /** Resource type the rule is bound to (resource policies), or `null`. */
  readonly resourceType: string | null
  readonly condition: CondNode | null
  /** Where it was declared: `rules[2]`, `roles.editor`, `resources.document.rules[0]`. */
  readonly path: string
  /** `[id]`, shared by every result this rule decides. */
  readonly ids: readonly string[]
  /** `allowed by rule "<id>"`. */
  readonly allowedBy: string
  /** `denied by rule "<id>" (<path>)`. */
  readonly deniedBy: string
}

/** Compiled risk settings. */
export interface CompiledRisk {
  readonly weights: ReadonlyMap<string, number>
  readonly denyAt: number
  readonly stepUpAt: number
  readonly stepUpSatisfiedBy: CondNode
  readonly actions: readonly string[]
  readonly usualHours: WindowTest
  readonly ratePerMinute: number
  readonly failures: number
  readonly keyMaxAgeDays: number
  readonly keyCreated: AttributeGetter
}

/** What a compiled set answers for one action: its candidate rules, in evaluation order. */
export interface ActionPlan {
  readonly rules: readonly CompiledRule[]
  /** Shadow rules about the action. */
  readonly shadow: readonly CompiledRule[]
  /** Whether risk assessment applies to the action. */
  readonly risky: boolean
  /** The action's access level when allowed. */
  readonly level: AccessLevel
  /** No conditions, shadow rules or risk: decided by roles and resource type alone. */
  readonly simple: boolean
  /** The explanation of a default denial of this action. */
  readonly defaultDeny: string
  /** Shared results of decisions without risk, by deciding rule (`null`: default deny), filled on use. */
  readonly shared: Map<CompiledRule | null, unknown>
}

const COMPILED: unique symbol = Symbol.for('@portcullis/core/policy-set') as never

/** A validated, indexed, immutable policy set. Build with {@link compilePolicySet}. */
export interface CompiledPolicySet {
  readonly [COMPILED]: true
  /** Name from the input, or the file name. */
  readonly name: string
  /** Content hash of the input (canonical JSON, SHA-256), used to tell sets apart. */
  readonly version: string
  /** The file it came from, when known. */
  readonly file: string | undefined
  /** Every rule, in evaluation order (priority descending, deny before allow, then source order). */
  readonly rules: readonly CompiledRule[]
  /** Role → the roles it holds (itself and everything it inherits). */
  readonly roles: ReadonlyMap<string, ReadonlySet<string>>
  readonly risk: CompiledRisk | undefined
  /** Lint warnings found while compiling. */
  readonly warnings: readonly PolicyDiagnostic[]
  /** The rules about `action` (memoized per action). */
  plan(action: string): ActionPlan
}

/** Whether `value` is a compiled policy set. */
export function isCompiledPolicySet(value: unknown): value is CompiledPolicySet {
  return (
    typeof value === 'object' &&
    value !== null &&
    (value as Record<symbol, unknown>)[COMPILED] === true
  )
}

/** Options of {@link compilePolicySet} and {@link lintPolicySet}. */
export interface CompilePolicyOptions {
  /** The file the set came from, named in every issue. */
  readonly file?: string
}

/** The result of {@link lintPolicySet}. */
export interface PolicyLintResult {
  /** Whether the set compiles (no errors; warnings allowed). */
  readonly ok: boolean
  readonly errors: readonly PolicyDiagnostic[]
  readonly warnings: readonly PolicyDiagnostic[]
}

const ROLE = /^[A-Za-z][A-Za-z0-9_.:-]{0,63}$/
const RULE_ID = /^[A-Za-z0-9][A-Za-z0-9_.:@/-]{0,127}$/
const ACTION = /^(?:\*|[A-Za-z0-9_.-]+)(?::(?:\*|[A-Za-z0-9_.-]+))*$/
const RESOURCE_TYPE = /^[A-Za-z][A-Za-z0-9_.-]{0,63}$/
const TOP = ['version', 'name', 'roles', 'rules', 'resources', 'risk', 'attributes', 'levels']
const RULE_KEYS = [
  'id',
  'effect',
  'actions',
  'roles',
  'when',
  'category',
  'priority',
  'shadow',
  'description',
]
const RISK_KEYS = [
  'signals',
  'denyAt',
  'stepUpAt',
  'stepUpSatisfiedBy',
  'actions',
  'usualHours',
  'ratePerMinute',
  'failures',
  'keyMaxAgeDays',
  'keyCreatedAttribute',
]
const SIGNAL = /^[A-Za-z][A-Za-z0-9_]{0,63}$/

/** The default action → level map: the last segment of a permission. */
export const DEFAULT_ACTION_LEVELS: Readonly<Record<string, AccessLevel>> = Object.freeze({
  read: 'read',
  list: 'read',
  get: 'read',
  view: 'read',
  write: 'write',
  create: 'write',
  update: 'write',
  delete: 'write',
  admin: 'admin',
  manage: 'admin',
  '*': 'admin',
})

/**
 * Whether a permission pattern covers an action: `*` covers everything, a `*` segment covers one
 * segment, and a trailing `*` covers the rest (`documents:*` covers `documents:read` and
 * `documents:comments:read`).
 */
export function actionMatches(pattern: string, action: string): boolean {
  if (pattern === '*' || pattern === action) return true
  const p = pattern.split(':')
  const a = action.split(':')
  for (let i = 0; i < p.length; i++) {
    const seg = p[i] as string
    if (seg === '*' && i === p.length - 1) return a.length > i
    if (i >= a.length) return false
    if (seg !== '*' && seg !== a[i]) return false
  }
  return p.length === a.length
}

/** Whether pattern `p` covers every action pattern `q` covers. */
function patternCovers(p: string, q: string): boolean {
  if (p === '*' || p === q) return true
  const ps = p.split(':')
  const qs = q.split(':')
  for (let i = 0; i < ps.length; i++) {
    const seg = ps[i] as string
    if (seg === '*' && i === ps.length - 1) return qs.length > i
    if (i >= qs.length) return false
    if (seg !== '*' && seg !== qs[i]) return false
  }
  return ps.length === qs.length
}

/** A rule before its precomputed messages, with its declaration order (for sorting). */
interface RawRule extends Omit<CompiledRule, 'ids' | 'allowedBy' | 'deniedBy'> {
  readonly order: number
}

function compileRule(
  v: TypeValidator,
  index: number,
  raw: unknown,
  path: string,
  order: number,
  resource: { type: string; prefix: string } | null,
): RawRule | undefined {
  const r = v.object(index, raw)
  if (r === undefined) return undefined
  const rv = v.child(index)
  rv.knownKeys(r, RULE_KEYS)
  const id = rv.string('id', r.id, { pattern: RULE_ID })
  const effect = rv.oneOf('effect', r.effect, ['allow', 'deny'] as const, 'effect')
  const actions = rv.array(
    'actions',
    r.actions,
    (av, i, a) => {
      const s = av.string(i, a, { pattern: ACTION, maxLength: 200 })
      if (s === undefined) return undefined
      return resource === null ? s : `${resource.prefix}:${s}`
    },
    { nonEmpty: true },
  )
  const roles =
    r.roles === undefined
      ? null
      : rv.array('roles', r.roles, (qv, i, q) => qv.string(i, q, { pattern: ROLE }), {
          nonEmpty: true,
        })
  const condition = r.when === undefined ? null : compileCondition(rv, 'when', r.when)
  const priority = rv.integerOr('priority', r.priority, 0, { min: -1_000_000, max: 1_000_000 })
  const shadow = r.shadow === undefined ? false : rv.boolean('shadow', r.shadow)
  const description =
    r.description === undefined
      ? undefined
      : rv.string('description', r.description, { nonEmpty: false, maxLength: 1000 })
  const category =
    r.category === undefined
      ? condition === null && roles !== null
        ? 'rbac'
        : resource !== null
          ? 'ownership'
          : 'abac'
      : rv.oneOf('category', r.category, POLICY_CATEGORIES, 'category')
  if (
    id === undefined ||
    effect === undefined ||
    actions === undefined ||
    roles === undefined ||
    condition === undefined ||
    priority === undefined ||
    shadow === undefined ||
    category === undefined
  )
    return undefined
  return {
    id,
    effect,
    category,
    priority,
    shadow,
    description,
    actions: Object.freeze(actions),
    roles: roles === null ? null : Object.freeze(roles),
    resourceType: resource?.type ?? null,
    condition,
    path: `${path}[${index}]`,
    order,
  }
}

interface Draft {
  rules: RawRule[]
  closures: Map<string, ReadonlySet<string>>
  risk: CompiledRisk | undefined
  levels: Map<string, AccessLevel>
  declaredRoles: boolean
  attributes: readonly string[] | undefined
}

function compileDraft(
  input: unknown,
  v: TypeValidator,
  diags: PolicyDiagnostic[],
  file: string | undefined,
): Draft | undefined {
  const set = v.object('policy', input)
  if (set === undefined) return undefined
  v.knownKeys(set, TOP)
  if (set.version !== undefined && set.version !== 1)
    v.fail('version', `unsupported version ${describeValue(set.version)}; expected 1`)
  if (set.name !== undefined) v.string('name', set.name, { maxLength: 200 })
  const rules: RawRule[] = []
  let order = 0
  // Roles: names, inheritance (acyclic), permissions as allow rules.
  const parents = new Map<string, readonly string[]>()
  const rolesInput = set.roles === undefined ? {} : v.object('roles', set.roles)
  if (rolesInput !== undefined) {
    const rv = v.child('roles')
    for (const name of Object.keys(rolesInput)) {
      if (!ROLE.test(name)) {
        rv.fail(
          name,
          `invalid role name ${describeValue(name)}: roles are ASCII identifiers (letter first, then letters, digits, _ . : -)`,
        )
        continue
      }
      const role = rv.object(name, rolesInput[name])
      if (role === undefined) continue
      const one = rv.child(name)
      one.knownKeys(role, ['inherits', 'permissions', 'description'])
      const inherits =
        role.inherits === undefined
          ? []
          : (one.array('inherits', role.inherits, (iv, i, p) =>
              iv.string(i, p, { pattern: ROLE }),
            ) ?? [])
      parents.set(name, inherits)
      if (role.permissions !== undefined) {
        const perms = one.array('permissions', role.permissions, (pv, i, p) =>
          pv.string(i, p, { pattern: ACTION, maxLength: 200 }),
        )
        if (perms !== undefined && perms.length > 0)
          rules.push({
            id: `role:${name}`,
            effect: 'allow',
            category: 'rbac',
            priority: 0,
            shadow: false,
            description: typeof role.description === 'string' ? role.description : undefined,
            actions: Object.freeze(perms),
            roles: Object.freeze([name]),
            resourceType: null,
            condition: null,
            path: `roles.${name}.permissions`,
            order: order++,
          })
      }
    }
    for (const [name, list] of parents) {
      list.forEach((p, i) => {
        if (!parents.has(p))
          rv.child(name)
            .child('inherits')
            .fail(i, `undefined role ${JSON.stringify(p)}`)
      })
    }
  }
  const closures = new Map<string, ReadonlySet<string>>()
  const cycleAt = new Set<string>()
  const visit = (name: string, stack: string[]): Set<string> => {
    const done = closures.get(name)
    if (done !== undefined) return done as Set<string>
    if (stack.includes(name)) {
      const cycle = [...stack.slice(stack.indexOf(name)), name]
      const key = [...cycle].sort().join()
      if (!cycleAt.has(key)) {
        cycleAt.add(key)
        const msg = `role cycle ${cycle.join(' → ')}`
        v.child('roles').child(name).fail('inherits', msg)
        diags.push({
          severity: 'error',
          kind: 'role-cycle',
          ...(file === undefined ? {} : { file }),
          path: `roles.${name}.inherits`,
          message: msg,
        })
      }
      return new Set([name])
    }
    const out = new Set<string>([name])
    for (const p of parents.get(name) ?? [])
      if (parents.has(p)) for (const r of visit(p, [...stack, name])) out.add(r)
    closures.set(name, out)
    return out
  }
  for (const name of parents.keys()) visit(name, [])

  if (set.rules !== undefined) {
    v.array('rules', set.rules, (rv, i, r) => {
      const rule = compileRule(rv, i, r, 'rules', order++, null)
      if (rule !== undefined) rules.push(rule)
      return rule
    })
  }
  if (set.resources !== undefined) {
    const res = v.object('resources', set.resources)
    if (res !== undefined) {
      const resV = v.child('resources')
      for (const type of Object.keys(res)) {
        if (!RESOURCE_TYPE.test(type)) {
          resV.fail(type, `invalid resource type ${describeValue(type)}`)
          continue
        }
        const rp = resV.object(type, res[type])
        if (rp === undefined) continue
        const one = resV.child(type)
        one.knownKeys(rp, ['permission', 'rules'])
        const prefix =
          rp.permission === undefined
            ? type
            : one.string('permission', rp.permission, { pattern: ACTION })
        if (prefix === undefined) continue
        one.array('rules', rp.rules, (rv, i, r) => {
          const rule = compileRule(rv, i, r, `resources.${type}.rules`, order++, { type, prefix })
          if (rule !== undefined) rules.push(rule)
          return rule
        })
      }
    }
  }
  const levels = new Map<string, AccessLevel>(Object.entries(DEFAULT_ACTION_LEVELS))
  if (set.levels !== undefined) {
    const lv = v.object('levels', set.levels)
    if (lv !== undefined)
      for (const [name, level] of Object.entries(lv)) {
        const l = v.child('levels').oneOf(name, level, ACCESS_LEVELS, 'access level')
        if (l !== undefined) levels.set(name, l)
      }
  }
  let attributes: string[] | undefined
  if (set.attributes !== undefined) {
    attributes = v.array('attributes', set.attributes, (av, i, a) => {
      const s = av.string(i, a)
      return s !== undefined && compileAttribute(av, i, s) !== undefined ? s : undefined
    })
  }
  const risk = set.risk === undefined ? undefined : compileRisk(v, set.risk)
  return {
    rules,
    closures,
    risk,
    levels,
    declaredRoles: set.roles !== undefined,
    attributes,
  }
}

function compileRisk(v: TypeValidator, input: unknown): CompiledRisk | undefined {
  const r = v.object('risk', input) as RiskInput | undefined
  if (r === undefined) return undefined
  const rv = v.child('risk')
  rv.knownKeys(r as unknown as Record<string, unknown>, RISK_KEYS)
  const weights = new Map<string, number>()
  const s = rv.object('signals', r.signals)
  if (s !== undefined) {
    for (const [name, w] of Object.entries(s)) {
      if (!SIGNAL.test(name)) {
        rv.child('signals').fail(name, `invalid signal name ${describeValue(name)}`)
        continue
      }
      const weight = rv.child('signals').number(name, w, { min: 0, max: 100 })
      if (weight !== undefined) weights.set(name, weight)
    }
  }
  const score = (name: 'denyAt' | 'stepUpAt'): number =>
    r[name] === undefined ? 101 : (rv.number(name, r[name], { min: 0, max: 101 }) ?? 101)
  const satisfied = compileCondition(
    rv,
    'stepUpSatisfiedBy',
    r.stepUpSatisfiedBy ?? {
      attr: 'principal.attributes.claims.amr',
      op: 'contains',
      value: 'mfa',
    },
  )
  const actions =
    r.actions === undefined
      ? ['*']
      : rv.array('actions', r.actions, (av, i, a) => av.string(i, a, { pattern: ACTION }), {
          nonEmpty: true,
        })
  const usualHours = compileTimeWindow(
    rv,
    'usualHours',
    r.usualHours ?? { from: '07:00', to: '20:00' },
  )
  const num = (name: 'ratePerMinute' | 'failures' | 'keyMaxAgeDays', d: number): number =>
    r[name] === undefined ? d : (rv.number(name, r[name], { min: 1 }) ?? d)
  const keyCreated = compileAttribute(
    rv,
    'keyCreatedAttribute',
    r.keyCreatedAttribute ?? 'principal.attributes.keyCreatedAt',
  )
  if (
    satisfied === undefined ||
    actions === undefined ||
    usualHours === undefined ||
    keyCreated === undefined
  )
    return undefined
  return {
    weights,
    denyAt: score('denyAt'),
    stepUpAt: score('stepUpAt'),
    stepUpSatisfiedBy: satisfied,
    actions: Object.freeze(actions),
    usualHours,
    ratePerMinute: num('ratePerMinute', 120),
    failures: num('failures', 5),
    keyMaxAgeDays: num('keyMaxAgeDays', 90),
    keyCreated,
  }
}

function at(file: string | undefined): { file?: string } {
  return file === undefined ? {} : { file }
}

function rolesCover(
  closures: ReadonlyMap<string, ReadonlySet<string>>,
  outer: readonly string[] | null,
  inner: readonly string[] | null,
): boolean {
  if (outer === null) return true
  if (inner === null) return false
  return inner.every((r) => outer.some((o) => (closures.get(r) ?? new Set([r])).has(o)))
}

function rolesOverlap(a: readonly string[] | null, b: readonly string[] | null): boolean {
  return a === null || b === null || a.some((x) => b.includes(x))
}

function lint(draft: Draft, diags: PolicyDiagnostic[], file: string | undefined): void {
  const warn = (kind: PolicyDiagnostic['kind'], path: string, message: string): void => {
    diags.push({ severity: 'warning', kind, ...at(file), path, message })
  }
  const ordered = sortRules(draft.rules)
  for (const rule of ordered) {
    if (draft.declaredRoles && rule.roles !== null)
      for (const role of rule.roles)
        if (!draft.closures.has(role))
          warn(
            'undefined-role',
            `${rule.path}.roles`,
            `rule "${rule.id}" names undefined role "${role}"`,
          )
    if (draft.attributes !== undefined && rule.condition !== null) {
      for (const a of rule.condition.attrs) {
        const custom =
          a.startsWith('principal.attributes.') ||
          (a.startsWith('resource.') && a !== 'resource.type') ||
          (a.startsWith('environment.') &&
            ![
              'environment.now',
              'environment.hour',
              'environment.day',
              'environment.riskScore',
            ].includes(a))
        if (custom && !draft.attributes.some((d) => d === a || a.startsWith(`${d}.`)))
          warn(
            'unknown-attribute',
            `${rule.path}.when`,
            `rule "${rule.id}" reads undeclared attribute "${a}"`,
          )
      }
    }
    if (rule.condition !== null) {
      const contradiction = contradictory(rule.condition.literals)
      if (contradiction !== undefined)
        warn(
          'unreachable-rule',
          `${rule.path}.when`,
          `rule "${rule.id}" can never match: ${contradiction}`,
        )
    }
  }
  // Coverage by earlier unconditional rules, and allow rules outranking denies.
  for (let i = 0; i < ordered.length; i++) {
    const r = ordered[i] as RawRule
    if (r.shadow) continue
    for (let j = 0; j < i; j++) {
      const c = ordered[j] as RawRule
      if (c.shadow || c.condition !== null) continue
      if (c.resourceType !== null && c.resourceType !== r.resourceType) continue
      if (!r.actions.every((a) => c.actions.some((p) => patternCovers(p, a)))) continue
      if (!rolesCover(draft.closures, c.roles, r.roles)) continue
      if (c.effect === 'deny' && r.effect === 'allow')
        warn(
          'shadowed-rule',
          r.path,
          `rule "${r.id}" is shadowed by the broader deny "${c.id}" (${c.path}): it can never allow`,
        )
      else
        warn(
          'unreachable-rule',
          r.path,
          `rule "${r.id}" is unreachable: "${c.id}" (${c.path}, priority ${c.priority}) always decides first`,
        )
      break
    }
  }
  for (const d of ordered) {
    if (d.effect !== 'deny' || d.shadow) continue
    for (const a of ordered) {
      if (a.effect !== 'allow' || a.shadow || a.priority <= d.priority) continue
      if (a.resourceType !== null && d.resourceType !== null && a.resourceType !== d.resourceType)
        continue
      const overlap = a.actions.some((x) =>
        d.actions.some((y) => patternCovers(x, y) || patternCovers(y, x)),
      )
      if (overlap && rolesOverlap(a.roles, d.roles))
        warn(
          'priority-conflict',
          d.path,
          `deny "${d.id}" (priority ${d.priority}) is outranked by allow "${a.id}" (priority ${a.priority}): where both match, the allow wins`,
        )
    }
  }
}

function contradictory(literals: CondNode['literals']): string | undefined {
  const eqs = new Map<string, unknown>()
  for (const l of literals) {
    if (l.op === 'in' && Array.isArray(l.value) && l.value.length === 0) return `${l.attr} in []`
    if (l.op !== 'eq') continue
    if (eqs.has(l.attr) && eqs.get(l.attr) !== l.value)
      return `${l.attr} cannot equal both ${JSON.stringify(eqs.get(l.attr))} and ${JSON.stringify(l.value)}`
    eqs.set(l.attr, l.value)
  }
  for (const l of literals) {
    if (l.op === 'in' && eqs.has(l.attr) && !(l.value as unknown[]).includes(eqs.get(l.attr)))
      return `${l.attr} equals ${JSON.stringify(eqs.get(l.attr))}, which is not in ${JSON.stringify(l.value)}`
  }
  return undefined
}

function sortRules(rules: readonly RawRule[]): RawRule[] {
  return [...rules].sort(
    (a, b) =>
      b.priority - a.priority ||
      (a.effect === b.effect ? 0 : a.effect === 'deny' ? -1 : 1) ||
      a.order - b.order,
  )
}

function run(
  input: unknown,
  options: CompilePolicyOptions,
): { draft: Draft | undefined; diags: PolicyDiagnostic[]; v: TypeValidator } {
  const v = new TypeValidator()
  const diags: PolicyDiagnostic[] = []
  const draft = compileDraft(input, v, diags, options.file)
  const result = v.result()
  for (const issue of result.issues) {
    if (diags.some((d) => d.kind === 'role-cycle' && d.path === issue.path)) continue
    diags.push({
      severity: 'error',
      kind: issue.message.startsWith('unknown attribute')
        ? 'unknown-attribute'
        : issue.message.startsWith('unknown operator')
          ? 'unknown-operator'
          : 'invalid',
      ...at(options.file),
      path: issue.path,
      message: issue.message,
    })
  }
  // Unknown keys are errors in a policy: a misspelt `when` must never widen a rule silently.
  for (const w of result.warnings) {
    const colon = w.indexOf(': ')
    diags.push({
      severity: 'error',
      kind: 'invalid',
      ...at(options.file),
      path: w.slice(0, colon),
      message: w.slice(colon + 2),
    })
  }
  if (draft !== undefined) {
    const seen = new Map<string, string>()
    for (const r of draft.rules) {
      const first = seen.get(r.id)
      if (first !== undefined)
        diags.push({
          severity: 'error',
          kind: 'duplicate-id',
          ...at(options.file),
          path: `${r.path}.id`,
          message: `duplicate rule id "${r.id}" (first at ${first})`,
        })
      else seen.set(r.id, r.path)
    }
    if (!diags.some((d) => d.severity === 'error')) lint(draft, diags, options.file)
  }
  return { draft, diags, v }
}

/**
 * Checks a policy set without building it: every error and lint warning, each with file, path and
 * reason. Never throws.
 */
export function lintPolicySet(
  input: unknown,
  options: CompilePolicyOptions = {},
): PolicyLintResult {
  const { diags } = run(input, options)
  const errors = diags.filter((d) => d.severity === 'error')
  return {
    ok: errors.length === 0,
    errors,
    warnings: diags.filter((d) => d.severity === 'warning'),
  }
}

/** Renders a diagnostic as `file: path: message`. */
export function formatPolicyDiagnostic(d: PolicyDiagnostic): string {
  return `${d.file === undefined ? '' : `${d.file}: `}${d.path}: ${d.message}`
}

const PLAN_CACHE_MAX = 4096

/**
 * Validates and compiles a policy set (a {@link PolicySetInput} as parsed from JSON or YAML, or
 * written in TypeScript). Compiling an already compiled set returns it.
 * @throws {ConfigError} listing every error as `file: path: reason` (malformed input, unknown
 *   operators or attributes, undefined or cyclic role inheritance, duplicate rule ids)
 * @example
 * ```ts
 * const set = compilePolicySet({
 *   roles: { viewer: { permissions: ['documents:read'] }, editor: { inherits: ['viewer'], permissions: ['documents:write'] } },
 *   rules: [{ id: 'owner-delete', effect: 'allow', actions: ['documents:delete'],
 *             when: { attr: 'resource.ownerId', op: 'eq', ref: 'principal.id' } }],
 * }, { file: 'policy.yaml' })
 * ```
 */
export function compilePolicySet(
  input: PolicySetInput | CompiledPolicySet | unknown,
  options: CompilePolicyOptions = {},
): CompiledPolicySet {
  if (isCompiledPolicySet(input)) return input
  const { draft, diags } = run(input, options)
  const errors = diags.filter((d) => d.severity === 'error')
  if (errors.length > 0 || draft === undefined)
    throw new ConfigError(errors.map(formatPolicyDiagnostic))
  const rules: CompiledRule[] = sortRules(draft.rules).map((r) =>
    Object.freeze({
      id: r.id,
      effect: r.effect,
      category: r.category,
      priority: r.priority,
      shadow: r.shadow,
      description: r.description,
      actions: r.actions,
      roles: r.roles,
      resourceType: r.resourceType,
      condition: r.condition,
      path: r.path,
      ids: Object.freeze([r.id]),
      allowedBy: `allowed by rule "${r.id}"`,
      deniedBy: `denied by rule "${r.id}" (${r.path})`,
    }),
  )
  const risk = draft.risk
  const levels = draft.levels
  const plans = new Map<string, ActionPlan>()
  const plan = (action: string): ActionPlan => {
    const known = plans.get(action)
    if (known !== undefined) return known
    const about = ACTION.test(action)
      ? rules.filter((r) => r.actions.some((p) => actionMatches(p, action)))
      : []
    const last = action.slice(action.lastIndexOf(':') + 1)
    const result: ActionPlan = Object.freeze({
      rules: Object.freeze(about.filter((r) => !r.shadow)),
      shadow: Object.freeze(about.filter((r) => r.shadow)),
      risky: risk !== undefined && risk.actions.some((p) => actionMatches(p, action)),
      level: levels.get(last) ?? 'read',
      simple: risk === undefined && about.every((r) => !r.shadow && r.condition === null),
      defaultDeny: `no rule allows ${action} (default deny)`,
      shared: new Map(),
    })
    // Actions come from route declarations (few); a flood of odd ones must not grow memory.
    if (plans.size < PLAN_CACHE_MAX) plans.set(action, result)
    return result
  }
  const name =
    typeof (input as PolicySetInput).name === 'string'
      ? ((input as PolicySetInput).name as string)
      : (options.file ?? 'policy')
  return Object.freeze({
    [COMPILED]: true as const,
    name,
    version: canonicalHash(input).slice(0, 16),
    file: options.file,
    rules: Object.freeze(rules),
    roles: draft.closures,
    risk,
    warnings: Object.freeze(diags.filter((d) => d.severity === 'warning')),
    plan,
  })
}
