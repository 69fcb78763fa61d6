// Before: passport with a strategy (here passport-http's Basic); the user is on `req.user`.
import express from 'express'
import passport from 'passport'
import { BasicStrategy } from 'passport-http'

interface User {
  readonly name: string
  readonly roles: readonly string[]
}
const users = new Map<string, { password: string; user: User }>([
  ['ada', { password: 'lovelace', user: { name: 'ada', roles: ['staff'] } }],
])

passport.use(
  new BasicStrategy((username, password, done) => {
    const entry = users.get(username)
    done(null, entry !== undefined && entry.password === password ? entry.user : false)
  }),
)

export const app = express()
app.use(passport.initialize())
app.get('/me', passport.authenticate('basic', { session: false }), (req, res) => {
  res.json({ id: (req.user as User).name })
})
