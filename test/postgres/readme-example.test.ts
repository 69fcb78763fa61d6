import { expect } from 'chai'
import { execFile } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { resolve } from 'node:path'
import { promisify } from 'node:util'
import { describeWithPostgres } from '../helpers/postgres-server.js'

const packageDir = resolve(__dirname, '../../packages/postgres')

describeWithPostgres('@portcullis/postgres README example', function (postgres) {
  this.timeout(60_000)

  it('runs as written against a real database (built packages)', async function () {
    const readme = await readFile(resolve(packageDir, 'README.md'), 'utf8')
    const code = /## Example[\s\S]*?```js\n([\s\S]*?)```/.exec(readme)?.[1]
    expect(code, 'the README has a js example').to.be.a('string')
    const url = await postgres().createDatabase()
    // --eval resolves bare imports from the working directory, as a file there would.
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ['--input-type=module', '--eval', code as string],
      { cwd: packageDir, env: { ...process.env, DATABASE_URL: url }, timeout: 30_000 },
    )
    const lines = stdout.trim().split('\n')
    expect(lines[0]).to.match(/^\w+ true 200$/)
    expect(lines[1]).to.match(/^\d+ events; chain ok: true$/)
  })
})
