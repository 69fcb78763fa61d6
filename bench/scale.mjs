/**
 * Scale and memory: 1,000,000 distinct client IPs through the memory rate limiter (a
 * `createRateLimitStage` with one per-IP limit on a `createMemoryBackend({ maxKeys })`), and
 * 100,000 distinct API keys through the verifier's key cache (`cache.max`). Reports the heap
 * after a full GC before and after, the entries the limiter holds, and checks (in the output,
 * not as a test) that both stay within their configured bounds.
 *
 * Needs `--expose-gc`; `run.mjs` starts it as `node --expose-gc bench/scale.mjs --json [--quick]`.
 * On its own: `node --expose-gc bench/scale.mjs [--quick]` prints a Markdown table.
 * @module
 */
import { randomBytes } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import {
  createApiKeyManager,
  createGate,
  createMemoryBackend,
  createMemoryKeyStore,
  createRateLimitStage,
} from '@portcullis/core'
import { fakeRequest } from '@portcullis/core/testing'
import { fmt, table } from './lib/stats.mjs'

const MiB = 2 ** 20
/** Generous per-entry budgets (bytes) a bounded structure must stay under. */
const LIMITER_BYTES_PER_ENTRY = 1024
const KEY_CACHE_BYTES_PER_ENTRY = 4096

function heap() {
  globalThis.gc()
  globalThis.gc()
  return process.memoryUsage().heapUsed
}

/**
 * @param {{ quick?: boolean }} [options]
 * @returns {Promise<Array<{ name: string, items: number, bound: string, before: number, after: number, peak: number, budget: number, held?: number, maxKeys: number, ok: boolean, ms: number }>>}
 */
export async function runScale({ quick = false } = {}) {
  if (typeof globalThis.gc !== 'function') throw new Error('run with node --expose-gc')
  const rows = []

  // 1. Distinct client IPs through the memory limiter.
  {
    const ips = quick ? 200_000 : 1_000_000
    const maxKeys = 100_000
    const limiters = []
    const memory = createMemoryBackend({ maxKeys })
    const backend = {
      name: 'memory',
      create: (spec) => {
        const l = memory.create(spec)
        limiters.push(l)
        return l
      },
    }
    const stage = createRateLimitStage({
      backend,
      limits: [{ name: 'per-ip', limit: 100, windowMs: '1m', key: 'ip' }],
    })
    const requests = Array.from({ length: 256 }, () => fakeRequest({ url: '/docs/1' }))
    const before = heap()
    let peak = before
    const t0 = performance.now()
    for (let i = 0; i < ips; i++) {
      const request = requests[i & 255]
      // 10.x.y.z: 16M distinct addresses; GateRequest is a plain object in fakeRequest.
      request.ip = `10.${(i >>> 16) & 255}.${(i >>> 8) & 255}.${i & 255}`
      const r = await stage.run({ request, principal: null, requirements: undefined })
      if (!r.ok) throw new Error(`limiter refused ${request.ip}`)
      if ((i & 0xffff) === 0xffff) peak = Math.max(peak, process.memoryUsage().heapUsed)
    }
    const ms = performance.now() - t0
    const after = heap()
    const held = limiters.reduce((n, l) => n + (l.size ?? 0), 0)
    const budget = maxKeys * LIMITER_BYTES_PER_ENTRY
    rows.push({
      name: `${fmt(ips)} distinct IPs through the memory limiter (1 per-IP limit)`,
      items: ips,
      maxKeys,
      bound: `maxKeys ${fmt(maxKeys)} (memory backend)`,
      before,
      after,
      peak,
      held,
      budget,
      ok: held <= maxKeys && after - before <= budget,
      ms,
    })
  }

  // 2. Distinct API keys through the key cache.
  {
    const keys = quick ? 20_000 : 100_000
    const max = 10_000
    const store = createMemoryKeyStore()
    const pepper = randomBytes(32)
    const manager = createApiKeyManager({ store, pepper })
    const plain = []
    for (let i = 0; i < keys; i++) {
      plain.push(
        (await manager.create({ name: `k${i}`, ownerId: `u${i}`, scopes: ['documents:read'] })).key,
      )
    }
    const gate = createGate({ apiKeys: { store, pepper, cache: { max } }, audit: false })
    const request = fakeRequest({ url: '/docs/1', headers: { 'x-api-key': plain[0] } })
    // The store and the plain keys exist before and after: only the cache grows in between.
    const before = heap()
    let peak = before
    const t0 = performance.now()
    const headers = new Map()
    request.header = (name) => headers.get(name)
    for (let i = 0; i < keys; i++) {
      headers.set('x-api-key', plain[i])
      const d = await gate.authenticate(request)
      if (!d.allowed) throw new Error(`key ${i} refused: ${d.error.code}`)
      if ((i & 0x3fff) === 0x3fff) peak = Math.max(peak, process.memoryUsage().heapUsed)
    }
    const ms = performance.now() - t0
    const after = heap()
    await gate.close()
    const budget = max * KEY_CACHE_BYTES_PER_ENTRY
    rows.push({
      name: `${fmt(keys)} distinct API keys through the key cache`,
      items: keys,
      maxKeys: max,
      bound: `apiKeys.cache.max ${fmt(max)}`,
      before,
      after,
      peak,
      budget,
      ok: after - before <= budget,
      ms,
    })
    plain.length = 0
  }
  return rows
}

/**
 * @param {Awaited<ReturnType<typeof runScale>>} rows
 * @returns {string}
 */
export function scaleTable(rows) {
  return table(
    [
      'Workload',
      'bound',
      'heap before MiB',
      'after MiB',
      'growth MiB',
      'budget MiB',
      'peak MiB',
      'limiter entries',
      'time s',
      'within bound',
    ],
    rows.map((r) => [
      r.name,
      r.bound,
      fmt(r.before / MiB, 1),
      fmt(r.after / MiB, 1),
      fmt((r.after - r.before) / MiB, 1),
      fmt(r.budget / MiB, 1),
      fmt(r.peak / MiB, 1),
      r.held === undefined ? '–' : fmt(r.held),
      fmt(r.ms / 1000, 1),
      r.ok ? 'yes' : '**NO**',
    ]),
    ['l', 'l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'l'],
  )
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const rows = await runScale({ quick: process.argv.includes('--quick') })
  if (process.argv.includes('--json')) console.log(JSON.stringify(rows))
  else console.log(scaleTable(rows))
  process.exit(rows.every((r) => r.ok) ? 0 : 1)
}
