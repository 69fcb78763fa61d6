// Real HTTP requests carrying every kind of credential (API key, JWT, Authorization header,
// cookie, credentials in the query) through each framework, into every sink at once (memory,
// JSON-lines file, SQLite, a webhook on a real node:http server, pino): no secret may reach any of
// them. A careless handler that records the raw headers with `audit.record()` (request context
// from AsyncLocalStorage) is included on purpose.
import { once } from 'node:events'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { createServer, type Server } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { bodyParser } from '@koa/bodyparser'
import Router from '@koa/router'
import { expect } from 'chai'
import express from 'express'
import Fastify from 'fastify'
import Koa from 'koa'
import pino from 'pino'
import request from 'supertest'
import {
  createApiKeyManager,
  createGate,
  createJsonLinesFileSink,
  createLoggerAuditSink,
  createMemoryKeyStore,
  createWebhookAuditSink,
  type Gate,
  type LogFields,
  type TraceEntry,
} from '@portcullis/core'
import { createMemoryAuditSink } from '@portcullis/core/testing'
import { authMiddleware as expressAuth, requirePolicy as expressPolicy } from '@portcullis/express'
import { portcullisPlugin } from '@portcullis/fastify'
import { authMiddleware as koaAuth, requirePolicy as koaPolicy } from '@portcullis/koa'
import { createSqliteAuditSink, readSqliteAuditEvents } from '@portcullis/sqlite'
import { seconds, signHmac } from '../helpers/jwt.js'

const PEPPER = 'audit-secrets-pepper-0123456789abcdef'
const JWT_SECRET = 'audit-secrets-jwt-secret-0123456789ab'
const ISSUER = 'https://id.example'
const AUDIENCE = 'docs'

type Listen = (gate: Gate) => Promise<{ server: Server; close(): Promise<void> }>

const carelessRecord = (gate: Gate, headers: unknown, url: string): void => {
  gate.audit.record('profile.viewed', { data: { headers, url } })
}

const FRAMEWORKS: Record<string, Listen> = {
  express: async (gate) => {
    const app = express()
    app.use(expressAuth({ gate }))
    app.get('/docs/:id', expressPolicy('documents:read'), (req, res) => {
      carelessRecord(gate, req.headers, req.originalUrl)
      res.json({ ok: true })
    })
    const server = app.listen(0, '127.0.0.1')
    await once(server, 'listening')
    return { server, close: () => new Promise((r) => server.close(() => r())) }
  },
  koa: async (gate) => {
    const app = new Koa()
    app.use(koaAuth({ gate }))
    app.use(bodyParser())
    const router = new Router()
    router.get('/docs/:id', koaPolicy('documents:read'), (ctx) => {
      carelessRecord(gate, ctx.headers, ctx.originalUrl)
      ctx.body = { ok: true }
    })
    app.use(router.routes())
    const server = app.listen(0, '127.0.0.1')
    await once(server, 'listening')
    return { server, close: () => new Promise((r) => server.close(() => r())) }
  },
  fastify: async (gate) => {
    const app = Fastify()
    await app.register(portcullisPlugin, { gate, problemErrors: true })
    app.get('/docs/:id', { config: { portcullis: 'documents:read' } }, async (req) => {
      carelessRecord(gate, req.headers, req.url)
      return { ok: true }
    })
    await app.listen({ port: 0, host: '127.0.0.1' })
    return { server: app.server, close: () => app.close() }
  },
}

describe('audit: no secret reaches any sink (real HTTP, every framework)', function () {
  this.timeout(30_000)
  for (const [framework, listen] of Object.entries(FRAMEWORKS)) {
    it(`keeps API keys, JWTs, Authorization and cookies out of every sink (${framework})`, async () => {
      const dir = await mkdtemp(join(tmpdir(), 'portcullis-audit-secrets-'))
      const collected: string[] = []
      const collector = createServer((req, res) => {
        let body = ''
        req.on('data', (c: Buffer) => (body += c.toString()))
        req.on('end', () => {
          collected.push(body)
          res.writeHead(204).end()
        })
      })
      collector.listen(0, '127.0.0.1')
      await once(collector, 'listening')
      const pinoLines: string[] = []
      const memory = createMemoryAuditSink()
      const sqlite = createSqliteAuditSink({ database: join(dir, 'audit.db') })
      const store = createMemoryKeyStore()
      const gate = createGate({
        asyncContext: true,
        apiKeys: { store, pepper: PEPPER },
        jwt: { secret: JWT_SECRET, issuer: ISSUER, audience: AUDIENCE },
        audit: {
          level: 'verbose',
          flushIntervalMs: 0,
          integrity: { key: 'chain-key-0123456789abcdef0123456789' },
          sinks: [
            memory,
            createJsonLinesFileSink({ path: join(dir, 'audit.jsonl') }),
            sqlite,
            createWebhookAuditSink({
              url: `http://127.0.0.1:${(collector.address() as { port: number }).port}/`,
            }),
            createLoggerAuditSink({
              logger: pino(
                new Writable({
                  write(chunk: Buffer, _e, done) {
                    pinoLines.push(chunk.toString())
                    done()
                  },
                }),
              ),
            }),
          ],
        },
      })
      const keys = createApiKeyManager({ store, pepper: PEPPER })
      const apiKey = (
        await keys.create({ name: 'r', ownerId: 'alice', scopes: ['documents:read'] })
      ).key
      const jwt = signHmac(
        {
          claims: {
            sub: 'dave',
            iss: ISSUER,
            aud: AUDIENCE,
            exp: seconds(Date.now()) + 600,
            scope: 'documents:read',
          },
        },
        JWT_SECRET,
      )
      const badJwt = `${jwt.slice(0, -4)}AAAA`
      const cookie = 'session=sess-0123456789abcdef-secret'
      const app = await listen(gate)
      try {
        const http = request(app.server)
        const statuses = [
          (await http.get('/docs/1').set('X-API-Key', apiKey).set('Cookie', cookie)).status,
          (await http.get('/docs/2').set('Authorization', `Bearer ${jwt}`).set('Cookie', cookie))
            .status,
          (await http.get('/docs/3').set('Authorization', `Bearer ${badJwt}`)).status,
          (await http.get('/docs/4').set('Authorization', `Bearer ${apiKey.slice(0, -2)}zz`))
            .status,
          (await http.get(`/docs/5?access_token=${jwt}&api_key=${apiKey}`)).status,
          (await http.get('/docs/6').set('Authorization', 'Basic YWxpY2U6aHVudGVyMg==')).status,
        ]
        expect(statuses.slice(0, 2)).to.deep.equal([200, 200])
        expect(statuses.slice(2).every((s) => s === 400 || s === 401)).to.equal(true)
        await gate.close()
      } finally {
        await app.close()
        await new Promise((r) => collector.close(r))
      }
      const outputs = {
        memory: JSON.stringify(memory.events),
        file: await readFile(join(dir, 'audit.jsonl'), 'utf8'),
        sqlite: JSON.stringify(readSqliteAuditEvents(join(dir, 'audit.db'))),
        webhook: collected.join('\n'),
        pino: pinoLines.join(''),
      }
      await rm(dir, { recursive: true, force: true })
      // The careless handler's events made it, with their request context from AsyncLocalStorage.
      const custom = memory.events.filter((e) => e.customType === 'profile.viewed')
      expect(custom).to.have.length(2)
      expect(custom.map((e) => e.actor.id)).to.deep.equal(['alice', 'dave'])
      expect(custom[0]?.request?.route ?? custom[0]?.request?.path).to.match(/^\/docs/)
      // The raw headers were recorded: only their credentials are gone.
      const headers = custom[0]?.data?.headers as Record<string, string>
      expect(headers['x-api-key']).to.equal('[REDACTED]')
      expect(headers.cookie).to.equal('[REDACTED]')
      expect(headers.host).to.match(/^127\.0\.0\.1:/)
      const secrets = [
        apiKey,
        apiKey.slice(3, 40),
        jwt,
        jwt.split('.')[2] as string,
        badJwt.split('.')[1] as string,
        'sess-0123456789abcdef-secret',
        'YWxpY2U6aHVudGVyMg==',
        PEPPER,
        JWT_SECRET,
      ]
      for (const [sink, text] of Object.entries(outputs)) {
        expect(text.length, `${sink} wrote nothing`).to.be.greaterThan(100)
        for (const secret of secrets)
          expect(text, `${sink} leaked ${secret}`).to.not.include(secret)
      }
    })
  }

  // Values without a space after the scheme (the whole value would be the "scheme"), known schemes
  // glued to a token, odd casing, a tab, obs-text bytes, 8 KB: the denial names only a scheme from
  // the fixed list, or `unknown scheme`.
  const HOSTILE: readonly { value: string; secret: string; reason: string }[] = [
    { value: 'Bearerabc.def.ghi', secret: 'abc.def.ghi', reason: 'unknown scheme' },
    { value: 'BasicdXNlcjpwdw==', secret: 'dXNlcjpwdw==', reason: 'unknown scheme' },
    { value: 'bAsIcSeCrEt-glued-0001', secret: 'SeCrEt-glued-0001', reason: 'unknown scheme' },
    { value: 'Token\tsecret-tab-0002', secret: 'secret-tab-0002', reason: 'unknown scheme' },
    {
      value: `Digest\u00e9secret-obs-0003`,
      secret: 'secret-obs-0003',
      reason: 'unknown scheme',
    },
    { value: `X${'s'.repeat(8192)}`, secret: 's'.repeat(64), reason: 'unknown scheme' },
    {
      value: 'PrivateSchemeSecret0004 realm',
      secret: 'privateschemesecret0004',
      reason: 'unknown scheme',
    },
    {
      value: 'nEgOtIaTe c2VjcmV0LTAwMDU=',
      secret: 'c2VjcmV0LTAwMDU=',
      reason: 'unsupported scheme negotiate',
    },
  ]
  for (const [framework, listen] of Object.entries(FRAMEWORKS)) {
    it(`never copies an Authorization value into a problem, event, trace or log line (${framework})`, async () => {
      const memory = createMemoryAuditSink()
      const traces: TraceEntry[] = []
      const logLines: string[] = []
      const log =
        (level: string) =>
        (fields: LogFields, message: string): void => {
          logLines.push(`${level} ${message} ${JSON.stringify(fields)}`)
        }
      const gate = createGate({
        jwt: { secret: JWT_SECRET, issuer: ISSUER, audience: AUDIENCE },
        audit: { level: 'verbose', flushIntervalMs: 0, sinks: [memory] },
        tracer: { startStage: () => undefined, endStage: (_span, entry) => traces.push(entry) },
        logger: { warn: log('warn'), error: log('error'), debug: log('debug') },
      })
      const app = await listen(gate)
      const bodies: string[] = []
      try {
        for (const { value } of HOSTILE) {
          const res = await request(app.server).get('/docs/1').set('Authorization', value)
          expect(res.status, value.slice(0, 40)).to.equal(401)
          expect(res.headers['content-type']).to.match(/^application\/problem\+json/)
          expect(res.body).to.include({ status: 401, code: 'ERR_AUTH_REQUIRED' })
          bodies.push(res.text)
        }
        await gate.audit.flush()
      } finally {
        await app.close()
        await gate.close()
      }
      const outputs = {
        problem: bodies.join('\n'),
        audit: JSON.stringify(memory.events),
        trace: JSON.stringify(traces),
        log: logLines.join('\n'),
      }
      for (const [where, text] of Object.entries(outputs)) {
        // The old leak lower-cased the value: compare without case.
        const lower = text.toLowerCase()
        for (const { secret } of HOSTILE)
          expect(lower, `${where} leaked ${secret.slice(0, 40)}`).to.not.include(
            secret.toLowerCase(),
          )
      }
      // Only names from the fixed list of schemes, and a trace that was really recorded.
      const failures = memory.events.filter((e) => e.type === 'authn.failure')
      expect(failures.map((e) => e.reason?.detail)).to.deep.equal(HOSTILE.map((h) => h.reason))
      expect(traces.map((t) => t.reason)).to.include.members(['unknown scheme'])
    })
  }
})
