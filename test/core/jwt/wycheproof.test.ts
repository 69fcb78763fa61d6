/**
 * Wycheproof vectors (test/fixtures/wycheproof, see its README.md) against the JWS layer and the
 * signature primitives of @portcullis/core.
 */
import { createHmac, createPublicKey, createSecretKey, type KeyObject } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { expect } from 'chai'
import {
  bindKey,
  isConfigError,
  keyMismatch,
  verifyCompactJws,
  verifySignature,
  type JsonWebKeyInput,
  type JwsAlgorithm,
  type JwsResult,
  type JwsVerifyOptions,
} from '@portcullis/core'
import { testKeys } from './helpers.js'

const FIXTURES = new URL('../../fixtures/wycheproof/', import.meta.url)

function load<T>(name: string): T {
  return JSON.parse(readFileSync(new URL(name, FIXTURES), 'utf8')) as T
}

type Label = 'valid' | 'invalid' | 'acceptable'
type BoundKey = ReturnType<typeof bindKey>

// ---------------------------------------------------------------------------------------------
// json_web_signature_test.json
// ---------------------------------------------------------------------------------------------

interface JwsCase {
  readonly tcId: number
  readonly comment: string
  readonly jws: unknown
  readonly result: Label
  readonly flags: readonly string[]
}
interface JwsGroup {
  readonly comment: string
  readonly public?: JsonWebKeyInput
  readonly private?: JsonWebKeyInput
  readonly tests: readonly JwsCase[]
}
interface JwsFile {
  readonly numberOfTests: number
  readonly testGroups: readonly JwsGroup[]
}

/**
 * Cases whose Wycheproof label we knowingly do not follow. Each was recomputed (see the README
 * beside the vectors and the "exceptions table" tests below, which re-check every claim made here).
 */
const JWS_EXCEPTIONS: ReadonlyMap<
  number,
  { readonly ours: 'accept' | 'reject'; readonly why: string }
> = new Map([
  // Labelled invalid ("invalidBase64Padding"), but the token is byte-identical to valid tcId 357:
  // there is no padding in it, so a correct verifier must accept it.
  [367, { ours: 'accept', why: 'byte-identical to valid tcId 357' }],
  // Same for "invalidBase64PaddingInPayload".
  [370, { ours: 'accept', why: 'byte-identical to valid tcId 357' }],
  // Labelled valid, but a "?" was inserted into the header: not base64url, and the MAC over the
  // modified signing input does not match the (unchanged) tag of tcId 357.
  [372, { ours: 'reject', why: '"?" in header: not base64url, MAC cannot match' }],
  // Same with the "?" inserted into the payload.
  [373, { ours: 'reject', why: '"?" in payload: not base64url, MAC cannot match' }],
  // RFC 7520 Figure 20: the JWK says alg PS256 while the token is PS384. Keys are bound to their
  // JWK's alg, so the token's algorithm is not allowed for that key.
  [346, { ours: 'reject', why: 'JWK alg PS256, token alg PS384' }],
  [350, { ours: 'reject', why: 'JWK alg PS256, token alg PS384 (key_ops variant)' }],
  // RFC 7520 Figure 27: the JWK says alg "ES521", which is not a registered algorithm (ES512
  // is): bindKey refuses the key, so nothing verifies with it.
  [347, { ours: 'reject', why: 'JWK alg "ES521" is not a JWS algorithm' }],
  [351, { ours: 'reject', why: 'JWK alg "ES521" is not a JWS algorithm (key_ops variant)' }],
])

const jwsFile = load<JwsFile>('json_web_signature_test.json')
const allJwsCases = jwsFile.testGroups.flatMap((g) => g.tests.map((t) => ({ group: g, test: t })))
const jwsCase = (tcId: number): { group: JwsGroup; test: JwsCase } => {
  const found = allJwsCases.find((c) => c.test.tcId === tcId)
  if (found === undefined) throw new Error(`no tcId ${tcId} in json_web_signature_test.json`)
  return found
}

/** The options of the brief: only the key's algorithm, a resolver returning the bound key. */
function jwsOptions(bound: BoundKey): JwsVerifyOptions {
  return {
    algorithms: new Set([bound.alg]),
    keys: { resolve: (alg: JwsAlgorithm) => (alg === bound.alg ? [bound] : []) },
    maxTokenLength: 1 << 20,
    types: new Set(['jwt']),
    requireTyp: false,
  }
}

/** Non-string `jws` (JSON serialization) is passed as its JSON text: it must not verify either. */
const asToken = (jws: unknown): string => (typeof jws === 'string' ? jws : JSON.stringify(jws))

const describeResult = (r: JwsResult): string => (r.ok ? 'verified' : `${r.kind}: ${r.reason}`)

describe('Wycheproof json_web_signature_test.json through verifyCompactJws', () => {
  it(`holds the ${jwsFile.numberOfTests} cases its header announces`, () => {
    expect(allJwsCases).to.have.length(jwsFile.numberOfTests)
    expect(new Set(allJwsCases.map((c) => c.test.tcId)).size).to.equal(allJwsCases.length)
  })

  jwsFile.testGroups.forEach((group, index) => {
    const jwk = group.public ?? group.private
    const title = `group ${index} "${group.comment}" (${jwk?.kty} key, alg ${jwk?.alg ?? 'none given'})`
    describe(title, () => {
      // bindKey runs at definition time; a ConfigError counts as rejecting every case of the group
      // (the intended outcome for the JWKs with a bad or missing alg, wrong use or key_ops).
      let bound: BoundKey | undefined
      let configError: unknown
      try {
        bound = bindKey({ jwk: jwk as JsonWebKeyInput }, `wycheproof[${index}]`)
      } catch (error) {
        configError = error
      }

      for (const test of group.tests) {
        const exception = JWS_EXCEPTIONS.get(test.tcId)
        const shouldVerify =
          exception === undefined ? test.result === 'valid' : exception.ours === 'accept'
        const label =
          exception === undefined ? test.result : `${test.result}, exception: ${exception.why}`
        it(`${shouldVerify ? 'verifies' : 'rejects'} tcId ${test.tcId} "${test.comment}" (${label})`, async () => {
          if (bound === undefined) {
            // Only a ConfigError may stand for a rejection; anything else is a bug.
            expect(isConfigError(configError), String(configError)).to.equal(true)
            expect(shouldVerify, `bindKey refused the key: ${String(configError)}`).to.equal(false)
            return
          }
          const result = await verifyCompactJws(asToken(test.jws), jwsOptions(bound))
          expect(result.ok, describeResult(result)).to.equal(shouldVerify)
          if (result.ok) {
            const encodedPayload = asToken(test.jws).split('.')[1] as string
            expect(result.payload.equals(Buffer.from(encodedPayload, 'base64url'))).to.equal(true)
            expect(result.header.alg).to.equal(bound.alg)
          }
        })
      }
    })
  })

  describe('exceptions table', () => {
    it('names only tcIds that exist, with a label opposite to the behaviour we chose', () => {
      for (const [tcId, exception] of JWS_EXCEPTIONS) {
        const { test } = jwsCase(tcId)
        expect(test.result, `tcId ${tcId}`).to.equal(
          exception.ours === 'accept' ? 'invalid' : 'valid',
        )
      }
    })

    it('tcIds 367 and 370 are byte-identical to valid tcId 357', () => {
      const reference = jwsCase(357).test
      expect(reference.result).to.equal('valid')
      expect(jwsCase(367).test.jws).to.equal(reference.jws)
      expect(jwsCase(370).test.jws).to.equal(reference.jws)
    })

    it('tcIds 372 and 373 carry a character outside the base64url alphabet', () => {
      for (const tcId of [372, 373]) {
        const token = jwsCase(tcId).test.jws as string
        expect(token, `tcId ${tcId}`).to.match(/[^A-Za-z0-9_.-]/)
      }
    })

    it('tcIds 346/350 verify once the same RSA key is bound to PS384, the alg of the token', async () => {
      for (const tcId of [346, 350]) {
        const { group, test } = jwsCase(tcId)
        const { alg: jwkAlg, ...jwk } = group.public as JsonWebKeyInput
        expect(jwkAlg).to.equal('PS256')
        const bound = bindKey({ alg: 'PS384', jwk }, 'rebound')
        const result = await verifyCompactJws(test.jws as string, jwsOptions(bound))
        expect(result.ok, `tcId ${tcId}: ${describeResult(result)}`).to.equal(true)
      }
    })

    it('tcIds 347/351 verify once the same P-521 key is bound to ES512 instead of "ES521"', async () => {
      for (const tcId of [347, 351]) {
        const { group, test } = jwsCase(tcId)
        const { alg: jwkAlg, ...jwk } = group.public as JsonWebKeyInput
        expect(jwkAlg).to.equal('ES521')
        expect(() => bindKey({ jwk: group.public as JsonWebKeyInput }, 'as-given')).to.throw(
          /unknown or unsupported algorithm "ES521"/,
        )
        const bound = bindKey({ alg: 'ES512', jwk }, 'rebound')
        const result = await verifyCompactJws(test.jws as string, jwsOptions(bound))
        expect(result.ok, `tcId ${tcId}: ${describeResult(result)}`).to.equal(true)
      }
    })
  })
})

// ---------------------------------------------------------------------------------------------
// Primitive files through verifySignature(alg, key, data: string, signature)
// ---------------------------------------------------------------------------------------------

interface PrimitiveCase {
  readonly tcId: number
  readonly comment: string
  readonly flags: readonly string[]
  readonly msg: string
  readonly sig?: string
  readonly tag?: string
  readonly key?: string
  readonly result: Label
}
interface PrimitiveGroup {
  readonly tagSize?: number
  readonly keySize?: number
  readonly publicKeyDer?: string
  readonly tests: readonly PrimitiveCase[]
}
interface PrimitiveFile {
  readonly algorithm: string
  readonly numberOfTests: number
  readonly testGroups: readonly PrimitiveGroup[]
}

const PRIMITIVE_FILES: readonly { readonly file: string; readonly alg: JwsAlgorithm }[] = [
  { file: 'hmac_sha256_test.json', alg: 'HS256' },
  { file: 'hmac_sha384_test.json', alg: 'HS384' },
  { file: 'hmac_sha512_test.json', alg: 'HS512' },
  { file: 'ecdsa_secp256r1_sha256_p1363_test.json', alg: 'ES256' },
  { file: 'ecdsa_secp384r1_sha384_p1363_test.json', alg: 'ES384' },
  { file: 'ed25519_test.json', alg: 'EdDSA' },
  { file: 'rsa_signature_2048_sha256_test.json', alg: 'RS256' },
  { file: 'rsa_pss_2048_sha256_mgf1_32_test.json', alg: 'PS256' },
]

/**
 * Our decision for each "acceptable" case (Wycheproof: either outcome is compliant). We choose
 * strictness. Any acceptable case missing here fails the run.
 */
const ACCEPTABLE_DECISIONS: ReadonlyMap<string, ReadonlyMap<number, boolean>> = new Map([
  // tcId 8 "Missing NULL in the ASN encoding" (flag MissingNull): PKCS#1 v1.5 DigestInfo without
  // the NULL parameters. RFC 8017 §9.2 note 2 allows accepting it; we reject it.
  ['rsa_signature_2048_sha256_test.json', new Map([[8, false]])],
])

const FULL_TAG_BITS: Partial<Record<JwsAlgorithm, number>> = { HS256: 256, HS384: 384, HS512: 512 }

interface PlannedCase {
  readonly test: PrimitiveCase
  readonly key: KeyObject
  readonly data: string
  readonly signature: Buffer
}

interface Plan {
  readonly run: PlannedCase[]
  readonly acceptable: PlannedCase[]
  readonly truncatedTag: { readonly test: PrimitiveCase; readonly key: KeyObject }[]
  readonly refusedKey: {
    readonly test: PrimitiveCase
    readonly key: KeyObject
    readonly why: string
  }[]
  readonly notUtf8: PrimitiveCase[]
}

/** Sorts every case of a file into: run, acceptable, or skipped (and why). */
function plan(file: PrimitiveFile, alg: JwsAlgorithm): Plan {
  const out: Plan = { run: [], acceptable: [], truncatedTag: [], refusedKey: [], notUtf8: [] }
  for (const group of file.testGroups) {
    let groupKey: KeyObject | undefined
    if (group.publicKeyDer !== undefined) {
      groupKey = createPublicKey({
        key: Buffer.from(group.publicKeyDer, 'hex'),
        format: 'der',
        type: 'spki',
      })
    }
    for (const test of group.tests) {
      const key = test.key === undefined ? groupKey : createSecretKey(Buffer.from(test.key, 'hex'))
      if (key === undefined) throw new Error(`tcId ${test.tcId}: no key`)
      const full = FULL_TAG_BITS[alg]
      if (full !== undefined && group.tagSize !== full) {
        out.truncatedTag.push({ test, key })
        continue
      }
      const why = keyMismatch(alg, key)
      if (why !== undefined) {
        out.refusedKey.push({ test, key, why })
        continue
      }
      // verifySignature takes the signing input as a string and encodes it as UTF-8: only
      // messages that are valid UTF-8 can be expressed.
      const msg = Buffer.from(test.msg, 'hex')
      const data = msg.toString('utf8')
      if (!Buffer.from(data, 'utf8').equals(msg)) {
        out.notUtf8.push(test)
        continue
      }
      const signature = Buffer.from(test.sig ?? test.tag ?? '', 'hex')
      ;(test.result === 'acceptable' ? out.acceptable : out.run).push({
        test,
        key,
        data,
        signature,
      })
    }
  }
  return out
}

for (const { file, alg } of PRIMITIVE_FILES) {
  const data = load<PrimitiveFile>(file)
  const p = plan(data, alg)
  const total = data.testGroups.reduce((n, g) => n + g.tests.length, 0)
  const skipped = p.truncatedTag.length + p.refusedKey.length + p.notUtf8.length

  describe(`Wycheproof ${file} through verifySignature('${alg}', ...)`, () => {
    it(`sorts all ${total} cases: ${p.run.length} run, ${p.acceptable.length} acceptable, ${skipped} skipped (${p.truncatedTag.length} truncated tags, ${p.refusedKey.length} keys refused by keyMismatch, ${p.notUtf8.length} messages not valid UTF-8)`, () => {
      expect(total).to.equal(data.numberOfTests)
      expect(p.run.length + p.acceptable.length + skipped).to.equal(total)
      expect(p.run.length, 'cases run').to.be.greaterThan(0)
    })

    it(`agrees with the label of all ${p.run.length} runnable valid/invalid cases`, () => {
      const failures: string[] = []
      for (const c of p.run) {
        const ok = verifySignature(alg, c.key, c.data, c.signature)
        if (ok !== (c.test.result === 'valid')) {
          failures.push(
            `tcId ${c.test.tcId} (${c.test.result}) "${c.test.comment}" [${c.test.flags.join(',')}]: got ${ok}`,
          )
        }
      }
      expect(failures, failures.join('\n')).to.deep.equal([])
    })

    it(`applies our recorded decision to the ${p.acceptable.length} "acceptable" cases`, () => {
      const decisions = ACCEPTABLE_DECISIONS.get(file) ?? new Map<number, boolean>()
      const failures: string[] = []
      for (const c of p.acceptable) {
        const decision = decisions.get(c.test.tcId)
        const ok = verifySignature(alg, c.key, c.data, c.signature)
        if (decision === undefined)
          failures.push(`tcId ${c.test.tcId} "${c.test.comment}": no decision recorded (got ${ok})`)
        else if (ok !== decision)
          failures.push(`tcId ${c.test.tcId} "${c.test.comment}": expected ${decision}, got ${ok}`)
      }
      expect(failures, failures.join('\n')).to.deep.equal([])
      expect(p.acceptable.map((c) => c.test.tcId)).to.have.members([...decisions.keys()])
    })

    if (p.refusedKey.length > 0) {
      it(`keyMismatch refuses the keys of the ${p.refusedKey.length} skipped weak-key cases`, () => {
        const minBytes = { HS256: 32, HS384: 48, HS512: 64 }[alg as 'HS256' | 'HS384' | 'HS512']
        for (const c of p.refusedKey) {
          expect(c.key.symmetricKeySize, `tcId ${c.test.tcId}`).to.be.lessThan(minBytes)
          expect(c.why).to.equal(
            `${alg} needs a secret of at least ${minBytes} bytes, got ${c.key.symmetricKeySize}`,
          )
        }
      })
    }

    if (p.truncatedTag.length > 0) {
      // Only valid truncated tags over UTF-8 messages: there the MAC input is exact, and the tag is
      // a prefix of the full HMAC, so truncation is the only reason left to refuse it.
      const truncated = p.truncatedTag.filter(({ test }) => {
        const msg = Buffer.from(test.msg, 'hex')
        return test.result === 'valid' && Buffer.from(msg.toString('utf8'), 'utf8').equals(msg)
      })
      it(`never accepts a truncated tag (${truncated.length} valid truncated-tag cases with UTF-8 messages refused)`, () => {
        expect(truncated.length).to.be.greaterThan(0)
        const hash = alg.replace('HS', 'sha')
        for (const { test, key } of truncated) {
          const data = Buffer.from(test.msg, 'hex').toString('utf8')
          const tag = Buffer.from(test.tag ?? '', 'hex')
          const full = createHmac(hash, key).update(data).digest()
          expect(
            full.subarray(0, tag.length).equals(tag),
            `tcId ${test.tcId} precondition`,
          ).to.equal(true)
          expect(verifySignature(alg, key, data, tag), `tcId ${test.tcId}`).to.equal(false)
          // verifySignature itself does not check key sizes (keyMismatch does): the full tag verifies.
          expect(verifySignature(alg, key, data, full), `tcId ${test.tcId} full tag`).to.equal(true)
        }
      })
    }
  })
}

describe('keyMismatch on keys the Wycheproof files do not cover', () => {
  const p256 = load<PrimitiveFile>('ecdsa_secp256r1_sha256_p1363_test.json').testGroups[0]
  const p384 = load<PrimitiveFile>('ecdsa_secp384r1_sha384_p1363_test.json').testGroups[0]
  const rsa = load<PrimitiveFile>('rsa_signature_2048_sha256_test.json').testGroups[0]
  const ed = load<PrimitiveFile>('ed25519_test.json').testGroups[0]
  const der = (g: PrimitiveGroup | undefined): KeyObject =>
    createPublicKey({ key: Buffer.from(g?.publicKeyDer ?? '', 'hex'), format: 'der', type: 'spki' })

  it('refuses a P-256 key for ES384 and a P-384 key for ES256', () => {
    expect(keyMismatch('ES384', der(p256))).to.equal(
      'ES384 needs an EC key on secp384r1, got ec prime256v1',
    )
    expect(keyMismatch('ES256', der(p384))).to.equal(
      'ES256 needs an EC key on prime256v1, got ec secp384r1',
    )
    expect(keyMismatch('ES256', der(p256))).to.equal(undefined)
    expect(keyMismatch('ES384', der(p384))).to.equal(undefined)
  })

  it('refuses keys of another family for every algorithm', () => {
    expect(keyMismatch('RS256', der(p256))).to.match(/^RS256 needs an RSA key/)
    expect(keyMismatch('ES256', der(rsa))).to.match(/^ES256 needs an EC key/)
    expect(keyMismatch('EdDSA', der(rsa))).to.match(/^EdDSA needs an ed25519\/ed448 key/)
    expect(keyMismatch('HS256', der(rsa))).to.equal('HS256 needs a secret key, got a public key')
    expect(keyMismatch('ES256', der(ed))).to.match(/^ES256 needs an EC key/)
    expect(keyMismatch('PS256', der(rsa))).to.equal(undefined)
  })

  it('refuses an RSA key of 1024 bits for RS256 and PS256', () => {
    const weak = testKeys().rsa1024.publicKey
    expect(keyMismatch('RS256', weak)).to.equal(
      'RS256 needs an RSA key of at least 2048 bits, got 1024',
    )
    expect(keyMismatch('PS256', weak)).to.equal(
      'PS256 needs an RSA key of at least 2048 bits, got 1024',
    )
  })

  it('refuses a private key where a public key is expected', () => {
    expect(keyMismatch('ES256', testKeys().p256.privateKey)).to.equal(
      'ES256 needs a public key, got a private key',
    )
  })
})
