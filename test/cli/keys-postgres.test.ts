// The built `portcullis` binary against a real PostgreSQL started by the test (`--postgres URL` and
// PORTCULLIS_POSTGRES_URL), checked in-process through core's verifier on the same database.
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { resolve } from 'node:path'
import { expect } from 'chai'
import { createApiKeyVerifier, type ApiKeyVerifyResult } from '@portcullis/core'
import { createPostgresKeyStore } from '@portcullis/postgres'
import { describeWithPostgres } from '../helpers/postgres-server.js'

const BIN = resolve('packages/cli/dist/bin.js')
const PEPPER = 'cli-postgres-pepper-0123456789abcdef-012345'

interface Run {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

interface KeyJson {
  readonly key: string
  readonly record: { readonly id: string; readonly state: string; readonly name: string }
}

// Asynchronous, unlike the SQLite suite: PostgreSQL's own processes need the event loop free
// while the CLI runs (the helper watches them).
function run(args: readonly string[], env: Record<string, string>): Promise<Run> {
  const clean: Record<string, string> = {}
  for (const [k, v] of Object.entries(process.env))
    if (v !== undefined && !k.startsWith('PORTCULLIS_')) clean[k] = v
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      env: { ...clean, PORTCULLIS_PEPPER: PEPPER, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s))
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s))
    child.on('error', fail)
    child.on('close', (code) => done({ code, stdout, stderr }))
  })
}

describeWithPostgres('portcullis keys (the built binary on PostgreSQL)', function (postgres) {
  this.timeout(60_000)
  let url: string

  const ok = async (args: readonly string[], env: Record<string, string> = {}): Promise<Run> => {
    const r = await run(['--postgres', url, ...args], env)
    expect(r.code, `portcullis ${args.join(' ')}\n${r.stderr}`).to.equal(0)
    return r
  }
  const json = async <TValue>(args: readonly string[]): Promise<TValue> =>
    JSON.parse((await ok([...args, '--json'])).stdout) as TValue

  const verify = async (key: string): Promise<ApiKeyVerifyResult> => {
    const store = createPostgresKeyStore({ connectionString: url })
    const verifier = createApiKeyVerifier(
      { store, pepper: PEPPER, cache: false },
      { now: Date.now },
    )
    try {
      return await verifier.verify(key)
    } finally {
      verifier.close()
      await store.close()
    }
  }

  before(function () {
    if (!existsSync(BIN))
      throw new Error(`${BIN} is missing: run \`npx tsc -b packages/cli\` first`)
  })
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
