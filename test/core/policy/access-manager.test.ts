import { expect } from 'chai'
import fc from 'fast-check'
import { createAccessManager, type PolicySetInput } from '@portcullis/core'
import { createFakeClock } from '@portcullis/core/testing'
import { principal, TUESDAY_MORNING } from './helpers.js'

const BASE: PolicySetInput = {
  roles: {
    viewer: { permissions: ['documents:read'] },
    editor: { inherits: ['viewer'], permissions: ['documents:write', 'documents:create'] },
    admin: { inherits: ['editor'], permissions: ['documents:*'] },
  },
  rules: [
    {
      id: 'contractors-never-delete',
      effect: 'deny',
      actions: ['documents:delete'],
      when: { attr: 'principal.attributes.contractor', op: 'eq', value: true },
    },
  ],
  resources: {
    document: {
      permission: 'documents',
      rules: [
        {
          id: 'owner-manages',
          effect: 'allow',
          actions: ['update', 'delete'],
          when: { attr: 'resource.ownerId', op: 'eq', ref: 'principal.id' },
        },
      ],
    },
  },
}

describe('AccessManager', () => {
  const m = createAccessManager({ policy: BASE, now: () => TUESDAY_MORNING })

  it('denies by default, naming the default', () => {
    const r = m.evaluate({ principal: principal('u'), action: 'documents:read' })
    expect(r).to.include({ allowed: false, decision: 'deny', level: 'none', riskScore: 0 })
    expect(r.matchedRules).to.deep.equal(['default-deny'])
    expect(r.explanation).to.equal('no rule allows documents:read (default deny)')
    expect(r.error?.code).to.equal('ERR_POLICY_DENIED')
  })

  it('grants role permissions, through inheritance', () => {
    const r = m.evaluate({ principal: principal('u', ['editor']), action: 'documents:read' })
    expect(r).to.include({ allowed: true, decision: 'allow', level: 'read' })
    expect(r.matchedRules).to.deep.equal(['role:viewer'])
    expect(
      m.evaluate({ principal: principal('u', ['viewer']), action: 'documents:write' }).allowed,
    ).to.equal(false)
    expect(
      m.evaluate({ principal: principal('u', ['admin']), action: 'documents:archive' }).allowed,
    ).to.equal(true)
  })

  it('lets deny override allow', () => {
    const r = m.evaluate({
      principal: principal('u', ['admin'], { contractor: true }),
      action: 'documents:delete',
    })
    expect(r.allowed).to.equal(false)
    expect(r.matchedRules).to.deep.equal(['contractors-never-delete'])
    expect(
      m.evaluate({ principal: principal('u', ['admin']), action: 'documents:delete' }).allowed,
    ).to.equal(true)
  })

  it('decides by priority first: a higher allow beats a lower deny, a higher deny beats an allow', () => {
    const set: PolicySetInput = {
      rules: [
        { id: 'deny-all-delete', effect: 'deny', actions: ['documents:delete'] },
        {
          id: 'break-glass',
          effect: 'allow',
          actions: ['documents:delete'],
          roles: ['sre'],
          priority: 100,
        },
        {
          id: 'freeze',
          effect: 'deny',
          actions: ['*'],
          priority: 1000,
          when: { attr: 'environment.frozen', op: 'eq', value: true },
        },
      ],
    }
    const p = createAccessManager({ policy: set })
    expect(
      p.evaluate({ principal: principal('u', ['sre']), action: 'documents:delete' }).matchedRules,
    ).to.deep.equal(['break-glass'])
    expect(
      p.evaluate({ principal: principal('u'), action: 'documents:delete' }).matchedRules,
    ).to.deep.equal(['deny-all-delete'])
    expect(
      p.evaluate({
        principal: principal('u', ['sre']),
        action: 'documents:delete',
        environment: { frozen: true },
      }).matchedRules,
    ).to.deep.equal(['freeze'])
  })

  it('applies resource policies only to their resource type (owner yes, non-owner no)', () => {
    const owner = m.evaluate({
      principal: principal('alice'),
      action: 'documents:delete',
      resourceType: 'document',
      resource: { id: 'd1', ownerId: 'alice' },
    })
    expect(owner).to.include({ allowed: true, level: 'write' })
    expect(owner.matchedRules).to.deep.equal(['owner-manages'])
    expect(
      m.evaluate({
        principal: principal('bob'),
        action: 'documents:delete',
        resourceType: 'document',
        resource: { ownerId: 'alice' },
      }).allowed,
    ).to.equal(false)
    // The same record without a declared resource type: the resource policy does not apply.
    expect(
      m.evaluate({
        principal: principal('alice'),
        action: 'documents:delete',
        resource: { ownerId: 'alice' },
      }).allowed,
    ).to.equal(false)
  })

  it('never grants through hostile or type-confused roles', () => {
    const hostile = [
      ['аdmin'], // Cyrillic а
      ['ａｄｍｉｎ'], // full-width
      ['admin\u200b'], // zero-width space
      ['Admin'],
      ['__proto__'],
      ['constructor'],
      [['admin']],
      [{ toString: () => 'admin' }],
    ]
    for (const roles of hostile) {
      const r = m.evaluate({ principal: principal('u', roles as never), action: 'documents:read' })
      expect(r.allowed, JSON.stringify(roles)).to.equal(false)
    }
    for (const roles of ['admin', { 0: 'admin', length: 1 }, null]) {
      const r = m.evaluate({
        principal: { ...principal('u'), roles } as never,
        action: 'documents:read',
      })
      expect(r.allowed, JSON.stringify(roles)).to.equal(false)
    }
    expect(m.evaluate({ principal: principal('u'), action: '__proto__' }).allowed).to.equal(false)
    expect(
      m.evaluate({ principal: principal('u', ['admin']), action: 42 as never }).allowed,
    ).to.equal(false)
  })

  it('explains every candidate rule with the values it saw', () => {
    const e = m.explain({
      principal: principal('bob', ['viewer']),
      action: 'documents:delete',
      resourceType: 'document',
      resource: { ownerId: 'alice' },
    })
    expect(e.allowed).to.equal(false)
    expect(e.explanation).to.equal('no rule allows documents:delete (default deny)')
    expect(e.rules.map((r) => [r.id, r.outcome])).to.deep.equal([
      ['contractors-never-delete', 'no-match'],
      ['role:admin', 'roles'],
      ['owner-manages', 'no-match'],
    ])
    expect(e.rules[0]?.detail).to.deep.equal([
      'principal.attributes.contractor eq true: missing → false',
    ])
    expect(e.rules[2]?.detail).to.deep.equal([
      'resource.ownerId eq principal.id ("bob"): "alice" → false',
    ])
    expect(e.rules[1]?.detail).to.deep.equal(['needs one of roles admin'])
  })

  it('maps actions to access levels and finds the highest level', () => {
    expect(
      m.evaluate({ principal: principal('u', ['editor']), action: 'documents:create' }).level,
    ).to.equal('write')
    expect(m.accessLevel(principal('u', ['viewer']), 'documents')).to.equal('read')
    expect(m.accessLevel(principal('u', ['editor']), 'documents')).to.equal('write')
    expect(m.accessLevel(principal('u', ['admin']), 'documents')).to.equal('admin')
    expect(m.accessLevel(principal('u'), 'documents')).to.equal('none')
  })

  describe('shadow mode', () => {
    it('reports shadow rules that would deny, without denying', () => {
      const s = createAccessManager({
        policy: {
          ...BASE,
          rules: [
            {
              id: 'new-mfa-rule',
              effect: 'deny',
              actions: ['documents:*'],
              shadow: true,
              when: { attr: 'principal.attributes.mfa', op: 'ne', value: true },
            },
          ],
        },
      })
      const r = s.evaluate({ principal: principal('u', ['viewer']), action: 'documents:read' })
      expect(r.allowed).to.equal(true)
      expect(r.shadowDenied).to.deep.equal(['new-mfa-rule'])
      expect(
        s.evaluate({
          principal: principal('u', ['viewer'], { mfa: true }),
          action: 'documents:read',
        }).shadowDenied,
      ).to.deep.equal([])
    })

    it('runs a whole set in dry-run', () => {
      const warnings: unknown[] = []
      const s = createAccessManager({
        policy: BASE,
        shadow: true,
        logger: { warn: (...a) => void warnings.push(a), error: () => {} },
      })
      const r = s.evaluate({ principal: principal('u'), action: 'documents:read' })
      expect(r.allowed).to.equal(true)
      expect(r.shadowDenied).to.deep.equal(['default-deny'])
      expect(r.explanation).to.match(/^shadow mode: would deny: no rule allows/)
      expect(warnings).to.deep.equal([
        [
          { action: 'documents:read', principal: 'u', rules: ['default-deny'] },
          'policy: shadow rules would deny',
        ],
      ])
    })
  })

  describe('risk assessment', () => {
    const risky = (
      risk: PolicySetInput['risk'],
      extra: Partial<Parameters<typeof createAccessManager>[0]> = {},
    ) => {
      const clock = createFakeClock(TUESDAY_MORNING)
      const manager = createAccessManager({
        policy: {
          roles: { viewer: { permissions: ['documents:read', 'documents:delete'] } },
          risk,
        },
        now: clock,
        ...extra,
      })
      const ask = (p = principal('u', ['viewer']), ip = '10.0.0.1', action = 'documents:read') =>
        manager.evaluate({ principal: p, action, request: { ip } })
      return { manager, clock, ask }
    }

    it('adds a new IP only once the principal has a history', () => {
      const { ask } = risky({ signals: { newIp: 40 } })
      expect(ask().riskScore).to.equal(0)
      expect(ask().riskScore).to.equal(0)
      expect(ask(undefined, '192.0.2.9').riskScore).to.equal(40)
    })

    it('scores unusual hours', () => {
      const { ask, clock } = risky({
        signals: { unusualHour: 30 },
        usualHours: { from: '08:00', to: '18:00' },
      })
      expect(ask().riskScore).to.equal(0)
      clock.set(Date.UTC(2026, 10, 24, 3, 0))
      expect(ask().riskScore).to.equal(30)
    })

    it('scores recent failures and request rate', () => {
      const { ask, manager } = risky({
        signals: { recentFailures: 50, requestRate: 50 },
        failures: 2,
        ratePerMinute: 10,
      })
      expect(ask().riskScore).to.equal(5) // 1 request of 10 per minute
      manager.noteFailure('u')
      expect(ask().riskScore).to.equal(35) // half the failures, 2 of 10 requests
      const denied = ask(principal('u', []))
      expect(denied.allowed).to.equal(false)
      expect(ask().riskScore).to.equal(70)
    })

    it('scores key age and missing MFA', () => {
      const { ask } = risky({ signals: { keyAge: 20, missingMfa: 30 }, keyMaxAgeDays: 10 })
      const fiveDaysOld = TUESDAY_MORNING - 5 * 86_400_000
      expect(ask(principal('u', ['viewer'], { keyCreatedAt: fiveDaysOld })).riskScore).to.equal(40)
      expect(
        ask(
          principal('u', ['viewer'], {
            keyCreatedAt: new Date(fiveDaysOld).toISOString(),
            claims: { amr: ['pwd', 'mfa'] },
          }),
        ).riskScore,
      ).to.equal(10)
    })

    it('denies above the deny threshold and demands step-up above the step-up threshold', () => {
      const { ask } = risky({ signals: { newIp: 60, missingMfa: 30 }, stepUpAt: 50, denyAt: 80 })
      expect(ask().allowed).to.equal(true) // 30: missing MFA only
      const stepUp = ask(undefined, '192.0.2.1') // 60 + 30 = 90 → deny
      expect(stepUp).to.include({ allowed: false, decision: 'deny', riskScore: 90 })
      expect(stepUp.matchedRules).to.deep.equal(['role:viewer', 'risk:deny'])
      const mfa = principal('u', ['viewer'], { claims: { amr: ['mfa'] } })
      const withMfa = ask(mfa, '192.0.2.2') // 60 → step-up, but satisfied by MFA
      expect(withMfa).to.include({ allowed: true, riskScore: 60 })
    })

    it('answers step-up with its own code', () => {
      const { ask } = risky({ signals: { newIp: 60 }, stepUpAt: 50 })
      ask()
      const r = ask(undefined, '192.0.2.1')
      expect(r).to.include({ allowed: false, decision: 'step-up', riskScore: 60 })
      expect(r.error?.code).to.equal('ERR_AUTHZ_STEP_UP_REQUIRED')
      expect(r.error?.status).to.equal(401)
    })

    it('limits risk to the configured actions, and lets rules read the score', () => {
      const clock = createFakeClock(Date.UTC(2026, 10, 24, 3, 0))
      const mgr = createAccessManager({
        now: clock,
        policy: {
          rules: [
            { id: 'read', effect: 'allow', actions: ['documents:read'] },
            {
              id: 'calm-delete',
              effect: 'allow',
              actions: ['documents:delete'],
              when: { attr: 'environment.riskScore', op: 'lt', value: 20 },
            },
          ],
          risk: { signals: { unusualHour: 30 }, actions: ['documents:delete'] },
        },
      })
      expect(
        mgr.evaluate({ principal: principal('u'), action: 'documents:read' }).riskScore,
      ).to.equal(0)
      const del = mgr.evaluate({ principal: principal('u'), action: 'documents:delete' })
      expect(del).to.include({ allowed: false, riskScore: 30 })
    })

    it('takes custom signals, and counts a throwing signal as fully firing', () => {
      const { ask } = risky(
        { signals: { geo: 25, broken: 10 } },
        {
          signals: {
            geo: ({ ip }) => (ip?.startsWith('203.') ? 1 : 0),
            broken: () => {
              throw new Error('x')
            },
          },
        },
      )
      expect(ask(undefined, '203.0.113.1').riskScore).to.equal(35)
      expect(ask(undefined, '10.0.0.1').riskScore).to.equal(10)
    })

    it('explains which signals fired', () => {
      const { manager } = risky({ signals: { missingMfa: 30, unusualHour: 10 } })
      const e = manager.explain({ principal: principal('u', ['viewer']), action: 'documents:read' })
      expect(e.signals).to.deep.equal({ missingMfa: 30 })
      expect(e.riskScore).to.equal(30)
    })
  })
})

describe('AccessManager against arbitrary hostile input (property)', () => {
  const m = createAccessManager({
    policy: {
      roles: { admin: { permissions: ['documents:*'] } },
      rules: [
        {
          id: 'tenant',
          effect: 'allow',
          actions: ['reports:read'],
          when: { attr: 'principal.attributes.tenant', op: 'eq', value: 'acme' },
        },
      ],
    },
  })

  it('grants nothing to any role list without the exact role "admin"', () => {
    fc.assert(
      fc.property(fc.array(fc.oneof(fc.string({ unit: 'grapheme' }), fc.anything())), (roles) => {
        fc.pre(!roles.includes('admin'))
        return !m.evaluate({
          principal: principal('u', roles as string[]),
          action: 'documents:read',
        }).allowed
      }),
      { numRuns: 500 },
    )
  })

  it('grants the tenant rule only for the exact string "acme"', () => {
    fc.assert(
      fc.property(fc.anything(), (tenant) => {
        const allowed = m.evaluate({
          principal: principal('u', [], { tenant }),
          action: 'reports:read',
        }).allowed
        return allowed === (tenant === 'acme')
      }),
      { numRuns: 500 },
    )
  })
})
