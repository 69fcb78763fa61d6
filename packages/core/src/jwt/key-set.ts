/**
 * Verification keys for JWTs: static secrets, PEM and JWK keys bound to one algorithm each, and
 * remote JWK Sets fetched through jose with caching and a refetch cooldown.
 *
 * Reachable from `@portcullis/core`.
 * @packageDocumentation
 */
import { createPublicKey, createSecretKey, KeyObject, type webcrypto } from 'node:crypto'
import { createRemoteJWKSet, type JWK } from 'jose'
import { ConfigError } from '../errors.js'
import { ALGORITHM_SPECS, isJwsAlgorithm, keyMismatch, type JwsAlgorithm } from './algorithms.js'
import { decodeBase64urlStrict } from './base64url.js'

/** A JSON Web Key as accepted in configuration (RFC 7517). */
export type JsonWebKeyInput = JWK

/** One static verification key, bound to exactly one algorithm. */
export type JwtKeyInput =
  | {
      /** Key id matched against the token's `kid` header. */
      readonly kid?: string
      /** The one algorithm this key verifies. */
      readonly alg: JwsAlgorithm
      /** HMAC secret (HS256/384/512): at least as many bytes as the hash output. */
      readonly secret: string | Uint8Array
    }
  | {
      readonly kid?: string
      readonly alg: JwsAlgorithm
      /** A PEM (SPKI) public key or a `KeyObject`. */
      readonly publicKey: string | KeyObject
    }
  | {
      /** Defaults to the JWK's own `kid`. */
      readonly kid?: string
      /** Defaults to the JWK's own `alg`; one of the two is required, and they must agree. */
      readonly alg?: JwsAlgorithm
      /** The key as a JWK. Its `use`/`key_ops`/`alg` bind it to signature verification. */
      readonly jwk: JsonWebKeyInput
    }

/** A key ready for verification. @internal */
export interface BoundKey {
  readonly kid: string | undefined
  readonly alg: JwsAlgorithm
  readonly key: KeyObject
}

/** Where keys come from: a static set, a remote JWKS, or both. @internal */
export interface KeyResolver {
  /**
   * Candidate keys for a token whose header names `alg` and optionally `kid`. Every returned key
   * is bound to `alg` and has passed {@link keyMismatch}. May reject with a {@link KeySourceUnavailableError}.
   */
  resolve(
    alg: JwsAlgorithm,
    kid: string | undefined,
  ): readonly BoundKey[] | Promise<readonly BoundKey[]>
}

/** A remote key source could not be reached. @internal */
export class KeySourceUnavailableError extends Error {
  override readonly name = 'KeySourceUnavailableError'
}

function jwkToKeyObject(jwk: JsonWebKeyInput, alg: JwsAlgorithm, where: string): KeyObject {
  const spec = ALGORITHM_SPECS[alg]
  if (jwk.kty !== spec.kty) {
    throw new ConfigError(`${where}.jwk.kty: ${JSON.stringify(jwk.kty)} cannot be used for ${alg}`)
  }
  if (jwk.use !== undefined && jwk.use !== 'sig') {
    throw new ConfigError(
      `${where}.jwk.use: must be "sig" for a verification key, received ${JSON.stringify(jwk.use)}`,
    )
  }
  if (
    jwk.key_ops !== undefined &&
    !(Array.isArray(jwk.key_ops) && jwk.key_ops.includes('verify'))
  ) {
    throw new ConfigError(`${where}.jwk.key_ops: must include "verify"`)
  }
  try {
    if (jwk.kty === 'oct') {
      const k = typeof jwk.k === 'string' ? decodeBase64urlStrict(jwk.k) : undefined
      if (k === undefined) throw new Error('"k" is not canonical base64url')
      return createSecretKey(k)
    }
    // A private JWK is accepted for convenience; only its public half is kept.
    return createPublicKey({ key: jwk as never, format: 'jwk' })
  } catch (cause) {
    if (cause instanceof ConfigError) throw cause
    throw new ConfigError(`${where}.jwk: cannot import key (${(cause as Error).message})`, {
      cause,
    })
  }
}

/**
 * Imports and binds one configured key. Throws {@link ConfigError} naming `where` when the key is
 * unusable, weak, or its declared algorithm disagrees with the key or the JWK's own `alg`.
 * @throws {ConfigError}
 */
export function bindKey(input: JwtKeyInput, where: string): BoundKey {
  let alg: JwsAlgorithm | undefined = input.alg
  let kid = input.kid
  let key: KeyObject
  if ('jwk' in input) {
    const jwkAlg = input.jwk.alg
    if (jwkAlg !== undefined) {
      if (!isJwsAlgorithm(jwkAlg)) {
        throw new ConfigError(
          `${where}.jwk.alg: unknown or unsupported algorithm ${JSON.stringify(jwkAlg)}`,
        )
      }
      if (alg !== undefined && alg !== jwkAlg) {
        throw new ConfigError(`${where}.alg: ${alg} disagrees with the JWK's own alg ${jwkAlg}`)
      }
      alg = jwkAlg
    }
    if (alg === undefined) throw new ConfigError(`${where}.alg: required when the JWK has no "alg"`)
    kid ??= input.jwk.kid
    key = jwkToKeyObject(input.jwk, alg, where)
  } else if ('secret' in input) {
    if (alg === undefined) throw new ConfigError(`${where}.alg: required`)
    key = createSecretKey(
      typeof input.secret === 'string' ? Buffer.from(input.secret, 'utf8') : input.secret,
    )
  } else {
    if (alg === undefined) throw new ConfigError(`${where}.alg: required`)
    try {
      key =
        input.publicKey instanceof KeyObject
          ? input.publicKey.type === 'private'
            ? createPublicKey(input.publicKey)
            : input.publicKey
          : createPublicKey(input.publicKey)
    } catch (cause) {
      throw new ConfigError(`${where}.publicKey: cannot import key (${(cause as Error).message})`, {
        cause,
      })
    }
  }
  if (!isJwsAlgorithm(alg))
    throw new ConfigError(`${where}.alg: unknown algorithm ${JSON.stringify(alg)}`)
  const mismatch = keyMismatch(alg, key)
  if (mismatch !== undefined) throw new ConfigError(`${where}: ${mismatch}`)
  return Object.freeze({ kid, alg, key })
}

/** A fixed set of keys, indexed by `kid` and by algorithm. @internal */
export class StaticKeySet implements KeyResolver {
  // Maps, never plain objects: a `kid` such as "__proto__" or "constructor" is only ever a key.
  readonly #byKid = new Map<string, BoundKey[]>()
  readonly #byAlg = new Map<JwsAlgorithm, BoundKey[]>()
  readonly #empty: readonly BoundKey[] = Object.freeze([])

  constructor(keys: readonly BoundKey[]) {
    for (const k of keys) {
      if (k.kid !== undefined) push(this.#byKid, k.kid, k)
      push(this.#byAlg, k.alg, k)
    }
  }

  get size(): number {
    let n = 0
    for (const list of this.#byAlg.values()) n += list.length
    return n
  }

  resolve(alg: JwsAlgorithm, kid: string | undefined): readonly BoundKey[] {
    if (kid === undefined) return this.#byAlg.get(alg) ?? this.#empty
    const list = this.#byKid.get(kid)
    if (list === undefined) return this.#empty
    return list.length === 1 && list[0]?.alg === alg ? list : list.filter((k) => k.alg === alg)
  }
}

function push<TKey>(map: Map<TKey, BoundKey[]>, key: TKey, value: BoundKey): void {
  const list = map.get(key)
  if (list === undefined) map.set(key, [value])
  else list.push(value)
}

/** Options of a remote JWK Set. */
export interface JwksOptions {
  /** The JWKS URL (https in production). */
  readonly url: string | URL
  /** How long a fetched set is considered fresh. @default 600000 (10 minutes) */
  readonly cacheMaxAgeMs?: number
  /** Minimum time between refetches triggered by an unknown `kid`. @default 30000 */
  readonly cooldownMs?: number
  /** Fetch timeout. @default 5000 */
  readonly timeoutMs?: number
}

/** Most keys tried for one token when a JWKS holds several candidates without `kid`. */
const MAX_CANDIDATES = 4

/** Remote keys through jose's `createRemoteJWKSet`, converted once to `KeyObject`. @internal */
export class RemoteKeySet implements KeyResolver {
  readonly #jwks: ReturnType<typeof createRemoteJWKSet>
  readonly #objects = new WeakMap<object, KeyObject | null>()

  constructor(options: Required<Omit<JwksOptions, 'url'>> & { readonly url: URL }) {
    this.#jwks = createRemoteJWKSet(options.url, {
      cacheMaxAge: options.cacheMaxAgeMs,
      cooldownDuration: options.cooldownMs,
      timeoutDuration: options.timeoutMs,
    })
  }

  async resolve(alg: JwsAlgorithm, kid: string | undefined): Promise<readonly BoundKey[]> {
    const header = kid === undefined ? { alg } : { alg, kid }
    try {
      const bound = this.#bind(alg, kid, await this.#jwks(header))
      return bound === undefined ? [] : [bound]
    } catch (error) {
      const code = (error as { code?: unknown }).code
      if (code === 'ERR_JWKS_NO_MATCHING_KEY') return []
      if (code === 'ERR_JWKS_MULTIPLE_MATCHING_KEYS') {
        const out: BoundKey[] = []
        for await (const candidate of error as AsyncIterable<unknown>) {
          const bound = this.#bind(alg, kid, candidate)
          if (bound !== undefined) out.push(bound)
          if (out.length >= MAX_CANDIDATES) break
        }
        return out
      }
      throw new KeySourceUnavailableError('JWKS unavailable', { cause: error })
    }
  }

  /** Converts once per CryptoKey and drops keys too weak or of the wrong type for `alg`. */
  #bind(alg: JwsAlgorithm, kid: string | undefined, cryptoKey: unknown): BoundKey | undefined {
    let key = this.#objects.get(cryptoKey as object)
    if (key === undefined) {
      const converted = KeyObject.from(cryptoKey as webcrypto.CryptoKey)
      key = keyMismatch(alg, converted) === undefined ? converted : null
      this.#objects.set(cryptoKey as object, key)
    }
    return key === null ? undefined : { kid, alg, key }
  }
}

/** Static keys first; the remote set only when no static key matches. @internal */
export class CombinedKeySet implements KeyResolver {
  constructor(
    private readonly local: StaticKeySet,
    private readonly remote: RemoteKeySet,
  ) {}

  resolve(
    alg: JwsAlgorithm,
    kid: string | undefined,
  ): readonly BoundKey[] | Promise<readonly BoundKey[]> {
    const local = this.local.resolve(alg, kid)
    return local.length > 0 ? local : this.remote.resolve(alg, kid)
  }
}
