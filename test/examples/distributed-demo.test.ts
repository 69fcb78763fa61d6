import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { expect } from 'chai'
import { skipWithoutPostgres } from '../helpers/postgres-server.js'
import { redisAvailable } from '../helpers/redis-server.js'

const run = promisify(execFile)
const TITLE = 'examples/distributed (three instances on PostgreSQL + Redis)'

describe(TITLE, () => {
  before(function () {
    skipWithoutPostgres(this, TITLE)
    if (!redisAvailable()) {
      if (process.env.CI === 'true') throw new Error('redis-server is not installed, and CI=true')
      console.warn(`\n  !!! SKIPPED "${TITLE}": redis-server is not installed\n`)
      this.skip()
    }
  })

  it('shows the shared limit and the revocation spreading, then stops everything', async () => {
    // Exits 1 when a check fails; execFile then rejects with the output.
    const { stdout } = await run(
      process.execPath,
      ['--import', 'tsx', 'examples/distributed/src/demo.ts'],
      { timeout: 60_000 },
    )
    expect(stdout).to.include('ok   5 admitted in total, then 429 from every instance')
    expect(stdout).to.include('ok   instance-1 refuses the key at once')
    expect(stdout).to.include('ok   the other instances refuse it within a second')
    expect(stdout).to.match(/instance-2 refuses it \(401 ERR_APIKEY_INVALID\)/)
    expect(stdout).to.not.include('FAIL')
    expect(stdout).to.include('Done.')
  }).timeout(60_000)
})
