/**
 * Compiles policy conditions into closures over an evaluation context. Conditions use three-valued
 * (Kleene) logic: a comparison with a missing attribute is false, one whose attribute has the wrong
 * type (an array or object where a string belongs) is *unknown*; an unknown rule never allows but
 * always denies, so hostile or type-confused input fails closed.
 * @internal
 */
import { IpMatcher, parseCidr, type Cidr } from '../internal/ip.js'
import type { Principal } from '../types.js'
import { describeValue, suggest, type TypeValidator } from '../validation/type-validator.js'
import {
  CONDITION_OPERATORS,
  type ConditionInput,
  type ConditionOperator,
  type PolicyRequestAttributes,
  type TimeWindowInput,
} from './model.js'

/** `true`, `false`, or unknown (`undefined`). */
export type Tri = boolean | undefined

/** What a compiled condition reads. One is built per evaluation. */
export interface EvalContext {
  readonly principal: Principal | null
  readonly action: string
  readonly resourceType: string | undefined
  readonly resource: unknown
  readonly request: PolicyRequestAttributes | undefined
  readonly environment: Readonly<Record<string, unknown>> | undefined
  readonly now: number
  riskScore: number
}

/** Reads one attribute from the context; `undefined` when absent. */
export type AttributeGetter = (ctx: EvalContext) => unknown

/** A compiled condition. */
export interface CondNode {
  readonly test: (ctx: EvalContext) => Tri
  /** Appends a readable line per comparison, with the values seen. */
  readonly explain: (ctx: EvalContext, out: string[]) => Tri
  /** Attributes read (for lint). */
  readonly attrs: readonly string[]
  /** Leaf comparisons with literal values, when this node is an `all` of them (for lint). */
  readonly literals: readonly { attr: string; op: ConditionOperator; value: unknown }[]
}

const SEGMENT = /^[A-Za-z_$][A-Za-z0-9_$-]{0,63}$/
// Never walk into the prototype machinery, whatever a policy or a request says.
const FORBIDDEN = new Set(['__proto__', 'prototype', 'constructor'])
const MAX_DEPTH = 8

/** Own-property read: inherited members (`constructor`, `toString`, `__proto__`) are absent. */
export function ownGet(obj: unknown, key: string): unknown {
  if (typeof obj !== 'object' || obj === null) return undefined
  return Object.hasOwn(obj, key) ? (obj as Record<string, unknown>)[key] : undefined
}

function walk(base: AttributeGetter, rest: readonly string[]): AttributeGetter {
  if (rest.length === 0) return base
  if (rest.length === 1) {
    const k = rest[0] as string
    return (ctx) => ownGet(base(ctx), k)
  }
  return (ctx) => {
    let v = base(ctx)
    for (const k of rest) {
      v = ownGet(v, k)
      if (v === undefined) return undefined
    }
    return v
  }
}

const stringList = (v: unknown): unknown => (Array.isArray(v) ? v : undefined)

const DAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'] as const

/** The fixed attributes; `*` marks an open namespace. */
export const KNOWN_ATTRIBUTES: readonly string[] = Object.freeze([
  'principal.id',
  'principal.method',
  'principal.roles',
  'principal.scopes',
  'principal.tokenId',
  'principal.attributes.*',
  'resource.type',
  'resource.*',
  'request.method',
  'request.path',
  'request.route',
  'request.ip',
  'request.action',
  'request.params.*',
  'request.headers.*',
  'environment.now',
  'environment.hour',
  'environment.day',
  'environment.riskScore',
  'environment.*',
])

/**
 * Compiles an attribute path into a getter, or records why it is invalid.
 * @internal
 */
export function compileAttribute(
  v: TypeValidator,
  field: string | number,
  path: unknown,
): AttributeGetter | undefined {
  if (typeof path !== 'string')
    return v.fail(field, `must be a string, received ${describeValue(path)}`)
  const parts = path.split('.')
  if (parts.length > MAX_DEPTH || parts.length < 2)
    return v.fail(
      field,
      `unknown attribute ${describeValue(path)}: expected <root>.<name>, at most ${MAX_DEPTH} segments`,
    )
  for (const p of parts) {
    if (!SEGMENT.test(p) || FORBIDDEN.has(p))
      return v.fail(
        field,
        `invalid attribute segment ${describeValue(p)} in ${describeValue(path)}`,
      )
  }
  const [root, first, ...rest] = parts as [string, string, ...string[]]
  const unknown = (): undefined => {
    const hint = suggest(
      `${root}.${first}`,
      KNOWN_ATTRIBUTES.filter((a) => !a.endsWith('*')),
    )
    return v.fail(
      field,
      `unknown attribute ${describeValue(path)}` +
        (hint === undefined ? '' : `; did you mean ${JSON.stringify(hint)}?`),
    )
  }
  switch (root) {
    case 'principal': {
      if (first === 'attributes')
        return rest.length === 0 ? unknown() : walk((c) => c.principal?.attributes, rest)
      if (rest.length > 0) return unknown()
      switch (first) {
        case 'id':
          return (c) => c.principal?.id
        case 'method':
          return (c) => c.principal?.method
        case 'tokenId':
          return (c) => c.principal?.tokenId
        case 'roles':
          return (c) => stringList(c.principal?.roles)
        case 'scopes':
          return (c) => stringList(c.principal?.scopes)
        default:
          return unknown()
      }
    }
    case 'resource':
      if (first === 'type' && rest.length === 0) return (c) => c.resourceType
      return walk((c) => c.resource, [first, ...rest])
    case 'request': {
      if (first === 'params') {
        if (rest.length !== 1) return unknown()
        return walk((c) => c.request?.params, rest)
      }
      if (first === 'headers') {
        if (rest.length !== 1) return unknown()
        const name = (rest[0] as string).toLowerCase()
        return (c) => {
          const r = c.request as
            (PolicyRequestAttributes & { header?: (n: string) => string | undefined }) | undefined
          if (r?.headers !== undefined) return ownGet(r.headers, name)
          return typeof r?.header === 'function' ? r.header(name) : undefined
        }
      }
      if (rest.length > 0) return unknown()
      switch (first) {
        case 'method':
        case 'path':
        case 'route':
        case 'ip':
          return (c) => c.request?.[first]
        case 'action':
          return (c) => c.action
        default:
          return unknown()
      }
    }
    case 'environment':
      if (rest.length === 0) {
        switch (first) {
          case 'now':
            return (c) => c.now
          case 'hour':
            return (c) => new Date(c.now).getUTCHours()
          case 'day':
            return (c) => DAYS[new Date(c.now).getUTCDay()]
          case 'riskScore':
            return (c) => c.riskScore
        }
      }
      return walk((c) => c.environment, [first, ...rest])
    default:
      return unknown()
  }
}

type Primitive = string | number | boolean

const isPrimitive = (x: unknown): x is Primitive =>
  typeof x === 'string' || (typeof x === 'number' && Number.isFinite(x)) || typeof x === 'boolean'

function show(x: unknown): string {
  if (x === undefined) return 'missing'
  if (Array.isArray(x)) return `[${x.slice(0, 5).map(show).join(', ')}${x.length > 5 ? ', …' : ''}]`
  if (typeof x === 'string') return JSON.stringify(x.length > 40 ? `${x.slice(0, 40)}…` : x)
  return describeValue(x)
}

/** Compiled time window: returns whether `now` (epoch ms) falls in it. */
export type WindowTest = (now: number) => boolean

const TIME = /^([01]\d|2[0-4]):([0-5]\d)$/

/**
 * Compiles a {@link TimeWindowInput}. UTC reads the date directly; other zones use one cached
 * `Intl.DateTimeFormat` per window.
 * @internal
 */
export function compileTimeWindow(
  v: TypeValidator,
  field: string,
  input: unknown,
): WindowTest | undefined {
  const w = v.object(field, input) as TimeWindowInput | undefined
  if (w === undefined) return undefined
  const wv = v.child(field)
  wv.knownKeys(w as Record<string, unknown>, ['days', 'from', 'to', 'tz'])
  const minutes = (name: 'from' | 'to', d: string): number | undefined => {
    const s = wv.string(name, w[name] ?? d, { pattern: TIME })
    if (s === undefined) return undefined
    const m = TIME.exec(s) as RegExpExecArray
    const total = Number(m[1]) * 60 + Number(m[2])
    return total > 1440 ? wv.fail(name, 'must be at most 24:00') : total
  }
  const from = minutes('from', '00:00')
  const to = minutes('to', '24:00')
  const days =
    w.days === undefined
      ? undefined
      : wv.array('days', w.days, (dv, i, d) => dv.oneOf(i, d, DAYS.slice(1).concat('sun'), 'day'))
  const tz = wv.string('tz', w.tz ?? 'UTC') ?? 'UTC'
  let fmt: Intl.DateTimeFormat | undefined
  if (tz !== 'UTC') {
    try {
      fmt = new Intl.DateTimeFormat('en-US', {
        timeZone: tz,
        hourCycle: 'h23',
        weekday: 'short',
        hour: '2-digit',
        minute: '2-digit',
      })
    } catch {
      wv.fail('tz', `unknown time zone ${describeValue(tz)}`)
    }
  }
  if (from === undefined || to === undefined || (w.days !== undefined && days === undefined))
    return undefined
  const dayMask = days === undefined ? 0x7f : days.reduce((m, d) => m | (1 << DAYS.indexOf(d)), 0)
  const local = (now: number): [number, number] => {
    if (fmt === undefined) {
      const d = new Date(now)
      return [d.getUTCDay(), d.getUTCHours() * 60 + d.getUTCMinutes()]
    }
    let day = 0
    let hour = 0
    let minute = 0
    for (const p of fmt.formatToParts(now)) {
      if (p.type === 'weekday') day = DAYS.indexOf(p.value.toLowerCase().slice(0, 3) as never)
      else if (p.type === 'hour') hour = Number(p.value)
      else if (p.type === 'minute') minute = Number(p.value)
    }
    return [day, hour * 60 + minute]
  }
  return (now) => {
    const [day, min] = local(now)
    if (from <= to) return (dayMask & (1 << day)) !== 0 && min >= from && min < to
    // Spans midnight: the part after midnight belongs to the window opened the day before.
    if (min >= from) return (dayMask & (1 << day)) !== 0
    if (min < to) return (dayMask & (1 << ((day + 6) % 7))) !== 0
    return false
  }
}

function compileCidrs(v: TypeValidator, field: string, value: unknown): IpMatcher | undefined {
  const list = typeof value === 'string' ? [value] : value
  const cidrs: Cidr[] = []
  const ok = v.array(
    field,
    list,
    (cv, i, c) => {
      if (typeof c !== 'string')
        return cv.fail(i, `must be a CIDR string, received ${describeValue(c)}`)
      const cidr = parseCidr(c)
      if (cidr === undefined) return cv.fail(i, `invalid CIDR ${describeValue(c)}`)
      cidrs.push(cidr)
      return c
    },
    { nonEmpty: true },
  )
  return ok === undefined ? undefined : new IpMatcher(cidrs)
}

function ipIn(matcher: IpMatcher, ip: unknown): Tri {
  if (missing(ip)) return false
  if (typeof ip !== 'string') return undefined
  return matcher.has(ip)
}

type Compare = (a: unknown, b: unknown) => Tri

// A missing attribute (or `null`) makes a comparison false, so `ne`/`nin` hold for it; a present
// value of the wrong type (an array where a string belongs, an object) makes it unknown.
const missing = (x: unknown): boolean => x === undefined || x === null

const cmp =
  (f: (a: number | string, b: number | string) => boolean): Compare =>
  (a, b) => {
    if (missing(a) || missing(b)) return false
    return (typeof a === 'number' &&
      typeof b === 'number' &&
      Number.isFinite(a) &&
      Number.isFinite(b)) ||
      (typeof a === 'string' && typeof b === 'string')
      ? f(a, b)
      : undefined
  }

const eq: Compare = (a, b) => {
  if (missing(a) || missing(b)) return false
  return isPrimitive(a) && isPrimitive(b) ? a === b : undefined
}
const inList: Compare = (a, b) => {
  if (missing(a)) return false
  return isPrimitive(a) && Array.isArray(b) ? (b as unknown[]).includes(a) : undefined
}
const not = (t: Tri): Tri => (t === undefined ? undefined : !t)
const strings =
  (f: (a: string, b: string) => boolean): Compare =>
  (a, b) => {
    if (missing(a) || missing(b)) return false
    return typeof a === 'string' && typeof b === 'string' ? f(a, b) : undefined
  }

const COMPARES: Partial<Record<ConditionOperator, Compare>> = {
  eq,
  ne: (a, b) => not(eq(a, b)),
  in: inList,
  nin: (a, b) => not(inList(a, b)),
  lt: cmp((a, b) => a < b),
  lte: cmp((a, b) => a <= b),
  gt: cmp((a, b) => a > b),
  gte: cmp((a, b) => a >= b),
  contains: (a, b) => {
    if (missing(a) || missing(b)) return false
    if (Array.isArray(a)) return isPrimitive(b) ? a.includes(b) : undefined
    return typeof a === 'string' && typeof b === 'string' ? a.includes(b) : undefined
  },
  startsWith: strings((a, b) => a.startsWith(b)),
  endsWith: strings((a, b) => a.endsWith(b)),
}

const LITERAL_LIST_OPS = new Set<ConditionOperator>(['in', 'nin'])

function literalOk(op: ConditionOperator, value: unknown): string | undefined {
  if (LITERAL_LIST_OPS.has(op))
    return Array.isArray(value) && value.every(isPrimitive)
      ? undefined
      : 'must be a list of strings, numbers or booleans'
  if (op === 'exists') return typeof value === 'boolean' ? undefined : 'must be true or false'
  if (op === 'lt' || op === 'lte' || op === 'gt' || op === 'gte')
    return typeof value === 'number' || typeof value === 'string'
      ? undefined
      : 'must be a number or a string'
  if (op === 'startsWith' || op === 'endsWith')
    return typeof value === 'string' ? undefined : 'must be a string'
  return isPrimitive(value) ? undefined : 'must be a string, number or boolean'
}

/**
 * Compiles a condition, recording issues on `v` at `field`.
 * @internal
 */
export function compileCondition(
  v: TypeValidator,
  field: string | number,
  input: unknown,
  depth = 0,
): CondNode | undefined {
  const o = v.object(field, input)
  if (o === undefined) return undefined
  const cv = v.child(field)
  if (depth > 16) return v.fail(field, 'conditions nest deeper than 16 levels')
  const keys = Object.keys(o)
  if (Object.hasOwn(o, 'all') || Object.hasOwn(o, 'any')) {
    const kind = Object.hasOwn(o, 'all') ? 'all' : 'any'
    if (keys.length !== 1)
      return v.fail(field, `"${kind}" must be the only key, received ${keys.join(', ')}`)
    const kids = cv.array(kind, o[kind], (kv, i, c) => compileCondition(kv, i, c, depth + 1), {
      nonEmpty: true,
    })
    if (kids === undefined) return undefined
    return combine(kind, kids)
  }
  if (Object.hasOwn(o, 'not')) {
    if (keys.length !== 1)
      return v.fail(field, `"not" must be the only key, received ${keys.join(', ')}`)
    const inner = compileCondition(cv, 'not', o.not, depth + 1)
    if (inner === undefined) return undefined
    return {
      test: (c) => not(inner.test(c)),
      explain: (c, out) => {
        out.push('not:')
        return not(inner.explain(c, out))
      },
      attrs: inner.attrs,
      literals: [],
    }
  }
  for (const k of keys) {
    if (!['attr', 'op', 'value', 'ref'].includes(k)) {
      const hint = suggest(k, ['attr', 'op', 'value', 'ref', 'all', 'any', 'not'])
      cv.fail(
        k,
        `unknown key ${JSON.stringify(k)}` +
          (hint === undefined ? '' : `; did you mean ${JSON.stringify(hint)}?`),
      )
    }
  }
  const attrPath = o.attr as string
  const get = compileAttribute(cv, 'attr', o.attr)
  const op = cv.oneOf('op', o.op, CONDITION_OPERATORS, 'operator')
  const hasValue = Object.hasOwn(o, 'value')
  const hasRef = Object.hasOwn(o, 'ref')
  if (op === undefined || get === undefined) return undefined
  if (hasValue === hasRef) return cv.fail('value', 'give exactly one of "value" or "ref"')
  const attrs = [attrPath]
  const text = `${attrPath} ${op}`
  if (op === 'cidr' || op === 'within') {
    if (hasRef) return cv.fail('ref', `"${op}" takes a literal value`)
    if (op === 'cidr') {
      const block = compileCidrs(cv, 'value', o.value)
      if (block === undefined) return undefined
      const shown = JSON.stringify(o.value)
      return leaf(
        (c) => ipIn(block, get(c)),
        get,
        () => `${text} ${shown}`,
        attrs,
        [],
      )
    }
    const win = compileTimeWindow(cv, 'value', o.value)
    if (win === undefined) return undefined
    const shown = JSON.stringify(o.value)
    const test = (c: EvalContext): Tri => {
      const t = get(c)
      if (missing(t)) return false
      return typeof t === 'number' && Number.isFinite(t) ? win(t) : undefined
    }
    return leaf(test, get, () => `${text} ${shown}`, attrs, [])
  }
  if (hasRef) {
    const refPath = o.ref as string
    const ref = compileAttribute(cv, 'ref', o.ref)
    if (ref === undefined) return undefined
    if (op === 'exists') return cv.fail('ref', '"exists" takes a literal true or false')
    const f = COMPARES[op] as Compare
    return leaf(
      (c) => f(get(c), ref(c)),
      get,
      (c) => `${text} ${refPath} (${show(ref(c))})`,
      [attrPath, refPath],
      [],
    )
  }
  const value = o.value
  const bad = literalOk(op, value)
  if (bad !== undefined)
    return cv.fail('value', `${bad} for "${op}", received ${describeValue(value)}`)
  if (op === 'exists') {
    const want = value as boolean
    return leaf(
      (c) => {
        const a = get(c)
        return (a !== undefined && a !== null) === want
      },
      get,
      () => `${text} ${String(want)}`,
      attrs,
      [],
    )
  }
  const f = COMPARES[op] as Compare
  const frozen = Array.isArray(value) ? Object.freeze([...value]) : value
  return leaf(
    (c) => f(get(c), frozen),
    get,
    () => `${text} ${show(frozen)}`,
    attrs,
    [{ attr: attrPath, op, value: frozen }],
  )
}

function leaf(
  test: (c: EvalContext) => Tri,
  get: AttributeGetter,
  text: (c: EvalContext) => string,
  attrs: readonly string[],
  literals: CondNode['literals'],
): CondNode {
  return {
    test,
    explain: (c, out) => {
      const r = test(c)
      out.push(`${text(c)}: ${show(get(c))} → ${r === undefined ? 'unknown' : String(r)}`)
      return r
    },
    attrs,
    literals,
  }
}

function combine(kind: 'all' | 'any', kids: readonly CondNode[]): CondNode {
  const stop = kind === 'any'
  const test = (c: EvalContext): Tri => {
    let unknown = false
    for (const k of kids) {
      const r = k.test(c)
      if (r === stop) return stop
      if (r === undefined) unknown = true
    }
    return unknown ? undefined : !stop
  }
  return {
    test,
    explain: (c, out) => {
      let unknown = false
      let result: Tri = !stop
      for (const k of kids) {
        const r = k.explain(c, out)
        if (r === stop) {
          result = stop
          break
        }
        if (r === undefined) unknown = true
      }
      return result === stop ? stop : unknown ? undefined : !stop
    },
    attrs: kids.flatMap((k) => k.attrs),
    literals: kind === 'all' ? kids.flatMap((k) => k.literals) : [],
  }
}

/** Whether a condition input is a plain object at all (for callers that branch on it). */
export function isConditionInput(x: unknown): x is ConditionInput {
  return typeof x === 'object' && x !== null && !Array.isArray(x)
}
