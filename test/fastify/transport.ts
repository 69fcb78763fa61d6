// Sends the same request through Fastify's `inject()` or through a real loopback socket, so each
// scenario proves its behaviour on both paths.
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { FastifyInstance } from 'fastify'

export interface Call {
  readonly method?: string
  readonly url: string
  /** An array sends the header once per value. */
  readonly headers?: Readonly<Record<string, string | readonly string[]>>
  /** A string is sent as is; anything else as JSON. */
  readonly payload?: unknown
}

export interface Answer {
  readonly status: number
  readonly headers: IncomingHttpHeaders
  readonly text: string
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- parsed JSON, asserted by tests
  readonly body: any
}

export type Transport = 'inject' | 'socket'

function parse(headers: IncomingHttpHeaders, text: string): unknown {
  return /[/+]json\b/.test(headers['content-type'] ?? '') && text !== '' ? JSON.parse(text) : text
}

function body(call: Call): { text: string | undefined; type: string | undefined } {
  if (call.payload === undefined) return { text: undefined, type: undefined }
  if (typeof call.payload === 'string') return { text: call.payload, type: undefined }
  return { text: JSON.stringify(call.payload), type: 'application/json' }
}

/** Starts listening when the transport is a socket (port 0, loopback only). */
export async function start(app: FastifyInstance, transport: Transport): Promise<void> {
  if (transport === 'socket') await app.listen({ port: 0, host: '127.0.0.1' })
  else await app.ready()
}

/** Sends `call` to `app` over `transport`. */
export async function send(
  app: FastifyInstance,
  transport: Transport,
  call: Call,
): Promise<Answer> {
  const { text, type } = body(call)
  const headers: Record<string, string | string[]> = {}
  if (type !== undefined) headers['content-type'] = type
  for (const [name, value] of Object.entries(call.headers ?? {}))
    headers[name.toLowerCase()] = typeof value === 'string' ? value : [...value]
  if (transport === 'inject') {
    const res = await app.inject({
      method: (call.method ?? 'GET') as 'GET',
      url: call.url,
      headers,
      ...(text === undefined ? {} : { payload: text }),
    })
    return {
      status: res.statusCode,
      headers: res.headers as IncomingHttpHeaders,
      text: res.body,
      body: parse(res.headers as IncomingHttpHeaders, res.body),
    }
  }
  const { port } = app.server.address() as AddressInfo
  return new Promise<Answer>((resolve, reject) => {
    const req = httpRequest(
      { host: '127.0.0.1', port, method: call.method ?? 'GET', path: call.url, headers },
      (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('end', () => {
          const t = Buffer.concat(chunks).toString('utf8')
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            text: t,
            body: parse(res.headers, t),
          })
        })
        res.on('error', reject)
      },
    )
    req.on('error', reject)
    req.end(text)
  })
}
