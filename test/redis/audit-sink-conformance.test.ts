// The audit-sink conformance suite on the Redis stream sink, once per ioredis major, each against
// a real redis-server; what was delivered is read back with XRANGE.
import type { Redis } from 'ioredis'
import type { AuditEvent } from '@portcullis/core'
import { createRedisStreamAuditSink } from '@portcullis/redis'
import { describeAuditSinkConformance } from '../helpers/audit-sink-conformance.js'
import { describeWithRedisClients, useRedisClient } from '../helpers/redis-server.js'

describeWithRedisClients('Redis stream audit sink', (server, ioredis) => {
  let client: Redis
  let streams = 0
  useRedisClient(server, ioredis, (c) => (client = c))

  describeAuditSinkConformance('redis stream sink', {
    dedupe: 'event',
    open: async () => {
      const stream = `conformance-${process.pid}-${streams++}`
      return {
        sink: createRedisStreamAuditSink({ client, stream }),
        delivered: async () =>
          (await client.xrange(stream, '-', '+')).map(([, fields]) => {
            const i = fields.indexOf('event')
            return JSON.parse(fields[i + 1] as string) as AuditEvent
          }),
      }
    },
  })
})
