import { AsyncLocalStorage } from 'node:async_hooks'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import {
  context,
  ROOT_CONTEXT,
  SpanStatusCode,
  trace,
  type Context,
  type ContextManager,
} from '@opentelemetry/api'
import {
  AggregationTemporality,
  DataPointType,
  InMemoryMetricExporter,
  MeterProvider,
  PeriodicExportingMetricReader,
  type HistogramMetricData,
  type MetricData,
} from '@opentelemetry/sdk-metrics'
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base'
import { expect } from 'chai'
import express from 'express'
import {
  ConfigError,
  createApiKeyManager,
  createGate,
  createMemoryKeyStore,
  createRateLimitStage,
  PORTCULLIS_METRICS,
} from '@portcullis/core'
import { createFailingBackend, fakeRequest } from '@portcullis/core/testing'
import { authMiddleware, problemHandler, requirePolicy } from '@portcullis/express'
import {
  createOpenTelemetryMetrics,
  createOpenTelemetryTracer,
  openTelemetryName,
} from '@portcullis/opentelemetry'

const PEPPER = 'pepper-for-tests-only-0123456789abcdef'

/** What @opentelemetry/context-async-hooks does, in a few lines: the active context per async chain. */
class AlsContextManager implements ContextManager {
  readonly #als = new AsyncLocalStorage<Context>()
  active(): Context {
    return this.#als.getStore() ?? ROOT_CONTEXT
  }
  with<TArgs extends unknown[], TFn extends (...args: TArgs) => ReturnType<TFn>>(
    ctx: Context,
    fn: TFn,
    thisArg?: ThisParameterType<TFn>,
    ...args: TArgs
  ): ReturnType<TFn> {
    return this.#als.run(ctx, () => fn.call(thisArg, ...args))
  }
  bind<T>(_ctx: Context, target: T): T {
    return target
  }
  enable(): this {
    return this
  }
  disable(): this {
    return this
  }
}

describe('@portcullis/opentelemetry with the real SDK', () => {
  let spans: InMemorySpanExporter
  let tracerProvider: BasicTracerProvider
  let metricExporter: InMemoryMetricExporter
  let reader: PeriodicExportingMetricReader
  let meterProvider: MeterProvider
  let server: Server
  let url: string
  let key: string

  before(async () => {
    context.setGlobalContextManager(new AlsContextManager())
    spans = new InMemorySpanExporter()
    tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] })
    metricExporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE)
    reader = new PeriodicExportingMetricReader({
      exporter: metricExporter,
      exportIntervalMillis: 3_600_000,
    })
    meterProvider = new MeterProvider({ readers: [reader] })

    const store = createMemoryKeyStore()
    const gate = createGate({
      apiKeys: { store, pepper: PEPPER },
      audit: false,
      stages: [createRateLimitStage({ limits: [{ name: 'burst', limit: 2, windowMs: '1m' }] })],
      metrics: createOpenTelemetryMetrics({ meter: meterProvider.getMeter('test') }),
      tracer: createOpenTelemetryTracer({ tracer: tracerProvider.getTracer('test') }),
    })
    key = (
      await createApiKeyManager({ store, pepper: PEPPER }).create({
        name: 'reader',
        ownerId: 'alice',
        scopes: ['documents:read'],
      })
    ).key
    const app = express()
    const httpTracer = tracerProvider.getTracer('http')
    // Stands in for @opentelemetry/instrumentation-http: one server span per request, made active.
    app.use((req, res, next) => {
      const span = httpTracer.startSpan(`GET ${req.path}`)
      res.on('finish', () => span.end())
      context.with(trace.setSpan(context.active(), span), next)
    })
    app.use(authMiddleware({ gate }))
    app.get('/docs/:id', requirePolicy('documents:read'), (req, res) => {
      res.json({ id: req.params.id })
    })
    app.use(problemHandler({ gate }))
    server = createServer(app)
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  })

  after(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()))
    await meterProvider.shutdown()
    await tracerProvider.shutdown()
    context.disable()
  })

  beforeEach(() => spans.reset())

  const get = (path: string, headers: Record<string, string> = {}) =>
    fetch(`${url}${path}`, { headers }).then(async (r) => {
      await r.arrayBuffer()
      return r.status
    })

  async function collect(): Promise<Map<string, MetricData>> {
    await reader.forceFlush()
    const out = new Map<string, MetricData>()
    const last = metricExporter.getMetrics().at(-1)
    for (const scope of last?.scopeMetrics ?? [])
      for (const m of scope.metrics) out.set(m.descriptor.name, m)
    return out
  }

  it('opens one span per stage as children of the active (HTTP server) span', async () => {
    expect(await get('/docs/1', { 'x-api-key': key })).to.equal(200)
    const finished = spans.getFinishedSpans()
    const http = finished.find((s) => s.name === 'GET /docs/1')
    expect(http).not.to.equal(undefined)
    const stages = finished.filter((s) => s.name.startsWith('portcullis.'))
    expect(stages.map((s) => s.name)).to.deep.equal([
      'portcullis.authenticate',
      'portcullis.ratelimit',
      'portcullis.authorize',
    ])
    for (const s of stages) {
      expect(s.parentSpanContext?.spanId).to.equal(http?.spanContext().spanId)
      expect(s.attributes['portcullis.outcome']).to.equal('allow')
      expect(s.status.code).to.equal(SpanStatusCode.UNSET)
    }
    expect(stages[0]?.attributes['portcullis.by']).to.equal('apikey')
    expect(stages[1]?.attributes['portcullis.by']).to.equal('ratelimit')
    // Express knows the route pattern (never the raw path) once the route guard runs.
    expect(stages[2]?.attributes['http.route']).to.equal('/docs/:id')
    for (const s of stages) expect(JSON.stringify(s.attributes)).not.to.include('/docs/1')
  })

  it('marks denials on the stage that decided, with the code; no span after it', async () => {
    expect(await get('/docs/2')).to.equal(401)
    const stages = spans.getFinishedSpans().filter((s) => s.name.startsWith('portcullis.'))
    expect(stages.map((s) => s.name)).to.deep.equal(['portcullis.authenticate'])
    expect(stages[0]?.attributes['portcullis.outcome']).to.equal('deny')
    expect(stages[0]?.attributes['portcullis.code']).to.equal('ERR_AUTH_REQUIRED')
    // A denial is the gate working, not a fault of the service.
    expect(stages[0]?.status.code).to.equal(SpanStatusCode.UNSET)

    expect(await get('/docs/3', { 'x-api-key': key })).to.equal(200)
    expect(await get('/docs/4', { 'x-api-key': key })).to.equal(429)
    const limited = spans.getFinishedSpans().filter((s) => s.name === 'portcullis.ratelimit')
    expect(limited.at(-1)?.attributes['portcullis.code']).to.equal('ERR_RATE_LIMITED')
  })

  it('records the catalogue metrics: decisions, latency histogram, rejections, cache lookups', async () => {
    const metrics = await collect()
    const requests = metrics.get('portcullis_requests')
    expect(requests?.dataPointType).to.equal(DataPointType.SUM)
    const points = requests?.dataPoints ?? []
    const count = (attrs: Record<string, string>) =>
      points
        .filter((p) => Object.entries(attrs).every(([k, v]) => p.attributes[k] === v))
        .reduce((t, p) => t + (p.value as number), 0)
    // Four requests: 200, 401, 200, 429.
    expect(count({ step: 'authenticate' })).to.equal(4)
    expect(count({ step: 'authenticate', outcome: 'allow' })).to.equal(2)
    expect(count({ code: 'ERR_AUTH_REQUIRED' })).to.equal(1)
    expect(count({ stage: 'ratelimit', code: 'ERR_RATE_LIMITED' })).to.equal(1)
    expect(count({ step: 'authorize', outcome: 'allow' })).to.equal(2)

    const latency = metrics.get('portcullis_decision_duration_seconds') as HistogramMetricData
    expect(latency.dataPointType).to.equal(DataPointType.HISTOGRAM)
    expect(latency.descriptor.unit).to.equal('s')
    expect(latency.dataPoints.reduce((t, p) => t + p.value.count, 0)).to.equal(6)
    // The catalogue's buckets reach the SDK as advice.
    expect(latency.dataPoints[0]?.value.buckets.boundaries).to.deep.equal([
      ...(PORTCULLIS_METRICS.decisionDuration.buckets ?? []),
    ])

    const rejections = metrics.get('portcullis_ratelimit_rejections')
    expect(rejections?.dataPoints.map((p) => [p.attributes, p.value])).to.deep.equal([
      [{ limit: 'burst' }, 1],
    ])
    const lookups = metrics.get('portcullis_key_cache_lookups')
    expect(lookups?.dataPoints.find((p) => p.attributes.result === 'hit')?.value).to.equal(2)
  })

  it('names counters without _total (exporters add it) and keeps every metric', () => {
    for (const def of Object.values(PORTCULLIS_METRICS)) {
      const name = openTelemetryName(def)
      expect(name.endsWith('_total')).to.equal(false)
      expect(name.startsWith('portcullis_')).to.equal(true)
    }
  })

  it('sets status ERROR on a stage that failed with a 5xx', async () => {
    const broken = createFailingBackend()
    const store = createMemoryKeyStore()
    const gate = createGate({
      apiKeys: { store, pepper: PEPPER },
      audit: false,
      stages: [
        createRateLimitStage({
          backend: broken,
          limits: [{ name: 'l', limit: 1, windowMs: 1000 }],
        }),
      ],
      tracer: createOpenTelemetryTracer({ tracer: tracerProvider.getTracer('test') }),
    })
    const { key: k } = await createApiKeyManager({ store, pepper: PEPPER }).create({
      name: 'x',
      ownerId: 'y',
    })
    const d = await gate.evaluate(fakeRequest({ headers: { 'x-api-key': k } }))
    expect(d.status).to.equal(503)
    const span = spans.getFinishedSpans().find((s) => s.name === 'portcullis.ratelimit')
    expect(span?.status.code).to.equal(SpanStatusCode.ERROR)
    expect(span?.attributes['portcullis.code']).to.equal('ERR_RATELIMIT_UNAVAILABLE')
  })

  it('refuses options that are not a Meter or a Tracer', () => {
    expect(() => createOpenTelemetryMetrics({ meter: {} as never })).to.throw(
      /opentelemetry\.meter/,
    )
    expect(() => createOpenTelemetryTracer({ tracer: {} as never })).to.throw(
      /opentelemetry\.tracer/,
    )
    for (const bad of [null, 42, 'meter', { createGauge: () => undefined }]) {
      expect(() => createOpenTelemetryMetrics({ meter: bad as never })).to.throw(
        ConfigError,
        /opentelemetry\.meter: must be an OpenTelemetry Meter/,
      )
      expect(() => createOpenTelemetryTracer({ tracer: bad as never })).to.throw(
        ConfigError,
        /opentelemetry\.tracer: must be an OpenTelemetry Tracer/,
      )
    }
  })
})
