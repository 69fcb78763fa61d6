/**
 * A queued event: emitted once, shared by every sink's queue, prepared and hashed for the chain
 * at most once whatever the number of sinks, and acknowledged when the last sink has it.
 * `linkEntries` hands a batch of them to a sink's hash chain.
 * @packageDocumentation
 */
import type { Clock } from '../internal/clock.js'
import { canonicalBody, type AuditChainer, type CanonicalBody } from './audit-chain.js'
import type { AuditEvent, AuditEventInput } from './audit-event.js'
import type { Preparer } from './audit-prepare.js'

/** Stands in the queue for a checkpoint to be made when its turn comes. */
export const CHECKPOINT_MARKER = Object.freeze({}) as AuditEventInput

/** One queued event, shared by every sink's queue. */
export class Entry {
  #prepared: AuditEvent | undefined
  #body: CanonicalBody | undefined
  #failed = false
  remaining: number
  constructor(
    readonly raw: AuditEventInput,
    readonly at: number,
    readonly security: boolean,
    sinks: number,
    readonly onDone?: (event: AuditEvent) => void,
    /** Set by `commit()`: told (once) when a sink could not make the event durable. */
    readonly onFail?: (error: unknown) => void,
  ) {
    this.remaining = sinks
  }

  /** Tells the committer that a sink failed it; the entry itself stays queued for the retry. */
  fail(error: unknown): void {
    if (this.onFail === undefined || this.#failed || this.remaining === 0) return
    this.#failed = true
    this.onFail(error)
  }

  prepared(prep: Preparer): AuditEvent {
    return (this.#prepared ??= prep.prepare(this.raw, this.at))
  }

  /** The prepared event's canonical members, made once for every sink's chain. */
  body(prep: Preparer): CanonicalBody {
    return (this.#body ??= canonicalBody(this.prepared(prep)))
  }

  ack(prep: Preparer): void {
    if (--this.remaining === 0) this.onDone?.(this.prepared(prep))
  }
}

/**
 * The hand-off to the hash chain: each entry prepared (once for every sink) and linked into this
 * sink's chain, with the checkpoints that fall due; without a chain, the prepared events as they are.
 */
export function linkEntries(
  entries: readonly Entry[],
  prep: Preparer,
  chainer: AuditChainer | undefined,
  clock: Clock,
): AuditEvent[] {
  const out: AuditEvent[] = []
  for (const entry of entries) {
    if (entry.raw === CHECKPOINT_MARKER) {
      if (chainer !== undefined) out.push(chainer.checkpoint(new Date(clock()).toISOString()))
      continue
    }
    const event = entry.prepared(prep)
    if (chainer === undefined) {
      out.push(event)
      continue
    }
    out.push(chainer.link(event, entry.body(prep)))
    const now = clock()
    if (chainer.checkpointDue(now)) out.push(chainer.checkpoint(new Date(now).toISOString()))
  }
  return out
}
