import { expect } from 'chai'
import {
  compilePolicySet,
  isCompiledPolicySet,
  isConfigError,
  lintPolicySet,
  type PolicyDiagnostic,
} from '@portcullis/core'

function errorsOf(input: unknown): string[] {
  try {
    compilePolicySet(input, { file: 'policy.yaml' })
  } catch (error) {
    expect(isConfigError(error)).to.equal(true)
    return [...(error as { issues: string[] }).issues]
  }
  throw new Error('expected the set to be refused')
}

const kinds = (d: readonly PolicyDiagnostic[]) => d.map((x) => [x.kind, x.path])

describe('compilePolicySet', () => {
  it('compiles a valid set once and recognises it', () => {
    const set = compilePolicySet({ roles: { viewer: { permissions: ['documents:read'] } } })
    expect(isCompiledPolicySet(set)).to.equal(true)
    expect(compilePolicySet(set)).to.equal(set)
    expect(set.rules.map((r) => r.id)).to.deep.equal(['role:viewer'])
    expect(set.version).to.match(/^[0-9a-f]{16}$/)
  })

  it('refuses malformed input with file, path and reason', () => {
    expect(errorsOf(null)).to.deep.equal(['policy.yaml: policy: must be an object, received null'])
    expect(errorsOf({ rules: 'nope' })).to.deep.equal([
      'policy.yaml: rules: must be an array, received "nope"',
    ])
    expect(errorsOf({ rules: [{ id: 'a', effect: 'permit', actions: ['x:y'] }] })[0]).to.match(
      /^policy\.yaml: rules\[0\]\.effect: unknown effect "permit"/,
    )
    expect(errorsOf({ rules: [{ id: 'a', effect: 'allow', actions: [] }] })).to.deep.equal([
      'policy.yaml: rules[0].actions: must not be empty',
    ])
    expect(errorsOf({ rules: [{ id: 'a', effect: 'allow', actions: ['docs:re*d'] }] })[0]).to.match(
      /rules\[0\]\.actions\[0\]: must match/,
    )
  })

  it('refuses unknown keys, operators and attributes with a suggestion', () => {
    expect(
      errorsOf({ rules: [{ id: 'a', effect: 'allow', actions: ['x:y'], wehn: {} }] }),
    ).to.deep.equal(['policy.yaml: rules[0].wehn: unknown option "wehn"; did you mean "when"?'])
    const op = errorsOf({
      rules: [
        {
          id: 'a',
          effect: 'allow',
          actions: ['x:y'],
          when: { attr: 'principal.id', op: 'equals', value: 'x' },
        },
      ],
    })
    expect(op[0]).to.match(/^policy\.yaml: rules\[0\]\.when\.op: unknown operator "equals"/)
    const attr = errorsOf({
      rules: [
        {
          id: 'a',
          effect: 'allow',
          actions: ['x:y'],
          when: { all: [{ attr: 'principal.idd', op: 'eq', value: 'x' }] },
        },
      ],
    })
    expect(attr).to.deep.equal([
      'policy.yaml: rules[0].when.all[0].attr: unknown attribute "principal.idd"; did you mean "principal.id"?',
    ])
    expect(
      errorsOf({
        rules: [
          {
            id: 'a',
            effect: 'allow',
            actions: ['x:y'],
            when: { attr: 'user.id', op: 'eq', value: 1 },
          },
        ],
      })[0],
    ).to.match(/unknown attribute "user\.id"/)
  })

  it('refuses attribute paths into the prototype machinery', () => {
    for (const attr of [
      'principal.attributes.__proto__',
      'resource.constructor.name',
      'resource.prototype',
    ])
      expect(
        errorsOf({
          rules: [
            {
              id: 'a',
              effect: 'allow',
              actions: ['x:y'],
              when: { attr, op: 'exists', value: true },
            },
          ],
        })[0],
      ).to.match(/invalid attribute segment/)
  })

  it('refuses wrong literal types for an operator', () => {
    const bad = (op: string, value: unknown) =>
      errorsOf({
        rules: [
          { id: 'a', effect: 'allow', actions: ['x:y'], when: { attr: 'principal.id', op, value } },
        ],
      })[0]
    expect(bad('in', 'x')).to.match(/must be a list/)
    expect(bad('eq', { a: 1 })).to.match(/must be a string, number or boolean/)
    expect(bad('cidr', ['10.0.0.0/33'])).to.match(/invalid CIDR "10\.0\.0\.0\/33"/)
    expect(bad('within', { from: '25:00' })).to.match(/from: must match/)
    expect(bad('within', { tz: 'Mars/Olympus' })).to.match(/unknown time zone/)
    expect(
      errorsOf({
        rules: [
          {
            id: 'a',
            effect: 'allow',
            actions: ['x:y'],
            when: { attr: 'principal.id', op: 'eq', value: 'x', ref: 'resource.id' },
          },
        ],
      })[0],
    ).to.match(/exactly one of "value" or "ref"/)
  })

  it('refuses role cycles, naming the cycle', () => {
    const errors = errorsOf({
      roles: {
        a: { inherits: ['b'] },
        b: { inherits: ['c'] },
        c: { inherits: ['a'] },
        d: { inherits: ['d'] },
      },
    })
    expect(errors).to.include('policy.yaml: roles.a.inherits: role cycle a → b → c → a')
    expect(errors).to.include('policy.yaml: roles.d.inherits: role cycle d → d')
    expect(errors).to.have.length(2)
  })

  it('refuses inheriting an undefined role and non-ASCII role names', () => {
    expect(errorsOf({ roles: { a: { inherits: ['ghost'] } } })).to.deep.equal([
      'policy.yaml: roles.a.inherits[0]: undefined role "ghost"',
    ])
    // Cyrillic "а" in "аdmin".
    expect(errorsOf({ roles: { аdmin: { permissions: ['*'] } } })[0]).to.match(/invalid role name/)
    expect(
      errorsOf({ rules: [{ id: 'a', effect: 'allow', actions: ['*'], roles: ['ａdmin'] }] })[0],
    ).to.match(/roles\[0\]: must match/)
    expect(errorsOf(JSON.parse('{"roles": {"__proto__": {"permissions": ["*"]}}}'))[0]).to.match(
      /invalid role name "__proto__"/,
    )
  })

  it('refuses duplicate rule ids', () => {
    expect(
      errorsOf({
        rules: [
          { id: 'a', effect: 'allow', actions: ['x:y'] },
          { id: 'a', effect: 'deny', actions: ['x:z'] },
        ],
      }),
    ).to.deep.equal(['policy.yaml: rules[1].id: duplicate rule id "a" (first at rules[0])'])
  })

  it('orders rules by priority, deny before allow, then source order', () => {
    const set = compilePolicySet({
      rules: [
        { id: 'a1', effect: 'allow', actions: ['x:y'] },
        {
          id: 'd1',
          effect: 'deny',
          actions: ['x:y'],
          when: { attr: 'principal.id', op: 'eq', value: 'z' },
        },
        {
          id: 'a2',
          effect: 'allow',
          actions: ['x:y'],
          priority: 5,
          when: { attr: 'principal.id', op: 'eq', value: 'q' },
        },
      ],
    })
    expect(set.rules.map((r) => r.id)).to.deep.equal(['a2', 'd1', 'a1'])
  })
})

describe('lintPolicySet', () => {
  it('never throws and reports errors and warnings separately', () => {
    const r = lintPolicySet('not a set', { file: 'p.json' })
    expect(r.ok).to.equal(false)
    expect(r.errors[0]).to.include({ file: 'p.json', path: 'policy', kind: 'invalid' })
  })

  it('warns about undefined roles', () => {
    const r = lintPolicySet({
      roles: { viewer: {} },
      rules: [{ id: 'a', effect: 'allow', actions: ['x:y'], roles: ['editor'] }],
    })
    expect(r.ok).to.equal(true)
    expect(kinds(r.warnings)).to.deep.equal([['undefined-role', 'rules[0].roles']])
  })

  it('warns about undeclared custom attributes when attributes are declared', () => {
    const r = lintPolicySet({
      attributes: ['principal.attributes.tenant', 'resource.ownerId'],
      rules: [
        {
          id: 'a',
          effect: 'allow',
          actions: ['x:y'],
          when: {
            all: [
              { attr: 'principal.attributes.tenant', op: 'eq', value: 't' },
              { attr: 'resource.ownerId', op: 'exists', value: true },
            ],
          },
        },
        {
          id: 'b',
          effect: 'allow',
          actions: ['x:z'],
          when: { attr: 'principal.attributes.tennant', op: 'eq', value: 't' },
        },
      ],
    })
    expect(r.warnings.map((w) => w.message)).to.deep.equal([
      'rule "b" reads undeclared attribute "principal.attributes.tennant"',
    ])
  })

  it('warns about contradictory (unreachable) conditions', () => {
    const r = lintPolicySet({
      rules: [
        {
          id: 'a',
          effect: 'allow',
          actions: ['x:y'],
          when: {
            all: [
              { attr: 'principal.id', op: 'eq', value: 'u' },
              { attr: 'principal.id', op: 'eq', value: 'v' },
            ],
          },
        },
        {
          id: 'b',
          effect: 'allow',
          actions: ['x:y'],
          when: {
            all: [
              { attr: 'principal.id', op: 'eq', value: 'u' },
              { attr: 'principal.id', op: 'in', value: ['v'] },
            ],
          },
        },
      ],
    })
    expect(kinds(r.warnings)).to.deep.equal([
      ['unreachable-rule', 'rules[0].when'],
      ['unreachable-rule', 'rules[1].when'],
    ])
  })

  it('warns about rules shadowed by a broader deny, and rules that can never decide', () => {
    const r = lintPolicySet({
      roles: { viewer: {}, editor: { inherits: ['viewer'] } },
      rules: [
        { id: 'freeze', effect: 'deny', actions: ['documents:*'], roles: ['viewer'] },
        { id: 'edit', effect: 'allow', actions: ['documents:write'], roles: ['editor'] },
        { id: 'all', effect: 'allow', actions: ['*'], priority: 10 },
        {
          id: 'reports',
          effect: 'allow',
          actions: ['reports:read'],
          when: { attr: 'principal.id', op: 'eq', value: 'x' },
        },
      ],
    })
    const w = r.warnings.map((x) => [x.kind, x.path, x.message])
    expect(w).to.deep.include([
      'unreachable-rule',
      'rules[3]',
      'rule "reports" is unreachable: "all" (rules[2], priority 10) always decides first',
    ])
    expect(w.find((x) => x[1] === 'rules[1]')?.[0]).to.equal('unreachable-rule')
    const r2 = lintPolicySet({
      roles: { viewer: {}, editor: { inherits: ['viewer'] } },
      rules: [
        { id: 'freeze', effect: 'deny', actions: ['documents:*'], roles: ['viewer'] },
        { id: 'edit', effect: 'allow', actions: ['documents:write'], roles: ['editor'] },
      ],
    })
    expect(kinds(r2.warnings)).to.deep.equal([['shadowed-rule', 'rules[1]']])
    expect(r2.warnings[0]?.message).to.equal(
      'rule "edit" is shadowed by the broader deny "freeze" (rules[0]): it can never allow',
    )
  })

  it('warns when an allow outranks an overlapping deny', () => {
    const r = lintPolicySet({
      rules: [
        {
          id: 'no-delete',
          effect: 'deny',
          actions: ['documents:delete'],
          when: { attr: 'principal.attributes.contractor', op: 'eq', value: true },
        },
        { id: 'admins', effect: 'allow', actions: ['documents:*'], roles: ['admin'], priority: 10 },
      ],
    })
    expect(kinds(r.warnings)).to.deep.equal([['priority-conflict', 'rules[0]']])
  })
})
