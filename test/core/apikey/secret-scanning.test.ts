import { execFileSync } from 'node:child_process'
import { readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { expect } from 'chai'
import { parse as parseYaml } from 'yaml'
import { createApiKeyManager, createMemoryKeyStore, parseApiKey } from '@portcullis/core'

const ROOT = join(import.meta.dirname, '..', '..', '..')
const DOC = readFileSync(join(ROOT, 'docs', 'secret-scanning.md'), 'utf8')

/** The body of the one fenced block of `lang` in the doc. */
function block(lang: string): string {
  const found = [...DOC.matchAll(new RegExp('```' + lang + '\\n([\\s\\S]*?)```', 'g'))]
  expect(found, `one ${lang} block in docs/secret-scanning.md`).to.have.length(1)
  return found[0]![1]!
}

const documented = block('regex').trim()
const gitleaks = /^regex = '''(.*)'''$/m.exec(block('toml'))?.[1]
const trufflehog = (parseYaml(block('yaml')) as { detectors: { regex: Record<string, string> }[] })
  .detectors[0]?.regex.apikey

/** Every full hit of the documented pattern in `text`. */
function hits(text: string): string[] {
  return [...text.matchAll(new RegExp(documented, 'g'))].map((m) => m[1]!)
}

describe('docs/secret-scanning.md', () => {
  it('gives the same expression to gitleaks and trufflehog', () => {
    expect(gitleaks).to.equal(documented)
    expect(trufflehog).to.equal(documented)
  })

  it('matches every key the manager generates, live and test, wherever it stands', async () => {
    const keys = createApiKeyManager({ store: createMemoryKeyStore(), pepper: 'p'.repeat(32) })
    const prefixes = new Set(['ptcl', 'ptcl_test'])
    for (const environment of ['live', 'test'] as const) {
      for (let i = 0; i < 100; i++) {
        const { key } = await keys.create({ name: `k${i}`, ownerId: 'o', environment })
        expect(parseApiKey(key, prefixes)).to.not.be.a('string')
        expect(hits(key)).to.deep.equal([key])
        expect(hits(`Authorization: Bearer ${key}\n`)).to.deep.equal([key])
        expect(hits(`{"apiKey":"${key}"}`)).to.deep.equal([key])
        expect(hits(`API_KEY=${key}`)).to.deep.equal([key])
      }
    }
  })

  it('matches nothing that is not a whole key', () => {
    const body = 'A1b2C3d4E5'.repeat(5) + 'x9Z8'
    expect(body).to.have.length(54)
    for (const text of [
      `ghp_${'a'.repeat(36)}`,
      `gh_${body}`,
      `ptcl_${body.slice(1)}`,
      `ptcl_${body}Q`,
      `xptcl_${body}`,
      `ptcl_live_${body}`,
      `ptcl-${body}`,
      'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c2VyLTEifQ.c2lnbmF0dXJl',
    ])
      expect(hits(text), text).to.deep.equal([])
  })

  it("finds nothing in the repository's tracked files", () => {
    const files = execFileSync('git', ['ls-files', '-z'], { cwd: ROOT, encoding: 'utf8' })
      .split('\0')
      .filter((f) => f !== '')
    expect(files.length).to.be.greaterThan(100)
    const found: string[] = []
    for (const file of files) {
      const path = join(ROOT, file)
      if (statSync(path).size > 8 * 1024 * 1024) continue
      for (const hit of hits(readFileSync(path, 'latin1'))) found.push(`${file}: ${hit}`)
    }
    expect(found).to.deep.equal([])
  })
})
