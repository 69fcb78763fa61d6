import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { expect } from 'chai'

const run = promisify(execFile)

describe('examples/fastify (the npm start demo)', () => {
  it('serves the three curl cases (200, 401, 403), audits them and exits 0', async () => {
    const { stdout } = await run(process.execPath, ['examples/fastify/src/server.js', '--smoke'], {
      timeout: 30_000,
    })
    expect(stdout).to.include('ok   allowed: 200')
    expect(stdout).to.include('ok   no credentials: 401')
    expect(stdout).to.include('ok   missing scope: 403')
    expect(stdout).to.not.include('FAIL')
    expect(stdout.match(/^ok /gm)).to.have.length(3)
    const audit = /^audit: (.*)$/m.exec(stdout)?.[1]?.split(' ')
    expect(audit).to.include.members(['key.created', 'authz.allow', 'authn.failure', 'authz.deny'])
  })
})
