/**
 * express-rate-limit 8's defaults (kept apart so the store and the option parser share them).
 * @packageDocumentation
 */
import { DEFAULT_IPV6_SUBNET } from '../../defaults.js'
import type { DropInHeaderDraft } from './types.js'

/** express-rate-limit 8's defaults, one constant each. */
export const DROP_IN_DEFAULTS: {
  readonly windowMs: number
  readonly limit: number
  readonly message: string
  readonly statusCode: number
  readonly legacyHeaders: boolean
  readonly standardHeaders: DropInHeaderDraft | false
  readonly requestPropertyName: string
  readonly skipFailedRequests: boolean
  readonly skipSuccessfulRequests: boolean
  readonly ipv6Subnet: number
  readonly passOnStoreError: boolean
} = Object.freeze({
  windowMs: 60_000,
  limit: 5,
  message: 'Too many requests, please try again later.',
  statusCode: 429,
  legacyHeaders: true,
  standardHeaders: false,
  requestPropertyName: 'rateLimit',
  skipFailedRequests: false,
  skipSuccessfulRequests: false,
  ipv6Subnet: DEFAULT_IPV6_SUBNET,
  passOnStoreError: false,
})
