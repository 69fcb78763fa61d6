import { createServer, type RequestListener, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import Router from '@koa/router'
import { expect } from 'chai'
import express from 'express'
import Koa from 'koa'
import { Registry } from 'prom-client'
import {
  createApiKeyManager,
  createGate,
  createMemoryKeyStore,
  createRateLimitStage,
  PORTCULLIS_METRICS,
  type Gate,
} from '@portcullis/core'
import { createMemoryAuditSink } from '@portcullis/core/testing'
import * as expressAdapter from '@portcullis/express'
import * as koaAdapter from '@portcullis/koa'
import { createPrometheusMetrics } from '@portcullis/prometheus'

const PEPPER = 'pepper-for-tests-only-0123456789abcdef'

/** One sample of the text exposition format. */
interface Sample {
  readonly name: string
  readonly labels: Readonly<Record<string, string>>
  readonly value: number
}

function parse(text: string): Sample[] {
  const out: Sample[] = []
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line)
    if (m === null) throw new Error(`unparsable sample: ${line}`)
    const labels: Record<string, string> = {}
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g))
      labels[l[1] as string] = l[2] as string
    out.push({ name: m[1] as string, labels, value: Number(m[3]) })
  }
  return out
}

/** The sum of the samples named `name` whose labels include `filter`. */
function total(samples: readonly Sample[], name: string, filter: Record<string, string> = {}) {
  return samples
    .filter((s) => s.name === name && Object.entries(filter).every(([k, v]) => s.labels[k] === v))
    .reduce((t, s) => t + s.value, 0)
}

interface Running {
  readonly url: string
  close(): Promise<void>
}

function listen(server: Server): Promise<Running> {
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo
      resolve({
        url: `http://127.0.0.1:${port}`,
        close: () => new Promise<void>((done) => server.close(() => done())),
      })
    })
  })
}

type MakeApp = (gate: Gate, registry: Registry) => RequestListener

const makeExpress: MakeApp = (gate, registry) => {
  const app = express()
  // Before the gate: Prometheus scrapes without credentials (restrict it by network instead).
  app.get('/metrics', async (_req, res) => {
    res.type(registry.contentType).send(await registry.metrics())
  })
  app.use(expressAdapter.authMiddleware({ gate }))
  app.get('/docs/:id', expressAdapter.requirePolicy('documents:read'), (req, res) => {
    res.json({ id: req.params.id })
  })
  app.use(expressAdapter.problemHandler({ gate }))
  return app
}

const makeKoa: MakeApp = (gate, registry) => {
  const app = new Koa()
  app.use(koaAdapter.problemHandler({ gate }))
  const open = new Router()
  open.get('/metrics', async (ctx) => {
    ctx.type = registry.contentType
    ctx.body = await registry.metrics()
  })
  app.use(open.routes())
  app.use(koaAdapter.authMiddleware({ gate }))
  const router = new Router()
  router.get('/docs/:id', koaAdapter.requirePolicy('documents:read'), (ctx) => {
    ctx.body = { id: ctx.params.id }
  })
  app.use(router.routes())
  return app.callback()
}

for (const [framework, makeApp] of [
  ['express', makeExpress],
  ['koa', makeKoa],
] as const) {
  describe(`@portcullis/prometheus over real HTTP (${framework})`, () => {
    let running: Running
    let registry: Registry
    let key: string
    let keyId: string

    before(async () => {
      registry = new Registry()
      const store = createMemoryKeyStore()
      const gate = createGate({
        apiKeys: { store, pepper: PEPPER },
        audit: { sinks: [createMemoryAuditSink()], flushIntervalMs: 0 },
        stages: [createRateLimitStage({ limits: [{ name: 'burst', limit: 3, windowMs: '1m' }] })],
        metrics: createPrometheusMetrics({ registry }),
      })
      const issued = await createApiKeyManager({ store, pepper: PEPPER }).create({
        name: 'reader',
        ownerId: 'alice',
        scopes: ['documents:read'],
      })
      key = issued.key
      keyId = issued.record.id
      running = await listen(createServer(makeApp(gate, registry)))
    })
    after(() => running?.close())

    async function scrape(): Promise<{ text: string; samples: Sample[] }> {
      const res = await fetch(`${running.url}/metrics`)
      expect(res.status).to.equal(200)
      expect(res.headers.get('content-type')).to.match(/^text\/plain; version=0\.0\.4/)
      const text = await res.text()
      return { text, samples: parse(text) }
    }

    const get = (path: string, headers: Record<string, string> = {}) =>
      fetch(`${running.url}${path}`, { headers }).then(async (r) => {
        await r.arrayBuffer()
        return r.status
      })

    it('exposes every Portcullis metric with its type before any traffic', async () => {
      const { text } = await scrape()
      for (const def of Object.values(PORTCULLIS_METRICS)) {
        expect(text).to.include(`# TYPE ${def.name} ${def.kind}`)
        expect(text).to.include(`# HELP ${def.name} `)
      }
      expect(text).to.include('# TYPE portcullis_requests_total counter')
      expect(text).to.include('# TYPE portcullis_decision_duration_seconds histogram')
      expect(text).to.include('# TYPE portcullis_audit_queue_depth gauge')
    })

    it('moves with traffic: allowed, denied 401 and rate-limited 429', async () => {
      const before = (await scrape()).samples
      expect(total(before, 'portcullis_requests_total')).to.equal(0)

      expect(await get('/docs/1', { 'x-api-key': key })).to.equal(200)
      expect(await get('/docs/2', { 'x-api-key': key })).to.equal(200)
      expect(await get('/docs/3')).to.equal(401)
      expect(await get('/docs/4', { 'x-api-key': key })).to.equal(200)
      expect(await get('/docs/5', { 'x-api-key': key })).to.equal(429)

      const after = (await scrape()).samples
      const requests = 'portcullis_requests_total'
      // Every request is decided once at step authenticate...
      expect(total(after, requests, { step: 'authenticate' })).to.equal(5)
      expect(total(after, requests, { step: 'authenticate', outcome: 'allow' })).to.equal(3)
      expect(
        total(after, requests, {
          step: 'authenticate',
          outcome: 'deny',
          stage: 'authenticate',
          code: 'ERR_AUTH_REQUIRED',
        }),
      ).to.equal(1)
      expect(
        total(after, requests, { outcome: 'deny', stage: 'ratelimit', code: 'ERR_RATE_LIMITED' }),
      ).to.equal(1)
      // ...and the three that got through are authorized by the route guard.
      expect(total(after, requests, { step: 'authorize', outcome: 'allow' })).to.equal(3)
      expect(total(after, 'portcullis_ratelimit_rejections_total', { limit: 'burst' })).to.equal(1)
      expect(total(after, 'portcullis_decision_duration_seconds_count')).to.equal(8)
      expect(total(after, 'portcullis_decision_duration_seconds_sum')).to.be.above(0)
      const le1 = total(after, 'portcullis_decision_duration_seconds_bucket', { le: '1' })
      expect(le1).to.equal(8)
      expect(
        total(after, 'portcullis_stage_duration_seconds_count', { stage: 'ratelimit' }),
      ).to.equal(4)
      expect(
        total(after, 'portcullis_key_cache_lookups_total', { cache: 'apikey', result: 'miss' }),
      ).to.equal(1)
      expect(
        total(after, 'portcullis_key_cache_lookups_total', { cache: 'apikey', result: 'hit' }),
      ).to.equal(3)
    })

    it('carries no high-cardinality labels (no key ids, secrets, principals, IPs or raw paths)', async () => {
      const { text, samples } = await scrape()
      for (const needle of [keyId, key, 'alice', '127.0.0.1', '/docs/1', '/docs/'])
        expect(text).not.to.include(needle)
      const allowed = new Set(Object.values(PORTCULLIS_METRICS).flatMap((d) => d.labels))
      allowed.add('le')
      for (const s of samples)
        for (const label of Object.keys(s.labels)) expect(allowed).to.include(label)
      // Bounded label values: a handful of series, not one per request.
      expect(samples.filter((s) => s.name === 'portcullis_requests_total')).to.have.length.below(6)
    })
  })
}
