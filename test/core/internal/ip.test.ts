import { expect } from 'chai'
import fc from 'fast-check'
import {
  clientIpKey,
  createAccessManager,
  createAuditRedactor,
  ipKeyGenerator,
  truncateIp,
} from '@portcullis/core'
import {
  formatIp,
  IpMatcher,
  maskIp,
  normalizeIp,
  parseCidr,
  parseIp,
} from '../../../packages/core/src/internal/ip.js'
import { compileUsagePolicy, ipAllowed } from '../../../packages/core/src/apikey/usage-policy.js'
import { principal } from '../policy/helpers.js'

/** Spellings of one address, and what every user of the parser must make of each of them. */
interface Row {
  readonly spellings: readonly string[]
  readonly normal: string
  readonly truncated: string
  /** `clientIpKey(ip, 56)`, the gate's limit key. */
  readonly key56: string
  /** `ipKeyGenerator(ip, 56)`, the express-rate-limit drop-in's key. */
  readonly erl56: string
}

const TABLE: readonly Row[] = [
  {
    spellings: [
      '1.2.3.4',
      '::ffff:1.2.3.4',
      '::FFFF:1.2.3.4',
      '::ffff:0102:0304',
      '::ffff:102:304',
      '0:0:0:0:0:ffff:1.2.3.4',
      '0000:0000:0000:0000:0000:FFFF:0102:0304',
      '::ffff:1.2.3.4%eth0',
    ],
    normal: '1.2.3.4',
    truncated: '1.2.3.0',
    key56: '1.2.3.4',
    erl56: '1.2.3.4',
  },
  {
    spellings: [
      '2001:db8:1:2::5',
      '2001:DB8:1:2::5',
      '2001:0db8:0001:0002:0000:0000:0000:0005',
      '2001:db8:1:2:0:0:0:5',
      '2001:db8:1:2:0::5',
      '2001:db8:1:2::0.0.0.5',
      '2001:db8:1:2::5%eth0',
      '2001:Db8:1:2::5%1',
    ],
    normal: '2001:db8:1:2::5',
    truncated: '2001:db8:1::',
    key56: '2001:db8:1:0:0:0:0:0/56',
    erl56: '2001:db8:1::/56',
  },
  {
    spellings: ['2001:db8:0:0:1:0:0:1', '2001:DB8::1:0:0:1', '2001:db8:0000::1:0:0:1'],
    // RFC 5952 §4.2.3: of two equal runs of zeros, the first is shortened.
    normal: '2001:db8::1:0:0:1',
    truncated: '2001:db8::',
    key56: '2001:db8:0:0:0:0:0:0/56',
    erl56: '2001:db8::/56',
  },
  {
    spellings: ['::1', '0:0:0:0:0:0:0:1', '::0001', '0::1'],
    normal: '::1',
    truncated: '::',
    key56: '0:0:0:0:0:0:0:0/56',
    erl56: '::/56',
  },
  {
    spellings: ['fe80::abcd:1', 'FE80::ABCD:1%eth0', 'fe80:0:0:0:0:0:abcd:1%en0'],
    normal: 'fe80::abcd:1',
    truncated: 'fe80::',
    key56: 'fe80:0:0:0:0:0:0:0/56',
    erl56: 'fe80::/56',
  },
]

const allowed = (cidrs: readonly string[], ip: string): boolean => {
  const m = createAccessManager({
    policy: {
      rules: [
        {
          id: 'r',
          effect: 'allow',
          actions: ['x:y'],
          when: { attr: 'request.ip', op: 'cidr', value: [...cidrs] },
        },
      ],
    },
  })
  return m.evaluate({ principal: principal('alice'), action: 'x:y', request: { ip } }).allowed
}

const CIDR_LISTS: readonly (readonly string[])[] = [
  ['1.2.3.0/24'],
  ['1.2.0.0/16', '10.0.0.0/8'],
  ['::ffff:1.2.3.0/120'],
  ['2001:db8:1::/48'],
  ['2001:DB8:1:2::/64'],
  ['2001:db8:1:2::5'],
  ['fe80::/10'],
  ['::1/128'],
  ['0.0.0.0/0'],
]

describe('internal/ip: one parser for limits, redaction and policy', () => {
  describe('equivalent spellings give identical results everywhere', () => {
    const hmac = createAuditRedactor({ ip: 'hmac', ipKey: 'k'.repeat(32) })
    const truncate = createAuditRedactor({ ip: 'truncate' })
    for (const row of TABLE) {
      describe(row.normal, () => {
        for (const ip of row.spellings) {
          it(ip, () => {
            expect(normalizeIp(ip)).to.equal(row.normal)
            expect(truncateIp(ip)).to.equal(row.truncated)
            expect(truncate({ ip })).to.deep.equal({ ip: row.truncated })
            expect(hmac({ ip })).to.deep.equal(hmac({ ip: row.normal }))
            expect(clientIpKey(ip, 56)).to.equal(row.key56)
            expect(clientIpKey(ip, false)).to.equal(clientIpKey(row.normal, false))
            expect(ipKeyGenerator(ip, 56)).to.equal(row.erl56)
            for (const cidrs of CIDR_LISTS) {
              const expected = allowed(cidrs, row.normal)
              expect(allowed(cidrs, ip), `${cidrs.join(',')}`).to.equal(expected)
              const usage = compileUsagePolicy({ allowedCidrs: [...cidrs] }).ips as IpMatcher
              expect(ipAllowed(usage, ip), `usage ${cidrs.join(',')}`).to.equal(expected)
            }
          })
        }
      })
    }

    it('the table can tell addresses apart', () => {
      const hashes = TABLE.map((r) => JSON.stringify(hmac({ ip: r.normal })))
      expect(new Set(hashes).size).to.equal(TABLE.length)
      expect(allowed(['1.2.3.0/24'], '1.2.4.1')).to.equal(false)
      expect(allowed(['2001:db8:1::/48'], '2001:db8:2::1')).to.equal(false)
    })
  })

  it('refuses what is not an address', () => {
    for (const bad of [
      '',
      'x',
      '1.2.3',
      '1.2.3.256',
      '01.2.3.4',
      '::ffff:1.2.3',
      '1::2::3',
      '12345::',
      '10.0.0.1, 8.8.8.8',
    ]) {
      expect(parseIp(bad), bad).to.equal(undefined)
      expect(normalizeIp(bad), bad).to.equal(undefined)
      expect(truncateIp(bad), bad).to.equal('[REDACTED]')
      expect(clientIpKey(bad, 56), bad).to.equal('unknown')
      expect(new IpMatcher([{ address: '0.0.0.0', prefix: 0, family: 'ipv4' }]).has(bad)).to.equal(
        undefined,
      )
    }
  })

  it('writes RFC 5952 text', () => {
    const cases: [string, string][] = [
      ['0:0:0:0:0:0:0:0', '::'],
      ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'], // one zero hextet stays
      ['2001:0:0:1:0:0:0:1', '2001:0:0:1::1'], // the longer run
      ['1:0:0:0:0:0:0:0', '1::'],
      ['0:0:0:0:0:0:0:1', '::1'],
      ['ABCD:EF01:2345:6789:ABCD:EF01:2345:6789', 'abcd:ef01:2345:6789:abcd:ef01:2345:6789'],
    ]
    for (const [input, out] of cases) expect(normalizeIp(input), input).to.equal(out)
  })

  it('parses CIDRs: address with an optional prefix, no zone id', () => {
    expect(parseCidr('10.0.0.0/8')).to.deep.equal({
      address: '10.0.0.0',
      prefix: 8,
      family: 'ipv4',
    })
    expect(parseCidr('2001:DB8::/32')).to.deep.equal({
      address: '2001:DB8::',
      prefix: 32,
      family: 'ipv6',
    })
    expect(parseCidr('10.1.2.3')).to.deep.equal({ address: '10.1.2.3', prefix: 32, family: 'ipv4' })
    expect(parseCidr('::1')).to.deep.equal({ address: '::1', prefix: 128, family: 'ipv6' })
    for (const bad of [
      '10.0.0.0/33',
      '::/129',
      '10.0.0.0/',
      '10.0.0.0/8/8',
      'fe80::%eth0/64',
      'x/8',
      '10.0.0.0/-1',
      '',
    ])
      expect(parseCidr(bad), bad).to.equal(undefined)
  })

  describe('properties', () => {
    const hextets = fc.array(fc.integer({ min: 0, max: 0xffff }), { minLength: 8, maxLength: 8 })
    /** A random RFC 4291 spelling of eight hextets: case, leading zeros, `::` placement. */
    const spelling = (h: readonly number[]) =>
      fc
        .record({
          upper: fc.boolean(),
          pad: fc.boolean(),
          cut: fc.option(fc.tuple(fc.nat(7), fc.nat(8)), { nil: undefined }),
        })
        .map(({ upper, pad, cut }) => {
          const text = h.map((x) => {
            const s = x.toString(16)
            const t = pad ? s.padStart(4, '0') : s
            return upper ? t.toUpperCase() : t
          })
          if (cut !== undefined) {
            const [from, len] = cut
            const to = Math.min(8, from + len)
            // `::` may only stand for zeros; take the zero run starting at `from` up to `to`.
            let end = from
            while (end < to && h[end] === 0) end++
            if (end - from >= 1)
              return `${text.slice(0, from).join(':')}::${text.slice(end).join(':')}`
          }
          return text.join(':')
        })

    it('every spelling of eight hextets parses to them (IPv4-mapped ones to IPv4)', () => {
      fc.assert(
        fc.property(
          hextets.chain((h) => fc.tuple(fc.constant(h), spelling(h))),
          ([h, text]) => {
            const ip = parseIp(text)
            expect(ip, text).to.not.equal(undefined)
            const mapped = h.slice(0, 5).every((x) => x === 0) && h[5] === 0xffff
            if (mapped) expect(ip?.family).to.equal(4)
            else expect(ip?.parts).to.deep.equal(h)
          },
        ),
      )
    })

    it('normalized text is what the WHATWG URL parser writes, and normalizing is idempotent', () => {
      fc.assert(
        fc.property(fc.ipV6(), (text) => {
          const normal = normalizeIp(text) as string
          expect(normalizeIp(normal)).to.equal(normal)
          const ip = parseIp(text) as ReturnType<typeof parseIp> & object
          if (ip.family === 6) expect(`[${normal}]`).to.equal(new URL(`http://[${text}]/`).hostname)
          else {
            // WHATWG writes a mapped address in hex (`::ffff:102:304`); we write it as IPv4.
            const [a, b, c, d] = ip.parts as [number, number, number, number]
            const mapped = `::ffff:${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`
            expect(new URL(`http://[${text}]/`).hostname).to.equal(`[${mapped}]`)
            expect(normal).to.equal(`${a}.${b}.${c}.${d}`)
          }
        }),
      )
    })

    it('IPv4 containment agrees with integer arithmetic, through every spelling', () => {
      fc.assert(
        fc.property(
          fc.nat(0xffffffff),
          fc.nat(0xffffffff),
          fc.integer({ min: 0, max: 32 }),
          (a, n, p) => {
            const dotted = (x: number) =>
              [x >>> 24, (x >>> 16) & 0xff, (x >>> 8) & 0xff, x & 0xff].join('.')
            const m = new IpMatcher([parseCidr(`${dotted(n)}/${p}`)!])
            const inside = p === 0 || a >>> (32 - p) === n >>> (32 - p)
            expect(m.has(dotted(a))).to.equal(inside)
            const hex = `::ffff:${(a >>> 16).toString(16)}:${(a & 0xffff).toString(16)}`
            expect(m.has(hex)).to.equal(inside)
            expect(m.has(hex.toUpperCase())).to.equal(inside)
          },
        ),
      )
    })

    it('an IPv6 address is inside its own /p network and its prefix key is that network', () => {
      fc.assert(
        fc.property(hextets, fc.integer({ min: 1, max: 128 }), (h, p) => {
          const text = h.map((x) => x.toString(16)).join(':')
          const ip = parseIp(text)!
          fc.pre(ip.family === 6)
          const net = formatIp(maskIp(ip, p))
          expect(new IpMatcher([parseCidr(`${net}/${p}`)!]).has(text)).to.equal(true)
          expect(ipKeyGenerator(text, p)).to.equal(`${net}/${p}`)
          expect(clientIpKey(text, p)).to.equal(
            `${formatIp(maskIp(ip, p), false)}${p === 128 ? '' : `/${p}`}`,
          )
          // Flipping the last bit of the prefix leaves the network.
          {
            const i = Math.floor((p - 1) / 16)
            const flipped = [...h]
            flipped[i] = (flipped[i] as number) ^ (1 << (15 - ((p - 1) % 16)))
            const other = flipped.map((x) => x.toString(16)).join(':')
            fc.pre(parseIp(other)!.family === 6)
            expect(new IpMatcher([parseCidr(`${net}/${p}`)!]).has(other)).to.equal(false)
          }
        }),
      )
    })
  })
})
