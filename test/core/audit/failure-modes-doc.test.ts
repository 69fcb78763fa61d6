// docs/operations.md stays true to the sinks that exist (issue 18): its failure-mode table has a
// row for every audit sink any package exports, and every metric is in its metrics table.
import { readdirSync, readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { expect } from 'chai'
import { PORTCULLIS_METRICS } from '@portcullis/core'

const ROOT = resolve(import.meta.dirname, '../../..')

/** The `## <title>` section of a markdown file, up to the next `## `. */
function section(text: string, title: string): string {
  const start = text.indexOf(`\n## ${title}\n`)
  expect(start, `section "${title}"`).to.be.greaterThan(-1)
  const end = text.indexOf('\n## ', start + 1)
  return text.slice(start, end === -1 ? undefined : end)
}

/** Every `export function create...AuditSink` in the packages' sources. */
function sinkFactories(): string[] {
  const names: string[] = []
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name)
      if (entry.isDirectory()) walk(path)
      else if (entry.name.endsWith('.ts'))
        for (const m of readFileSync(path, 'utf8').matchAll(
          /export function (create\w*AuditSink)\b/g,
        ))
          names.push(m[1] as string)
    }
  }
  for (const pkg of readdirSync(join(ROOT, 'packages'))) {
    try {
      walk(join(ROOT, 'packages', pkg, 'src'))
    } catch {
      // a package without sources
    }
  }
  return names
}

describe('docs/operations.md failure modes', () => {
  const text = readFileSync(join(ROOT, 'docs/operations.md'), 'utf8')

  it('has a failure-mode row for every audit sink a package exports', () => {
    const table = section(text, 'Failure modes')
    const factories = sinkFactories()
    // The scan finds the sinks we know of (and any added later).
    expect(factories).to.include.members([
      'createMemoryAuditSink',
      'createLoggerAuditSink',
      'createWebhookAuditSink',
      'createSqliteAuditSink',
      'createPostgresAuditSink',
      'createRedisStreamAuditSink',
    ])
    for (const name of [...factories, 'createJsonLinesFileSink'])
      expect(table, `a row for ${name}`).to.include(`\`${name}\``)
  })

  it('lists every metric in the metrics table', () => {
    const table = section(text, 'Metrics')
    for (const def of Object.values(PORTCULLIS_METRICS))
      expect(table, def.name).to.include(`\`${def.name}\``)
  })
})
