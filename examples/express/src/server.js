// A documents API behind the full Portcullis gate, on embedded defaults: SQLite key store and a
// JSON-lines audit file under a local data folder, HS256 JWTs with a generated dev secret.
//
//   npm start               serve on PORT (default 3000) and print a key, a JWT and curl lines
//   npm start -- --smoke    serve on a free port, check the three curl cases, exit 0 or 1
import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import express from 'express'
import { SignJWT } from 'jose'
import { collectDefaultMetrics, Registry } from 'prom-client'
import {
  createApiKeyManager,
  createAuditTrail,
  createGate,
  createJsonLinesFileSink,
  createMemoryBroker,
} from '@portcullis/core'
import { authMiddleware, problemHandler, requirePolicy } from '@portcullis/express'
import { createPrometheusMetrics } from '@portcullis/prometheus'
import { createSqliteKeyStore } from '@portcullis/sqlite'

const smoke = process.argv.includes('--smoke')
const here = dirname(fileURLToPath(import.meta.url))
const dataDir = process.env.PORTCULLIS_DATA_DIR ?? join(here, '..', '.data')
mkdirSync(dataDir, { recursive: true, mode: 0o700 })

/** Dev secrets, generated once and kept in the data folder (never commit that folder). */
function loadSecrets() {
  const file = join(dataDir, 'secrets.json')
  if (existsSync(file)) return JSON.parse(readFileSync(file, 'utf8'))
  const secrets = {
    pepper: randomBytes(32).toString('base64url'),
    jwtSecret: randomBytes(32).toString('base64url'),
  }
  writeFileSync(file, JSON.stringify(secrets, null, 2), { mode: 0o600 })
  return secrets
}

const secrets = loadSecrets()
const issuer = 'urn:portcullis:demo'
const audience = 'documents-api'
const store = createSqliteKeyStore({ database: join(dataDir, 'keys.db') })
const broker = createMemoryBroker()
// Prometheus metrics of the gate (and of the process) on a registry of our own, served at /metrics.
const registry = new Registry()
collectDefaultMetrics({ register: registry })
const metrics = createPrometheusMetrics({ registry })
const audit = createAuditTrail({
  sinks: [createJsonLinesFileSink({ path: join(dataDir, 'audit.jsonl') })],
  metrics,
})
// Portcullis logs in pino's order, (fields, message); console wants the message first.
const logger = {
  warn: (fields, message) => console.warn(message, fields),
  error: (fields, message) => console.error(message, fields),
}
const gate = createGate({
  asyncContext: true,
  apiKeys: { store, pepper: secrets.pepper, broker },
  jwt: { secret: secrets.jwtSecret, issuer, audience },
  roles: { editor: ['documents:*'] },
  audit,
  metrics,
  logger,
})
const keys = createApiKeyManager({ store, pepper: secrets.pepper, broker, audit })

const documents = new Map([
  ['1', { id: '1', title: 'Welcome', ownerId: 'demo-user' }],
  ['2', { id: '2', title: 'Roadmap', ownerId: 'demo-user' }],
])

const app = express()
app.get('/health', (req, res) => res.json({ ok: true }))
// Before the gate, like /health: scrapers do not authenticate. Expose it on an internal network only.
app.get('/metrics', async (req, res) => {
  res.type(registry.contentType).send(await registry.metrics())
})
app.use(authMiddleware({ gate }))
app.use(express.json({ limit: '16kb' }))
app.get('/me', requirePolicy({}), (req, res) => res.json(req.auth.principal))
app.get('/docs', requirePolicy('documents:read'), (req, res) => res.json([...documents.values()]))
app.get('/docs/:id', requirePolicy('documents:read'), (req, res) => {
  const doc = documents.get(req.params.id)
  if (doc === undefined) return res.status(404).json({ error: 'not found' })
  res.json(doc)
})
app.post('/docs', requirePolicy('documents:write'), (req, res) => {
  const id = String(documents.size + 1)
  const doc = { id, title: String(req.body?.title ?? 'Untitled'), ownerId: req.auth.principal.id }
  documents.set(id, doc)
  // An application event: the request context comes from AsyncLocalStorage.
  audit.record('document.created', { target: { type: 'document', id } })
  res.status(201).json(doc)
})
app.use(problemHandler({ gate }))

const issued = await keys.create({
  name: 'demo',
  ownerId: 'demo-user',
  scopes: ['documents:read'],
  expiresIn: '30d',
})
const token = await new SignJWT({ scope: 'documents:read' })
  .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
  .setSubject('demo-user')
  .setIssuer(issuer)
  .setAudience(audience)
  .setIssuedAt()
  .setExpirationTime('1h')
  .sign(Buffer.from(secrets.jwtSecret))

const port = smoke ? 0 : Number(process.env.PORT ?? 3000)
const server = app.listen(port, '127.0.0.1', async () => {
  const url = `http://127.0.0.1:${server.address().port}`
  if (smoke) return runSmoke(url)
  console.log(`Portcullis demo listening on ${url}  (data: ${dataDir})

Demo API key (shown once): ${issued.key}
Demo JWT (1 hour):         ${token}

  # allowed (200)
  curl -i -H "X-API-Key: ${issued.key}" ${url}/docs
  # no credentials (401 with a WWW-Authenticate challenge)
  curl -i ${url}/docs
  # missing scope documents:write (403 insufficient_scope)
  curl -i -X POST -H "Authorization: Bearer ${token}" -H "Content-Type: application/json" -d '{"title":"x"}' ${url}/docs
  # Prometheus metrics (portcullis_requests_total, portcullis_decision_duration_seconds, ...)
  curl -s ${url}/metrics | grep ^portcullis_requests_total
`)
})

async function runSmoke(url) {
  const checks = [
    ['allowed', 200, fetch(`${url}/docs`, { headers: { 'x-api-key': issued.key } })],
    ['no credentials', 401, fetch(`${url}/docs`)],
    [
      'missing scope',
      403,
      fetch(`${url}/docs`, { method: 'POST', headers: { authorization: `Bearer ${token}` } }),
    ],
  ]
  let failed = 0
  for (const [name, expected, pending] of checks) {
    const res = await pending
    const ok = res.status === expected
    if (!ok) failed++
    console.log(`${ok ? 'ok  ' : 'FAIL'} ${name}: ${res.status} (expected ${expected})`)
  }
  // The three answers above are counted: one denial with ERR_AUTH_REQUIRED at authentication.
  const scrape = await (await fetch(`${url}/metrics`)).text()
  const counted = /^portcullis_requests_total\{[^}]*code="ERR_AUTH_REQUIRED"[^}]*\} 1$/m.test(
    scrape,
  )
  if (!counted) failed++
  console.log(`${counted ? 'ok  ' : 'FAIL'} metrics: the 401 is counted at /metrics`)
  await shutdown()
  process.exit(failed === 0 ? 0 : 1)
}

async function shutdown() {
  await new Promise((resolve) => server.close(resolve))
  await gate.close()
  await store.close?.()
}

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => {
    shutdown().then(() => process.exit(0))
  })
}
