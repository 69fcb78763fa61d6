// `--redis`: a key change made with the built CLI reaches a running gate's verifier (cache on,
// subscribed to the same Redis) at once, instead of when its cached copy expires.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect } from 'chai'
import { createApiKeyVerifier, type ApiKeyVerifier } from '@portcullis/core'
import { createRedisBroker, type RedisBroker } from '@portcullis/redis'
import { createSqliteKeyStore, type SqliteKeyStore } from '@portcullis/sqlite'
import { runCli, type CliRun } from '../helpers/cli.js'
import { describeWithRedis } from '../helpers/redis-server.js'

const PEPPER = 'cli-redis-pepper-0123456789abcdef-0123456789'

describeWithRedis('portcullis keys --redis (the built binary)', (redis) => {
  let dir: string
  let db: string
  let store: SqliteKeyStore
  let broker: RedisBroker
  let verifier: ApiKeyVerifier

  // Asynchronous: the verifier's broker must keep receiving while the CLI runs.
  const run = (args: readonly string[]): Promise<CliRun> =>
    runCli(args, { PORTCULLIS_DB: db, PORTCULLIS_PEPPER: PEPPER })
  const create = async (): Promise<{ key: string; id: string }> => {
    const r = await run(['keys', 'create', '--name', 'k', '--owner', 'o', '--json'])
    expect(r.code, r.stderr).to.equal(0)
    const out = JSON.parse(r.stdout) as { key: string; record: { id: string } }
    return { key: out.key, id: out.record.id }
  }
  const accepted = async (key: string): Promise<boolean> => (await verifier.verify(key)).ok

  beforeEach(async function () {
    dir = mkdtempSync(join(tmpdir(), 'portcullis-cli-redis-'))
    db = join(dir, 'keys.db')
    store = createSqliteKeyStore({ database: db })
    broker = createRedisBroker({ subscriber: redis().url })
    await broker.ready()
    // The gate's defaults: verified keys are cached for 60 s.
    verifier = createApiKeyVerifier({ store, pepper: PEPPER, broker }, { now: Date.now })
  })
  afterEach(async function () {
    verifier.close()
    await broker.close()
    await store.close()
    rmSync(dir, { recursive: true, force: true })
  })

  it('revokes everywhere at once with --redis; without it, caches keep the key', async function () {
    const quiet = await create()
    const loud = await create()
    expect(await accepted(quiet.key)).to.equal(true)
    expect(await accepted(loud.key)).to.equal(true)

    expect((await run(['keys', 'revoke', quiet.id])).code).to.equal(0)
    expect(await accepted(quiet.key), 'cached copy, no broadcast').to.equal(true)

    const r = await run(['keys', 'revoke', loud.id, '--redis', redis().url])
    expect(r.code, r.stderr).to.equal(0)
    const revokedAt = Date.now()
    while ((await accepted(loud.key)) && Date.now() - revokedAt < 1000)
      await new Promise((resolveWait) => setTimeout(resolveWait, 10))
    expect(await accepted(loud.key), 'refused within 1 s of the CLI exiting').to.equal(false)
  })

  it('fails before changing anything when Redis cannot be reached (exit 1)', async function () {
    this.timeout(20_000)
    const k = await create()
    const r = await run(['keys', 'revoke', k.id, '--redis', 'redis://127.0.0.1:1'])
    expect(r.code).to.equal(1)
    expect(r.stderr).to.match(/cannot reach Redis at 127\.0\.0\.1:1.*nothing was changed/)
    expect((await store.get(k.id as never))?.status).to.equal('active')
  })

  it('refuses a URL that is not redis:// (exit 2)', async function () {
    const r = await run(['keys', 'list', '--redis', 'http://127.0.0.1:6379'])
    expect(r.code).to.equal(2)
    expect(r.stderr).to.match(/--redis must be a redis:\/\//)
  })
})
