import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { expect } from 'chai'

const run = promisify(execFile)

describe('examples/passport (npm start -- --smoke)', () => {
  it('answers Basic, API-key and passport-strategy requests with 200/401', async () => {
    const { stdout } = await run(process.execPath, ['examples/passport/src/server.js', '--smoke'], {
      timeout: 30_000,
    })
    expect(stdout.match(/^ok /gm)).to.have.length(6)
    expect(stdout).not.to.include('FAIL')
    expect(stdout).to.include('ok   basic user: 200')
    expect(stdout).to.include('ok   wrong password: 401')
    expect(stdout).to.include('ok   passport strategy: 200')
  })
})
