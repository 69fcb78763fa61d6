/**
 * A server under load: `node bench/servers/server.mjs <express|koa|fastify> <variant> [--exit-with-stdin]`.
 *
 * Serves `GET /docs/:id` → `{"id":"1"}` on 127.0.0.1 and a random port, on the given framework,
 * bare, behind Portcullis, or behind a peer stack (see {@link VARIANTS} and `variants.mjs`).
 * Before announcing itself it checks, with real requests, that the credential gets 200 and no
 * credential gets 401 (bare and noop: 200), and exits non-zero otherwise, so that a broken setup is never
 * measured. Then it prints one JSON line `{ "port": N, "headers": { ... } }` to stdout and serves
 * until killed (SIGTERM/SIGINT), for at most 30 minutes, and with `--exit-with-stdin` (as the
 * runner starts it) also until its stdin closes, so that it never outlives a crashed runner.
 *
 * CPU time: when started with an IPC channel (as `run.mjs` does), it answers each message
 * `{ cpu: id }` with `{ cpu: id, usage: process.cpuUsage() }` (µs of user and system time of this
 * process). The runner reads it before and after a measured run, so the CPU per request is the
 * server's own, measured by the kernel's per-process accounting at µs resolution, and the
 * measurement itself never goes through the HTTP stack being measured.
 * @module
 */
import { createServer } from 'node:http'
import { once } from 'node:events'
import { rm } from 'node:fs/promises'
import { FRAMEWORKS, OPEN_VARIANTS, setupVariant, variantsOf } from './variants.mjs'

const MAX_LIFETIME_MS = 30 * 60 * 1000

/**
 * Checks the server answers as the benchmark expects; returns the problems found.
 * @param {string} base
 * @param {boolean} open whether the route is served without credential (bare, noop)
 * @param {Record<string, string>} headers
 * @returns {Promise<string[]>}
 */
async function selfCheck(base, open, headers) {
  const problems = []
  const probe = async (what, h, status) => {
    const res = await fetch(`${base}/docs/1`, { headers: h })
    const body = await res.text()
    if (res.status !== status) problems.push(`${what}: expected ${status}, got ${res.status}`)
    else if (status === 200 && body !== '{"id":"1"}') problems.push(`${what}: unexpected ${body}`)
  }
  await probe('with the credential', headers, 200)
  await probe('again with the credential', headers, 200)
  await probe('without credential', {}, open ? 200 : 401)
  return problems
}

/**
 * Listens on a free loopback port.
 * @param {string} framework
 * @param {any} app an Express app, a Koa app or a Fastify instance
 * @returns {Promise<{ port: number, close: () => Promise<void> }>}
 */
async function listen(framework, app) {
  if (framework === 'fastify') {
    await app.listen({ port: 0, host: '127.0.0.1' })
    return { port: app.server.address().port, close: () => app.close() }
  }
  const server = createServer(framework === 'koa' ? app.callback() : app)
  server.keepAliveTimeout = 60_000
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return {
    port: server.address().port,
    close: async () => {
      server.close()
      server.closeAllConnections()
    },
  }
}

async function main() {
  const [framework, variant] = process.argv.slice(2)
  if (!FRAMEWORKS.includes(framework) || !variantsOf(framework).includes(variant)) {
    console.error(
      `usage: node bench/servers/server.mjs <${FRAMEWORKS.join('|')}> <variant> [--exit-with-stdin]\n` +
        FRAMEWORKS.map((f) => `  ${f}: ${variantsOf(f).join(', ')}`).join('\n'),
    )
    process.exit(2)
  }
  const built = await setupVariant(framework, variant)
  const { port, close } = await listen(framework, built.app)

  let stopping = false
  const stop = (code) => {
    if (stopping) return
    stopping = true
    // process.exit (not death by signal) lets --cpu-prof write its profile.
    Promise.resolve()
      .then(close)
      .then(() => built.close?.())
      .then(() => (built.tmpDir === undefined ? undefined : rm(built.tmpDir, { recursive: true })))
      .catch((error) => console.error(`bench server (${framework} ${variant}) close:`, error))
      .finally(() => process.exit(code))
  }
  process.on('SIGTERM', () => stop(0))
  process.on('SIGINT', () => stop(0))
  if (process.argv.includes('--exit-with-stdin')) {
    process.stdin.on('end', () => stop(0)).resume()
  }
  setTimeout(() => stop(0), MAX_LIFETIME_MS).unref()
  if (process.send !== undefined) {
    process.on('message', (message) => {
      if (message?.cpu !== undefined) process.send({ cpu: message.cpu, usage: process.cpuUsage() })
    })
    process.on('disconnect', () => stop(0))
  }

  const problems = await selfCheck(
    `http://127.0.0.1:${port}`,
    OPEN_VARIANTS.includes(variant),
    built.headers,
  )
  if (problems.length > 0) {
    console.error(
      `bench server (${framework} ${variant}) failed its self-check:\n  ${problems.join('\n  ')}`,
    )
    stop(1)
    return
  }
  process.stdout.write(`${JSON.stringify({ port, headers: built.headers })}\n`)
}

main().catch((error) => {
  console.error('bench server failed to start:', error)
  process.exit(1)
})
