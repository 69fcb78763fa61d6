/**
 * The message broker through which instances tell each other about revoked keys and changed
 * policies. In-process by default; `@portcullis/redis` spreads it across machines.
 *
 * Reachable from `@portcullis/core`.
 * @packageDocumentation
 */

/** The messages, by topic. */
export interface BrokerMessages {
  /** A key was created. */
  readonly 'key.created': { readonly keyId: string }
  /** A key was revoked: drop it from every cache now. */
  readonly 'key.revoked': { readonly keyId: string }
  /** A key got a new secret. */
  readonly 'key.rotated': { readonly keyId: string }
  /** A key's scopes, roles, limits or expiry changed. */
  readonly 'key.updated': { readonly keyId: string }
  /** A key was deleted. */
  readonly 'key.deleted': { readonly keyId: string }
  /** The policy set changed. */
  readonly 'policy.changed': { readonly version: string }
  /** Configuration changed. */
  readonly 'config.changed': { readonly version: string }
  /**
   * A tiered cache entry changed: every other instance drops its local copy of `key` (every key
   * of `namespace` when `key` is `null`). `origin` is the sending cache's instance id.
   */
  readonly 'cache.invalidated': {
    readonly namespace: string
    readonly key: string | null
    readonly origin: string
  }
}

/** A broker topic. */
export type BrokerTopic = keyof BrokerMessages

/** Publish/subscribe over typed topics. */
export interface MessageBroker {
  /** Sends `message` to every subscriber of `topic`, on every instance. */
  publish<TTopic extends BrokerTopic>(topic: TTopic, message: BrokerMessages[TTopic]): Promise<void>
  /** Calls `handler` for each message on `topic`; returns the unsubscribe function. */
  subscribe<TTopic extends BrokerTopic>(
    topic: TTopic,
    handler: (message: BrokerMessages[TTopic]) => void,
  ): () => void
}

/** Creates the in-process broker: delivery is synchronous, to subscribers of this process only. */
export function createMemoryBroker(
  options: { readonly onError?: (error: unknown) => void } = {},
): MessageBroker {
  const handlers = new Map<BrokerTopic, Set<(message: never) => void>>()
  return {
    async publish(topic, message): Promise<void> {
      for (const h of handlers.get(topic) ?? []) {
        try {
          ;(h as (m: typeof message) => void)(message)
        } catch (error) {
          // One broken subscriber must not stop the others.
          options.onError?.(error)
        }
      }
    },
    subscribe(topic, handler): () => void {
      let set = handlers.get(topic)
      if (set === undefined) handlers.set(topic, (set = new Set()))
      set.add(handler as (message: never) => void)
      return () => set.delete(handler as (message: never) => void)
    },
  }
}
