// Fastify's `app.log` and `request.log` are pino loggers: passed to the gate as `logger`, they must
// keep the fields of what the gate logs, and the plugin's own `request.log` call must keep its
// `err` object next to its message.
import { expect } from 'chai'
import Fastify from 'fastify'
import {
  createApiKeyManager,
  createGate,
  createMemoryKeyStore,
  createRateLimitStage,
} from '@portcullis/core'
import { createFailingBackend } from '@portcullis/core/testing'
import { portcullisPlugin } from '@portcullis/fastify'

const PEPPER = 'pepper-for-tests-only-0123456789abcdef'
const LEAKY = 'kaboom: db password hunter2'

type Line = Record<string, unknown> & { level: number; msg: string }

async function setup() {
  const lines: Line[] = []
  const app = Fastify({
    logger: { level: 'info', stream: { write: (l: string) => void lines.push(JSON.parse(l)) } },
  })
  const store = createMemoryKeyStore()
  const gate = createGate({
    apiKeys: { store, pepper: PEPPER },
    stages: [
      createRateLimitStage({
        backend: createFailingBackend(),
        onStoreError: 'open',
        limits: [{ name: 'per-key', limit: 5, windowMs: 60_000 }],
        logger: app.log,
      }),
    ],
    audit: false,
    logger: app.log,
  })
  await app.register(portcullisPlugin, { gate, problemErrors: true })
  app.get('/ok', async () => ({ ok: true }))
  app.get('/boom', async () => {
    throw new Error(LEAKY)
  })
  const { key } = await createApiKeyManager({ store, pepper: PEPPER }).create({
    name: 'k',
    ownerId: 'u',
  })
  return { app, lines, key }
}

describe('Fastify logging (app.log as the gate logger)', () => {
  it('keeps the fields of a gate warning written to app.log', async () => {
    const { app, lines, key } = await setup()
    const res = await app.inject({ url: '/ok', headers: { 'x-api-key': key } })
    expect(res.statusCode).to.equal(200)
    const warnings = lines.filter((l) => l.level === 40)
    expect(warnings).to.have.length(1)
    expect(warnings[0]).to.include({
      limit: 'per-key',
      error: 'Error: ECONNREFUSED',
      msg: 'ratelimit: store failed; request allowed (fail open)',
    })
    await app.close()
  })

  it('keeps the fields of the gate error and the plugin error for a throwing handler', async () => {
    const { app, lines, key } = await setup()
    const res = await app.inject({ url: '/boom', headers: { 'x-api-key': key } })
    expect(res.statusCode).to.equal(500)
    expect(res.body).to.not.include('hunter2')
    const errors = lines.filter((l) => l.level === 50)
    const gateLine = errors.find((l) => l.msg === 'gate: request failed')
    expect(gateLine).to.include({ code: 'ERR_INTERNAL_ERROR', error: `Error: ${LEAKY}` })
    expect(gateLine?.requestId).to.be.a('string').and.not.equal('')
    const pluginLine = errors.find((l) => l.msg === 'portcullis: request failed')
    expect(pluginLine?.reqId).to.be.a('string')
    expect(pluginLine?.err).to.include({ type: 'Error', message: LEAKY })
    await app.close()
  })
})
