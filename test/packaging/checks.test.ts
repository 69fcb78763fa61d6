// The packaging checks can fail: each is run on a package broken on purpose and must report it.
// The functions are the ones packaging.test.ts runs on the real packages.
import { existsSync, readFileSync } from 'node:fs'
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect } from 'chai'
import {
  REPO,
  checkContents,
  checkSourceMaps,
  compileConsumer,
  packPackages,
  runAttw,
  runPublint,
  type PackedPackage,
} from './check.js'

async function writeJson(path: string, value: unknown): Promise<void> {
  await writeFile(path, `${JSON.stringify(value, null, 2)}\n`)
}

describe('packaging checks (on packages broken on purpose)', function () {
  this.timeout(120_000)
  let work: string
  let license: string

  before(async function () {
    work = await mkdtemp(join(tmpdir(), 'portcullis-packaging-checks-'))
    license = readFileSync(join(REPO, 'LICENSE'), 'utf8')
  })
  after(async function () {
    if (work !== undefined) await rm(work, { recursive: true, force: true })
  })

  describe('a copy of @portcullis/core whose exports name a file that is not there', function () {
    let broken: PackedPackage

    before(async function () {
      if (!existsSync(join(REPO, 'packages', 'core', 'dist')))
        throw new Error('packages/core/dist is missing: run `npm run build` first')
      const dir = join(work, 'core')
      await cp(join(REPO, 'packages', 'core'), dir, {
        recursive: true,
        filter: (source) => !source.includes('node_modules'),
      })
      const manifest = JSON.parse(await readFile(join(dir, 'package.json'), 'utf8')) as {
        exports: Record<string, unknown>
      }
      manifest.exports['./missing'] = {
        types: './dist/missing.d.ts',
        default: './dist/missing.js',
      }
      await writeJson(join(dir, 'package.json'), manifest)
      const packed = await packPackages([dir], join(work, 'core-packed'))
      expect(packed).to.have.length(1)
      broken = packed[0] as PackedPackage
    })

    it('checkContents names both missing files', function () {
      expect(checkContents(broken.dir, license)).to.deep.equal([
        '@portcullis/core: exports["./missing"] names ./dist/missing.d.ts, not in the tarball',
        '@portcullis/core: exports["./missing"] names ./dist/missing.js, not in the tarball',
      ])
    })

    it('publint reports FILE_DOES_NOT_EXIST errors', async function () {
      const messages = await runPublint(broken.tarball)
      const errors = messages.filter((m) => m.type === 'error')
      expect(errors).to.have.length.above(0)
      for (const e of errors) expect(e.text).to.include('FILE_DOES_NOT_EXIST')
    })

    it('@arethetypeswrong reports the entry point whose types do not resolve', async function () {
      const problems = await runAttw(broken.tarball)
      expect(problems).to.have.length.above(0)
      expect(problems.every((p) => p.includes('./missing'))).to.equal(true)
    })

    it('checkSourceMaps names the maps whose source was left out', async function () {
      await rm(join(broken.dir, 'src', 'errors.ts'))
      const { problems } = checkSourceMaps(broken.dir)
      expect(problems).to.deep.equal([
        'dist/errors.d.ts.map: source ../src/errors.ts is not in the tarball',
        'dist/errors.js.map: source ../src/errors.ts is not in the tarball',
      ])
    })
  })

  describe('checkContents and checkSourceMaps on a hand-made package', function () {
    let dir: string

    beforeEach(async function () {
      dir = join(work, `hand-made-${Math.random().toString(36).slice(2)}`)
      await mkdir(join(dir, 'dist'), { recursive: true })
      await writeJson(join(dir, 'package.json'), {
        name: '@portcullis/hand-made',
        version: '0.1.0',
        exports: { '.': './dist/index.js', './package.json': './package.json' },
        bin: { 'hand-made': './dist/index.js' },
      })
      await writeFile(join(dir, 'LICENSE'), license)
      await writeFile(join(dir, 'README.md'), '# hand-made\n')
      await writeFile(join(dir, 'dist', 'index.js'), '#!/usr/bin/env node\nexport {}\n')
    })

    it('passes the package as made', function () {
      expect(checkContents(dir, license)).to.deep.equal([])
    })

    it('reports a LICENSE that drifted from the root one, and a missing README', async function () {
      await writeFile(join(dir, 'LICENSE'), license.replace('2026', '2025'))
      await rm(join(dir, 'README.md'))
      expect(checkContents(dir, license)).to.deep.equal([
        '@portcullis/hand-made: README.md is not in the tarball',
        "@portcullis/hand-made: LICENSE differs from the repository's LICENSE",
      ])
    })

    it('reports a bin without a node shebang', async function () {
      await writeFile(join(dir, 'dist', 'index.js'), 'export {}\n')
      expect(checkContents(dir, license)).to.deep.equal([
        '@portcullis/hand-made: bin.hand-made ./dist/index.js does not start with #!/usr/bin/env node',
      ])
    })

    it('accepts a map that carries its sources, and refuses one pointing outside', async function () {
      await writeJson(join(dir, 'dist', 'inline.js.map'), {
        version: 3,
        sources: ['../src/inline.ts'],
        sourcesContent: ['export {}\n'],
        mappings: '',
      })
      expect(checkSourceMaps(dir)).to.deep.equal({ maps: 1, problems: [] })
      await writeJson(join(dir, 'dist', 'outside.js.map'), {
        version: 3,
        sources: ['../../elsewhere/outside.ts'],
        mappings: '',
      })
      expect(checkSourceMaps(dir).problems).to.deep.equal([
        'dist/outside.js.map: source ../../elsewhere/outside.ts is outside the package',
      ])
    })
  })

  describe('compileConsumer', function () {
    it("reports errors in a @portcullis package's declarations, not in other packages'", async function () {
      const dir = join(work, 'ts-consumer')
      const ours = join(dir, 'node_modules', '@portcullis', 'fake')
      const theirs = join(dir, 'node_modules', 'theirs')
      for (const [folder, name] of [
        [ours, '@portcullis/fake'],
        [theirs, 'theirs'],
      ] as const) {
        await mkdir(folder, { recursive: true })
        await writeJson(join(folder, 'package.json'), {
          name,
          version: '0.1.0',
          type: 'module',
          exports: { '.': { types: './index.d.ts', default: './index.js' } },
        })
        // Both declarations import a package that is not installed.
        await writeFile(
          join(folder, 'index.d.ts'),
          "import type { Missing } from 'not-installed'\nexport declare const value: Missing\n",
        )
      }
      await writeFile(
        join(dir, 'index.mts'),
        "import { value } from '@portcullis/fake'\nimport { value as other } from 'theirs'\n" +
          'export const both = [value, other]\n',
      )
      await writeJson(join(dir, 'tsconfig.json'), {
        compilerOptions: {
          strict: true,
          module: 'node16',
          moduleResolution: 'node16',
          target: 'ES2022',
          types: [],
          noEmit: true,
        },
        files: ['index.mts'],
      })
      const errors = compileConsumer(join(dir, 'tsconfig.json'))
      expect(errors).to.have.length(1)
      expect(errors[0], String(errors)).to.match(
        /node_modules\/@portcullis\/fake\/index\.d\.ts\(1,30\): TS2307: /,
      )
    })
  })
})
