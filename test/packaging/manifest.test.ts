// What every package.json under packages/ must say before it is published, and the LICENSE copies
// that npm ships from each package folder. Fast: reads files, builds nothing.
import { readFileSync } from 'node:fs'
import { basename, join } from 'node:path'
import { expect } from 'chai'
import { REPO, packageFolders } from './check.js'

const GITHUB = 'https://github.com/portcullis-dev/portcullis'

interface PackageJson {
  readonly name: string
  readonly version: string
  readonly license?: string
  readonly homepage?: string
  readonly bugs?: { readonly url?: string }
  readonly repository?: {
    readonly type?: string
    readonly url?: string
    readonly directory?: string
  }
  readonly keywords?: readonly string[]
  readonly publishConfig?: { readonly access?: string }
  readonly files?: readonly string[]
  readonly bin?: Readonly<Record<string, string>>
  readonly dependencies?: Readonly<Record<string, string>>
  readonly peerDependencies?: Readonly<Record<string, string>>
  readonly peerDependenciesMeta?: Readonly<Record<string, { readonly optional?: boolean }>>
  readonly devDependencies?: Readonly<Record<string, string>>
}

function manifest(folder: string): PackageJson {
  return JSON.parse(readFileSync(join(folder, 'package.json'), 'utf8')) as PackageJson
}

describe('package manifests and LICENSE files', function () {
  const license = readFileSync(join(REPO, 'LICENSE'), 'utf8')
  const folders = packageFolders()

  it('has an MIT LICENSE at the root', function () {
    expect(license).to.match(/^MIT License\n\nCopyright \(c\) 2026 The Portcullis authors\n/)
  })

  it('keeps every packages/*/LICENSE identical to the root LICENSE (npm run license:sync)', function () {
    const drifted = folders.filter((f) => {
      try {
        return readFileSync(join(f, 'LICENSE'), 'utf8') !== license
      } catch {
        return true
      }
    })
    expect(drifted.map((f) => basename(f))).to.deep.equal([])
  })

  for (const folder of folders) {
    const name = basename(folder)

    describe(`packages/${name}/package.json`, function () {
      const pkg = manifest(folder)

      it('names the repository folder, homepage, issues, keywords and public access', function () {
        expect(pkg.name).to.equal(`@portcullis/${name}`)
        expect(pkg.license).to.equal('MIT')
        expect(pkg.repository).to.deep.equal({
          type: 'git',
          url: `git+${GITHUB}.git`,
          directory: `packages/${name}`,
        })
        expect(pkg.homepage).to.equal(`${GITHUB}/tree/main/packages/${name}#readme`)
        expect(pkg.bugs).to.deep.equal({ url: `${GITHUB}/issues` })
        expect(pkg.keywords).to.be.an('array').that.is.not.empty
        expect(pkg.publishConfig).to.deep.equal({ access: 'public' })
        // src/ ships so that the source maps (.js.map, .d.ts.map) resolve: docs/architecture.md.
        expect(pkg.files).to.include.members(['dist', 'src'])
      })

      it('depends on other @portcullis packages with a caret range of their version', function () {
        const exact: string[] = []
        for (const field of ['dependencies', 'peerDependencies', 'devDependencies'] as const)
          for (const [dep, range] of Object.entries(pkg[field] ?? {}))
            if (dep.startsWith('@portcullis/')) {
              const version = manifest(
                join(REPO, 'packages', dep.slice('@portcullis/'.length)),
              ).version
              if (range !== `^${version}`) exact.push(`${field}.${dep}: ${range}`)
            }
        expect(exact).to.deep.equal([])
      })
    })
  }

  describe('packages/cli/package.json', function () {
    const cli = manifest(join(REPO, 'packages', 'cli'))

    it('links the committed bin/portcullis.js, which it publishes', function () {
      expect(cli.bin).to.deep.equal({ portcullis: './bin/portcullis.js' })
      expect(cli.files).to.include('bin')
    })

    it('takes @portcullis/sqlite and better-sqlite3 as optional peers (and for its own tests)', function () {
      for (const dep of ['@portcullis/sqlite', 'better-sqlite3']) {
        expect(cli.dependencies ?? {}, dep).not.to.have.property(dep)
        expect(cli.peerDependencies ?? {}, dep).to.have.property(dep)
        expect(cli.peerDependenciesMeta?.[dep], dep).to.deep.equal({ optional: true })
        expect(cli.devDependencies ?? {}, dep).to.have.property(dep)
      }
    })
  })
})
