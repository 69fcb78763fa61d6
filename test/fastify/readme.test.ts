// The README's example runs as written: it is cut out of packages/fastify/README.md, started as an
// ES module on a free port, and asked the requests its text describes.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { readFile } from 'node:fs/promises'
import { expect } from 'chai'

async function example(): Promise<string> {
  const readme = await readFile('packages/fastify/README.md', 'utf8')
  const code = /## Example \(runnable as `server\.mjs`\)\n\n```js\n([\s\S]*?)```/.exec(readme)?.[1]
  expect(code, 'the README example').to.be.a('string')
  return code!
}

describe('packages/fastify/README.md example', () => {
  it('registers import("@portcullis/fastify") and fastifyRateLimit as the text says', async () => {
    // Run from the repository root, so `@portcullis/*` resolve as they do for an installed app.
    const child = spawn(process.execPath, ['--input-type=module', '-e', await example()], {
      env: { ...process.env, PORT: '0' },
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    try {
      let out = ''
      child.stdout.setEncoding('utf8')
      while (!out.includes('\n')) out += String((await once(child.stdout, 'data'))[0])
      const [, key, url] = /X-API-Key: (\S+)" (http:\/\/\S+)/.exec(out) ?? []
      expect(url, out).to.match(/^http:\/\/127\.0\.0\.1:\d+\/docs\/1$/)

      const anonymous = await fetch(url!)
      expect(anonymous.status).to.equal(401)
      expect(anonymous.headers.get('content-type')).to.match(/^application\/problem\+json/)
      expect(((await anonymous.json()) as { code: string }).code).to.equal('ERR_AUTH_REQUIRED')
      // The gate answered before the limiter counted.
      expect(anonymous.headers.get('x-ratelimit-limit')).to.equal(null)

      const reader = await fetch(url!, { headers: { 'x-api-key': key! } })
      expect(reader.status).to.equal(200)
      expect(await reader.json()).to.deep.equal({ id: '1', reader: 'alice' })
      expect(reader.headers.get('x-ratelimit-limit')).to.equal('100')
      expect(reader.headers.get('x-ratelimit-remaining')).to.equal('99')
      expect(reader.headers.get('x-ratelimit-reset')).to.equal('60')

      const health = await fetch(url!.replace('/docs/1', '/health'))
      expect(health.status).to.equal(200)
      expect(health.headers.get('x-ratelimit-limit')).to.equal(null)
    } finally {
      child.kill()
      if (child.exitCode === null) await once(child, 'exit')
    }
  })
})
