import { expect } from 'chai'
import fc from 'fast-check'
import {
  generateApiKey,
  hashApiKey,
  parseApiKey,
  parseApiKeyId,
  randomBase62,
} from '@portcullis/core'

const prefixes = new Set(['ptcl', 'acme_live'])

describe('API key format', () => {
  it('generates keys that parse back to their id and prefix', () => {
    for (const prefix of ['ptcl', 'acme_live']) {
      const g = generateApiKey({ prefix })
      expect(g.key).to.match(new RegExp(`^${prefix}_[0-9A-Za-z]{54}$`))
      expect(parseApiKey(g.key, prefixes)).to.deep.equal({ prefix, id: g.id })
    }
  })

  it('carries at least 128 bits of secret', () => {
    // 32 base62 characters: 32 * log2(62) ≈ 190 bits.
    expect(32 * Math.log2(62)).to.be.greaterThan(128)
    const a = generateApiKey({ prefix: 'ptcl' })
    const b = generateApiKey({ prefix: 'ptcl' })
    expect(a.key).to.not.equal(b.key)
    expect(a.id).to.not.equal(b.id)
  })

  it('rejects any single-character change through the checksum', () => {
    const { key } = generateApiKey({ prefix: 'ptcl' })
    const alphabet = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'
    fc.assert(
      fc.property(
        fc.integer({ min: 'ptcl_'.length, max: key.length - 1 }),
        fc.constantFrom(...alphabet.split('')),
        (i, c) => {
          fc.pre(key[i] !== c)
          const changed = key.slice(0, i) + c + key.slice(i + 1)
          expect(parseApiKey(changed, prefixes)).to.equal('checksum')
        },
      ),
      { numRuns: 500 },
    )
  })

  it('names why a string is not a key', () => {
    const { key } = generateApiKey({ prefix: 'ptcl' })
    expect(parseApiKey(key.slice(0, -1), prefixes)).to.equal('length')
    expect(parseApiKey(`xx${key.slice(2)}`, prefixes)).to.equal('prefix')
    expect(parseApiKey(`${key.slice(0, 10)}!${key.slice(11)}`, prefixes)).to.equal('charset')
    expect(parseApiKey('', prefixes)).to.equal('length')
    expect(parseApiKey('x'.repeat(10_000), prefixes)).to.equal('length')
  })

  it('draws base62 characters without modulo bias', () => {
    const counts = new Map<string, number>()
    const text = randomBase62(62 * 400)
    for (const ch of text) counts.set(ch, (counts.get(ch) ?? 0) + 1)
    expect(counts.size).to.equal(62)
    // Expected 400 each; a biased draw over-represents the first characters by ~25 %.
    for (const n of counts.values()) expect(n).to.be.within(290, 520)
  })

  it('hashes with the pepper, so the same key under another pepper differs', () => {
    const { key } = generateApiKey({ prefix: 'ptcl' })
    const a = hashApiKey(key, { id: 'p1', secret: 'a'.repeat(32) })
    const b = hashApiKey(key, { id: 'p2', secret: 'b'.repeat(32) })
    expect(a).to.match(/^[A-Za-z0-9_-]{43}$/)
    expect(a).to.not.equal(b)
    expect(a).to.not.include(key)
  })

  it('parses key ids strictly', () => {
    expect(parseApiKeyId('abcdEFGH01234567')).to.equal('abcdEFGH01234567')
    expect(parseApiKeyId('abc')).to.equal(undefined)
    expect(parseApiKeyId('abcdEFGH0123456_')).to.equal(undefined)
  })
})
