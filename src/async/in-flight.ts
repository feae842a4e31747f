// Coalescing: concurrent callers asking for the same key share one running promise, which is
// forgotten when it settles (success or failure), so the next call starts afresh. Callers that
// must stop waiting early wrap the shared promise in abortable(); the work itself is never
// cancelled by one caller.

export class InFlight<K, V> {
  readonly #running = new Map<K, Promise<V>>()

  /** The promise running for `key`, or `start()`'s, shared until it settles. */
  run (key: K, start: () => Promise<V>): Promise<V> {
    const running = this.#running.get(key)
    if (running !== undefined) return running
    const p = start().finally(() => {
      if (this.#running.get(key) === p) this.#running.delete(key)
    })
    this.#running.set(key, p)
    return p
  }

  /** The promise running for `key`, if any. */
  get (key: K): Promise<V> | undefined { return this.#running.get(key) }

  get size (): number { return this.#running.size }
}
