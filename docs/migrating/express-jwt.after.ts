// After: @portcullis/express. `req.auth` is { principal, decision, gate }; the claims are on
// `req.auth.principal`: `id` (sub), `scopes` (scope/scp), `roles`, `tokenId` (jti), and all of
// them verified and frozen in `attributes.claims`.
import express from 'express'
import type { JwtClaims } from '@portcullis/core'
import { authMiddleware, problemHandler, requirePolicy } from '@portcullis/express'

export const app = express()
// Registered before the gate: public, like express-jwt's `.unless({ path: ['/health'] })`.
app.get('/health', (req, res) => {
  res.json({ ok: true })
})
app.use(
  authMiddleware({
    jwt: {
      secret: process.env.JWT_SECRET as string,
      algorithms: ['HS256'],
      issuer: 'https://id.example',
      audience: 'documents-api',
    },
  }),
)
app.get('/me', (req, res) => {
  const principal = req.auth?.principal
  const claims = principal?.attributes.claims as JwtClaims | undefined
  res.json({ id: principal?.id, tenant: claims?.tenant })
})
// Scopes from the token's `scope` claim, checked per route.
app.get('/docs', requirePolicy({ scopes: ['documents:read'] }), (req, res) => {
  res.json([])
})
// Denials are answered by the gate itself (401 + WWW-Authenticate, problem+json); this renders
// the other errors as problems too.
app.use(problemHandler())
