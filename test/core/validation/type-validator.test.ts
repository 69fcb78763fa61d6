import { expect } from 'chai'
import { ConfigError, suggest, TypeValidator } from '@portcullis/core'

describe('TypeValidator', () => {
  it('reports every issue with a precise path', () => {
    const v = new TypeValidator('auth')
    const jwt = v.child('jwt')
    jwt.array('algorithms', ['HS256', 'HS257'], (av, i, a) =>
      av.oneOf(i, a, ['HS256', 'RS256'], 'algorithm'),
    )
    v.integer('windowMs', -5, { min: 1 })
    const r = v.result()
    expect(r.ok).to.equal(false)
    expect(r.issues.map((i) => `${i.path}: ${i.message}`)).to.deep.equal([
      'auth.jwt.algorithms[1]: unknown algorithm "HS257"; expected one of "HS256", "RS256" (did you mean "HS256"?)',
      'auth.windowMs: must be a positive integer, received -5',
    ])
  })

  it('throws one ConfigError listing all issues', () => {
    const v = new TypeValidator()
    v.string('name', 42)
    v.boolean('flag', 'yes')
    expect(() => v.assert())
      .to.throw(ConfigError)
      .with.property('issues')
      .that.deep.equals([
        'name: must be a string, received 42',
        'flag: must be a boolean, received "yes"',
      ])
  })

  it('warns about unknown keys with a suggestion, without failing', () => {
    const v = new TypeValidator()
    v.knownKeys({ maxage: 1, windowMs: 2 }, ['maxAge', 'windowMs'])
    const warnings: string[] = []
    v.assert((m) => warnings.push(m))
    expect(warnings).to.deep.equal(['maxage: unknown option "maxage"; did you mean "maxAge"?'])
  })

  it('gives the fallback for an absent optional integer and checks a present one', () => {
    const v = new TypeValidator('x')
    expect(v.integerOr('a', undefined, 7, { min: 1 })).to.equal(7)
    expect(v.integerOr('b', undefined, undefined)).to.equal(undefined)
    expect(v.integerOr('c', 3, 7, { min: 1 })).to.equal(3)
    expect(v.integerOr('d', 0, 7, { min: 1 })).to.equal(undefined)
    expect(v.integerOr('e', '5', 7)).to.equal(undefined)
    expect(v.result().issues.map((i) => i.path)).to.deep.equal(['x.d', 'x.e'])
  })

  it('checks bounds, patterns and functions', () => {
    const v = new TypeValidator('x')
    expect(v.integer('a', 3, { min: 1, max: 5 })).to.equal(3)
    expect(v.integer('b', 1.5)).to.equal(undefined)
    expect(v.number('c', Number.NaN)).to.equal(undefined)
    expect(v.integer('d', 9, { max: 5 })).to.equal(undefined)
    expect(v.string('e', 'abc', { pattern: /^a/ })).to.equal('abc')
    expect(v.string('f', '', {})).to.equal(undefined)
    expect(v.function('g', () => 1)).to.be.a('function')
    expect(v.function('h', 1)).to.equal(undefined)
    expect(v.object('i', [])).to.equal(undefined)
    expect(v.result().issues.map((i) => i.path)).to.deep.equal([
      'x.b',
      'x.c',
      'x.d',
      'x.f',
      'x.h',
      'x.i',
    ])
  })

  it('suggests only close names', () => {
    expect(suggest('windowMS', ['windowMs', 'limit'])).to.equal('windowMs')
    expect(suggest('zzzzzz', ['windowMs', 'limit'])).to.equal(undefined)
  })
})
