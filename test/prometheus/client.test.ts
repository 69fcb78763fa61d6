import { expect } from 'chai'
import sinon from 'sinon'
import { Counter, Histogram, Registry } from 'prom-client'
import { PORTCULLIS_METRICS } from '@portcullis/core'
import { createPrometheusMetrics } from '@portcullis/prometheus'

describe('createPrometheusMetrics', () => {
  it('registers every catalogue metric with its kind, labels and buckets', async () => {
    const registry = new Registry()
    const m = createPrometheusMetrics({ registry })
    for (const [key, def] of Object.entries(PORTCULLIS_METRICS)) {
      const metric = registry.getSingleMetric(def.name)
      expect(metric, def.name).to.equal(m.metrics[key as keyof typeof PORTCULLIS_METRICS])
      const json = (await registry.getMetricsAsJSON()).find((x) => x.name === def.name)
      expect(json?.type).to.equal(def.kind)
    }
    m.observe('decisionDuration', 0.00002, { step: 'authenticate', outcome: 'allow' })
    const text = await registry.metrics()
    expect(text).to.include(
      'portcullis_decision_duration_seconds_bucket{le="0.00001",step="authenticate",outcome="allow"} 0',
    )
    expect(text).to.include(
      'portcullis_decision_duration_seconds_bucket{le="0.000025",step="authenticate",outcome="allow"} 1',
    )
  })

  it('adds values to the labelled child and reuses it for the same label object', async () => {
    const registry = new Registry()
    const m = createPrometheusMetrics({ registry })
    const labels = Object.freeze({ limit: 'burst' })
    const counter = m.metrics.rateLimitRejections as Counter
    const lookups = sinon.spy(counter, 'labels')
    m.increment('rateLimitRejections', labels)
    m.increment('rateLimitRejections', labels, 2)
    expect((await counter.get()).values).to.deep.equal([{ value: 3, labels: { limit: 'burst' } }])
    // The child is looked up once per label object, not per report.
    expect(lookups.callCount).to.equal(1)
    lookups.restore()
    m.set('auditQueueDepth', 7, { sink: 'file' })
    expect(await registry.getSingleMetricAsString('portcullis_audit_queue_depth')).to.include(
      'portcullis_audit_queue_depth{sink="file"} 7',
    )
  })

  it('reuses metrics already on the registry (two gates, one registry)', () => {
    const registry = new Registry()
    const a = createPrometheusMetrics({ registry })
    const b = createPrometheusMetrics({ registry })
    expect(b.metrics.requests).to.equal(a.metrics.requests)
    expect(registry.getMetricsAsArray()).to.have.length(Object.keys(PORTCULLIS_METRICS).length)
  })

  it('prefixes names and takes bucket overrides', async () => {
    const registry = new Registry()
    const m = createPrometheusMetrics({
      registry,
      prefix: 'shop_',
      buckets: { decisionDuration: [0.001, 0.01] },
    })
    m.observe('decisionDuration', 0.005, { step: 'authorize', outcome: 'deny' })
    const text = await registry.metrics()
    expect(text).to.include('# TYPE shop_portcullis_requests_total counter')
    expect(text).to.include(
      'shop_portcullis_decision_duration_seconds_bucket{le="0.01",step="authorize",outcome="deny"} 1',
    )
    expect(m.metrics.decisionDuration).to.be.instanceOf(Histogram)
  })

  it('never throws while reporting, even with a label the metric does not declare', () => {
    const m = createPrometheusMetrics({ registry: new Registry() })
    expect(() => m.increment('requests', { user: 'alice' })).not.to.throw()
    expect(() => m.observe('stageDuration', Number.NaN, { stage: 'x' })).not.to.throw()
    expect(() => m.set('nonsense' as never, 1)).not.to.throw()
  })

  it('refuses bad options with ConfigError naming the option', () => {
    expect(() => createPrometheusMetrics({ registry: {} as never })).to.throw(
      /prometheus\.registry/,
    )
    expect(() => createPrometheusMetrics({ prefix: 'bad-prefix' })).to.throw(/prometheus\.prefix/)
    expect(() =>
      createPrometheusMetrics({ registry: new Registry(), buckets: { requests: [1] } }),
    ).to.throw(/prometheus\.buckets\.requests/)
  })
})
