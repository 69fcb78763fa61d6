import { expect } from 'chai'
import { existsSync } from 'node:fs'
import pg from 'pg'
import {
  describeWithPostgres,
  skipWithoutPostgres,
  startPostgres,
} from '../helpers/postgres-server.js'

async function query(url: string, sql: string): Promise<unknown[]> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2000 })
  await client.connect()
  try {
    return (await client.query(sql)).rows
  } finally {
    await client.end()
  }
}

async function rejection(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise
  } catch (error) {
    return error as Error
  }
  throw new Error('expected the promise to reject, but it resolved')
}

describeWithPostgres('test helper: startPostgres', function (postgres) {
  this.timeout(60_000)

  it('serves queries on a loopback port with trust auth', async function () {
    const server = postgres()
    expect(server.url).to.equal(`postgres://postgres@127.0.0.1:${server.port}/postgres`)
    expect(server.running).to.equal(true)
    const rows = (await query(server.url, 'SHOW fsync')) as { fsync: string }[]
    expect(rows).to.deep.equal([{ fsync: 'off' }])
    const listen = (await query(server.url, 'SHOW listen_addresses')) as {
      listen_addresses: string
    }[]
    expect(listen[0]?.listen_addresses).to.equal('127.0.0.1')
  })

  it('creates separate databases', async function () {
    const url = await postgres().createDatabase()
    await query(url, 'CREATE TABLE t (x int)')
    const rows = await query(postgres().url, "SELECT 1 FROM pg_tables WHERE tablename = 't'")
    expect(rows).to.have.length(0)
  })

  it('keeps data and port across pause/resume, and refuses connections while paused', async function () {
    const server = postgres()
    const url = await server.createDatabase()
    await query(url, 'CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)')
    const port = server.port
    await server.pause()
    expect(server.running).to.equal(false)
    const error = (await rejection(query(url, 'SELECT 1'))) as Error & { code?: string }
    expect(error.code).to.equal('ECONNREFUSED')
    await server.resume()
    expect(server.port).to.equal(port)
    expect(await query(url, 'SELECT x FROM kept')).to.deep.equal([{ x: 42 }])
  })

  it('comes back with its data after kill (SIGKILL) and restart', async function () {
    const server = postgres()
    const url = await server.createDatabase()
    await query(url, 'CREATE TABLE crashed (x int); INSERT INTO crashed VALUES (7)')
    const client = new pg.Client({ connectionString: url })
    await client.connect()
    const ended = new Promise((resolve) => client.on('error', resolve))
    await server.kill()
    expect(server.running).to.equal(false)
    await ended
    await server.resume()
    expect(await query(url, 'SELECT x FROM crashed')).to.deep.equal([{ x: 7 }])
    await server.restart()
    expect(await query(url, 'SELECT x FROM crashed')).to.deep.equal([{ x: 7 }])
  })
})

describe('test helper: startPostgres stop()', function () {
  it('removes its folder and can be called twice', async function () {
    this.timeout(60_000)
    skipWithoutPostgres(this, 'test helper: startPostgres stop()')
    const server = await startPostgres()
    const rows = await query(
      server.url,
      "SELECT setting FROM pg_settings WHERE name = 'data_directory'",
    )
    const data = (rows[0] as { setting: string }).setting
    expect(existsSync(data)).to.equal(true)
    await server.stop()
    await server.stop()
    expect(existsSync(data)).to.equal(false)
    expect(server.running).to.equal(false)
  })
})
