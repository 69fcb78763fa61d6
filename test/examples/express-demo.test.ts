import { execFile } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { expect } from 'chai'

const run = promisify(execFile)

describe('examples/express (the npm start demo)', () => {
  let dataDir: string
  before(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'portcullis-demo-'))
  })
  after(() => rm(dataDir, { recursive: true, force: true }))

  it('serves the three curl cases (200, 401, 403) and writes an audit file', async () => {
    const { stdout } = await run(process.execPath, ['examples/express/src/server.js', '--smoke'], {
      env: { ...process.env, PORTCULLIS_DATA_DIR: dataDir },
      timeout: 30_000,
    })
    expect(stdout).to.include('ok   allowed: 200')
    expect(stdout).to.include('ok   no credentials: 401')
    expect(stdout).to.include('ok   missing scope: 403')
    expect(stdout).to.include('ok   metrics: the 401 is counted at /metrics')
    const lines = (await readFile(join(dataDir, 'audit.jsonl'), 'utf8')).trim().split('\n')
    const types = lines.map((l) => (JSON.parse(l) as { type: string }).type)
    // One access event per request: the allowed request's carries its authorization.
    expect(types).to.include.members(['key.created', 'authz.allow', 'authn.failure', 'authz.deny'])
  })

  it('starts again on the same data folder (secrets and migrations are reused)', async () => {
    const { stdout } = await run(process.execPath, ['examples/express/src/server.js', '--smoke'], {
      env: { ...process.env, PORTCULLIS_DATA_DIR: dataDir },
      timeout: 30_000,
    })
    expect(stdout.match(/^ok /gm)).to.have.length(4)
  })
})
