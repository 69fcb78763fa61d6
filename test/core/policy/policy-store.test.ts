import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect } from 'chai'
import {
  createAccessManager,
  createPolicyStore,
  isConfigError,
  type Logger,
  type PolicySetInput,
} from '@portcullis/core'
import { createMemoryBroker } from '@portcullis/core/testing'
import { principal } from './helpers.js'

const V1: PolicySetInput = { roles: { viewer: { permissions: ['documents:read'] } } }
const V2: PolicySetInput = {
  roles: { viewer: { permissions: ['documents:read', 'documents:write'] } },
  rules: [{ id: 'no-read', effect: 'deny', actions: ['documents:read'], roles: ['viewer'] }],
}

function recordingLogger(): Logger & { errors: unknown[][] } {
  const errors: unknown[][] = []
  return { errors, warn: () => {}, error: (...a: unknown[]) => void errors.push(a) }
}

describe('PolicyStore', () => {
  let dir: string
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'portcullis-policy-'))
  })
  afterEach(() => rmSync(dir, { recursive: true, force: true }))

  it('swaps sets atomically: every evaluation sees the old set or the new one, never a mix', () => {
    const store = createPolicyStore({ initial: V1 })
    const access = createAccessManager({ policy: store })
    const viewer = principal('u', ['viewer'])
    const seen = new Set<string>()
    for (let i = 0; i < 2000; i++) {
      if (i % 100 === 50) expect(store.update(i % 200 === 50 ? V2 : V1).ok).to.equal(true)
      const read = access.evaluate({ principal: viewer, action: 'documents:read' }).allowed
      const write = access.evaluate({ principal: viewer, action: 'documents:write' }).allowed
      // V1: read yes, write no. V2: read no, write yes. A mix would give yes/yes or no/no.
      seen.add(`${read}/${write}`)
    }
    expect([...seen].sort()).to.deep.equal(['false/true', 'true/false'])
    store.close()
  })

  it('keeps the old set when a new one is bad, and says why', () => {
    const logger = recordingLogger()
    const store = createPolicyStore({ initial: V1, logger })
    const before = store.current
    const r = store.update({ roles: { a: { inherits: ['a'] } } })
    expect(r.ok).to.equal(false)
    expect(r.ok === false && r.errors).to.deep.equal(['roles.a.inherits: role cycle a → a'])
    expect(store.current).to.equal(before)
    expect(logger.errors[0]?.[1]).to.match(/refused; the previous set stays in force/)
    expect(logger.errors[0]?.[0]).to.deep.equal({
      version: before.version,
      errors: ['roles.a.inherits: role cycle a → a'],
    })
  })

  it('loads from a file at creation and on reload; a malformed file keeps the old set', async () => {
    const file = join(dir, 'policy.json')
    writeFileSync(file, JSON.stringify(V1))
    const store = createPolicyStore({ file })
    expect(store.current.file).to.equal(file)
    const v1 = store.current.version
    writeFileSync(file, JSON.stringify(V2))
    const r = await store.reload()
    expect(r).to.deep.include({ ok: true, changed: true })
    expect(store.current.version).to.not.equal(v1)
    writeFileSync(file, '{"roles": {"viewer": {"permissions": ["documents:read"]}}, "roles": {}}')
    const bad = await store.reload()
    expect(bad.ok).to.equal(false)
    expect(bad.ok === false && bad.errors[0]).to.match(/policy\.json: malformed policy file/)
    writeFileSync(
      file,
      JSON.stringify({
        rules: [
          {
            id: 'x',
            effect: 'allow',
            actions: ['a:b'],
            when: { attr: 'principal.id', op: 'like', value: 'x' },
          },
        ],
      }),
    )
    const invalid = await store.reload()
    expect(invalid.ok === false && invalid.errors[0]).to.match(
      /^.*policy\.json: rules\[0\]\.when\.op: unknown operator "like"/,
    )
    const again = await store.reload()
    expect(again, JSON.stringify(again)).to.deep.include({ ok: false })
    expect(store.current.rules.map((x) => x.id)).to.deep.equal(['no-read', 'role:viewer'])
    store.close()
  })

  it('reloads when a watched file changes', async () => {
    const file = join(dir, 'watched.json')
    writeFileSync(file, JSON.stringify(V1))
    const store = createPolicyStore({ file, watch: true })
    const before = store.current.version
    writeFileSync(file, JSON.stringify(V2))
    // File events arrive from the OS: wait for the swap, bounded.
    for (let i = 0; i < 100 && store.current.version === before; i++)
      await new Promise((res) => setTimeout(res, 20))
    expect(store.current.version).to.not.equal(before)
    expect(store.current.rules.map((r) => r.id)).to.include('no-read')
    store.close()
  })

  it('refuses to start with a bad file', () => {
    const file = join(dir, 'policy.json')
    writeFileSync(file, JSON.stringify({ rules: [{ id: 'x' }] }))
    try {
      createPolicyStore({ file })
      expect.fail('should throw')
    } catch (error) {
      expect(isConfigError(error)).to.equal(true)
      expect((error as Error).message).to.include(`${file}: rules[0].effect`)
    }
  })

  it('spreads reloads through the broker: publishing after a local reload, reloading on a message', async () => {
    const broker = createMemoryBroker()
    const fileA = join(dir, 'a.json')
    writeFileSync(fileA, JSON.stringify(V1))
    const published: string[] = []
    broker.subscribe('policy.changed', (m) => void published.push(m.version))
    const a = createPolicyStore({ file: fileA, broker })
    // Instance B reads the same policy from its own loader (a shared database, say).
    let shared: unknown = V1
    const b = createPolicyStore({ initial: V1, load: async () => shared, broker })
    writeFileSync(fileA, JSON.stringify(V2))
    shared = V2
    const r = await a.reload()
    expect(r.ok).to.equal(true)
    expect(published).to.deep.equal([a.current.version])
    // B reloads on the message (asynchronously).
    for (let i = 0; i < 20 && b.current.version !== a.current.version; i++)
      await new Promise((res) => setImmediate(res))
    expect(b.current.version).to.equal(a.current.version)
    // B did not announce again (no loop).
    expect(published).to.have.length(1)
    a.close()
    b.close()
  })

  it('collapses concurrent reloads and returns the same result', async () => {
    let calls = 0
    const store = createPolicyStore({
      initial: V1,
      load: async () => {
        calls++
        return V2
      },
    })
    const [x, y, z] = await Promise.all([store.reload(), store.reload(), store.reload()])
    expect(x).to.deep.equal(y)
    expect(y).to.deep.equal(z)
    expect(calls).to.equal(2)
    store.close()
  })
})
