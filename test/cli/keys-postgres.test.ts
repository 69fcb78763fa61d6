// The built `portcullis` binary against a real PostgreSQL started by the test (`--postgres URL` and
// PORTCULLIS_POSTGRES_URL), checked in-process through core's verifier on the same database.
import { expect } from 'chai'
import type { ApiKeyVerifyResult } from '@portcullis/core'
import { createPostgresKeyStore } from '@portcullis/postgres'
import { requireBuiltCli, runCli, verifyOnce, type CliRun } from '../helpers/cli.js'
import { describeWithPostgres } from '../helpers/postgres-server.js'

const PEPPER = 'cli-postgres-pepper-0123456789abcdef-012345'

interface KeyJson {
  readonly key: string
  readonly record: { readonly id: string; readonly state: string; readonly name: string }
}

// Asynchronous (runCli), unlike the SQLite suite: PostgreSQL's own processes need the event loop
// free while the CLI runs (the helper watches them).
const run = (args: readonly string[], env: Record<string, string>): Promise<CliRun> =>
  runCli(args, { PORTCULLIS_PEPPER: PEPPER, ...env })

describeWithPostgres('portcullis keys (the built binary on PostgreSQL)', function (postgres) {
  this.timeout(60_000)
  let url: string

  const ok = async (args: readonly string[], env: Record<string, string> = {}): Promise<CliRun> => {
    const r = await run(['--postgres', url, ...args], env)
    expect(r.code, `portcullis ${args.join(' ')}\n${r.stderr}`).to.equal(0)
    return r
  }
  const json = async <TValue>(args: readonly string[]): Promise<TValue> =>
    JSON.parse((await ok([...args, '--json'])).stdout) as TValue

  const verify = (key: string): Promise<ApiKeyVerifyResult> =>
    verifyOnce(createPostgresKeyStore({ connectionString: url }), { pepper: PEPPER }, key)

  requireBuiltCli()
  beforeEach(async function () {
    url = await postgres().createDatabase()
  })

  it('creates, lists, shows, updates, rotates with grace and revokes', async function () {
    const created = await json<KeyJson>([
      'keys',
      'create',
      '--name',
      'ci',
      '--owner',
      'svc-ci',
      '--scope',
      'documents:read',
      '--tag',
      'ci',
    ])
    expect((await verify(created.key)).ok).to.equal(true)

    const listed = await json<{ items: { id: string }[] }>(['keys', 'list', '--tag', 'ci'])
    expect(listed.items.map((k) => k.id)).to.deep.equal([created.record.id])
    expect((await ok(['keys', 'show', created.record.id])).stdout).to.match(/^name:\s+ci$/m)

    const updated = await json<{ scopes: string[] }>([
      'keys',
      'update',
      created.record.id,
      '--scope',
      'documents:write',
    ])
    expect(updated.scopes).to.deep.equal(['documents:write'])

    const rotated = await json<KeyJson>(['keys', 'rotate', created.record.id, '--grace', '1h'])
    expect((await verify(rotated.key)).ok, 'new secret').to.equal(true)
    expect((await verify(created.key)).ok, 'old secret during grace').to.equal(true)

    await ok(['keys', 'revoke', created.record.id])
    expect((await verify(rotated.key)).ok).to.equal(false)
    const shown = await json<{ state: string }>(['keys', 'show', created.record.id])
    expect(shown.state).to.equal('revoked')
  })

  it('takes the URL from PORTCULLIS_POSTGRES_URL', async function () {
    const r = await run(['keys', 'create', '--name', 'env', '--owner', 'o', '--json'], {
      PORTCULLIS_POSTGRES_URL: url,
    })
    expect(r.code, r.stderr).to.equal(0)
    const { key } = JSON.parse(r.stdout) as KeyJson
    expect((await verify(key)).ok).to.equal(true)
  })

  it('fails with exit 1 for an unknown key', async function () {
    const r = await run(['--postgres', url, 'keys', 'show', '0123456789abcdef'], {})
    expect(r.code).to.equal(1)
    expect(r.stderr).to.equal('error: no API key with id 0123456789abcdef\n')
  })

  it('fails with exit 1 and one clear line when PostgreSQL cannot be reached', async function () {
    const unreachable = postgres().url.replace(/:(\d+)\//, ':1/')
    const r = await run(['--postgres', unreachable, 'keys', 'list'], {})
    expect(r.code).to.equal(1)
    expect(r.stderr).to.match(/^error.*cannot open the key store postgres:127\.0\.0\.1:1\//)
    expect(r.stderr).to.not.match(/\n\s+at /)
  })
})
