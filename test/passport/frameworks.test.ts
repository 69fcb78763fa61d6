// The same passport-http BasicStrategy authenticator through each framework adapter: a strategy
// wrapped by passportAuthenticator runs inside the gate, so it needs nothing from the framework.
import { once } from 'node:events'
import type { Server } from 'node:http'
import { expect } from 'chai'
import express from 'express'
import Koa from 'koa'
import { BasicStrategy } from 'passport-http'
import { createGate, type Gate } from '@portcullis/core'
import * as portcullisExpress from '@portcullis/express'
import * as portcullisKoa from '@portcullis/koa'
import { detectAuthorizationScheme, passportAuthenticator } from '@portcullis/passport'

type Listen = (gate: Gate) => Server

const frameworks: Record<string, Listen> = {
  express: (gate) => {
    const app = express()
    app.use(portcullisExpress.authMiddleware({ gate }))
    app.get('/me', (req, res) => {
      res.json({ id: req.auth?.principal?.id, method: req.auth?.principal?.method })
    })
    app.use(portcullisExpress.problemHandler({ gate }))
    return app.listen(0, '127.0.0.1')
  },
  koa: (gate) => {
    const app = new Koa()
    app.use(portcullisKoa.problemHandler({ gate }))
    app.use(portcullisKoa.authMiddleware({ gate }))
    app.use((ctx) => {
      const principal = ctx.state.auth?.principal
      ctx.body = { id: principal?.id, method: principal?.method }
    })
    return app.listen(0, '127.0.0.1')
  },
}

const basicHeader = (user: string, password: string): string =>
  `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`

for (const [framework, listen] of Object.entries(frameworks)) {
  describe(`@portcullis/passport BasicStrategy through @portcullis/${framework}`, () => {
    let server: Server
    let url: string
    before(async () => {
      const gate = createGate({
        authenticators: [
          passportAuthenticator(
            new BasicStrategy((username, password, done) =>
              done(null, username === 'ada' && password === 'pw-ada' ? { name: 'ada' } : false),
            ),
            {
              detect: detectAuthorizationScheme('basic'),
              toPrincipal: (user: { name: string }) => ({ id: user.name }),
            },
          ),
        ],
        audit: false,
      })
      server = listen(gate)
      await once(server, 'listening')
      const address = server.address()
      url = `http://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : 0}/me`
    })
    after(() => new Promise<void>((resolve) => server.close(() => resolve())))

    it('lets the right password through', async () => {
      const res = await fetch(url, { headers: { authorization: basicHeader('ada', 'pw-ada') } })
      expect(res.status).to.equal(200)
      expect(await res.json()).to.deep.equal({ id: 'ada', method: 'basic' })
    })

    it('denies a wrong password with 401 ERR_AUTH_INVALID', async () => {
      const res = await fetch(url, { headers: { authorization: basicHeader('ada', 'nope') } })
      expect(res.status).to.equal(401)
      expect(res.headers.get('content-type')).to.match(/^application\/problem\+json/)
      expect(await res.json()).to.include({ code: 'ERR_AUTH_INVALID' })
    })

    it('answers no credentials with 401 and a challenge', async () => {
      const res = await fetch(url)
      expect(res.status).to.equal(401)
      expect(res.headers.get('www-authenticate')).to.equal('Bearer realm="api", Basic realm="api"')
    })
  })
}
