import { expect } from 'chai'
import {
  createAccessManager,
  type ConditionInput,
  type PolicyRequestAttributes,
} from '@portcullis/core'
import { principal, TUESDAY_MORNING } from './helpers.js'

/** Whether an allow rule with `when` lets `p` do `x:y`, and whether the same deny rule fires. */
function check(
  when: ConditionInput,
  input: {
    p?: ReturnType<typeof principal>
    resource?: unknown
    request?: PolicyRequestAttributes
    environment?: Record<string, unknown>
    now?: number
  } = {},
): { allow: boolean; deny: boolean } {
  const run = (effect: 'allow' | 'deny') => {
    const rules = [{ id: 'r', effect, actions: ['x:y'], when }]
    // A deny needs an allow underneath to be visible.
    if (effect === 'deny')
      rules.push({ id: 'base', effect: 'allow', actions: ['x:y'], when: undefined as never })
    const m = createAccessManager({
      policy: {
        rules: rules.map((r) => (r.when === undefined ? { ...r, when: undefined } : r)) as never,
      },
      now: () => input.now ?? TUESDAY_MORNING,
    })
    return m.evaluate({
      principal:
        input.p ?? principal('alice', ['viewer'], { tenant: 'acme', level: 3, tags: ['a', 'b'] }),
      action: 'x:y',
      resource: input.resource,
      request: input.request,
      environment: input.environment,
    })
  }
  return { allow: run('allow').allowed, deny: !run('deny').allowed }
}

describe('policy conditions', () => {
  const cases: Array<[string, ConditionInput, boolean]> = [
    ['eq (string)', { attr: 'principal.attributes.tenant', op: 'eq', value: 'acme' }, true],
    ['eq (other)', { attr: 'principal.attributes.tenant', op: 'eq', value: 'evil' }, false],
    ['eq (number)', { attr: 'principal.attributes.level', op: 'eq', value: 3 }, true],
    [
      'eq never coerces "3" to 3',
      { attr: 'principal.attributes.level', op: 'eq', value: '3' },
      false,
    ],
    ['ne', { attr: 'principal.attributes.tenant', op: 'ne', value: 'evil' }, true],
    ['in', { attr: 'principal.attributes.tenant', op: 'in', value: ['acme', 'initech'] }, true],
    ['in (absent)', { attr: 'principal.attributes.tenant', op: 'in', value: ['initech'] }, false],
    ['nin', { attr: 'principal.attributes.tenant', op: 'nin', value: ['initech'] }, true],
    ['lt', { attr: 'principal.attributes.level', op: 'lt', value: 4 }, true],
    ['lt (equal)', { attr: 'principal.attributes.level', op: 'lt', value: 3 }, false],
    ['lte', { attr: 'principal.attributes.level', op: 'lte', value: 3 }, true],
    ['gt', { attr: 'principal.attributes.level', op: 'gt', value: 3 }, false],
    ['gte', { attr: 'principal.attributes.level', op: 'gte', value: 3 }, true],
    ['contains (array)', { attr: 'principal.attributes.tags', op: 'contains', value: 'b' }, true],
    [
      'contains (string)',
      { attr: 'principal.attributes.tenant', op: 'contains', value: 'cm' },
      true,
    ],
    ['contains (missing item)', { attr: 'principal.roles', op: 'contains', value: 'admin' }, false],
    ['startsWith', { attr: 'principal.attributes.tenant', op: 'startsWith', value: 'ac' }, true],
    ['endsWith', { attr: 'principal.attributes.tenant', op: 'endsWith', value: 'me' }, true],
    ['exists true', { attr: 'principal.attributes.tenant', op: 'exists', value: true }, true],
    ['exists false', { attr: 'principal.attributes.nope', op: 'exists', value: false }, true],
    [
      'all',
      {
        all: [
          { attr: 'principal.id', op: 'eq', value: 'alice' },
          { attr: 'principal.attributes.level', op: 'gt', value: 1 },
        ],
      },
      true,
    ],
    [
      'all (one false)',
      {
        all: [
          { attr: 'principal.id', op: 'eq', value: 'alice' },
          { attr: 'principal.attributes.level', op: 'gt', value: 9 },
        ],
      },
      false,
    ],
    [
      'any',
      {
        any: [
          { attr: 'principal.id', op: 'eq', value: 'bob' },
          { attr: 'principal.attributes.level', op: 'gt', value: 1 },
        ],
      },
      true,
    ],
    ['not', { not: { attr: 'principal.id', op: 'eq', value: 'bob' } }, true],
    ['request.action', { attr: 'request.action', op: 'eq', value: 'x:y' }, true],
    ['environment.day', { attr: 'environment.day', op: 'eq', value: 'tue' }, true],
    ['environment.hour', { attr: 'environment.hour', op: 'eq', value: 10 }, true],
  ]
  for (const [name, when, expected] of cases) {
    it(`${name} → ${expected}`, () => {
      const r = check(when)
      expect(r.allow, 'allow rule').to.equal(expected)
      expect(r.deny, 'deny rule').to.equal(expected)
    })
  }

  it('compares attributes with each other (ownership)', () => {
    const owner = { attr: 'resource.ownerId', op: 'eq', ref: 'principal.id' } as const
    expect(check(owner, { resource: { ownerId: 'alice' } }).allow).to.equal(true)
    expect(check(owner, { resource: { ownerId: 'bob' } }).allow).to.equal(false)
    // Two missing values are not equal: no resource, no owner.
    expect(check(owner, {}).allow).to.equal(false)
    expect(
      check(owner, { resource: { ownerId: 'alice' }, p: principal(undefined as never) }).allow,
    ).to.equal(false)
  })

  it('treats a missing attribute as false (so ne/nin hold)', () => {
    expect(check({ attr: 'principal.attributes.nope', op: 'eq', value: 'x' })).to.deep.equal({
      allow: false,
      deny: false,
    })
    expect(check({ attr: 'principal.attributes.nope', op: 'ne', value: 'x' })).to.deep.equal({
      allow: true,
      deny: true,
    })
    expect(check({ attr: 'principal.attributes.nope', op: 'lt', value: 1 })).to.deep.equal({
      allow: false,
      deny: false,
    })
  })

  it('treats a type-confused attribute as unknown: never allows, always denies', () => {
    const confused = principal('alice', [], {
      tenant: ['acme'],
      level: '3',
      nested: { toString: 'acme' },
    })
    for (const when of [
      { attr: 'principal.attributes.tenant', op: 'eq', value: 'acme' },
      { attr: 'principal.attributes.tenant', op: 'ne', value: 'acme' },
      { attr: 'principal.attributes.level', op: 'gt', value: 1 },
      { attr: 'principal.attributes.nested', op: 'eq', value: 'acme' },
      { attr: 'principal.attributes.tenant', op: 'startsWith', value: 'a' },
    ] as const) {
      expect(check(when, { p: confused }), JSON.stringify(when)).to.deep.equal({
        allow: false,
        deny: true,
      })
    }
  })

  it('uses Kleene logic: any(true, unknown) is true, all(true, unknown) is unknown', () => {
    const p = principal('alice', [], { tenant: ['acme'] })
    const unknownLeaf = { attr: 'principal.attributes.tenant', op: 'eq', value: 'acme' } as const
    const trueLeaf = { attr: 'principal.id', op: 'eq', value: 'alice' } as const
    expect(check({ any: [trueLeaf, unknownLeaf] }, { p })).to.deep.equal({
      allow: true,
      deny: true,
    })
    expect(check({ all: [trueLeaf, unknownLeaf] }, { p })).to.deep.equal({
      allow: false,
      deny: true,
    })
    expect(check({ not: unknownLeaf }, { p })).to.deep.equal({ allow: false, deny: true })
  })

  it('reads only own properties: __proto__, constructor and toString are absent', () => {
    const hostile = JSON.parse('{"__proto__": {"tenant": "acme"}}') as Record<string, unknown>
    const p = principal('alice', [], hostile)
    expect(
      check({ attr: 'principal.attributes.tenant', op: 'eq', value: 'acme' }, { p }).allow,
    ).to.equal(false)
    expect(
      check({ attr: 'resource.toString', op: 'exists', value: true }, { resource: {} }).allow,
    ).to.equal(false)
    const inherited = Object.create({ ownerId: 'alice' }) as object
    expect(
      check({ attr: 'resource.ownerId', op: 'eq', ref: 'principal.id' }, { resource: inherited })
        .allow,
    ).to.equal(false)
  })

  describe('cidr', () => {
    const office = {
      attr: 'request.ip',
      op: 'cidr',
      value: ['10.0.0.0/8', '2001:db8::/32'],
    } as const
    const at = (ip: string | undefined) =>
      check(office, { request: ip === undefined ? {} : { ip } })
    it('matches IPv4, IPv6 and IPv4-mapped IPv6 addresses', () => {
      expect(at('10.20.30.40').allow).to.equal(true)
      expect(at('11.0.0.1').allow).to.equal(false)
      expect(at('2001:db8::1').allow).to.equal(true)
      expect(at('2001:db9::1').allow).to.equal(false)
      expect(at('::ffff:10.1.1.1').allow).to.equal(true)
    })
    it('never matches a missing or malformed address, and a deny on it fails closed', () => {
      expect(at(undefined)).to.deep.equal({ allow: false, deny: false })
      expect(at('10.0.0.1, 8.8.8.8')).to.deep.equal({ allow: false, deny: true })
      expect(at('not-an-ip')).to.deep.equal({ allow: false, deny: true })
    })
  })

  describe('within (time windows)', () => {
    const hours = (value: object) =>
      ({ attr: 'environment.now', op: 'within', value }) as ConditionInput
    it('matches days and hours in UTC', () => {
      const office = hours({
        days: ['mon', 'tue', 'wed', 'thu', 'fri'],
        from: '09:00',
        to: '17:00',
      })
      expect(check(office).allow).to.equal(true)
      expect(check(office, { now: Date.UTC(2026, 10, 24, 17, 0) }).allow).to.equal(false)
      expect(check(office, { now: Date.UTC(2026, 10, 29, 10, 0) }).allow, 'sunday').to.equal(false)
    })
    it('handles windows across midnight, owned by the day they open', () => {
      const night = hours({ days: ['fri'], from: '22:00', to: '06:00' })
      expect(check(night, { now: Date.UTC(2026, 10, 27, 23, 0) }).allow, 'fri 23:00').to.equal(true)
      expect(check(night, { now: Date.UTC(2026, 10, 28, 5, 59) }).allow, 'sat 05:59').to.equal(true)
      expect(check(night, { now: Date.UTC(2026, 10, 28, 6, 0) }).allow, 'sat 06:00').to.equal(false)
      expect(check(night, { now: Date.UTC(2026, 10, 26, 23, 0) }).allow, 'thu 23:00').to.equal(
        false,
      )
    })
    it('uses an IANA time zone', () => {
      // 10:30 UTC is 19:30 in Tokyo.
      const tokyo = hours({ from: '09:00', to: '17:00', tz: 'Asia/Tokyo' })
      expect(check(tokyo).allow).to.equal(false)
      expect(check(tokyo, { now: Date.UTC(2026, 10, 24, 1, 0) }).allow).to.equal(true)
    })
  })

  it('reads request params, headers and custom environment attributes', () => {
    expect(
      check(
        { attr: 'request.params.id', op: 'eq', value: '7' },
        { request: { params: { id: '7' } } },
      ).allow,
    ).to.equal(true)
    expect(
      check(
        { attr: 'request.headers.X-Tenant', op: 'eq', value: 'acme' },
        { request: { headers: { 'x-tenant': 'acme' } } },
      ).allow,
    ).to.equal(true)
    expect(
      check(
        { attr: 'environment.region', op: 'eq', value: 'eu' },
        { environment: { region: 'eu' } },
      ).allow,
    ).to.equal(true)
  })
})
