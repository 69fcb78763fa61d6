import { expect } from 'chai'
import fc from 'fast-check'
import { canonicalHash, canonicalize } from '@portcullis/core'

describe('TypeSerializer (RFC 8785)', () => {
  it('sorts keys by UTF-16 code units (RFC 8785 §3.2.3 example)', () => {
    const input = {
      '\u20ac': 'Euro Sign',
      '\r': 'Carriage Return',
      '\ufb33': 'Hebrew Letter Dalet With Dagesh',
      '1': 'One',
      '\ud83d\ude00': 'Emoji: Grinning Face',
      '\u0080': 'Control',
      '\u00f6': 'Latin Small Letter O With Diaeresis',
    }
    // Object.keys would reorder the integer-like key "1"; read the order off the text itself.
    const keys = [...canonicalize(input).matchAll(/"((?:[^"\\]|\\.)*)":/g)].map((m) =>
      JSON.parse(`"${m[1]}"`),
    )
    expect(keys).to.deep.equal(['\r', '1', '\u0080', '\u00f6', '\u20ac', '\ud83d\ude00', '\ufb33'])
  })

  it('serializes numbers in ECMAScript form (RFC 8785 §3.2.2.3 samples)', () => {
    // eslint-disable-next-line no-loss-of-precision -- the RFC's own input, rounded on purpose
    expect(canonicalize([333333333.33333329, 1e30, 4.5, 0.002, 1e-27, -0])).to.equal(
      '[333333333.3333333,1e+30,4.5,0.002,1e-27,0]',
    )
  })

  it('matches the RFC 8785 §3.2.2 example output', () => {
    const input = {
      // eslint-disable-next-line no-loss-of-precision -- the RFC's own input, rounded on purpose
      numbers: [333333333.33333329, 1e30, 4.5, 2e-3, 0.000000000000000000000000001],
      string: '\u20ac$\u000f\u000aA\'\u0042\u0022\u005c\\"/',
      literals: [null, true, false],
    }
    expect(canonicalize(input)).to.equal(
      '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}',
    )
  })

  it('refuses values JSON cannot represent', () => {
    expect(() => canonicalize(Number.NaN)).to.throw(TypeError)
    expect(() => canonicalize({ a: 1n })).to.throw(TypeError)
    const cyclic: Record<string, unknown> = {}
    cyclic.self = cyclic
    expect(() => canonicalize(cyclic)).to.throw(/cyclic/)
  })

  it('is insensitive to key order and equal to JSON for sorted input', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        const text = canonicalize(value)
        expect(JSON.parse(text)).to.deep.equal(JSON.parse(JSON.stringify(value)))
        expect(canonicalize(JSON.parse(text))).to.equal(text)
      }),
      { numRuns: 300 },
    )
    expect(canonicalHash({ b: 1, a: 2 })).to.equal(canonicalHash({ a: 2, b: 1 }))
  })
})
