// A real HTTP audit collector on loopback for the webhook sink's tests: keeps what it was sent and
// drops what it already has, by event id or by the batch's Idempotency-Key.
import { once } from 'node:events'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AuditEvent } from '@portcullis/core'

/** One accepted request. */
export interface CollectedRequest {
  readonly key: string | undefined
  readonly events: AuditEvent[]
}

/** How the collector recognises what it already has. */
export type CollectorDedupe = 'id' | 'idempotency-key'

export class AuditCollector {
  server: Server | undefined
  port = 0
  /** Accepted requests, duplicates included. */
  readonly requests: CollectedRequest[] = []
  /** Events kept, in arrival order, each once. */
  readonly events: AuditEvent[] = []
  readonly #seen = new Set<string>()
  /** Status codes to answer the next requests with, before accepting. */
  failures: number[] = []

  constructor(readonly dedupe: CollectorDedupe = 'id') {}

  /** Listens on `port` (0: a free one) on 127.0.0.1. */
  async start(port = 0): Promise<void> {
    this.server = createServer((req, res) => void this.#handle(req, res))
    this.server.listen(port, '127.0.0.1')
    await once(this.server, 'listening')
    this.port = (this.server.address() as { port: number }).port
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let body = ''
    for await (const chunk of req) body += chunk
    const status = this.failures.shift()
    if (status !== undefined) {
      res.writeHead(status, status === 429 ? { 'retry-after': '0' } : {}).end()
      return
    }
    const { events } = JSON.parse(body) as { events: AuditEvent[] }
    const key = req.headers['idempotency-key'] as string | undefined
    this.requests.push({ key, events })
    if (this.dedupe === 'idempotency-key') {
      if (key === undefined || !this.#seen.has(key)) this.events.push(...events)
      if (key !== undefined) this.#seen.add(key)
    } else {
      for (const e of events) {
        if (this.#seen.has(e.id)) continue
        this.#seen.add(e.id)
        this.events.push(e)
      }
    }
    res.writeHead(204).end()
  }

  async stop(): Promise<void> {
    const server = this.server
    this.server = undefined
    if (server === undefined) return
    server.closeAllConnections()
    await new Promise((r) => server.close(r))
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}/ingest`
  }
}
