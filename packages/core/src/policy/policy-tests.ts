/**
 * Table-driven policy tests: cases of principal + request → expected decision, run against a
 * compiled set, with a rule-coverage report (which rules no case exercises). `portcullis policy
 * test` is a shell over this; it works the same from a project's own test suite.
 *
 * Reachable from `@portcullis/core`.
 * @packageDocumentation
 */
import { ConfigError } from '../errors.js'
import { systemClock } from '../internal/clock.js'
import type { Principal } from '../types.js'
import { describeValue, TypeValidator } from '../validation/type-validator.js'
import { createAccessManager } from './access-manager.js'
import { compilePolicySet, type CompiledPolicySet } from './compile.js'
import type {
  AccessRequest,
  PolicyDecision,
  PolicyExplanation,
  PolicyRequestAttributes,
} from './model.js'

/** A principal as written in a test case or on the command line. */
export interface PrincipalInput {
  readonly id: string
  readonly method?: string
  readonly roles?: readonly string[]
  readonly scopes?: readonly string[]
  readonly attributes?: Readonly<Record<string, unknown>>
}

/** A request as written in a test case or on the command line. */
export interface AccessRequestInput extends PolicyRequestAttributes {
  /** The permission asked for. */
  readonly action: string
  readonly resourceType?: string
  readonly resource?: Readonly<Record<string, unknown>>
  readonly environment?: Readonly<Record<string, unknown>>
  /** The evaluation time: ISO 8601 or epoch ms. @default now */
  readonly now?: string | number
}

/** One table row. */
export interface PolicyTestCase {
  /** Shown in the report. @default `case <n>` */
  readonly name?: string
  /** `null` for an anonymous request. */
  readonly principal: PrincipalInput | null
  readonly request: AccessRequestInput
  /** The decision expected. */
  readonly expect: PolicyDecision
  /** When given, the deciding rule ids must equal these. */
  readonly rules?: readonly string[]
}

/** The outcome of one case. */
export interface PolicyTestResult {
  readonly name: string
  readonly passed: boolean
  readonly expected: PolicyDecision
  readonly actual: PolicyDecision
  readonly matchedRules: readonly string[]
  /** Why it failed, when it did. */
  readonly failure?: string
  readonly explanation: string
}

/** The report of {@link runPolicyTests}. */
export interface PolicyTestReport {
  readonly passed: number
  readonly failed: number
  readonly results: readonly PolicyTestResult[]
  /** Rule ids some case matched. */
  readonly covered: readonly string[]
  /** Rule ids no case matched: add cases for them, or remove them. */
  readonly uncovered: readonly string[]
}

const isRecord = (x: unknown): x is Record<string, unknown> =>
  typeof x === 'object' && x !== null && !Array.isArray(x)

const PRINCIPAL_KEYS = ['id', 'method', 'roles', 'scopes', 'attributes']
const REQUEST_KEYS = [
  'action',
  'resourceType',
  'resource',
  'environment',
  'now',
  'method',
  'path',
  'route',
  'ip',
  'params',
  'headers',
]

/**
 * Builds a principal from data (a test case, `--principal '{"id":"alice","roles":["viewer"]}'`).
 * @throws {ConfigError} naming the bad field
 */
export function principalFromInput(input: unknown, path = 'principal'): Principal | null {
  if (input === null) return null
  const o = isRecord(input) ? input : undefined
  if (o === undefined)
    throw new ConfigError(`${path}: must be an object or null, received ${describeValue(input)}`)
  const pv = new TypeValidator(path)
  pv.knownKeys(o, PRINCIPAL_KEYS)
  const id = pv.string('id', o.id)
  const list = (name: 'roles' | 'scopes'): readonly string[] =>
    o[name] === undefined ? [] : (pv.array(name, o[name], (iv, i, s) => iv.string(i, s)) ?? [])
  const roles = list('roles')
  const scopes = list('scopes')
  const method = o.method === undefined ? 'test' : (pv.string('method', o.method) ?? 'test')
  const attributes = o.attributes === undefined ? {} : (pv.object('attributes', o.attributes) ?? {})
  pv.assert()
  const unknown = pv.result().warnings
  if (unknown.length > 0) throw new ConfigError(unknown)
  return { id, method, roles, scopes, attributes } as unknown as Principal
}

/**
 * Builds an {@link AccessRequest} from data, and its evaluation time.
 * @throws {ConfigError} naming the bad field
 */
export function accessRequestFromInput(
  principal: Principal | null,
  input: unknown,
  path = 'request',
): { readonly request: AccessRequest; readonly now: number | undefined } {
  const o = isRecord(input) ? input : undefined
  if (o === undefined)
    throw new ConfigError(`${path}: must be an object, received ${describeValue(input)}`)
  const rv = new TypeValidator(path)
  rv.knownKeys(o, REQUEST_KEYS)
  const action = rv.string('action', o.action) ?? ''
  for (const k of ['resourceType', 'method', 'path', 'route', 'ip'] as const)
    if (o[k] !== undefined) rv.string(k, o[k])
  for (const k of ['resource', 'environment', 'params', 'headers'] as const)
    if (o[k] !== undefined) rv.object(k, o[k])
  let now: number | undefined
  if (o.now !== undefined) {
    now = typeof o.now === 'number' ? o.now : typeof o.now === 'string' ? Date.parse(o.now) : NaN
    if (!Number.isFinite(now))
      rv.fail('now', `must be an ISO 8601 time or epoch ms, received ${describeValue(o.now)}`)
  }
  rv.assert()
  const unknown = rv.result().warnings
  if (unknown.length > 0) throw new ConfigError(unknown)
  const attrs: Record<string, unknown> = {}
  for (const k of ['method', 'path', 'route', 'ip', 'params', 'headers'] as const)
    if (o[k] !== undefined) attrs[k] = o[k]
  const request: AccessRequest = {
    principal,
    action,
    ...(o.resourceType === undefined ? {} : { resourceType: o.resourceType as string }),
    ...(o.resource === undefined ? {} : { resource: o.resource }),
    ...(o.environment === undefined
      ? {}
      : { environment: o.environment as Record<string, unknown> }),
    request: attrs as PolicyRequestAttributes,
  }
  return { request, now }
}

/**
 * Explains one request against a set, at a given time (fresh risk state: no history).
 */
export function explainPolicy(
  set: CompiledPolicySet,
  request: AccessRequest,
  now: number = systemClock(),
): PolicyExplanation {
  return createAccessManager({ policy: set, now: () => now }).explain(request)
}

/**
 * Runs table-driven cases against a policy set. Each case gets a fresh manager (no risk history
 * leaks between cases). A case whose input is malformed fails with the reason.
 * @throws {ConfigError} when `cases` is not a list or the set is invalid
 */
export function runPolicyTests(
  policy: unknown,
  cases: unknown,
  options: { readonly file?: string; readonly now?: number } = {},
): PolicyTestReport {
  const set = compilePolicySet(policy, options.file === undefined ? {} : { file: options.file })
  if (!Array.isArray(cases))
    throw new ConfigError(`cases: must be a list, received ${describeValue(cases)}`)
  const covered = new Set<string>()
  const results: PolicyTestResult[] = []
  cases.forEach((raw: unknown, i) => {
    const c = (typeof raw === 'object' && raw !== null ? raw : {}) as Partial<PolicyTestCase>
    const name = typeof c.name === 'string' ? c.name : `case ${i + 1}`
    const expected = c.expect as PolicyDecision
    try {
      if (!['allow', 'deny', 'step-up'].includes(expected as string))
        throw new ConfigError(
          `cases[${i}].expect: must be allow, deny or step-up, received ${describeValue(c.expect)}`,
        )
      const principal = principalFromInput(c.principal, `cases[${i}].principal`)
      const { request, now } = accessRequestFromInput(principal, c.request, `cases[${i}].request`)
      const e = explainPolicy(set, request, now ?? options.now ?? systemClock())
      for (const r of e.rules) if (r.outcome === 'match') covered.add(r.id)
      let failure: string | undefined
      if (e.decision !== expected)
        failure = `expected ${expected}, got ${e.decision}: ${e.explanation}`
      else if (c.rules !== undefined && JSON.stringify(c.rules) !== JSON.stringify(e.matchedRules))
        failure = `expected rules ${JSON.stringify(c.rules)}, got ${JSON.stringify(e.matchedRules)}`
      results.push({
        name,
        passed: failure === undefined,
        expected,
        actual: e.decision,
        matchedRules: e.matchedRules,
        explanation: e.explanation,
        ...(failure === undefined ? {} : { failure }),
      })
    } catch (error) {
      results.push({
        name,
        passed: false,
        expected,
        actual: 'deny',
        matchedRules: [],
        explanation: '',
        failure: error instanceof Error ? error.message : String(error),
      })
    }
  })
  const ids = set.rules.map((r) => r.id)
  const passed = results.filter((r) => r.passed).length
  return {
    passed,
    failed: results.length - passed,
    results,
    covered: ids.filter((id) => covered.has(id)),
    uncovered: ids.filter((id) => !covered.has(id)),
  }
}
