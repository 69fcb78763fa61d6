/**
 * The request's {@link AccessContext} in AsyncLocalStorage: adapters run the rest of the request
 * inside it, so audit events raised anywhere in a handler carry request id, principal and route.
 *
 * Reachable from `@portcullis/core`.
 * @packageDocumentation
 */
import { AsyncLocalStorage } from 'node:async_hooks'
import type { AccessContext } from '../types.js'

const storage = new AsyncLocalStorage<AccessContext>()

/** The context of the request being handled, or `undefined` outside one. */
export function getAccessContext(): AccessContext | undefined {
  return storage.getStore()
}

/** Runs `fn` with `context` as the current access context. */
export function runWithAccessContext<TResult>(context: AccessContext, fn: () => TResult): TResult {
  return storage.run(context, fn)
}
