// The `portcullis` bin npm links into the repository's node_modules/.bin at install time: it must
// point at the committed bin/portcullis.js (dist/ does not exist yet when npm links bins) and,
// after the build, answer.
import { accessSync, constants, existsSync, realpathSync } from 'node:fs'
import { cp, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect } from 'chai'
import { REPO, run } from './check.js'

describe('the linked portcullis bin in the repository', function () {
  const linked = join(REPO, 'node_modules', '.bin', 'portcullis')
  const shim = join(REPO, 'packages', 'cli', 'bin', 'portcullis.js')

  it('is linked by npm install to packages/cli/bin/portcullis.js, an executable file', function () {
    expect(existsSync(linked), `${linked}: run npm install`).to.equal(true)
    expect(realpathSync(linked)).to.equal(realpathSync(shim))
    // git keeps the executable bit (mode 100755), so a fresh clone can run it directly.
    expect(() => accessSync(shim, constants.X_OK)).not.to.throw()
  })

  it('answers --help', async function () {
    if (!existsSync(join(REPO, 'packages', 'cli', 'dist', 'bin.js')))
      throw new Error('packages/cli/dist is missing: run `npm run build` first')
    const r = await run(linked, ['--help'], { cwd: REPO })
    expect(r.code, r.stderr).to.equal(0)
    expect(r.stdout).to.match(/^Usage: portcullis /)
    expect(r.stdout).to.include('keys')
  })

  it('says to build first, exit code 1, when dist/bin.js is not there', async function () {
    const dir = await mkdtemp(join(tmpdir(), 'portcullis-bin-'))
    try {
      await cp(shim, join(dir, 'bin', 'portcullis.js'))
      const r = await run(process.execPath, [join(dir, 'bin', 'portcullis.js'), '--help'])
      expect(r).to.deep.equal({
        code: 1,
        stdout: '',
        stderr: 'portcullis: dist/bin.js is missing; run `npm run build` first\n',
      })
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})
