import { expect } from 'chai'
import { ConfigError, createLruCache } from '@portcullis/core'
import { createFakeClock } from '@portcullis/core/testing'

describe('createLruCache', () => {
  it('answers get, set and delete synchronously', () => {
    const cache = createLruCache<{ n: number }>()
    expect(cache.set('a', { n: 1 })).to.equal(undefined)
    expect(cache.get('a')).to.deep.equal({ n: 1 })
    cache.delete('a')
    expect(cache.get('a')).to.equal(undefined)
  })

  it('evicts the least recently used entry beyond max', () => {
    const cache = createLruCache<number>({ max: 2 })
    cache.set('a', 1)
    cache.set('b', 2)
    cache.get('a') // a is now the most recent
    cache.set('c', 3)
    expect([cache.get('a'), cache.get('b'), cache.get('c')]).to.deep.equal([1, undefined, 3])
    expect(cache.size).to.equal(2)
  })

  it('expires entries after the default TTL and after their own ttlMs, on the injected clock', () => {
    const clock = createFakeClock()
    const cache = createLruCache<string>({ ttlMs: 1000, now: clock })
    cache.set('default', 'x')
    cache.set('short', 'y', { ttlMs: 100 })
    clock.advance(100)
    expect(cache.get('short')).to.equal('y')
    clock.advance(1)
    expect(cache.get('short')).to.equal(undefined)
    expect(cache.get('default')).to.equal('x')
    clock.advance(900)
    expect(cache.get('default')).to.equal(undefined)
  })

  it('keeps null (a JSON value) apart from absence, and treats setting undefined as delete', () => {
    const cache = createLruCache<string | null | undefined>()
    cache.set('n', null)
    expect(cache.get('n')).to.equal(null)
    cache.set('n', undefined)
    expect(cache.get('n')).to.equal(undefined)
    expect(cache.size).to.equal(0)
  })

  it('clears everything', () => {
    const cache = createLruCache<number>()
    cache.set('a', 1)
    cache.set('b', 2)
    cache.clear()
    expect(cache.size).to.equal(0)
  })

  it('refuses bad options with ConfigError naming the option', () => {
    expect(() => createLruCache({ max: 0 }))
      .to.throw(ConfigError)
      .with.property('message')
      .that.matches(/cache\.max: must be a positive integer, received 0/)
    expect(() => createLruCache({ ttlMs: -5 })).to.throw(/cache\.ttlMs/)
    expect(() => createLruCache({ now: 5 as never })).to.throw(/cache\.now: must be a function/)
  })
})
