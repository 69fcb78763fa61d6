import { expect } from 'chai'
import fc from 'fast-check'
import {
  parseStrictJson,
  parseStrictJsonBytes,
  StrictJsonError,
} from '../../../packages/core/src/internal/strict-json.js'

const bytes = (...parts: (string | number[])[]): Uint8Array =>
  Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'utf8') : Buffer.from(p))))

function strictError(fn: () => unknown): StrictJsonError {
  try {
    fn()
  } catch (error) {
    expect(error).to.be.instanceOf(StrictJsonError)
    return error as StrictJsonError
  }
  return expect.fail('expected a StrictJsonError')
}

const nested = (depth: number, open: string, close: string, inner = '1'): string =>
  open.repeat(depth) + inner + close.repeat(depth)

describe('strict JSON parser', () => {
  describe('duplicate member names', () => {
    it('rejects a duplicate key at the top level and in nested objects', () => {
      for (const text of ['{"a":1,"a":1}', '{"a":1,"b":{"c":1,"c":2}}', '[{"x":0,"y":0,"x":0}]']) {
        expect(strictError(() => parseStrictJson(text)).message, text).to.equal(
          'duplicate member name',
        )
      }
    })

    it('rejects a duplicate spelled with an escape', () => {
      expect(
        strictError(() => parseStrictJson('{"alg":"HS256","\\u0061lg":"none"}')).message,
      ).to.equal('duplicate member name')
    })

    it('rejects a duplicate "__proto__" key', () => {
      expect(strictError(() => parseStrictJson('{"__proto__":1,"__proto__":2}')).message).to.equal(
        'duplicate member name',
      )
    })

    it('accepts the same key in sibling objects', () => {
      expect(parseStrictJson('[{"a":1},{"a":2}]')).to.deep.equal([{ a: 1 }, { a: 2 }])
    })
  })

  describe('bytes', () => {
    it('rejects a UTF-8 byte-order mark', () => {
      expect(
        strictError(() => parseStrictJsonBytes(bytes([0xef, 0xbb, 0xbf], '{}'))).message,
      ).to.equal('byte-order mark')
    })

    it('rejects a U+FEFF character in front of a text', () => {
      expect(() => parseStrictJson('\ufeff{}')).to.throw(StrictJsonError)
    })

    it('rejects invalid UTF-8: stray, overlong, surrogate and truncated sequences', () => {
      const invalid = [
        [0xff],
        [0x80],
        [0xc0, 0xaf],
        [0xe0, 0x80, 0xaf],
        [0xed, 0xa0, 0x80],
        [0xf4, 0x90, 0x80, 0x80],
        [0xe2, 0x82],
      ]
      for (const seq of invalid) {
        expect(
          strictError(() => parseStrictJsonBytes(bytes('"', seq, '"'))).message,
          String(seq),
        ).to.equal('invalid UTF-8')
      }
    })

    it('decodes valid multi-byte UTF-8', () => {
      expect(parseStrictJsonBytes(bytes('{"name":"Zoë 😀 東京"}'))).to.deep.equal({
        name: 'Zoë 😀 東京',
      })
    })
  })

  describe('trailing data', () => {
    it('rejects anything but whitespace after the value', () => {
      for (const text of ['{} {}', '1 2', '{}x', 'truex', 'null,', '[1]]', '"a""b"', '{}\u0000']) {
        expect(strictError(() => parseStrictJson(text)).message, JSON.stringify(text)).to.equal(
          'trailing data',
        )
      }
    })

    it('accepts JSON whitespace around the value', () => {
      expect(parseStrictJson(' \t\r\n{"a":1} \t\r\n')).to.deep.equal({ a: 1 })
    })

    it('does not count non-JSON whitespace as whitespace', () => {
      for (const text of ['\u00a0{}', '{}\u00a0', '{}\u2028', '\u000b1']) {
        expect(() => parseStrictJson(text), JSON.stringify(text)).to.throw(StrictJsonError)
      }
    })
  })

  describe('nesting', () => {
    it('accepts 32 levels of arrays and objects', () => {
      expect(() => parseStrictJson(nested(32, '[', ']'))).to.not.throw()
      expect(() => parseStrictJson(nested(32, '{"a":', '}'))).to.not.throw()
    })

    it('rejects 33 levels of arrays, objects or both', () => {
      for (const text of [
        nested(33, '[', ']'),
        nested(33, '{"a":', '}'),
        nested(17, '[{"a":', '}]'),
        nested(10_000, '[', ']'),
      ]) {
        expect(strictError(() => parseStrictJson(text)).message).to.equal('nesting too deep')
      }
    })

    it('counts depth, not the number of containers side by side', () => {
      const wide = `[${Array.from({ length: 100 }, () => nested(31, '[', ']')).join(',')}]`
      expect(() => parseStrictJson(wide)).to.not.throw()
    })
  })

  describe('prototype safety', () => {
    it('makes "__proto__" an own data key that never becomes a prototype', () => {
      const value = parseStrictJson('{"__proto__":{"polluted":true},"a":{"b":1}}') as Record<
        string,
        Record<string, unknown>
      >
      expect(Object.getPrototypeOf(value)).to.equal(Object.prototype)
      expect(Object.hasOwn(value, '__proto__')).to.equal(true)
      expect(Object.keys(value)).to.deep.equal(['__proto__', 'a'])
      expect(value.__proto__?.polluted).to.equal(true)
      expect((value as Record<string, unknown>).polluted).to.equal(undefined)
      expect(({} as Record<string, unknown>).polluted).to.equal(undefined)
    })

    it('keeps "constructor" and "toString" as plain data', () => {
      const value = parseStrictJson('{"constructor":{"prototype":{"x":1}},"toString":1}') as Record<
        string,
        unknown
      >
      expect(value.toString).to.equal(1)
      expect(Object.hasOwn(value, 'constructor')).to.equal(true)
      expect(({} as Record<string, unknown>).x).to.equal(undefined)
    })

    it('builds plain objects: inherited members are never own keys', () => {
      const value = parseStrictJson('{}') as Record<string, unknown>
      // Objects stay in V8's fast mode; callers look attributes up with Object.hasOwn.
      expect(Object.hasOwn(value, 'toString')).to.equal(false)
      expect(Object.hasOwn(value, 'hasOwnProperty')).to.equal(false)
    })
  })

  describe('agreement with JSON.parse', () => {
    const valid = [
      '0',
      '-0',
      '1.5e+10',
      '1E-2',
      '-12.345e2',
      '123456789012345678901234567890',
      '1e400',
      '5e-324',
      '0.1',
      'true',
      'false',
      'null',
      '""',
      '"\\"\\\\\\/\\b\\f\\n\\r\\t"',
      '"\\u00e9\\u00E9\\ud83d\\ude00\\u0000"',
      '"\\ud800"',
      '"é😀\u2028"',
      '[ 1 , [ ] , { } ]',
      '{"a" : [true,false,null], "b":{"c":"d"}}',
      '{"":0}',
      '{"1":1,"0":0,"b":2,"a":3}',
    ]
    for (const text of valid) {
      it(`parses ${text} like JSON.parse`, () => {
        // chai's deep equality tells -0 from 0, so '-0' is checked too.
        expect(parseStrictJson(text)).to.deep.equal(JSON.parse(text))
      })
    }

    const invalid = [
      '',
      ' ',
      '01',
      '-01',
      '1.',
      '.5',
      '+1',
      '1e',
      '1e+',
      '-',
      '0x10',
      'NaN',
      'Infinity',
      '"\\x41"',
      '"\\u12G4"',
      '"\\u12"',
      '"\\',
      '"abc',
      '"a\nb"',
      '"tab\there"',
      "'a'",
      '[1,]',
      '[,1]',
      '{"a":1,}',
      '{a:1}',
      '{"a"}',
      '{"a" 1}',
      '{1:1}',
      '[',
      '{',
      'tru',
      'nul',
      'True',
    ]
    for (const text of invalid) {
      it(`rejects ${JSON.stringify(text)}, as JSON.parse does`, () => {
        expect(() => JSON.parse(text)).to.throw(SyntaxError)
        expect(() => parseStrictJson(text)).to.throw(StrictJsonError)
      })
    }

    it('parses every fc.json() text exactly like JSON.parse (property)', () => {
      fc.assert(
        fc.property(fc.json({ maxDepth: 8 }), (text) => {
          expect(parseStrictJson(text)).to.deep.equal(JSON.parse(text))
          expect(parseStrictJsonBytes(Buffer.from(text, 'utf8'))).to.deep.equal(JSON.parse(text))
        }),
        { numRuns: 500 },
      )
    })

    it('never accepts what JSON.parse rejects, and agrees whenever both accept (property)', () => {
      const alphabet = [...'{}[]",:0123456789-+.eE \ntfrunalsx\\u'] as const
      fc.assert(
        fc.property(fc.string({ unit: fc.constantFrom(...alphabet), maxLength: 24 }), (text) => {
          let expected: unknown
          try {
            expected = JSON.parse(text)
          } catch {
            expect(() => parseStrictJson(text)).to.throw(StrictJsonError)
            return
          }
          let actual: unknown
          try {
            actual = parseStrictJson(text)
          } catch (error) {
            // Stricter than JSON.parse only for duplicate names and depth.
            expect((error as Error).message).to.be.oneOf([
              'duplicate member name',
              'nesting too deep',
            ])
            return
          }
          expect(actual).to.deep.equal(expected)
        }),
        { numRuns: 2000 },
      )
    })
  })
})
