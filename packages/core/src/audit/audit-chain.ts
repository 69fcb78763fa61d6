/**
 * Tamper evidence: every sink's events form a keyed hash chain. Each event carries
 * `chain = { id, seq, key, prev, mac }` where `mac = HMAC-SHA-256(key, JCS(event with chain minus
 * mac))` (RFC 8785 canonical form, so `prev`, the previous link's mac, is covered too). Every
 * `checkpointEvery` events the chain gets an `audit.checkpoint` event whose data is a signature
 * (Ed25519, or HMAC) over `{ chain, seq, head, time }`; published checkpoints (anchors) reveal
 * truncation. {@link verifyAuditChain} names the first broken link, and tells an incomplete last line
 * (a crash in the middle of a write) from tampering.
 *
 * Reachable from `@portcullis/core`.
 * @packageDocumentation
 */
import {
  createHmac,
  createPrivateKey,
  createPublicKey,
  createSecretKey,
  randomUUID,
  sign,
  timingSafeEqual,
  verify,
  type KeyObject,
} from 'node:crypto'
import { canonicalize, canonicalizeTree } from '../internal/canonical-json.js'
import type { AuditChainLink, AuditEvent } from './audit-event.js'
import { rememberAuditEventJson } from './event-json.js'

/** Options of the trail's integrity (`audit.integrity`). */
export interface AuditIntegrityOptions {
  /** HMAC key of the chain (at least 32 bytes of secret). */
  readonly key: string | Uint8Array
  /** Id recorded with every link, so keys can rotate. @default 'k1' */
  readonly keyId?: string
  /** Events between checkpoints. @default 1000 */
  readonly checkpointEvery?: number
  /** Longest time between checkpoints while events flow (checked as events are linked). @default 60000 */
  readonly checkpointIntervalMs?: number
  /**
   * Ed25519 private key (KeyObject or PEM) signing checkpoints; without it checkpoints are HMACs
   * under `key`. A separate signing key lets auditors check checkpoints with the public key only.
   */
  readonly signingKey?: KeyObject | string
  /** Called with each checkpoint, e.g. to publish it elsewhere as a truncation anchor. */
  readonly onCheckpoint?: (checkpoint: AuditCheckpoint) => void
}

/** A signed statement that chain `chain` had head `head` at `seq`. */
export interface AuditCheckpoint {
  readonly chain: string
  readonly seq: number
  /** The mac of the event at `seq`. */
  readonly head: string
  readonly time: string
  readonly alg: 'Ed25519' | 'HS256'
  readonly keyId: string
  /** base64url. */
  readonly signature: string
}

/** Computes the mac of `event` with its (mac-less) link. */
export function computeAuditMac(key: string | Uint8Array, event: AuditEvent): string {
  const { chain, ...rest } = event
  if (chain === undefined) throw new TypeError('event has no chain link')
  const { mac: _mac, ...link } = chain
  return createHmac('sha256', key)
    .update(canonicalize({ ...rest, chain: link }))
    .digest('hex')
}

/**
 * An event's canonical members except `chain`, split around where `"chain"` sorts (RFC 8785
 * orders members by UTF-16 code units): made once per event, shared by every sink's chain.
 * @internal
 */
export interface CanonicalBody {
  /** Members whose names sort before `chain`, joined with `,` (may be empty). */
  readonly before: string
  /** Members whose names sort after `chain`, joined with `,` (may be empty). */
  readonly after: string
}

/** Splits an event's canonical form around `chain`. @internal */
export function canonicalBody(event: AuditEvent): CanonicalBody {
  const record = event as unknown as Record<string, unknown>
  const keys = Object.keys(record).sort()
  const before: string[] = []
  const after: string[] = []
  for (const key of keys) {
    if (key === 'chain') continue
    const member = record[key]
    if (member === undefined) continue
    ;(key < 'chain' ? before : after).push(`${JSON.stringify(key)}:${canonicalizeTree(member)}`)
  }
  return { before: before.join(','), after: after.join(',') }
}

function withChain(body: CanonicalBody, chain: string): string {
  const head = body.before === '' ? '{' : `{${body.before},`
  return body.after === '' ? `${head}"chain":${chain}}` : `${head}"chain":${chain},${body.after}}`
}

function checkpointPayload(c: Omit<AuditCheckpoint, 'signature' | 'alg' | 'keyId'>): string {
  return canonicalize({ chain: c.chain, seq: c.seq, head: c.head, time: c.time })
}

/** Links events into one chain, in the order they are given. @internal */
export class AuditChainer {
  readonly id: string = randomUUID()
  #seq = 0
  #prev: string
  #sinceCheckpoint = 0
  #lastCheckpointAt: number | undefined
  readonly #intervalMs: number
  /** The chain key, imported once (not per event). */
  readonly #key: KeyObject
  readonly #keyId: string
  /** `"id":…,"key":…` of every link, JSON-escaped once. */
  readonly #linkHead: string
  readonly #every: number
  readonly #signingKey: KeyObject | undefined
  readonly #onCheckpoint: ((c: AuditCheckpoint) => void) | undefined

  constructor(options: Readonly<AuditIntegrityOptions>) {
    this.#key =
      typeof options.key === 'string'
        ? createSecretKey(options.key, 'utf8')
        : createSecretKey(options.key)
    this.#keyId = options.keyId ?? 'k1'
    this.#linkHead = `"id":${JSON.stringify(this.id)},"key":${JSON.stringify(this.#keyId)}`
    this.#every = options.checkpointEvery ?? 1000
    this.#intervalMs = options.checkpointIntervalMs ?? 60_000
    this.#signingKey =
      options.signingKey === undefined
        ? undefined
        : typeof options.signingKey === 'string'
          ? createPrivateKey(options.signingKey)
          : options.signingKey
    this.#onCheckpoint = options.onCheckpoint
    // Genesis: the first link's `prev` is the chain id, so a chain cannot be spliced onto another.
    this.#prev = this.id
  }

  /**
   * Links one event. The mac covers the canonical form of the event with its mac-less link; that
   * form is built from `body` (the event's other members, made once for every sink) and the
   * link, and the linked event's own canonical form is kept as its JSON text for the sinks.
   */
  link(event: AuditEvent, body: CanonicalBody = canonicalBody(event)): AuditEvent {
    const seq = ++this.#seq
    const prev = this.#prev
    // `prev` is a hex mac or the chain id (a UUID): nothing in it needs escaping.
    const tail = `"prev":"${prev}","seq":${seq}}`
    const mac = createHmac('sha256', this.#key)
      .update(withChain(body, `{${this.#linkHead},${tail}`))
      .digest('hex')
    this.#prev = mac
    this.#sinceCheckpoint++
    const chain: AuditChainLink = { id: this.id, seq, key: this.#keyId, prev, mac }
    const linked: AuditEvent = { ...event, chain }
    rememberAuditEventJson(linked, withChain(body, `{${this.#linkHead},"mac":"${mac}",${tail}`))
    return linked
  }

  /** Whether a checkpoint is due at `nowMs` (by count, or by time since the last one). */
  checkpointDue(nowMs: number): boolean {
    this.#lastCheckpointAt ??= nowMs
    return (
      this.#sinceCheckpoint >= this.#every ||
      (this.#sinceCheckpoint > 0 && nowMs - this.#lastCheckpointAt >= this.#intervalMs)
    )
  }

  /** Makes a checkpoint event over the current head (and links it). */
  checkpoint(time: string): AuditEvent {
    const base = { chain: this.id, seq: this.#seq, head: this.#prev, time }
    const payload = checkpointPayload(base)
    const cp: AuditCheckpoint =
      this.#signingKey === undefined
        ? {
            ...base,
            alg: 'HS256',
            keyId: this.#keyId,
            signature: createHmac('sha256', this.#key).update(payload).digest('base64url'),
          }
        : {
            ...base,
            alg: 'Ed25519',
            keyId: this.#keyId,
            signature: sign(null, Buffer.from(payload), this.#signingKey).toString('base64url'),
          }
    this.#onCheckpoint?.(cp)
    const event = this.link({
      id: randomUUID(),
      time,
      type: 'audit.checkpoint',
      outcome: 'success',
      actor: { id: null },
      action: 'audit.checkpoint',
      data: { ...cp },
    })
    this.#sinceCheckpoint = 0
    this.#lastCheckpointAt = Date.parse(time)
    return event
  }
}

/** Keys for {@link verifyAuditChain}. */
export interface AuditVerifyOptions {
  /** HMAC key(s) of the chain, by key id (or one key for every id). */
  readonly keys: string | Uint8Array | Readonly<Record<string, string | Uint8Array>>
  /** Ed25519 public key (KeyObject or PEM) for Ed25519 checkpoints. */
  readonly checkpointPublicKey?: KeyObject | string
  /** Checkpoints published elsewhere: a trail ending before one of them was truncated. */
  readonly anchors?: readonly Pick<AuditCheckpoint, 'chain' | 'seq' | 'head'>[]
  /** Accept chains whose first event here is not seq 1 (a rotated-away or purged beginning). @default false */
  readonly partial?: boolean
}

/** Where the chain broke. */
export interface AuditChainBreak {
  /** Position in the input (0-based); equal to the input length for truncation found at the end. */
  readonly index: number
  readonly eventId?: string
  readonly chain?: string
  readonly seq?: number
  /** `<file>:<line number>` of a line that is not a JSON object (from `readJsonLinesAuditEvents`). */
  readonly line?: string
  readonly reason: string
}

/**
 * Why a trail did not verify:
 * - `torn-tail`: only the last line is incomplete (a crash in the middle of a write: it does not
 *   parse and the file does not end with a newline); every event before it verifies. The sink
 *   cuts such a line off when it next opens the file.
 * - `tampered`: anything else: an altered, forged, deleted, inserted or reordered event, an
 *   invalid line inside the trail, a truncation an anchor reveals, or a wrong key.
 */
export type AuditVerifyFailure = 'torn-tail' | 'tampered'

/** The result of {@link verifyAuditChain}. */
export interface AuditVerifyResult {
  readonly ok: boolean
  /** Why `ok` is false (absent when it is true). */
  readonly reason?: AuditVerifyFailure
  /** Events checked. */
  readonly events: number
  /** Checkpoints whose signature verified. */
  readonly checkpoints: number
  /** Each chain: id, first and last seq, head mac. */
  readonly chains: readonly {
    readonly id: string
    readonly firstSeq: number
    readonly lastSeq: number
    readonly head: string
  }[]
  /** The first broken link, when `ok` is false. */
  readonly firstBroken?: AuditChainBreak
}

function equalHex(a: string, b: string): boolean {
  if (a.length !== b.length) return false
  return timingSafeEqual(Buffer.from(a), Buffer.from(b))
}

/**
 * Verifies events read back from one sink, in their stored order. Detects an edited event (mac),
 * a deleted one (seq gap / prev), an inserted or reordered one (seq, prev), a truncated end (anchors)
 * and a forged checkpoint (signature); stops at the first broken link and names it (`reason:
 * 'tampered'`). An incomplete last line (`tornTail` from `readJsonLinesAuditEvents`) after
 * events that all verify is `reason: 'torn-tail'`.
 */
export function verifyAuditChain(
  events: Iterable<AuditEvent>,
  options: Readonly<AuditVerifyOptions>,
): AuditVerifyResult {
  const keyFor = (id: string): string | Uint8Array | undefined =>
    typeof options.keys === 'string' || options.keys instanceof Uint8Array
      ? options.keys
      : Object.hasOwn(options.keys, id)
        ? (options.keys as Record<string, string | Uint8Array>)[id]
        : undefined
  const publicKey =
    options.checkpointPublicKey === undefined
      ? undefined
      : typeof options.checkpointPublicKey === 'string'
        ? createPublicKey(options.checkpointPublicKey)
        : options.checkpointPublicKey
  const chains = new Map<string, { firstSeq: number; lastSeq: number; head: string }>()
  const anchorsByChain = new Map<string, Map<number, string>>()
  for (const a of options.anchors ?? []) {
    let m = anchorsByChain.get(a.chain)
    if (m === undefined) anchorsByChain.set(a.chain, (m = new Map()))
    m.set(a.seq, a.head)
  }
  let index = 0
  let checkpoints = 0
  const result = (
    firstBroken?: AuditChainBreak,
    reason: AuditVerifyFailure = 'tampered',
  ): AuditVerifyResult => ({
    ok: firstBroken === undefined,
    ...(firstBroken === undefined ? {} : { reason }),
    events: index,
    checkpoints,
    chains: [...chains].map(([id, c]) => ({ id, ...c })),
    ...(firstBroken === undefined ? {} : { firstBroken }),
  })
  /** An incomplete last line, known to be last only once nothing follows it. */
  let torn: string | undefined
  for (const event of events) {
    if (torn !== undefined) return result({ index, line: torn, reason: notAnObject(torn) })
    const link = event.chain as AuditChainLink | undefined
    const at = (reason: string): AuditChainBreak => ({
      index,
      ...(typeof event?.id === 'string' ? { eventId: event.id } : {}),
      ...(link?.id === undefined ? {} : { chain: link.id, seq: link.seq }),
      reason,
    })
    const marker = event as { invalidLine?: unknown; tornTail?: unknown } | undefined
    if (typeof marker?.invalidLine === 'string') {
      if (marker.tornTail === true) {
        torn = marker.invalidLine
        continue
      }
      return result({ index, line: marker.invalidLine, reason: notAnObject(marker.invalidLine) })
    }
    if (
      link === undefined ||
      typeof link !== 'object' ||
      typeof link.id !== 'string' ||
      typeof link.mac !== 'string' ||
      typeof link.prev !== 'string' ||
      !Number.isSafeInteger(link.seq)
    ) {
      return result(at('event has no chain link (inserted or unchained)'))
    }
    const key = keyFor(link.key)
    if (key === undefined) return result(at(`unknown chain key id ${JSON.stringify(link.key)}`))
    let mac: string
    try {
      mac = computeAuditMac(key, event)
    } catch {
      return result(at('event cannot be canonicalized'))
    }
    if (!equalHex(mac, link.mac)) return result(at('mac mismatch: the event was altered or forged'))
    const state = chains.get(link.id)
    if (state === undefined) {
      if (link.seq !== 1 && options.partial !== true)
        return result(at(`chain starts at seq ${link.seq}: earlier events are missing`))
      if (link.seq === 1 && link.prev !== link.id)
        return result(at('first link does not start from the chain genesis'))
      chains.set(link.id, { firstSeq: link.seq, lastSeq: link.seq, head: link.mac })
    } else {
      if (link.seq !== state.lastSeq + 1) {
        return result(
          at(
            link.seq > state.lastSeq + 1
              ? `seq gap: expected ${state.lastSeq + 1}, found ${link.seq} (events deleted)`
              : `seq ${link.seq} after ${state.lastSeq} (event inserted, duplicated or reordered)`,
          ),
        )
      }
      if (!equalHex(link.prev, state.head))
        return result(at('prev does not match the previous link (event inserted or reordered)'))
      state.lastSeq = link.seq
      state.head = link.mac
    }
    const wanted = anchorsByChain.get(link.id)?.get(link.seq)
    if (wanted !== undefined && wanted !== link.mac)
      return result(at(`mac at seq ${link.seq} differs from the published anchor`))
    if (event.type === 'audit.checkpoint') {
      const problem = checkCheckpoint(event, link, key, publicKey)
      if (problem !== undefined) return result(at(problem))
      checkpoints++
    }
    index++
  }
  for (const [chain, seqs] of anchorsByChain) {
    const state = chains.get(chain)
    for (const seq of seqs.keys()) {
      if (state === undefined || state.lastSeq < seq) {
        return result({
          index,
          chain,
          seq: state?.lastSeq ?? 0,
          reason: `truncated: chain ends at seq ${state?.lastSeq ?? 0} but an anchor covers seq ${seq}`,
        })
      }
    }
  }
  if (torn !== undefined)
    return result(
      {
        index,
        line: torn,
        reason:
          'the last line is incomplete (a crash during a write?); every earlier event verifies',
      },
      'torn-tail',
    )
  return result()
}

const notAnObject = (line: string): string => `${line} is not a JSON object`

function checkCheckpoint(
  event: AuditEvent,
  link: AuditChainLink,
  key: string | Uint8Array,
  publicKey: KeyObject | undefined,
): string | undefined {
  const cp = event.data as Partial<AuditCheckpoint> | undefined
  if (
    cp === undefined ||
    typeof cp.signature !== 'string' ||
    typeof cp.head !== 'string' ||
    typeof cp.time !== 'string'
  )
    return 'malformed checkpoint'
  if (cp.chain !== link.id || cp.seq !== link.seq - 1 || cp.head !== link.prev)
    return 'checkpoint does not cover the link before it'
  const payload = checkpointPayload({ chain: cp.chain, seq: cp.seq, head: cp.head, time: cp.time })
  if (cp.alg === 'HS256') {
    const expected = createHmac('sha256', key).update(payload).digest('base64url')
    return equalHex(expected, cp.signature) ? undefined : 'checkpoint signature invalid'
  }
  if (cp.alg === 'Ed25519') {
    if (publicKey === undefined) return 'Ed25519 checkpoint but no checkpoint public key given'
    const good = verify(
      null,
      Buffer.from(payload),
      publicKey,
      Buffer.from(cp.signature, 'base64url'),
    )
    return good ? undefined : 'checkpoint signature invalid'
  }
  return `unknown checkpoint algorithm ${JSON.stringify(cp.alg)}`
}
