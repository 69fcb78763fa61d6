/**
 * Pseudonymous subject ids for GDPR erasure that keeps the audit chain verifiable: events carry
 * `HMAC-SHA-256(key, subjectSalt ‖ principalId)` instead of the principal id; the mapping (subject →
 * salt and pseudonym) lives in a table that erasure deletes. The chain covers the pseudonym, so it
 * still verifies after erasure, while the deleted salt makes the pseudonym unlinkable even to
 * whoever holds the key.
 *
 * Reachable from `@portcullis/core`.
 * @packageDocumentation
 */
import { createHmac, randomBytes } from 'node:crypto'

/** One row of the mapping table. */
export interface PseudonymRecord {
  readonly subjectId: string
  readonly pseudonym: string
  /** Per-subject random salt (hex). */
  readonly salt: string
}

/**
 * The mapping table. Synchronous, because pseudonyms are assigned while a batch is prepared
 * (off the request path); `@portcullis/sqlite` ships a persistent one.
 */
export interface PseudonymStore {
  get(subjectId: string): PseudonymRecord | undefined
  set(record: PseudonymRecord): void
  /** Finds the subject behind a pseudonym (for a data-subject access request). */
  findByPseudonym(pseudonym: string): PseudonymRecord | undefined
  /** Deletes the subject's row; returns whether there was one. */
  delete(subjectId: string): boolean
}

/** Assigns pseudonyms and erases subjects. */
export interface Pseudonymizer {
  /** The subject's pseudonym (`ps_<32 hex>`), created on first use. */
  pseudonymFor(subjectId: string): string
  /** The subject behind a pseudonym, while the mapping exists. */
  resolve(pseudonym: string): string | undefined
  /** GDPR Art. 17 erasure: forgets the mapping; later events get a fresh pseudonym. */
  erase(subjectId: string): boolean
}

/** Options of {@link createPseudonymizer}. */
export interface PseudonymizerOptions {
  /** HMAC key (at least 32 bytes of secret). */
  readonly key: string | Uint8Array
  /** The mapping table. @default an in-memory table */
  readonly store?: PseudonymStore
}

/** An in-memory mapping table (lost on restart: use a persistent store in production). */
export function createMemoryPseudonymStore(): PseudonymStore {
  const bySubject = new Map<string, PseudonymRecord>()
  const byPseudonym = new Map<string, PseudonymRecord>()
  return {
    get: (id) => bySubject.get(id),
    set(record) {
      bySubject.set(record.subjectId, record)
      byPseudonym.set(record.pseudonym, record)
    },
    findByPseudonym: (p) => byPseudonym.get(p),
    delete(id) {
      const r = bySubject.get(id)
      if (r === undefined) return false
      bySubject.delete(id)
      byPseudonym.delete(r.pseudonym)
      return true
    },
  }
}

/** Creates a pseudonymizer. */
export function createPseudonymizer(options: Readonly<PseudonymizerOptions>): Pseudonymizer {
  const store = options.store ?? createMemoryPseudonymStore()
  const key = options.key
  return {
    pseudonymFor(subjectId) {
      const known = store.get(subjectId)
      if (known !== undefined) return known.pseudonym
      const salt = randomBytes(16).toString('hex')
      const pseudonym = `ps_${createHmac('sha256', key).update(`${salt}:${subjectId}`).digest('hex').slice(0, 32)}`
      store.set({ subjectId, pseudonym, salt })
      return pseudonym
    },
    resolve: (pseudonym) => store.findByPseudonym(pseudonym)?.subjectId,
    erase: (subjectId) => store.delete(subjectId),
  }
}
