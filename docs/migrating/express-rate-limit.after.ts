// After: the same options, the same headers and `req.rateLimit`; only the import changes.
import express, { type Request } from 'express'
import { rateLimit, type RateLimitInfo } from '@portcullis/express/rate-limit'

export const app = express()
app.use(rateLimit({ windowMs: 15 * 60 * 1000, limit: 100, standardHeaders: 'draft-8' }))
app.post('/login', rateLimit({ windowMs: 15 * 60 * 1000, limit: 5 }), (req, res) => {
  const { remaining } = (req as Request & { rateLimit: RateLimitInfo }).rateLimit
  res.json({ remaining })
})
