/**
 * Portcullis's API-key and JWT verification as a passport strategy, for existing passport apps.
 *
 * Reachable from `@portcullis/passport`.
 * @packageDocumentation
 */
import {
  AuthError,
  ConfigError,
  describeValue,
  NodeGateRequest,
  silentLogger,
  type Decision,
  type Gate,
  type Logger,
  type NodeHeaders,
} from '@portcullis/core'
import { Strategy as PassportStrategy } from 'passport-strategy'
import { DEFAULT_PORTCULLIS_STRATEGY_NAME } from './defaults.js'
import type { PassportActions } from './passport-authenticator.js'

/** The parts of a Node (Express, plain `http`) request {@link PortcullisStrategy} reads. */
export interface NodeRequestLike {
  readonly method?: string | undefined
  readonly url?: string | undefined
  /** Express's un-mounted URL, preferred over `url`. */
  readonly originalUrl?: string | undefined
  /** Express's client IP (honours `trust proxy`), preferred over the socket address. */
  readonly ip?: string | undefined
  readonly headers: NodeHeaders
  readonly rawHeaders?: readonly string[] | undefined
  readonly socket?: { readonly remoteAddress?: string | undefined } | undefined
  /** Express links the response here; the decision's `RateLimit`/`Retry-After` headers go on it. */
  readonly res?: { setHeader(name: string, value: string): unknown } | undefined
}

/** Options of {@link PortcullisStrategy}. */
export interface PortcullisStrategyOptions {
  /** The gate that authenticates (API keys, JWTs, custom authenticators, limit stages). */
  readonly gate: Gate
  /** The name to register under. @default 'portcullis' */
  readonly name?: string
  /** Receives errors thrown by later middleware after the strategy handed over. @default silent */
  readonly logger?: Logger
}

/** What the strategy passes as `info` (passport puts it on `req.authInfo`). */
export interface PortcullisAuthInfo {
  /** The gate's decision, with its trace and request id. */
  readonly decision: Decision
}

// Typed locally so that our declarations need neither @types/passport-strategy nor @types/express.
const StrategyBase: new () => PassportActions =
  PassportStrategy as unknown as new () => PassportActions

/**
 * A passport strategy that runs `gate.authenticate()`: a principal → `success(principal,
 * { decision })`; anonymous → `fail(challenge, 401)`; a 4xx denial → `fail(challenge, status)`;
 * a 5xx denial → `error(decision.error)`.
 * @example
 * ```ts
 * passport.use(new PortcullisStrategy({ gate }))
 * app.get('/me', passport.authenticate('portcullis', { session: false }), (req, res) => res.json(req.user))
 * ```
 */
export class PortcullisStrategy extends StrategyBase {
  /** Passport's registration name. */
  readonly name: string
  // Plain properties, not #private ones: passport runs `Object.create(strategy)` per request.
  /** The gate. */
  readonly gate: Gate
  /** The logger. */
  readonly logger: Logger

  constructor(options: Readonly<PortcullisStrategyOptions>) {
    super()
    if (typeof options?.gate?.authenticate !== 'function') {
      throw new ConfigError(
        `PortcullisStrategy: gate must be a Gate from createGate(), received ${describeValue(options?.gate)}`,
      )
    }
    this.name = options.name ?? DEFAULT_PORTCULLIS_STRATEGY_NAME
    this.gate = options.gate
    this.logger = options.logger ?? silentLogger
  }

  /** Passport's entry point. */
  authenticate(req: NodeRequestLike, _options?: unknown): void {
    const request = new NodeGateRequest({
      adapter: 'passport',
      method: req.method ?? 'GET',
      url: req.originalUrl ?? req.url ?? '/',
      route: undefined,
      ip: req.ip ?? req.socket?.remoteAddress,
      headers: req.headers,
      rawHeaders: req.rawHeaders ?? [],
    })
    this.gate
      .authenticate(request)
      .then(
        (decision) => decide(this, req, decision),
        (error: unknown) => this.error(error),
      )
      .catch((error: unknown) => {
        // Passport has already handed over to the next middleware, which threw: only report.
        this.logger.error(
          { error: String(error) },
          'PortcullisStrategy: middleware after authentication threw',
        )
      })
  }
}

function decide(strategy: PortcullisStrategy, req: NodeRequestLike, decision: Decision): void {
  for (const name in decision.headers) {
    // passport writes the challenge itself (on 401); a later strategy may still succeed.
    if (name !== 'www-authenticate') req.res?.setHeader(name, decision.headers[name] as string)
  }
  if (decision.allowed) {
    if (decision.principal !== null) return strategy.success(decision.principal, { decision })
    const answer = strategy.gate.errorResponse(
      new AuthError('ERR_AUTH_REQUIRED', 'Authentication is required', {
        reason: 'anonymous request',
      }),
      decision.requestId,
    )
    return strategy.fail(answer.headers['www-authenticate'] ?? 'Bearer', 401)
  }
  if (decision.status >= 500) return strategy.error(decision.error)
  strategy.fail(decision.headers['www-authenticate'] ?? 'Bearer', decision.status)
}
