import { expect } from 'chai'
import fc from 'fast-check'
import { readFileSync } from 'node:fs'
import { canonicalHash, readJsonLinesAuditEvents, verifyAuditChain } from '@portcullis/core'
import {
  canonicalize,
  canonicalizeTree,
} from '../../../packages/core/src/internal/canonical-json.js'

interface Vectors {
  readonly numbers: readonly { ieee754: string; json: string | null; comment?: string }[]
  readonly example_3_2_2: { input: string; output: string }
  readonly example_3_2_3: { input: string; order: string[] }
}
const vectors = JSON.parse(
  readFileSync(new URL('fixtures/rfc8785.json', import.meta.url), 'utf8'),
) as Vectors

const fromHex = (hex: string): number => Buffer.from(hex, 'hex').readDoubleBE(0)

describe('internal/canonical-json (RFC 8785)', () => {
  describe('Appendix B number samples', () => {
    for (const { ieee754, json, comment } of vectors.numbers) {
      it(`${ieee754} ${comment ?? ''}`, () => {
        const n = fromHex(ieee754)
        if (json === null) {
          expect(() => canonicalize(n)).to.throw(TypeError, /non-finite/)
          expect(() => canonicalizeTree([n])).to.throw(TypeError, /non-finite/)
        } else {
          expect(canonicalize(n)).to.equal(json)
          expect(canonicalizeTree({ n })).to.equal(`{"n":${json}}`)
        }
      })
    }
  })

  it('the §3.2.2 example', () => {
    const { input, output } = vectors.example_3_2_2
    expect(canonicalize(JSON.parse(input))).to.equal(output)
    expect(canonicalizeTree(JSON.parse(input))).to.equal(output)
  })

  it('the §3.2.3 sorting example (UTF-16 code units)', () => {
    const { input, order } = vectors.example_3_2_3
    const out = canonicalize(JSON.parse(input))
    // Where each name appears in the output (Object.keys would put the integer-like `1` first).
    const at = order.map((name) => out.indexOf(`${JSON.stringify(name)}:`))
    expect(at.every((p, i) => p > 0 && (i === 0 || p > (at[i - 1] as number)))).to.equal(true)
    expect(out.startsWith('{"\\r":"Carriage Return","1":"One",')).to.equal(true)
  })

  it('omits undefined members, writes undefined items as null and follows toJSON', () => {
    const d = new Date(0)
    expect(canonicalize({ b: undefined, a: [undefined, d] })).to.equal(
      '{"a":[null,"1970-01-01T00:00:00.000Z"]}',
    )
    expect(canonicalizeTree({ b: undefined, a: [undefined, d] })).to.equal(
      '{"a":[null,"1970-01-01T00:00:00.000Z"]}',
    )
  })

  it('throws for what JSON cannot hold, and for cycles', () => {
    for (const bad of [1n, () => 1, Symbol('x'), undefined, { a: Infinity }, [NaN]])
      expect(() => canonicalize(bad)).to.throw(TypeError)
    const cyclic: Record<string, unknown> = { a: 1 }
    cyclic.self = cyclic
    expect(() => canonicalize(cyclic)).to.throw(TypeError, /cyclic structure/)
    expect(() => canonicalizeTree(cyclic)).to.throw(TypeError, /cyclic or too deep/)
    // A shared (not cyclic) object is fine.
    const shared = { x: 1 }
    expect(canonicalize({ a: shared, b: shared })).to.equal('{"a":{"x":1},"b":{"x":1}}')
  })

  it('property: round-trips, is stable under key order, and both modes agree', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        const out = canonicalize(value)
        expect(out).to.equal(canonicalizeTree(value))
        expect(JSON.parse(out)).to.deep.equal(JSON.parse(JSON.stringify(value)))
        const reversed = JSON.parse(out, function (this: unknown, _k, v: unknown) {
          if (v === null || typeof v !== 'object' || Array.isArray(v)) return v
          return Object.fromEntries(Object.entries(v).reverse())
        }) as unknown
        expect(canonicalize(reversed)).to.equal(out)
      }),
    )
  })

  it('the policy version hash and the audit chain of a fixture written before the merge are unchanged', async () => {
    // Written by the pre-merge serializers (validation/type-serializer.ts and audit-chain.ts).
    const file = new URL('../audit/fixtures/chain-v1.jsonl', import.meta.url)
    const events = []
    for await (const event of readJsonLinesAuditEvents([file.pathname])) events.push(event)
    expect(events).to.have.length(3)
    const result = verifyAuditChain(events, { keys: 'fixture-chain-key-0123456789abcdef' })
    expect(result.ok, JSON.stringify(result.firstBroken)).to.equal(true)
    expect(events[0]?.chain?.mac).to.equal(
      '3e25e7b3bc5f22f8e9ae57980993dab3b47f530a8b8e4c390d9edc35e4eb163e',
    )
    // An edit breaks it, so the check above can fail.
    const edited = events.map((e, i) => (i === 1 ? { ...e, action: 'GET /other' } : e))
    expect(verifyAuditChain(edited, { keys: 'fixture-chain-key-0123456789abcdef' }).ok).to.equal(
      false,
    )
    expect(canonicalHash({ b: [1, 'x'], a: { d: null, c: true } })).to.equal(CANONICAL_HASH_BEFORE)
  })
})

// sha256 of {"a":{"c":true,"d":null},"b":[1,"x"]}, computed with the pre-merge serializer.
const CANONICAL_HASH_BEFORE = '582165beb9dc97d37ab12d65c9d5ff785e7a736798669e05ffc7ce355e8b3054'
