// After: the same strategy, run by the gate as one of its authenticators (no passport middleware,
// no sessions). `toPrincipal` maps passport's user to the principal on `req.auth.principal`.
import express from 'express'
import { BasicStrategy } from 'passport-http'
import { createGate } from '@portcullis/core'
import { authMiddleware, problemHandler } from '@portcullis/express'
import { passportAuthenticator } from '@portcullis/passport'

interface User {
  readonly name: string
  readonly roles: readonly string[]
}
const users = new Map<string, { password: string; user: User }>([
  ['ada', { password: 'lovelace', user: { name: 'ada', roles: ['staff'] } }],
])

const basic = new BasicStrategy((username, password, done) => {
  const entry = users.get(username)
  done(null, entry !== undefined && entry.password === password ? entry.user : false)
})
const gate = createGate({
  authenticators: [
    passportAuthenticator(basic, {
      toPrincipal: (user: User) => ({ id: user.name, roles: user.roles }),
    }),
  ],
})

export const app = express()
app.use(authMiddleware({ gate }))
app.get('/me', (req, res) => {
  res.json({ id: req.auth?.principal?.id })
})
app.use(problemHandler({ gate }))
