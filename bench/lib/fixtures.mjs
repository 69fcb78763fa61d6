/**
 * What the HTTP servers and the micro-benchmarks share: the token claims, the signing keys, the
 * full gate's limits, quota and 20-rule policy.
 * @module
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto'
import { SignJWT } from 'jose'
import {
  createApiKeyManager,
  createMemoryKeyStore,
  createQuotaStage,
  createRateLimitStage,
} from '@portcullis/core'

export const ISSUER = 'https://id.bench.example'
export const AUDIENCE = 'documents-api'
export const SCOPE = 'documents:read'

/** JWT algorithms benchmarked, and the key pair each needs (undefined: an HMAC secret). */
export const JWT_ALGORITHMS = /** @type {const} */ (['HS256', 'RS256', 'ES256', 'EdDSA'])

/**
 * A verification key and a signed token for one algorithm.
 * @param {'HS256' | 'RS256' | 'ES256' | 'EdDSA'} alg
 * @returns {Promise<{ token: string, secret?: Uint8Array, publicKey?: import('node:crypto').KeyObject, gateJwt: object }>}
 */
export async function jwtFixture(alg) {
  let signingKey
  let secret
  let publicKey
  if (alg === 'HS256') {
    secret = randomBytes(32)
    signingKey = secret
  } else {
    const pair =
      alg === 'RS256'
        ? generateKeyPairSync('rsa', { modulusLength: 2048 })
        : alg === 'ES256'
          ? generateKeyPairSync('ec', { namedCurve: 'P-256' })
          : generateKeyPairSync('ed25519')
    signingKey = pair.privateKey
    publicKey = pair.publicKey
  }
  const token = await new SignJWT({ scope: SCOPE })
    .setProtectedHeader({ alg, typ: 'JWT' })
    .setSubject('bench-user')
    .setIssuer(ISSUER)
    .setAudience(AUDIENCE)
    .setIssuedAt()
    .setExpirationTime('2h')
    .sign(signingKey)
  const gateJwt =
    alg === 'HS256'
      ? { secret, issuer: ISSUER, audience: AUDIENCE }
      : { keys: [{ alg, publicKey }], issuer: ISSUER, audience: AUDIENCE }
  return { token, secret, publicKey, gateJwt }
}

/**
 * An in-memory key store holding one key with the `documents:read` scope and `reader` role.
 * @returns {Promise<{ store: import('@portcullis/core').KeyStore, pepper: Uint8Array, key: string }>}
 */
export async function apiKeyFixture() {
  const store = createMemoryKeyStore()
  const pepper = randomBytes(32)
  const { key } = await createApiKeyManager({ store, pepper }).create({
    name: 'bench',
    ownerId: 'bench-user',
    scopes: [SCOPE],
    roles: ['reader'],
  })
  return { store, pepper, key }
}

/**
 * The full gate's stages: two named limits and a quota, high enough never to refuse in a run.
 * @param {import('@portcullis/core').RateLimitBackend} [backend] default: memory
 */
export function limitStages(backend) {
  const b = backend === undefined ? {} : { backend }
  return [
    createRateLimitStage({
      ...b,
      limits: [
        { name: 'burst', limit: 1_000_000, windowMs: '1s', key: 'principal' },
        { name: 'hourly', limit: 1_000_000_000, windowMs: '1h', key: ['principal', 'route'] },
      ],
    }),
    createQuotaStage({
      ...b,
      quotas: [{ name: 'monthly', limit: 1_000_000_000_000, period: 'month' }],
    }),
  ]
}

/**
 * A 20-rule policy set, as a service would write it: roles, deny rules for sensitive actions,
 * network and ownership conditions, and the rule that lets `documents:read` through. For the
 * benchmark's request, 6 rules are about `documents:read` and are evaluated; the others are
 * indexed away by action.
 */
export const POLICY_20 = Object.freeze({
  version: 1,
  name: 'bench-20-rules',
  roles: {
    reader: { permissions: [] },
    editor: { inherits: ['reader'] },
    admin: { inherits: ['editor'] },
  },
  rules: [
    // Rules about documents, evaluated for GET /docs/:id.
    {
      id: 'docs-read-scope',
      effect: 'allow',
      actions: ['documents:read'],
      when: { attr: 'principal.scopes', op: 'contains', value: 'documents:read' },
    },
    {
      id: 'docs-read-reader',
      effect: 'allow',
      actions: ['documents:read', 'documents:list'],
      roles: ['reader'],
    },
    {
      id: 'docs-deny-private-net',
      effect: 'deny',
      actions: ['documents:*'],
      when: { attr: 'request.ip', op: 'cidr', value: ['10.66.0.0/16', '192.0.2.0/24'] },
    },
    {
      id: 'docs-deny-suspended',
      effect: 'deny',
      actions: ['documents:*'],
      when: { attr: 'principal.attributes.suspended', op: 'eq', value: true },
    },
    {
      id: 'docs-deny-blocked-user',
      effect: 'deny',
      actions: ['*'],
      when: { attr: 'principal.id', op: 'in', value: ['mallory', 'trudy', 'eve'] },
    },
    {
      id: 'docs-deny-trace',
      effect: 'deny',
      actions: ['*'],
      when: { attr: 'request.method', op: 'eq', value: 'TRACE' },
    },
    // Rules about other actions: indexed away for this request.
    {
      id: 'docs-write-editor',
      effect: 'allow',
      actions: ['documents:create', 'documents:update'],
      roles: ['editor'],
    },
    {
      id: 'docs-delete-owner',
      effect: 'allow',
      actions: ['documents:delete'],
      roles: ['editor'],
      when: { attr: 'principal.attributes.owner', op: 'eq', value: true },
    },
    { id: 'billing-read', effect: 'allow', actions: ['billing:read'], roles: ['admin'] },
    {
      id: 'billing-write',
      effect: 'allow',
      actions: ['billing:write'],
      roles: ['admin'],
      when: { attr: 'principal.method', op: 'eq', value: 'jwt' },
    },
    {
      id: 'billing-deny-apikey',
      effect: 'deny',
      actions: ['billing:write'],
      when: { attr: 'principal.method', op: 'eq', value: 'apikey' },
    },
    { id: 'users-read', effect: 'allow', actions: ['users:read', 'users:list'], roles: ['admin'] },
    { id: 'users-write', effect: 'allow', actions: ['users:update'], roles: ['admin'] },
    {
      id: 'users-delete-deny',
      effect: 'deny',
      actions: ['users:delete'],
      when: { attr: 'request.ip', op: 'cidr', value: ['0.0.0.0/0'] },
    },
    { id: 'keys-admin', effect: 'allow', actions: ['keys:*'], roles: ['admin'] },
    { id: 'reports-read', effect: 'allow', actions: ['reports:read'], roles: ['editor'] },
    { id: 'reports-export', effect: 'allow', actions: ['reports:export'], roles: ['admin'] },
    { id: 'audit-read', effect: 'allow', actions: ['audit:read'], roles: ['admin'] },
    { id: 'settings-write', effect: 'allow', actions: ['settings:write'], roles: ['admin'] },
    {
      id: 'webhooks-manage',
      effect: 'allow',
      actions: ['webhooks:create', 'webhooks:delete'],
      roles: ['admin'],
    },
  ],
})

/** The per-principal limit of the "JWT + limit + scope" and "API key + limit + scope" variants. */
export const PRINCIPAL_LIMIT = { name: 'per-principal', limit: 1_000_000_000, windowMs: 60_000 }

/**
 * The gate stage holding the one per-principal limit, in memory.
 * @returns {import('@portcullis/core').GateStage}
 */
export function principalLimitStage() {
  return createRateLimitStage({
    limits: [
      {
        name: PRINCIPAL_LIMIT.name,
        limit: PRINCIPAL_LIMIT.limit,
        windowMs: PRINCIPAL_LIMIT.windowMs,
        key: 'principal',
      },
    ],
  })
}
