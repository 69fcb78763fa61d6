import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { expect } from 'chai'

const run = promisify(execFile)

describe('examples/decorators', () => {
  it('serves a decorated controller: @Public, @Policy, a method policy and @RateLimit', async () => {
    const { stdout } = await run(
      process.execPath,
      ['--import', 'tsx', 'examples/decorators/src/server.ts', '--smoke'],
      {
        timeout: 30_000,
      },
    )
    for (const line of [
      'public: 200',
      'allowed: 200',
      'no credentials: 401',
      'missing scope: 403',
      'rate limited: 429',
    ]) {
      expect(stdout).to.include(`ok   ${line}`)
    }
    expect(stdout).to.not.include('FAIL')
  })
})
