// A list+watch cache of one kind of object (client-go's Reflector + Store, reduced to what pullpin
// needs). client-node 1.4's ListWatch stops for good on any error other than 410 and reports
// stop() as an error, so pullpin runs its own loop on top of client-node's Watch:
//  - list (paged), then watch from the list's resourceVersion, with bookmarks so the
//    resourceVersion stays fresh;
//  - a watch that ends cleanly (server timeout) resumes from the last resourceVersion seen;
//  - 410 Gone (in-band ERROR event or HTTP status) means the history is compacted: relist
//    ("Efficient detection of changes", Kubernetes API concepts);
//  - any other failure (connection refused, 5xx, 403) is retried with jittered exponential
//    backoff, forever, keeping the last known objects: admission keeps working from them;
//  - a relist after 410 backs off too (client-go's reflector waits between every ListAndWatch):
//    a watch cache behind the list answers 410 again at once, and must not make a tight loop.
//    The backoff starts over only once a watch has worked (delivered an event or lasted).
// Handlers see add/update/delete with the old object, and a resync after every relist.
import type { Logger } from 'pino'
import type { Watch } from '@kubernetes/client-node'
import { Backoff, type BackoffOptions } from '../async/backoff.js'
import { sleep } from '../async/sleep.js'
import { describeError, isGone } from './kube-api.js'

export interface ObjectMetaLike {
  name?: string
  namespace?: string
  resourceVersion?: string
  uid?: string
  labels?: { [k: string]: string }
  annotations?: { [k: string]: string }
}
export interface KubeObject { metadata?: ObjectMetaLike }

export interface ObjectList<T> {
  items: T[]
  metadata?: { resourceVersion?: string; _continue?: string }
}

export interface ListParams {
  fieldSelector?: string
  limit: number
  _continue?: string
  signal: AbortSignal
}

export type InformerEvent<T> =
  | { readonly type: 'add'; readonly object: T }
  | { readonly type: 'update'; readonly object: T; readonly old: T }
  | { readonly type: 'delete'; readonly object: T }

export interface InformerOptions<T extends KubeObject> {
  /** For logs, metrics and /readyz: "namespaces", "secrets name=ghcr-credentials". */
  readonly name: string
  /** The collection's URL path, e.g. /api/v1/namespaces. */
  readonly path: string
  readonly list: (params: ListParams) => Promise<ObjectList<T>>
  readonly watch: Watch
  readonly fieldSelector?: string
  /** Applied to every object before it is stored (drop what must not be kept in memory). */
  readonly transform?: (obj: T) => T
  readonly logger: Logger
  readonly backoff?: BackoffOptions
  /** Server-side bound of one watch request; randomised up to twice this, as client-go does. */
  readonly watchTimeoutSeconds?: number
  readonly pageSize?: number
  /** Called on each restart: 'expired' for a 410 relist, 'error' for a failure retried with backoff. */
  readonly onRestart?: (reason: 'expired' | 'error') => void
}

const keyOf = (o: KubeObject): string => `${o.metadata?.namespace ?? ''}/${o.metadata?.name ?? ''}`

export class Informer<T extends KubeObject> {
  private store = new Map<string, T>()
  private rv = ''
  private synced = false
  /** The last failure, while failing: the first one is logged at warn, the rest at debug. */
  private lastError: string | undefined
  /** Aborted by stop(): ends the loop, the list in progress, the backoff sleep and the watch. */
  private readonly abort = new AbortController()
  private loop: Promise<void> | undefined
  private readonly handlers: Array<(e: InformerEvent<T>) => void> = []
  private readonly resyncHandlers: Array<() => void> = []
  private syncWaiters: Array<() => void> = []
  private readonly backoff: Backoff

  constructor (private readonly opts: InformerOptions<T>) {
    this.backoff = new Backoff(opts.backoff)
  }

  get name (): string { return this.opts.name }

  on (handler: (e: InformerEvent<T>) => void): void { this.handlers.push(handler) }
  /** After every (re)list, once the store holds the listed state. */
  onResync (handler: () => void): void { this.resyncHandlers.push(handler) }

  get (name: string, namespace?: string): T | undefined { return this.store.get(`${namespace ?? ''}/${name}`) }
  list (namespace?: string): T[] {
    const all = [...this.store.values()]
    return namespace === undefined ? all : all.filter(o => o.metadata?.namespace === namespace)
  }

  /** A full list has succeeded at least once: the cache is a usable last known state. */
  get hasSynced (): boolean { return this.synced }

  /** Starts the list+watch loop; an informer runs once (a stopped one does not start again). */
  start (): void {
    if (this.loop !== undefined || this.stopped) return
    this.loop = this.run()
  }

  private get stopped (): boolean { return this.abort.signal.aborted }

  /** Resolves once the first list is in the store. */
  waitForSync (): Promise<void> {
    if (this.synced) return Promise.resolve()
    return new Promise(resolve => this.syncWaiters.push(resolve))
  }

  async stop (): Promise<void> {
    this.abort.abort()
    await this.loop
  }

  private async run (): Promise<void> {
    while (!this.stopped) {
      try {
        if (this.rv === '') await this.relist()
        if (this.stopped) break
        const outcome = await this.watchOnce()
        if (outcome === 'expired') {
          this.opts.logger.info({ informer: this.name }, 'watch expired (410 Gone): relisting')
          await this.expired()
          continue
        }
        // A stream that ended at once without an event is treated like a failure, or a server
        // that closes every watch immediately would be hammered in a tight loop.
        if (outcome === 'short') await sleep(this.backoff.next(), this.abort.signal)
      } catch (err) {
        if (this.stopped) break
        if (isGone(err)) {
          await this.expired()
          continue
        }
        // warn on the change from working to failing; debug while it keeps failing.
        const log = this.lastError === undefined ? this.opts.logger.warn : this.opts.logger.debug
        this.lastError = describeError(err)
        this.opts.onRestart?.('error')
        const delay = this.backoff.next()
        log.call(this.opts.logger, { informer: this.name, error: this.lastError, retryInMs: delay, failures: this.backoff.failures }, 'list/watch failed: keeping the last known state, retrying')
        await sleep(delay, this.abort.signal)
      }
    }
  }

  /** History compacted (410 Gone): relist, after the backoff (see the top of this file). */
  private async expired (): Promise<void> {
    this.opts.onRestart?.('expired')
    this.rv = ''
    await sleep(this.backoff.next(), this.abort.signal)
  }

  private async relist (): Promise<void> {
    const items: T[] = []
    let cont: string | undefined
    let rv = ''
    do {
      const page = await this.opts.list({
        limit: this.opts.pageSize ?? 500,
        signal: this.abort.signal,
        ...(cont !== undefined ? { _continue: cont } : {}),
        ...(this.opts.fieldSelector !== undefined ? { fieldSelector: this.opts.fieldSelector } : {}),
      })
      for (const item of page.items) items.push(this.prepare(item))
      cont = page.metadata?._continue !== undefined && page.metadata._continue !== '' ? page.metadata._continue : undefined
      rv = page.metadata?.resourceVersion ?? ''
    } while (cont !== undefined)
    if (this.stopped) return
    const next = new Map(items.map(o => [keyOf(o), o]))
    const previous = this.store
    this.store = next
    for (const [key, old] of previous) if (!next.has(key)) this.emit({ type: 'delete', object: old })
    for (const [key, obj] of next) {
      const old = previous.get(key)
      if (old === undefined) this.emit({ type: 'add', object: obj })
      else if (old.metadata?.resourceVersion !== obj.metadata?.resourceVersion) this.emit({ type: 'update', object: obj, old })
    }
    this.rv = rv
    // The server answers again: the next failure is logged at warn. (The backoff is not reset
    // here but by a watch that works: a list alone does not prove the next 410 is not coming.)
    this.lastError = undefined
    if (!this.synced) {
      this.synced = true
      for (const w of this.syncWaiters) w()
      this.syncWaiters = []
    }
    for (const h of this.resyncHandlers) this.safely(h)
  }

  /**
   * One watch request, from this.rv. 'closed': the server ended a stream that worked (it had
   * events or lasted a second); 'short': it ended at once with nothing; 'expired': 410 Gone.
   * Rejects on any other failure. Settles as soon as stop() is called: client-node's Watch hands
   * out its AbortController only once the response headers came, so a request the API server
   * does not answer is abandoned here (and aborted if it ever gets an answer).
   */
  private watchOnce (): Promise<'closed' | 'expired' | 'short'> {
    return new Promise((resolve, reject) => {
      let expired = false
      let streamError: Error | undefined
      let events = 0
      let finished = false
      const started = Date.now()
      const base = this.opts.watchTimeoutSeconds ?? 300
      const params: Record<string, string | number | boolean> = {
        resourceVersion: this.rv,
        allowWatchBookmarks: true,
        timeoutSeconds: Math.round(base * (1 + Math.random())),
      }
      if (this.opts.fieldSelector !== undefined) params.fieldSelector = this.opts.fieldSelector
      const onEvent = (type: string, obj: unknown): void => {
        if (finished || this.stopped) return
        if (type === 'ERROR') {
          const status = obj as { code?: number; message?: string } | undefined
          if (status?.code === 410) expired = true
          else streamError = Object.assign(new Error(`watch error event: ${status?.message ?? 'unknown'}`), { statusCode: status?.code ?? 500 })
          return
        }
        // The watch works: the next failure starts from a short delay again.
        if (events++ === 0) this.backoff.reset()
        const rv = (obj as KubeObject | undefined)?.metadata?.resourceVersion
        if (type === 'BOOKMARK') { if (rv !== undefined && rv !== '') this.rv = rv; return }
        if (type === 'ADDED' || type === 'MODIFIED') this.upsert(obj as T)
        else if (type === 'DELETED') this.remove(obj as T)
        else return
        if (rv !== undefined && rv !== '') this.rv = rv
      }
      let controller: AbortController | undefined
      const onStop = (): void => { controller?.abort(); onDone(null) }
      const onDone = (err: unknown): void => {
        if (finished) return
        finished = true
        this.abort.signal.removeEventListener('abort', onStop)
        if (this.stopped) { resolve('closed'); return }
        if (expired) { resolve('expired'); return }
        if (err !== null && err !== undefined) { reject(err instanceof Error ? err : new Error(`watch ended: ${describeError(err)}`)); return }
        if (streamError !== undefined) { reject(streamError); return }
        if (events > 0 || Date.now() - started >= 1000) {
          this.backoff.reset()
          resolve('closed')
        } else {
          resolve('short')
        }
      }
      this.abort.signal.addEventListener('abort', onStop, { once: true })
      this.opts.watch.watch(this.opts.path, params, onEvent, onDone).then((c) => {
        // Answered after stop() (or after it already failed): close it at once.
        if (finished) { c.abort(); return }
        controller = c
        this.lastError = undefined
      }, onDone)
    })
  }

  private prepare (obj: T): T {
    return this.opts.transform !== undefined ? this.opts.transform(obj) : obj
  }

  private upsert (raw: T): void {
    const obj = this.prepare(raw)
    const key = keyOf(obj)
    const old = this.store.get(key)
    this.store.set(key, obj)
    if (old === undefined) this.emit({ type: 'add', object: obj })
    else if (old.metadata?.resourceVersion !== obj.metadata?.resourceVersion) this.emit({ type: 'update', object: obj, old })
  }

  private remove (raw: T): void {
    const key = keyOf(raw)
    const old = this.store.get(key)
    if (old === undefined) return
    this.store.delete(key)
    this.emit({ type: 'delete', object: old })
  }

  private emit (e: InformerEvent<T>): void {
    for (const h of this.handlers) this.safely(() => h(e))
  }

  private safely (fn: () => void): void {
    try {
      fn()
    } catch (err) {
      this.opts.logger.error({ informer: this.name, err }, 'informer handler failed')
    }
  }
}
