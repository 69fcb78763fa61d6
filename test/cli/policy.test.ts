// Runs the REAL built `portcullis` binary (packages/cli/dist/bin.js, built by `npx tsc -b
// packages/cli`) on the policy fixtures in test/fixtures/policy.
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { expect } from 'chai'

const BIN = resolve('packages/cli/dist/bin.js')
const FIXTURES = resolve('test/fixtures/policy')

interface Run {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

const run = (args: readonly string[], cwd = FIXTURES): Run => {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd, encoding: 'utf8', input: '' })
  return { code: r.status, stdout: r.stdout, stderr: r.stderr }
}

describe('portcullis policy (the built binary)', function () {
  this.timeout(60_000)
  let dir: string
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'portcullis-policy-cli-'))
  })
  after(() => rmSync(dir, { recursive: true, force: true }))

  describe('lint', () => {
    it('passes a valid file', () => {
      const r = run(['policy', 'lint', 'policy.yaml'])
      expect(r.code, r.stderr).to.equal(0)
      expect(r.stdout).to.equal('policy.yaml: ok (0 warnings)\n')
    })

    it('reports warnings with file and path, and fails on them with --strict', () => {
      const r = run(['policy', 'lint', 'warnings.yaml'])
      expect(r.code).to.equal(0)
      expect(r.stdout).to.include(
        'warning: warnings.yaml: rules[1].roles: rule "editors-write" names undefined role "editor" [undefined-role]',
      )
      expect(r.stdout).to.include('[shadowed-rule]')
      expect(run(['policy', 'lint', 'warnings.yaml', '--strict']).code).to.equal(1)
    })

    it('refuses a role cycle and an unknown operator with file, path and reason', () => {
      const cycle = run(['policy', 'lint', 'bad-cycle.yaml'])
      expect(cycle.code).to.equal(1)
      expect(cycle.stdout).to.include(
        'error: bad-cycle.yaml: roles.a.inherits: role cycle a → b → a [role-cycle]',
      )
      const op = run(['policy', 'lint', 'bad-operator.json', '--json'])
      expect(op.code).to.equal(1)
      const body = JSON.parse(op.stdout) as {
        ok: boolean
        errors: { path: string; kind: string; file: string }[]
      }
      expect(body.ok).to.equal(false)
      expect(body.errors[0]).to.deep.include({
        file: 'bad-operator.json',
        path: 'rules[0].when.op',
        kind: 'unknown-operator',
      })
    })

    it('refuses a malformed file and a missing file clearly', () => {
      const bad = join(dir, 'dup.yaml')
      writeFileSync(bad, 'roles: {}\nroles: {}\n')
      const r = run(['policy', 'lint', bad])
      expect(r.code).to.equal(1)
      expect(r.stderr).to.match(/malformed policy file: Map keys must be unique at line 2/)
      const missing = run(['policy', 'lint', 'nope.yaml'])
      expect(missing.code).to.equal(1)
      expect(missing.stderr).to.include('cannot read: ENOENT')
    })
  })

  describe('explain', () => {
    it('explains a decision with rule outcomes and values', () => {
      const r = run([
        'policy',
        'explain',
        'policy.yaml',
        '--principal',
        '{"id":"bob"}',
        '--request',
        '{"action":"documents:delete","resourceType":"document","resource":{"ownerId":"alice"}}',
      ])
      expect(r.code, r.stderr).to.equal(0)
      expect(r.stdout).to.include('decision:    deny (ERR_POLICY_DENIED)')
      expect(r.stdout).to.include('explanation: no rule allows documents:delete (default deny)')
      expect(r.stdout).to.include('resource.ownerId eq principal.id ("bob"): "alice" → false')
    })

    it('prints JSON with the matched rules and the risk score', () => {
      const r = run([
        'policy',
        'explain',
        'policy.yaml',
        '--json',
        '--principal',
        '{"id":"alice","attributes":{"claims":{"amr":["mfa"]}}}',
        '--request',
        '{"action":"documents:delete","resourceType":"document","resource":{"ownerId":"alice"}}',
      ])
      expect(r.code, r.stderr).to.equal(0)
      const e = JSON.parse(r.stdout) as {
        decision: string
        matchedRules: string[]
        riskScore: number
        rules: unknown[]
      }
      expect(e).to.deep.include({
        decision: 'allow',
        matchedRules: ['owner-manages'],
        riskScore: 0,
      })
    })

    it('refuses bad JSON and a bad principal as usage errors', () => {
      const r = run(['policy', 'explain', 'policy.yaml', '--principal', '{id', '--request', '{}'])
      expect(r.code).to.equal(2)
      expect(r.stderr).to.include("option '--principal <json>' argument '{id' is invalid")
      const p = run([
        'policy',
        'explain',
        'policy.yaml',
        '--principal',
        '{"id":1}',
        '--request',
        '{"action":"a:b"}',
      ])
      expect(p.code).to.equal(2)
      expect(p.stderr).to.include('--principal.id: must be a string, received 1')
    })
  })

  describe('test', () => {
    it('runs table-driven cases and reports rule coverage', () => {
      const r = run(['policy', 'test', 'policy.tests.yaml'])
      expect(r.code, r.stdout + r.stderr).to.equal(0)
      expect(r.stdout).to.include('  ✔ the owner deletes their document (with MFA)')
      expect(r.stdout).to.include('8 passed, 0 failed')
      expect(r.stdout).to.include('coverage: 6/7 rules exercised')
      expect(r.stdout).to.include('rules no case exercises: role:editor')
      expect(run(['policy', 'test', 'policy.tests.yaml', '--require-coverage']).code).to.equal(1)
    })

    it('fails when a case does not hold, saying why', () => {
      const suite = join(dir, 'failing.yaml')
      writeFileSync(
        suite,
        [
          `policy: ${join(FIXTURES, 'policy.yaml')}`,
          'cases:',
          '  - name: viewers write (wrong)',
          '    principal: { id: vic, roles: [viewer] }',
          '    request: { action: documents:write }',
          '    expect: allow',
          '  - name: bad expectation',
          '    principal: { id: vic }',
          '    request: { action: documents:read }',
          '    expect: maybe',
          '',
        ].join('\n'),
      )
      const r = run(['policy', 'test', suite, '--json'])
      expect(r.code).to.equal(1)
      const report = JSON.parse(r.stdout) as {
        failed: number
        results: { name: string; failure?: string }[]
      }
      expect(report.failed).to.equal(2)
      expect(report.results[0]?.failure).to.equal(
        'expected allow, got deny: no rule allows documents:write (default deny)',
      )
      expect(report.results[1]?.failure).to.match(
        /cases\[1\]\.expect: must be allow, deny or step-up/,
      )
      expect(r.stderr).to.include('2 of 2 policy cases failed')
    })
  })
})
