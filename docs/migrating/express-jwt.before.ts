// Before: express-jwt 8. The verified claims are on `req.auth`; errors go to your error handler.
import express, { type NextFunction, type Request, type Response } from 'express'
import { expressjwt, type Request as JWTRequest } from 'express-jwt'

export const app = express()
app.use(
  expressjwt({
    secret: process.env.JWT_SECRET as string,
    algorithms: ['HS256'],
    issuer: 'https://id.example',
    audience: 'documents-api',
  }).unless({ path: ['/health'] }),
)
app.get('/health', (req, res) => {
  res.json({ ok: true })
})
app.get('/me', (req: JWTRequest, res) => {
  res.json({ id: req.auth?.sub, tenant: req.auth?.tenant })
})
app.use((err: Error, req: Request, res: Response, next: NextFunction) => {
  if (err.name === 'UnauthorizedError') res.status(401).json({ error: err.message })
  else next(err)
})
