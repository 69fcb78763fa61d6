// Runs the REAL built `portcullis` binary (packages/cli/dist/bin.js, built by `npx tsc -b
// packages/cli`) as a child process against a temporary SQLite file, and checks what it wrote
// in-process through core's verifier on the same file.
import { spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect } from 'chai'
import type { ApiKeyVerifyResult } from '@portcullis/core'
import { createSqliteKeyStore } from '@portcullis/sqlite'
import { cleanEnv, CLI_BIN, requireBuiltCli, verifyOnce, type CliRun } from '../helpers/cli.js'

const PEPPER = 'cli-test-pepper-0123456789abcdef-0123456789'
const KEY_PATTERN = /^ptcl_[0-9A-Za-z]{54}$/

interface KeyJson {
  readonly key: string
  readonly record: {
    readonly id: string
    readonly name: string
    readonly ownerId: string
    readonly scopes: string[]
    readonly roles: string[]
    readonly state: string
    readonly expiresAt: number | null
    readonly metadata: Record<string, unknown>
    readonly secrets: { pepperId: string; notAfter: number | null }[]
    readonly hashes?: unknown
  }
}

describe('portcullis keys (the built binary on SQLite)', function () {
  this.timeout(60_000)
  let dir: string
  let db: string

  const run = (args: readonly string[], env: Record<string, string> = {}, input = ''): CliRun => {
    const result = spawnSync(process.execPath, [CLI_BIN, ...args], {
      cwd: dir,
      env: { ...cleanEnv(), PORTCULLIS_DB: db, PORTCULLIS_PEPPER: PEPPER, ...env },
      encoding: 'utf8',
      input,
    })
    return { code: result.status, stdout: result.stdout, stderr: result.stderr }
  }
  const ok = (args: readonly string[], env?: Record<string, string>): CliRun => {
    const r = run(args, env)
    expect(r.code, `portcullis ${args.join(' ')}\n${r.stderr}`).to.equal(0)
    return r
  }
  const json = <TValue>(args: readonly string[], env?: Record<string, string>): TValue =>
    JSON.parse(ok([...args, '--json'], env).stdout) as TValue
  const create = (...extra: string[]): KeyJson =>
    json<KeyJson>(['keys', 'create', '--name', 'ci', '--owner', 'svc-ci', ...extra])

  // Checks a key the way the gate would, on the same file, with no cache in between;
  // `importedKeys`: also look up keys brought in by `keys import` (no Portcullis format).
  const verify = (key: string): Promise<ApiKeyVerifyResult> =>
    verifyOnce(createSqliteKeyStore({ database: db }), { pepper: PEPPER, importedKeys: true }, key)

  requireBuiltCli()
  beforeEach(function () {
    dir = mkdtempSync(join(tmpdir(), 'portcullis-cli-'))
    db = join(dir, 'keys.db')
  })
  afterEach(function () {
    rmSync(dir, { recursive: true, force: true })
  })

  describe('--help', function () {
    const commands = [
      [],
      ['keys'],
      ['keys', 'create'],
      ['keys', 'list'],
      ['keys', 'show'],
      ['keys', 'update'],
      ['keys', 'rotate'],
      ['keys', 'revoke'],
      ['keys', 'import'],
      ['keys', 'due'],
    ]
    for (const command of commands) {
      it(`prints usage for "portcullis ${command.join(' ')}" and exits 0`, function () {
        const r = ok([...command, '--help'])
        expect(r.stdout).to.match(
          new RegExp(`^Usage: portcullis${command.map((c) => ` ${c}`).join('')}`),
        )
        expect(r.stdout).to.include('--json')
        expect(r.stderr).to.equal('')
      })
    }

    it('prints the version with --version', function () {
      expect(ok(['--version']).stdout.trim()).to.match(/^\d+\.\d+\.\d+/)
    })
  })

  describe('create', function () {
    it('prints the plaintext once, stores only its hash, and the key verifies', async function () {
      const r = ok([
        'keys',
        'create',
        '--name',
        'billing',
        '--owner',
        'svc-billing',
        '--scope',
        'documents:read',
        '--scope',
        'documents:write,reports:read',
        '--role',
        'reader',
        '--metadata',
        '{"team":"billing"}',
        '--expires-in',
        '30d',
      ])
      const lines = r.stdout.split('\n')
      const key = lines[0] as string
      expect(key).to.match(KEY_PATTERN)
      expect(r.stdout.split(key).length, 'the key appears once').to.equal(2)
      expect(r.stdout).to.include('shown only once')
      expect(r.stdout).to.match(/scopes:\s+documents:read documents:write reports:read/)

      const result = await verify(key)
      expect(result.ok).to.equal(true)
      if (result.ok) {
        expect(result.record.name).to.equal('billing')
        expect(result.record.ownerId).to.equal('svc-billing')
        expect(result.record.roles).to.deep.equal(['reader'])
        expect(result.record.metadata).to.deep.equal({ team: 'billing' })
        const days = ((result.record.expiresAt as number) - result.record.createdAt) / 86_400_000
        expect(days).to.equal(30)
      }
      for (const file of [db, `${db}-wal`]) {
        if (existsSync(file)) expect(readFileSync(file).includes(key), file).to.equal(false)
      }
    })

    it('prints JSON with --json: the key, the record, no stored hashes', async function () {
      const r = ok(['keys', 'create', '--name', 'ci', '--owner', 'svc-ci', '--json'])
      const out = JSON.parse(r.stdout) as KeyJson
      expect(out.key).to.match(KEY_PATTERN)
      expect(out.record).to.include({ name: 'ci', ownerId: 'svc-ci', state: 'active' })
      expect(out.record.expiresAt).to.equal(null)
      expect(out.record).to.not.have.property('hashes')
      expect(out.record.secrets).to.deep.equal([
        { pepperId: 'p1', algorithm: 'hmac-sha256', notAfter: null },
      ])
      expect(r.stderr).to.include('shown only once')
      expect((await verify(out.key)).ok).to.equal(true)
    })

    it('reads the pepper from --pepper-file; keys made with another pepper do not verify', async function () {
      const file = join(dir, 'pepper')
      writeFileSync(file, 'another-pepper-of-at-least-32-bytes-long\n')
      const out = json<KeyJson>(
        ['keys', 'create', '--name', 'ci', '--owner', 'svc-ci', '--pepper-file', file],
        { PORTCULLIS_PEPPER: '' },
      )
      expect((await verify(out.key)).ok).to.equal(false)
    })

    it('issues test keys under another prefix', function () {
      expect(create('--prefix', 'ptcl_test').key).to.match(/^ptcl_test_[0-9A-Za-z]{54}$/)
    })
  })

  describe('list and show', function () {
    it('lists keys as a table and as JSON, filtered by owner and status', function () {
      const a = create()
      const b = json<KeyJson>(['keys', 'create', '--name', 'web', '--owner', 'svc-web'])
      ok(['keys', 'revoke', b.record.id])

      const table = ok(['keys', 'list']).stdout
      expect(table.split('\n')[0]).to.match(/^ID\s+NAME\s+OWNER\s+STATE\s+SCOPES\s+EXPIRES$/)
      expect(table).to.include(a.record.id).and.include(b.record.id)

      const byOwner = json<{ items: { id: string }[] }>(['keys', 'list', '--owner', 'svc-web'])
      expect(byOwner.items.map((k) => k.id)).to.deep.equal([b.record.id])
      const active = json<{ items: { id: string }[] }>(['keys', 'list', '--status', 'active'])
      expect(active.items.map((k) => k.id)).to.deep.equal([a.record.id])
    })

    it('pages with --limit and --cursor, and follows every page with --all', function () {
      const ids = [create(), create(), create()].map((k) => k.record.id).sort()
      const first = json<{ items: { id: string }[]; nextCursor: string | null }>([
        'keys',
        'list',
        '--limit',
        '2',
      ])
      expect(first.items.map((k) => k.id)).to.deep.equal(ids.slice(0, 2))
      expect(first.nextCursor).to.be.a('string')
      expect(ok(['keys', 'list', '--limit', '2']).stdout).to.include('--cursor')
      const second = json<{ items: { id: string }[] }>([
        'keys',
        'list',
        '--limit',
        '2',
        '--cursor',
        first.nextCursor as string,
      ])
      expect(second.items.map((k) => k.id)).to.deep.equal(ids.slice(2))
      const all = json<{ items: { id: string }[]; nextCursor: null }>([
        'keys',
        'list',
        '--limit',
        '1',
        '--all',
      ])
      expect(all.items.map((k) => k.id)).to.deep.equal(ids)
      expect(all.nextCursor).to.equal(null)
    })

    it('says so when there are no keys', function () {
      expect(ok(['keys', 'list']).stdout).to.equal('(no keys)\n')
      expect(json<{ items: unknown[] }>(['keys', 'list']).items).to.deep.equal([])
    })

    it('shows one key without any secret material', function () {
      const k = create('--scope', 'documents:read')
      const r = ok(['keys', 'show', k.record.id])
      expect(r.stdout).to.match(new RegExp(`^id:\\s+${k.record.id}$`, 'm'))
      expect(r.stdout).to.match(/^scopes:\s+documents:read$/m)
      expect(r.stdout).to.not.include(k.key)
      const shown = json<KeyJson['record']>(['keys', 'show', k.record.id])
      expect(shown.id).to.equal(k.record.id)
      expect(shown).to.not.have.property('hashes')
    })
  })

  describe('update', function () {
    it('changes the name, replaces scopes and roles, and sets or removes the expiry', async function () {
      const k = create('--scope', 'a:read', '--expires-in', '1d')
      const updated = json<KeyJson['record']>([
        'keys',
        'update',
        k.record.id,
        '--name',
        'renamed',
        '--scope',
        'b:read,b:write',
        '--role',
        'admin',
        '--metadata',
        '{"tier":2}',
        '--expires-at',
        '2099-01-01T00:00:00Z',
      ])
      expect(updated).to.include({ name: 'renamed', expiresAt: Date.parse('2099-01-01T00:00:00Z') })
      expect(updated.scopes).to.deep.equal(['b:read', 'b:write'])
      expect(updated.roles).to.deep.equal(['admin'])
      expect(updated.metadata).to.deep.equal({ tier: 2 })

      const cleared = json<KeyJson['record']>(['keys', 'update', k.record.id, '--no-expiry'])
      expect(cleared.expiresAt).to.equal(null)
      const result = await verify(k.key)
      expect(result.ok).to.equal(true)
      if (result.ok) expect(result.record.scopes).to.deep.equal(['b:read', 'b:write'])
    })

    it('refuses an update with nothing to change (exit 2)', function () {
      const k = create()
      const r = run(['keys', 'update', k.record.id])
      expect(r.code).to.equal(2)
      expect(r.stderr).to.include('nothing to update')
    })

    it('refuses --expires-in together with --no-expiry (exit 2)', function () {
      const k = create()
      const r = run(['keys', 'update', k.record.id, '--expires-in', '1d', '--no-expiry'])
      expect(r.code).to.equal(2)
      expect(r.stderr).to.match(/cannot be used with/)
    })
  })

  describe('rotate and revoke', function () {
    it('rotates with a grace period: both secrets verify until it ends', async function () {
      const k = create()
      const before = Date.now()
      const rotated = json<KeyJson>(['keys', 'rotate', k.record.id, '--grace', '1h'])
      expect(rotated.key).to.match(KEY_PATTERN)
      expect(rotated.key).to.not.equal(k.key)
      expect(rotated.record.id).to.equal(k.record.id)
      expect((await verify(rotated.key)).ok, 'new secret').to.equal(true)
      expect((await verify(k.key)).ok, 'old secret, in its grace period').to.equal(true)
      const ends = rotated.record.secrets.map((s) => s.notAfter)
      expect(ends[0]).to.equal(null)
      expect(ends[1]).to.be.within(before + 3_600_000, Date.now() + 3_600_000)
    })

    it('rotates without grace: the old secret stops at once', async function () {
      const k = create()
      const r = ok(['keys', 'rotate', k.record.id])
      const key = r.stdout.split('\n')[0] as string
      expect(key).to.match(KEY_PATTERN)
      expect((await verify(key)).ok).to.equal(true)
      expect((await verify(k.key)).ok).to.equal(false)
    })

    it('revokes at once', async function () {
      const k = create()
      const r = ok(['keys', 'revoke', k.record.id])
      expect(r.stdout).to.equal(`revoked ${k.record.id} (ci)\n`)
      expect((await verify(k.key)).ok).to.equal(false)
      expect(json<KeyJson['record']>(['keys', 'show', k.record.id]).state).to.equal('revoked')
    })
  })

  describe('tags, purpose, environment and usage policy', function () {
    it('creates with tags and a purpose, lists by tag, and updates or clears them', function () {
      const a = create('--tag', 'billing,prod', '--purpose', 'nightly export')
      const b = create('--tag', 'web')
      expect(a.record).to.include({ purpose: 'nightly export' })
      expect((a.record as unknown as { tags: string[] }).tags).to.deep.equal(['billing', 'prod'])
      const billing = json<{ items: { id: string }[] }>(['keys', 'list', '--tag', 'billing'])
      expect(billing.items.map((k) => k.id)).to.deep.equal([a.record.id])
      expect(json<{ items: unknown[] }>(['keys', 'list', '--tag', 'none']).items).to.have.length(0)

      const updated = json<{ tags: string[]; purpose: string | null }>([
        'keys',
        'update',
        b.record.id,
        '--tag',
        'web,billing',
        '--purpose',
        'storefront',
      ])
      expect(updated).to.deep.include({ tags: ['web', 'billing'], purpose: 'storefront' })
      const cleared = json<{ purpose: string | null }>([
        'keys',
        'update',
        b.record.id,
        '--no-purpose',
      ])
      expect(cleared.purpose).to.equal(null)
      expect(ok(['keys', 'show', a.record.id]).stdout).to.match(/^tags:\s+billing prod$/m)
    })

    it('issues test keys with --environment test', function () {
      const k = create('--environment', 'test')
      expect(k.key).to.match(/^ptcl_test_[0-9A-Za-z]{54}$/)
      expect(k.record).to.include({ environment: 'test' })
    })

    it('sets a usage policy from flags, and removes it with --no-policy', async function () {
      const k = create(
        '--allow-cidr',
        '10.0.0.0/8,192.168.1.7',
        '--allow-origin',
        'https://app.example.com',
        '--rate-limit',
        '100/1m',
        '--rate-limit',
        '5000/1h',
        '--quota',
        '10000/day',
      )
      const shown = json<{ policy: Record<string, unknown> }>(['keys', 'show', k.record.id])
      expect(shown.policy).to.deep.equal({
        allowedCidrs: ['10.0.0.0/8', '192.168.1.7'],
        allowedOrigins: ['https://app.example.com'],
        rateLimits: [
          { limit: 100, windowMs: 60_000 },
          { limit: 5000, windowMs: 3_600_000 },
        ],
        quota: { limit: 10000, period: 'day' },
      })
      const cleared = json<{ policy?: Record<string, unknown> }>([
        'keys',
        'update',
        k.record.id,
        '--no-policy',
      ])
      expect(cleared.policy ?? {}).to.deep.equal({})
      const narrowed = json<{ policy: Record<string, unknown> }>([
        'keys',
        'update',
        k.record.id,
        '--quota',
        '50/month',
      ])
      expect(narrowed.policy).to.deep.equal({ quota: { limit: 50, period: 'month' } })
    })
  })

  describe('import', function () {
    const LEGACY = 'legacy-token-4f9a8b7c6d5e4f3a2b1c'
    /** `keys import` of a key named legacy, owned by svc-legacy, with `extra` arguments. */
    const importLegacy = (...extra: string[]): KeyJson['record'] =>
      json<KeyJson['record']>([
        'keys',
        'import',
        '--name',
        'legacy',
        '--owner',
        'svc-legacy',
        ...extra,
      ])

    it('imports a plaintext key from a file; it then verifies', async function () {
      const file = join(dir, 'legacy.txt')
      writeFileSync(file, `${LEGACY}\n`)
      const record = importLegacy('--scope', 'documents:read', '--key-file', file)
      expect(record).to.include({ name: 'legacy', ownerId: 'svc-legacy', state: 'active' })
      expect(JSON.stringify(record)).to.not.include(LEGACY)
      const result = await verify(LEGACY)
      expect(result.ok).to.equal(true)
      if (result.ok) expect(result.record.id).to.equal(record.id)
      expect((await verify(`${LEGACY}x`)).ok).to.equal(false)
    })

    it('imports from standard input with --key-file -', async function () {
      const r = run(
        ['keys', 'import', '--name', 'l', '--owner', 'o', '--key-file', '-', '--json'],
        {},
        LEGACY,
      )
      expect(r.code, r.stderr).to.equal(0)
      expect((await verify(LEGACY)).ok).to.equal(true)
    })

    it('imports only the SHA-256 of a key; the key then verifies', async function () {
      const sha256 = createHash('sha256').update(LEGACY).digest('hex')
      const record = importLegacy('--sha256', sha256.toUpperCase())
      expect(record.secrets.map((h) => (h as { algorithm?: string }).algorithm)).to.deep.equal([
        'sha256',
      ])
      expect((await verify(LEGACY)).ok).to.equal(true)
    })

    it('needs exactly one of --key-file and --sha256 (exit 2)', function () {
      const base = ['keys', 'import', '--name', 'l', '--owner', 'o']
      expect(run(base).code).to.equal(2)
      const both = run([...base, '--key-file', 'x', '--sha256', 'a'.repeat(64)])
      expect(both.code).to.equal(2)
      expect(run([...base, '--sha256', 'abc']).stderr).to.match(/64 hexadecimal digits/)
    })

    it('fails with exit 1 on a key file it cannot read', function () {
      const r = run(['keys', 'import', '--name', 'l', '--owner', 'o', '--key-file', 'missing.txt'])
      expect(r.code).to.equal(1)
      expect(r.stderr).to.match(/cannot read --key-file "missing.txt"/)
    })
  })

  describe('due', function () {
    it('lists keys past their rotation period, and none within it', function () {
      const a = create()
      const b = create()
      ok(['keys', 'revoke', b.record.id])
      const due = json<{ items: { id: string; rotationDueAt: number }[] }>([
        'keys',
        'due',
        '--rotation-period',
        '1ms',
      ])
      expect(due.items.map((k) => k.id)).to.deep.equal([a.record.id])
      expect(ok(['keys', 'due', '--rotation-period', '1ms']).stdout).to.match(
        /^ID\s+NAME\s+OWNER\s+LAST ROTATED\s+DUE SINCE$/m,
      )
      expect(ok(['keys', 'due', '--rotation-period', '90d']).stdout).to.equal(
        '(no key is due for rotation)\n',
      )
    })

    it('needs a rotation period (exit 2)', function () {
      const r = run(['keys', 'due'])
      expect(r.code).to.equal(2)
      expect(r.stderr).to.match(/--rotation-period/)
    })
  })

  describe('--config', function () {
    const config = (text: string): string => {
      const file = join(dir, 'portcullis.yaml')
      writeFileSync(file, text)
      return file
    }

    it('enforces the compliance rules of keys.compliance (exit 2 with the rule)', function () {
      const file = config('keys:\n  compliance:\n    requireExpiry: true\n    maxLifetime: 30d\n')
      const base = ['keys', 'create', '--name', 'x', '--owner', 'u', '--config', file]
      const noExpiry = run(base)
      expect(noExpiry.code).to.equal(2)
      expect(noExpiry.stderr).to.include('ERR_APIKEY_NONCOMPLIANT').and.include('requireExpiry')
      const tooLong = run([...base, '--expires-in', '60d'])
      expect(tooLong.code).to.equal(2)
      expect(tooLong.stderr).to.include('maxLifetime')
      expect(run([...base, '--expires-in', '7d']).code).to.equal(0)
    })

    it('reads JSON too, from PORTCULLIS_CONFIG, with the prefix and rotation period', function () {
      const file = join(dir, 'portcullis.json')
      writeFileSync(
        file,
        JSON.stringify({ keys: { prefix: 'acme', compliance: { rotationPeriod: '1ms' } } }),
      )
      const k = json<KeyJson>(['keys', 'create', '--name', 'x', '--owner', 'u'], {
        PORTCULLIS_CONFIG: file,
      })
      expect(k.key).to.match(/^acme_[0-9A-Za-z]{54}$/)
      const due = json<{ items: { id: string }[] }>(['keys', 'due'], { PORTCULLIS_CONFIG: file })
      expect(due.items.map((i) => i.id)).to.deep.equal([k.record.id])
    })

    it('refuses an unknown setting, bad YAML and a bad rule (exit 2), an unreadable file (exit 1)', function () {
      const typo = run(['keys', 'list', '--config', config('keys:\n  complience: {}\n')])
      expect(typo.code).to.equal(2)
      expect(typo.stderr).to.match(/unknown setting keys.complience/)
      expect(run(['keys', 'list', '--config', config('keys: [unclosed\n')]).code).to.equal(2)
      const badRule = run([
        'keys',
        'list',
        '--config',
        config('keys:\n  compliance:\n    maxLifetime: forever\n'),
      ])
      expect(badRule.code).to.equal(2)
      expect(badRule.stderr).to.match(/maxLifetime/)
      expect(run(['keys', 'list', '--config', 'missing.yaml']).code).to.equal(1)
      expect(run(['keys', 'due']).stderr).to.match(/keys.compliance.rotationPeriod/)
    })
  })

  describe('errors', function () {
    it('fails with exit 1 and a clear message for an unknown key', function () {
      const id = '0123456789abcdef'
      for (const args of [
        ['keys', 'show', id],
        ['keys', 'update', id, '--name', 'x'],
        ['keys', 'rotate', id],
        ['keys', 'revoke', id],
      ]) {
        const r = run(args)
        expect(r.code, args.join(' ')).to.equal(1)
        expect(r.stderr).to.equal(`error: no API key with id ${id}\n`)
        expect(r.stdout).to.equal('')
      }
    })

    const usage: readonly (readonly [string, readonly string[], RegExp])[] = [
      [
        'a malformed key id',
        ['keys', 'show', 'not-an-id'],
        /value 'not-an-id' is invalid.*must be a key id/,
      ],
      [
        'a bad duration',
        ['keys', 'create', '--name', 'x', '--owner', 'u', '--expires-in', '5x'],
        /must be a positive duration/,
      ],
      [
        'a zero lifetime',
        ['keys', 'create', '--name', 'x', '--owner', 'u', '--expires-in', '0'],
        /must be a positive duration/,
      ],
      ['a bad grace', ['keys', 'rotate', '0123456789abcdef', '--grace', 'soon'], /--grace/],
      [
        'a scope with a space',
        ['keys', 'create', '--name', 'x', '--owner', 'u', '--scope', 'a b'],
        /a scope is/,
      ],
      [
        'a bad role',
        ['keys', 'create', '--name', 'x', '--owner', 'u', '--role', '-x'],
        /a role is/,
      ],
      [
        'an owner with a quote',
        ['keys', 'create', '--name', 'x', '--owner', 'a"b'],
        /must be a user id/,
      ],
      ['a missing --name', ['keys', 'create', '--owner', 'u'], /required option '--name <name>'/],
      [
        'a bad --metadata',
        ['keys', 'create', '--name', 'x', '--owner', 'u', '--metadata', '[1]'],
        /must be a JSON object/,
      ],
      ['a bad --limit', ['keys', 'list', '--limit', '0'], /must be an integer from 1 to 1000/],
      [
        'a bad --status',
        ['keys', 'list', '--status', 'gone'],
        /Allowed choices are active, revoked/,
      ],
      [
        'a bad --expires-at',
        ['keys', 'update', '0123456789abcdef', '--expires-at', 'tomorrow'],
        /ISO 8601/,
      ],
      ['an unknown flag', ['keys', 'list', '--colour'], /unknown option '--colour'/],
      ['an unknown command', ['keys', 'frobnicate'], /unknown command 'frobnicate'/],
      ['a missing subcommand', ['keys'], /Usage: portcullis keys/],
      [
        '--db with --postgres',
        ['keys', 'list', '--db', 'x.db', '--postgres', 'postgres://h/db'],
        /give one/,
      ],
      [
        'a bad prefix',
        ['keys', 'create', '--name', 'x', '--owner', 'u', '--prefix', 'Bad'],
        /prefix/,
      ],
      [
        'a bad --rate-limit',
        ['keys', 'create', '--name', 'x', '--owner', 'u', '--rate-limit', '0/1m'],
        /LIMIT\/WINDOW/,
      ],
      [
        'a bad --quota',
        ['keys', 'create', '--name', 'x', '--owner', 'u', '--quota', '5/week'],
        /LIMIT\/day/,
      ],
      [
        'a bad --allow-cidr',
        ['keys', 'create', '--name', 'x', '--owner', 'u', '--allow-cidr', 'everywhere'],
        /CIDR/,
      ],
      [
        'an out-of-range CIDR',
        ['keys', 'create', '--name', 'x', '--owner', 'u', '--allow-cidr', '10.0.0.0/99'],
        /allowedCidrs/,
      ],
      [
        'a bad --environment',
        ['keys', 'create', '--name', 'x', '--owner', 'u', '--environment', 'prod'],
        /Allowed choices are live, test/,
      ],
      [
        '--no-policy with a policy flag',
        ['keys', 'update', '0123456789abcdef', '--no-policy', '--quota', '1/day'],
        /--no-policy/,
      ],
    ]
    for (const [what, args, message] of usage) {
      it(`exits 2 with a message for ${what}`, function () {
        const r = run(args)
        expect(r.code, r.stderr).to.equal(2)
        expect(r.stderr).to.match(message)
        expect(r.stderr).to.not.match(/\n\s+at /, 'no stack trace')
      })
    }

    it('exits 2 when create, rotate or import has no pepper', function () {
      const r = run(['keys', 'create', '--name', 'x', '--owner', 'u'], { PORTCULLIS_PEPPER: '' })
      expect(r.code).to.equal(2)
      expect(r.stderr).to.include('--pepper-file').and.include('PORTCULLIS_PEPPER')
      const k = create()
      expect(run(['keys', 'rotate', k.record.id], { PORTCULLIS_PEPPER: '' }).code).to.equal(2)
      // Commands that hash nothing work without it.
      expect(run(['keys', 'show', k.record.id], { PORTCULLIS_PEPPER: '' }).code).to.equal(0)
    })

    it('exits 2 for a pepper that is too short', function () {
      const r = run(['keys', 'create', '--name', 'x', '--owner', 'u'], {
        PORTCULLIS_PEPPER: 'short',
      })
      expect(r.code).to.equal(2)
      expect(r.stderr).to.match(/pepper.*at least 32 bytes/)
    })

    it('fails with exit 1, without a stack, on a store file that is not a database', function () {
      writeFileSync(db, 'this is not a SQLite database, just text '.repeat(200))
      const r = run(['keys', 'list'])
      expect(r.code).to.equal(1)
      expect(r.stderr).to.match(/^error/)
      expect(r.stderr).to.not.match(/\n\s+at /)
      const debug = run(['keys', 'list', '--debug'])
      expect(debug.code).to.equal(1)
      expect(debug.stderr).to.match(/\n\s+at /)
    })

    it('uses .portcullis/keys.db under the working directory by default', function () {
      const r = spawnSync(process.execPath, [CLI_BIN, 'keys', 'list', '--json'], {
        cwd: dir,
        env: { ...cleanEnv() },
        encoding: 'utf8',
      })
      expect(r.status, r.stderr).to.equal(0)
      expect(existsSync(join(dir, '.portcullis', 'keys.db'))).to.equal(true)
    })
  })
})
