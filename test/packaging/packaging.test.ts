// Packs every package under packages/ as `npm publish` would, checks what is inside each tarball
// (LICENSE, README, every file the manifest names, source maps), lints it with publint and
// @arethetypeswrong, installs the tarballs into a consumer project (offline, from npm's cache)
// and loads every entry point from there: CommonJS require(), ESM, and TypeScript in the three
// configurations users run. Needs the build (`npm test` builds first).
import { existsSync, readFileSync } from 'node:fs'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect } from 'chai'
import { startPostgres, skipWithoutPostgres } from '../helpers/postgres-server.js'
import {
  REPO,
  checkContents,
  checkSourceMaps,
  copyNativeAddon,
  entryPoints,
  installConsumer,
  packPackages,
  packageFolders,
  run,
  runAttw,
  runPublint,
  compileConsumer,
  type PackedPackage,
  type Run,
} from './check.js'

// What the adapters, stores and the TypeScript consumers need beside our packages: the peers a
// user installs (frameworks, drivers, metrics libraries) and the types their declarations use.
const CONSUMER_EXTRAS = [
  'express',
  'koa',
  'fastify',
  'ioredis',
  'pg',
  'prom-client',
  '@opentelemetry/api',
  'passport',
  'better-sqlite3',
  '@types/node',
  '@types/express',
  '@types/koa',
]

const PEPPER = 'packaging-test-pepper-0123456789abcdef-0123'

/** The linked bin of a consumer project, run there with a clean PORTCULLIS_* environment. */
function portcullis(
  consumer: string,
  args: readonly string[],
  env: Record<string, string> = {},
): Promise<Run> {
  const clean: Record<string, string> = {}
  for (const [k, v] of Object.entries(process.env))
    if (v !== undefined && !k.startsWith('PORTCULLIS_')) clean[k] = v
  return run(join(consumer, 'node_modules', '.bin', 'portcullis'), args, {
    cwd: consumer,
    env: { ...clean, ...env },
  })
}

describe('packaging: the packages as npm would publish them', function () {
  this.timeout(240_000)
  let work: string
  let packed: PackedPackage[]
  let license: string

  before(async function () {
    for (const folder of packageFolders())
      if (!existsSync(join(folder, 'dist')))
        throw new Error(`${folder}/dist is missing: run \`npm run build\` first`)
    work = await mkdtemp(join(tmpdir(), 'portcullis-packaging-'))
    license = readFileSync(join(REPO, 'LICENSE'), 'utf8')
    packed = await packPackages(packageFolders(), join(work, 'tarballs'))
  })
  after(async function () {
    if (work !== undefined) await rm(work, { recursive: true, force: true })
  })

  it('packs one @portcullis/<folder> tarball for every folder under packages/', function () {
    const expected = packageFolders().map((f) => `@portcullis/${f.slice(f.lastIndexOf('/') + 1)}`)
    expect(packed.map((p) => p.name).sort()).to.deep.equal(expected.sort())
  })

  it('ships LICENSE (the root one), README.md, package.json and every file the manifest names', function () {
    expect(packed.flatMap((p) => checkContents(p.dir, license))).to.deep.equal([])
  })

  it('ships source maps whose every source is in the tarball', function () {
    const results = packed.map((p) => ({ name: p.name, ...checkSourceMaps(p.dir) }))
    expect(results.flatMap((r) => r.problems)).to.deep.equal([])
    // Every package has maps (the build emits them), so the check above looked at something.
    expect(results.filter((r) => r.maps === 0).map((r) => r.name)).to.deep.equal([])
  })

  it('passes publint with no error, warning or suggestion', async function () {
    const messages = []
    for (const p of packed) messages.push(...(await runPublint(p.tarball)))
    expect(messages).to.deep.equal([])
  })

  it('passes @arethetypeswrong with the esm-only profile', async function () {
    const problems: string[] = []
    for (const p of packed)
      problems.push(...(await runAttw(p.tarball)).map((x) => `${p.name}: ${x}`))
    expect(problems).to.deep.equal([])
  })

  describe('installed from the tarballs into a consumer project', function () {
    let consumer: string
    let specifiers: string[]

    before(async function () {
      consumer = join(work, 'consumer')
      await installConsumer(consumer, packed, CONSUMER_EXTRAS)
      await copyNativeAddon(consumer)
      specifiers = packed.flatMap((p) => entryPoints(p.manifest)).sort()
      // The list is not empty and holds the subpaths, so the consumers below import them all.
      expect(specifiers).to.include.members([
        '@portcullis/core',
        '@portcullis/core/testing',
        '@portcullis/express/rate-limit',
        '@portcullis/cli',
      ])
    })

    it('require()s every entry point of every package from CommonJS', async function () {
      const file = join(consumer, 'require-all.cjs')
      await writeFile(
        file,
        `'use strict'\nconst specifiers = ${JSON.stringify(specifiers)}\n` +
          'const out = {}\n' +
          'for (const s of specifiers) out[s] = Object.keys(require(s)).length\n' +
          'process.stdout.write(JSON.stringify(out))\n',
      )
      const r = await run(process.execPath, [file], { cwd: consumer })
      expect(r.code, r.stderr).to.equal(0)
      const counts = JSON.parse(r.stdout) as Record<string, number>
      expect(Object.keys(counts).sort()).to.deep.equal(specifiers)
      for (const [s, n] of Object.entries(counts)) expect(n, `exports of ${s}`).to.be.above(0)
    })

    describe('TypeScript consumers, compiled with the repository TypeScript 6', function () {
      // Each file imports every entry point as a namespace, and refuses one typed `any` (an entry
      // point whose types did not resolve), then prints how many exports each has.
      const source = (kind: 'esm' | 'cjs'): string => {
        const lines = [
          '// Generated by test/packaging/packaging.test.ts.',
          ...specifiers.map((s, i) => `import * as m${i} from '${s}'`),
          'type NotAny<T> = 0 extends 1 & T ? never : T',
          ...specifiers.map((_, i) => `const t${i}: NotAny<typeof m${i}> = m${i}`),
          `const all: Record<string, object> = { ${specifiers.map((s, i) => `'${s}': t${i}`).join(', ')} }`,
          'const counts: Record<string, number> = {}',
          'for (const [name, m] of Object.entries(all)) counts[name] = Object.keys(m).length',
          'process.stdout.write(JSON.stringify(counts))',
        ]
        return `${lines.join('\n')}\n${kind === 'esm' ? 'export {}\n' : ''}`
      }
      const compilerOptions = {
        strict: true,
        target: 'ES2022',
        types: ['node'],
      }

      const compileAndRun = async (
        name: string,
        file: string,
        options: Record<string, unknown>,
        output: string | undefined,
      ): Promise<void> => {
        const dir = join(consumer, name)
        await mkdir(dir, { recursive: true })
        await writeFile(join(dir, file), source(file.endsWith('.cts') ? 'cjs' : 'esm'))
        await writeFile(
          join(dir, 'tsconfig.json'),
          JSON.stringify({
            compilerOptions: {
              ...compilerOptions,
              ...options,
              ...(output === undefined ? { noEmit: true } : { outDir: 'out' }),
            },
            files: [file],
          }),
        )
        expect(compileConsumer(join(dir, 'tsconfig.json')), name).to.deep.equal([])
        if (output === undefined) return
        const r = await run(process.execPath, [join(dir, 'out', output)], { cwd: dir })
        expect(r.code, r.stderr).to.equal(0)
        expect(Object.keys(JSON.parse(r.stdout) as object).sort()).to.deep.equal(specifiers)
      }

      it('ESM with module and moduleResolution node16 (.mts), compiled and run', async function () {
        await compileAndRun(
          'ts-esm-node16',
          'index.mts',
          { module: 'node16', moduleResolution: 'node16' },
          'index.mjs',
        )
      })

      it('ESM with moduleResolution bundler (module preserve), type-checked', async function () {
        await compileAndRun(
          'ts-esm-bundler',
          'index.ts',
          { module: 'preserve', moduleResolution: 'bundler' },
          undefined,
        )
      })

      it('CommonJS with module nodenext (.cts, require of ESM), compiled and run', async function () {
        await compileAndRun('ts-cjs-nodenext', 'index.cts', { module: 'nodenext' }, 'index.cjs')
      })
    })

    it('links the portcullis bin, which answers --help', async function () {
      const r = await portcullis(consumer, ['--help'])
      expect(r.code, r.stderr).to.equal(0)
      expect(r.stdout).to.match(/^Usage: portcullis /)
      expect(r.stdout).to.include('keys')
    })

    it('runs the default SQLite key store through the bin (the optional peers installed)', async function () {
      const created = await portcullis(
        consumer,
        ['keys', 'create', '--name', 'ci', '--owner', 'svc-ci', '--json'],
        { PORTCULLIS_PEPPER: PEPPER },
      )
      expect(created.code, created.stderr).to.equal(0)
      const id = (JSON.parse(created.stdout) as { record: { id: string } }).record.id
      const listed = await portcullis(consumer, ['keys', 'list', '--json'])
      expect(listed.code, listed.stderr).to.equal(0)
      const ids = (JSON.parse(listed.stdout) as { items: { id: string }[] }).items.map((k) => k.id)
      expect(ids).to.deep.equal([id])
      expect(existsSync(join(consumer, '.portcullis', 'keys.db'))).to.equal(true)
    })
  })

  describe('@portcullis/cli installed without @portcullis/sqlite and better-sqlite3', function () {
    let consumer: string

    before(async function () {
      consumer = join(work, 'consumer-no-sqlite')
      const only = packed.filter((p) =>
        ['@portcullis/core', '@portcullis/cli', '@portcullis/postgres'].includes(p.name),
      )
      await installConsumer(consumer, only, [])
      for (const name of ['@portcullis/sqlite', 'better-sqlite3'])
        expect(existsSync(join(consumer, 'node_modules', name)), name).to.equal(false)
    })

    it('fails the SQLite default with exit code 1 and the npm install line, no stack trace', async function () {
      const r = await portcullis(consumer, ['keys', 'list'])
      expect(r.code).to.equal(1)
      expect(r.stdout).to.equal('')
      expect(r.stderr).to.equal(
        'error: the SQLite key store (the default) needs @portcullis/sqlite and better-sqlite3, ' +
          'which are not installed: npm install @portcullis/sqlite better-sqlite3\n',
      )
      // Checked before the store's folder is made.
      expect(existsSync(join(consumer, '.portcullis'))).to.equal(false)
    })

    it('fails audit --sqlite the same way', async function () {
      const r = await portcullis(consumer, ['audit', 'verify', '--sqlite', 'audit.db'])
      expect(r.code).to.equal(1)
      expect(r.stderr).to.equal(
        'error: --sqlite needs @portcullis/sqlite and better-sqlite3, which are not installed: ' +
          'npm install @portcullis/sqlite better-sqlite3\n',
      )
    })

    it('answers --help', async function () {
      const r = await portcullis(consumer, ['--help'])
      expect(r.code, r.stderr).to.equal(0)
      expect(r.stdout).to.match(/^Usage: portcullis /)
    })

    it('creates and lists keys with --postgres', async function () {
      skipWithoutPostgres(this, 'portcullis --postgres without SQLite')
      const postgres = await startPostgres()
      try {
        const url = await postgres.createDatabase()
        const created = await portcullis(
          consumer,
          ['keys', 'create', '--name', 'ci', '--owner', 'svc-ci', '--postgres', url, '--json'],
          { PORTCULLIS_PEPPER: PEPPER },
        )
        expect(created.code, created.stderr).to.equal(0)
        const id = (JSON.parse(created.stdout) as { record: { id: string } }).record.id
        const listed = await portcullis(consumer, ['keys', 'list', '--json'], {
          PORTCULLIS_POSTGRES_URL: url,
        })
        expect(listed.code, listed.stderr).to.equal(0)
        const ids = (JSON.parse(listed.stdout) as { items: { id: string }[] }).items.map(
          (k) => k.id,
        )
        expect(ids).to.deep.equal([id])
      } finally {
        await postgres.stop()
      }
    })
  })
})
