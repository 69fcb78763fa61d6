/**
 * The Express 5 server under load: `node bench/servers/express.mjs <bare|apikey|jwt>`.
 *
 * Serves `GET /docs/:id` → `{ id }` on 127.0.0.1 and a random port, with no gate (`bare`), an
 * API key (`apikey`) or an HS256 JWT (`jwt`) required by `requirePolicy('documents:read')`, audit
 * off. Before announcing itself it checks, with real requests, that the credential gets 200 and
 * no credential gets 401 (bare: 200), and exits non-zero otherwise, so that a broken setup is never
 * measured. Then it prints one JSON line `{ "port": N, "headers": { ... } }` to stdout and serves
 * until killed (SIGTERM/SIGINT), for at most 15 minutes, and with `--exit-with-stdin` (as the
 * runner starts it) also until its stdin closes, so that it never outlives a crashed runner.
 * @module
 */
import { randomBytes } from 'node:crypto'
import { createServer } from 'node:http'
import { once } from 'node:events'
import express from 'express'
import { SignJWT } from 'jose'
import {
  createApiKeyManager,
  createGate,
  createMemoryKeyStore,
  createQuotaStage,
  createRateLimitStage,
} from '@gatehouse/core'
import { createRedisBackend } from '@gatehouse/redis'
import { Redis } from 'ioredis'
import { authMiddleware, problemHandler, requirePolicy } from '@gatehouse/express'

const VARIANTS = ['bare', 'apikey', 'jwt', 'limits', 'limits-redis']
const ISSUER = 'https://id.bench.example'
const AUDIENCE = 'documents-api'
const MAX_LIFETIME_MS = 15 * 60 * 1000

/**
 * Builds the gate and the credential for a variant.
 * @param {string} variant
 * @returns {Promise<{ gate: import('@gatehouse/core').Gate | undefined, headers: Record<string, string> }>}
 */
async function setup(variant) {
  if (variant === 'bare') return { gate: undefined, headers: {} }
  if (variant === 'apikey' || variant.startsWith('limits')) {
    const store = createMemoryKeyStore()
    const pepper = randomBytes(32)
    let stages = []
    if (variant.startsWith('limits')) {
      // Two named limits and a quota, high enough never to refuse during a run.
      let backend
      if (variant === 'limits-redis') {
        const client = new Redis({
          port: Number(process.env.BENCH_REDIS_PORT),
          host: '127.0.0.1',
          enableAutoPipelining: true,
        })
        await client.ping()
        backend = createRedisBackend({ client })
      }
      stages = [
        createRateLimitStage({
          ...(backend === undefined ? {} : { backend }),
          limits: [
            { name: 'burst', limit: 1_000_000, windowMs: '1s' },
            { name: 'hourly', limit: 100_000_000, windowMs: '1h' },
          ],
        }),
        createQuotaStage({
          ...(backend === undefined ? {} : { backend }),
          quotas: [{ name: 'monthly', limit: 1_000_000_000, period: 'month' }],
        }),
      ]
    }
    const gate = createGate({ apiKeys: { store, pepper }, stages, audit: false })
    const keys = createApiKeyManager({ store, pepper })
    const { key } = await keys.create({
      name: 'bench',
      ownerId: 'bench-user',
      scopes: ['documents:read'],
    })
    return { gate, headers: { 'x-api-key': key } }
  }
  const secret = randomBytes(32)
  const gate = createGate({ jwt: { secret, issuer: ISSUER, audience: AUDIENCE }, audit: false })
  const token = await new SignJWT({ scope: 'documents:read' })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setSubject('bench-user')
    .setIssuer(ISSUER)
    .setAudience(AUDIENCE)
    .setIssuedAt()
    .setExpirationTime('1h')
    .sign(secret)
  return { gate, headers: { authorization: `Bearer ${token}` } }
}

/**
 * The app: the gate (if any), one JSON route, the problem handler.
 * @param {import('@gatehouse/core').Gate | undefined} gate
 * @returns {import('express').Express}
 */
function buildApp(gate) {
  const app = express()
  if (gate === undefined) {
    app.get('/docs/:id', (req, res) => {
      res.json({ id: req.params.id })
    })
    return app
  }
  app.use(authMiddleware({ gate }))
  app.get('/docs/:id', requirePolicy('documents:read'), (req, res) => {
    res.json({ id: req.params.id })
  })
  app.use(problemHandler({ gate }))
  return app
}

/**
 * Checks the server answers as the benchmark expects; returns the problems found.
 * @param {string} base
 * @param {string} variant
 * @param {Record<string, string>} headers
 * @returns {Promise<string[]>}
 */
async function selfCheck(base, variant, headers) {
  const problems = []
  const probe = async (what, h, status) => {
    const res = await fetch(`${base}/docs/1`, { headers: h })
    const body = await res.text()
    if (res.status !== status) problems.push(`${what}: expected ${status}, got ${res.status}`)
    else if (status === 200 && body !== '{"id":"1"}') problems.push(`${what}: unexpected ${body}`)
  }
  await probe('with the credential', headers, 200)
  await probe('without credential', {}, variant === 'bare' ? 200 : 401)
  return problems
}

async function main() {
  const variant = process.argv[2]
  if (!VARIANTS.includes(variant)) {
    console.error(
      `usage: node bench/servers/express.mjs <${VARIANTS.join('|')}> [--exit-with-stdin]`,
    )
    process.exit(2)
  }
  const { gate, headers } = await setup(variant)
  const server = createServer(buildApp(gate))
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = /** @type {import('node:net').AddressInfo} */ (server.address())

  let stopping = false
  const stop = (code) => {
    if (stopping) return
    stopping = true
    server.close()
    server.closeAllConnections()
    // process.exit (not death by signal) lets --cpu-prof write its profile.
    Promise.resolve(gate?.close()).finally(() => process.exit(code))
  }
  process.on('SIGTERM', () => stop(0))
  process.on('SIGINT', () => stop(0))
  if (process.argv.includes('--exit-with-stdin')) {
    process.stdin.on('end', () => stop(0)).resume()
  }
  setTimeout(() => stop(0), MAX_LIFETIME_MS).unref()

  const problems = await selfCheck(`http://127.0.0.1:${port}`, variant, headers)
  if (problems.length > 0) {
    console.error(`bench server (${variant}) failed its self-check:\n  ${problems.join('\n  ')}`)
    stop(1)
    return
  }
  process.stdout.write(`${JSON.stringify({ port, headers })}\n`)
}

main().catch((error) => {
  console.error('bench server failed to start:', error)
  process.exit(1)
})
