// A documents API on Fastify 5 behind the Portcullis plugin, all in memory: the key store, the
// pepper and the audit trail live as long as the process.
//
//   npm start               serve on PORT (default 3000) and print a key and curl lines
//   npm start -- --smoke    serve on a free port, check the three curl cases, exit 0 or 1
import { randomBytes } from 'node:crypto'
import helmet from '@fastify/helmet'
import Fastify from 'fastify'
import {
  createApiKeyManager,
  createAuditTrail,
  createGate,
  createMemoryAuditSink,
  createMemoryKeyStore,
} from '@portcullis/core'
import { portcullisPlugin } from '@portcullis/fastify'

const smoke = process.argv.includes('--smoke')
const pepper = randomBytes(32).toString('base64url')
const store = createMemoryKeyStore()
const events = createMemoryAuditSink()
const audit = createAuditTrail({ sinks: [events], flushIntervalMs: 0 })
const app = Fastify({ logger: !smoke, bodyLimit: 16 * 1024 })
const gate = createGate({
  asyncContext: true,
  apiKeys: { store, pepper },
  roles: { editor: ['documents:*'] },
  audit,
  // Fastify's logger is pino: its (fields, message) order is the one Portcullis writes in.
  logger: app.log,
})
const keys = createApiKeyManager({ store, pepper, audit })

const documents = new Map([
  ['1', { id: '1', title: 'Welcome', ownerId: 'demo-user' }],
  ['2', { id: '2', title: 'Roadmap', ownerId: 'demo-user' }],
])

// Helmet first, so its headers are on the gate's 401 and 403 answers too.
await app.register(helmet)
// Awaited before the routes, so the plugin compiles each route's requirements as it is added.
await app.register(portcullisPlugin, { gate, problemErrors: true })

app.get('/health', { config: { portcullis: { public: true } } }, async () => ({ ok: true }))
// No config.portcullis: any authenticated caller.
app.get('/me', async (request) => request.auth.principal)
app.get('/docs', { config: { portcullis: 'documents:read' } }, async () => [...documents.values()])
app.get('/docs/:id', { config: { portcullis: 'documents:read' } }, async (request, reply) => {
  const doc = documents.get(request.params.id)
  if (doc === undefined) return reply.code(404).send({ error: 'not found' })
  return doc
})
// The gate decides in onRequest, so callers without documents:write never reach the body parser.
app.post('/docs', { onRequest: app.requirePolicy('documents:write') }, async (request, reply) => {
  const id = String(documents.size + 1)
  const doc = {
    id,
    title: String(request.body?.title ?? 'Untitled'),
    ownerId: request.auth.principal.id,
  }
  documents.set(id, doc)
  // An application event: the request context comes from AsyncLocalStorage.
  audit.record('document.created', { target: { type: 'document', id } })
  return reply.code(201).send(doc)
})

const issued = await keys.create({ name: 'demo', ownerId: 'demo-user', scopes: ['documents:read'] })

const port = smoke ? 0 : Number(process.env.PORT ?? 3000)
await app.listen({ port, host: '127.0.0.1' })
const url = `http://127.0.0.1:${app.server.address().port}`
if (smoke) await runSmoke(url)
else {
  console.log(`Portcullis Fastify demo listening on ${url}

Demo API key (in memory, shown once): ${issued.key}

  # allowed (200)
  curl -i -H "X-API-Key: ${issued.key}" ${url}/docs
  # no credentials (401 with a WWW-Authenticate challenge)
  curl -i ${url}/docs
  # missing scope documents:write (403 insufficient_scope)
  curl -i -X POST -H "X-API-Key: ${issued.key}" -H "Content-Type: application/json" -d '{"title":"x"}' ${url}/docs
`)
}

async function runSmoke(url) {
  const auth = { 'x-api-key': issued.key }
  const checks = [
    ['allowed', 200, () => fetch(`${url}/docs`, { headers: auth })],
    ['no credentials', 401, () => fetch(`${url}/docs`)],
    ['missing scope', 403, () => fetch(`${url}/docs`, { method: 'POST', headers: auth })],
  ]
  let failed = 0
  for (const [name, expected, send] of checks) {
    const res = await send().catch((error) => ({ status: String(error) }))
    const ok = res.status === expected
    if (!ok) failed++
    console.log(`${ok ? 'ok  ' : 'FAIL'} ${name}: ${res.status} (expected ${expected})`)
  }
  await audit.flush()
  console.log(`audit: ${events.events.map((e) => e.type).join(' ')}`)
  await shutdown()
  process.exit(failed === 0 ? 0 : 1)
}

async function shutdown() {
  await app.close()
  await gate.close()
}

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => {
    shutdown().then(() => process.exit(0))
  })
}
