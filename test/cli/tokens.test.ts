// `portcullis tokens revoke` (the built binary) against a real redis-server: the revocation lands
// in Redis with its expiry, reaches a running gate's revocation list through the broker, and is
// audited as token.revoked on the Redis audit stream.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { expect } from 'chai'
import { Redis } from 'ioredis'
import type { AuditEvent } from '@portcullis/core'
import {
  createRedisBroker,
  createRedisRevocationList,
  type RedisBroker,
  type RedisRevocationList,
} from '@portcullis/redis'
import { describeWithRedis } from '../helpers/redis-server.js'

const BIN = resolve('packages/cli/dist/bin.js')
const SLACK_MS = 300_000
const DAY_MS = 86_400_000

interface Run {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

/** Resolves once `done()` holds, or fails after `ms`. */
async function until(done: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${ms} ms`)
    await new Promise((r) => setTimeout(r, 5))
  }
}

describeWithRedis('portcullis tokens revoke (the built binary, real redis-server)', (redis) => {
  let dir: string
  let client: Redis
  let broker: RedisBroker
  let gateList: RedisRevocationList

  // Asynchronous: the gate's broker must keep receiving while the CLI runs.
  const run = (args: readonly string[], env: Record<string, string> = {}): Promise<Run> =>
    new Promise((done, fail) => {
      const base: Record<string, string> = {}
      for (const [k, v] of Object.entries(process.env))
        if (v !== undefined && !k.startsWith('PORTCULLIS_') && k !== 'USER') base[k] = v
      const child = spawn(process.execPath, [BIN, ...args], {
        cwd: dir,
        env: { ...base, USER: 'ops-alice', ...env },
        stdio: ['ignore', 'pipe', 'pipe'],
      })
      let stdout = ''
      let stderr = ''
      child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s))
      child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s))
      child.on('error', fail)
      child.on('close', (code) => done({ code, stdout, stderr }))
    })

  const auditEvents = async (stream = 'ptcl:audit'): Promise<AuditEvent[]> => {
    const entries = (await client.xrange(stream, '-', '+')) as [string, string[]][]
    return entries
      .map(([, fields]) => JSON.parse(fields[fields.indexOf('event') + 1]!) as AuditEvent)
      .filter((e) => e.type === 'token.revoked')
  }

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'portcullis-cli-tokens-'))
    client = new Redis(redis().url, { maxRetriesPerRequest: 1 })
    await once(client, 'ready')
    await client.flushall()
    broker = createRedisBroker({ subscriber: redis().url })
    gateList = createRedisRevocationList({ client, broker, resyncIntervalMs: 0 })
    await Promise.all([broker.ready(), gateList.ready()])
  })
  afterEach(async () => {
    await gateList.close()
    await broker.close()
    await client.quit()
    rmSync(dir, { recursive: true, force: true })
  })

  it('revokes a jti: stored until its exp (+300 s), seen by a running gate, audited', async () => {
    const exp = Math.floor(Date.now() / 1000) + 600
    expect(gateList.check({ jti: 'tok-1' })).to.equal(undefined)
    const r = await run([
      'tokens',
      'revoke',
      '--jti',
      'tok-1',
      '--expires',
      String(exp),
      '--redis',
      redis().url,
      '--json',
    ])
    expect(r.code, r.stderr).to.equal(0)
    expect(JSON.parse(r.stdout)).to.deep.equal({
      kind: 'jti',
      jti: 'tok-1',
      retainUntil: new Date(exp * 1000 + SLACK_MS).toISOString(),
    })
    expect(await client.call('PEXPIRETIME', 'ptcl:jwt-revoked:jti:tok-1')).to.equal(
      exp * 1000 + SLACK_MS,
    )
    await until(() => gateList.check({ jti: 'tok-1' }) === 'jti', 1000)
    const events = await auditEvents()
    expect(events).to.have.length(1)
    expect(events[0]).to.deep.include({
      type: 'token.revoked',
      outcome: 'success',
      action: 'token.revoke',
      actor: { id: 'ops-alice' },
      target: { type: 'jwt', id: 'tok-1' },
    })
    expect(events[0]!.data).to.deep.include({
      rule: 'jti',
      expiresAt: new Date(exp * 1000).toISOString(),
    })
  })

  it('revokes a subject before now (PORTCULLIS_REDIS_URL), with the cut-off in the audit event', async () => {
    const startedAt = Date.now()
    const r = await run(
      ['tokens', 'revoke', '--subject', 'u-42', '--before', 'now', '--actor', 'sec-bob', '--json'],
      {
        PORTCULLIS_REDIS_URL: redis().url,
      },
    )
    expect(r.code, r.stderr).to.equal(0)
    const out = JSON.parse(r.stdout) as { kind: string; subject: string; before: string }
    expect(out).to.include({ kind: 'subject', subject: 'u-42' })
    const before = Date.parse(out.before)
    expect(before).to.be.within(startedAt, Date.now())
    expect(await client.call('PEXPIRETIME', 'ptcl:jwt-revoked:sub:u-42')).to.equal(
      before + DAY_MS + SLACK_MS,
    )
    await until(
      () => gateList.check({ sub: 'u-42', iat: startedAt / 1000 - 1 }) === 'subject',
      1000,
    )
    expect(gateList.check({ sub: 'u-42', iat: Date.now() / 1000 + 1 })).to.equal(undefined)
    const [event] = await auditEvents()
    expect(event).to.deep.include({
      actor: { id: 'sec-bob' },
      target: { type: 'subject', id: 'u-42' },
    })
    expect(event!.data).to.deep.include({ rule: 'subject', issuedBefore: out.before })
  })

  it('reads tokens.prefix, tokens.maxTokenLifetimeSeconds and tokens.auditStream from --config', async () => {
    writeFileSync(
      join(dir, 'portcullis.yaml'),
      'tokens:\n  prefix: other\n  maxTokenLifetimeSeconds: 3600\n  auditStream: ops:audit\n',
    )
    const r = await run([
      'tokens',
      'revoke',
      '--jti',
      'tok-2',
      '--redis',
      redis().url,
      '--config',
      'portcullis.yaml',
    ])
    expect(r.code, r.stderr).to.equal(0)
    expect(r.stdout).to.match(/^revoked the token with jti tok-2\n/)
    const expiry = (await client.call('PEXPIRETIME', 'other:jwt-revoked:jti:tok-2')) as number
    expect(expiry - Date.now()).to.be.within(3_600_000 + SLACK_MS - 10_000, 3_600_000 + SLACK_MS)
    expect(await auditEvents('ops:audit')).to.have.length(1)
    expect(await auditEvents()).to.have.length(0)
  })

  it('refuses bad combinations and values with exit code 2, changing nothing', async () => {
    const url = redis().url
    for (const args of [
      ['tokens', 'revoke', '--redis', url],
      ['tokens', 'revoke', '--jti', 'a', '--subject', 'b', '--before', 'now', '--redis', url],
      ['tokens', 'revoke', '--subject', 'b', '--redis', url],
      ['tokens', 'revoke', '--jti', 'a', '--before', 'now', '--redis', url],
      ['tokens', 'revoke', '--subject', 'b', '--before', 'yesterday', '--redis', url],
      ['tokens', 'revoke', '--jti', 'a b', '--redis', url],
      ['tokens', 'revoke', '--jti', 'a'],
    ]) {
      const r = await run(args)
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).to.equal(2)
    }
    expect(await client.keys('ptcl:jwt-revoked:*')).to.deep.equal([])
  })

  it('fails with exit code 1 on a cut-off in the future', async () => {
    const future = new Date(Date.now() + DAY_MS).toISOString()
    const r = await run([
      'tokens',
      'revoke',
      '--subject',
      'u',
      '--before',
      future,
      '--redis',
      redis().url,
    ])
    expect(r.code).to.equal(1)
    expect(r.stderr).to.match(/must not be in the future/)
    expect(await client.keys('ptcl:jwt-revoked:*')).to.deep.equal([])
  })
})
