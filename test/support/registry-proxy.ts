// An HTTPS reverse proxy in front of a real test registry. It lets tests
//  (a) see RFC 5988 paging of `GET /v2/<name>/tags/list` (distribution 2.8 ignores `n`/`last`, so
//      the proxy fetches the full list, sorts it lexically and pages it as the distribution spec
//      describes: "Listing Image Tags" with `n`, `last` and `Link: <...>; rel="next"`),
//  (b) count requests per `METHOD /path` (query excluded),
//  (c) inject faults per request through a settable hook.
// Everything else (Authorization, WWW-Authenticate, Host, bodies) passes through unchanged, so the
// upstream registry builds upload Location URLs that point back at the proxy.
import { Agent as HttpsAgent, createServer, request as httpsRequest, type Server } from 'node:https'
import type { IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { dockerConfigJsonFor, sha256, type TestCa } from './registry.js'

export interface ProxyRequestInfo {
  method: string
  /** Path with query string, as received. */
  path: string
  pathname: string
  query: URLSearchParams
  headers: IncomingHttpHeaders
  /** `${method} ${pathname}`, the counts() key. */
  key: string
  /** How many requests with this key arrived so far, this one included (1 for the first). */
  seen: number
  /** How many requests arrived so far, this one included. */
  total: number
}

export type ProxyFault =
  /** Forward normally after waiting. */
  | { action: 'delay'; ms: number }
  /** Destroy the client socket without answering. */
  | { action: 'drop'; delayMs?: number }
  /**
   * Forward, send upstream status + headers and the first `afterBytes` (default: half) of the body,
   * then destroy the socket. For HEAD / empty bodies the connection breaks inside the status line.
   */
  | { action: 'reset'; afterBytes?: number; delayMs?: number }
  /** Answer this status without asking upstream (e.g. 429 with { 'retry-after': '1' }). Default body: a distribution error JSON. */
  | { action: 'status'; status: number; headers?: Record<string, string>; body?: string | object; delayMs?: number }
  /** Forward, keep upstream status + headers, replace the body (content-length fixed up). */
  | { action: 'garbage'; body?: string | Buffer; delayMs?: number }
  /** Forward, but replace Docker-Content-Digest (default: sha256 of "wrong"). */
  | { action: 'wrong-digest'; digest?: string; delayMs?: number }
  /** Forward, and add (or replace) these response headers (e.g. a registry's rate-limit headers). */
  | { action: 'headers'; headers: Record<string, string>; delayMs?: number }

export type ProxyFaultHook = (req: ProxyRequestInfo) => ProxyFault | undefined | void | Promise<ProxyFault | undefined | void>

export interface ProxyLogEntry {
  method: string
  path: string
  status?: number
  fault?: ProxyFault['action']
}

export interface RegistryProxyOptions {
  /** The registry to front; a RegistryFixture fits. Its `ca` signs the proxy's serving cert. */
  upstream: { url: string; caPem: string; ca: TestCa; username?: string; password?: string }
  /** Page tags/list by n/last (default true). */
  pageTags?: boolean
  /** Page tags/list even when the client sends no `n` (like registries with a server-side page size). */
  defaultPageSize?: number
  fault?: ProxyFaultHook
}

export interface RegistryProxyHandle {
  /** "127.0.0.1:PORT" */
  host: string
  /** "https://127.0.0.1:PORT" */
  url: string
  /** Same CA as the upstream registry. */
  caPem: string
  /** dockerconfigjson for the proxy host with the upstream's credentials. */
  dockerConfigJson: string
  /** Settable at any time; undefined means forward everything. */
  fault: ProxyFaultHook | undefined
  /** Copy of the per-key counters, key `${METHOD} ${pathname}`, e.g. "HEAD /v2/app/manifests/latest". */
  counts(): Map<string, number>
  count(key: string): number
  readonly log: ProxyLogEntry[]
  resetCounts(): void
  stop(): Promise<void>
}

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'trailer'])

function endToEnd (headers: IncomingHttpHeaders): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {}
  for (const [k, v] of Object.entries(headers)) if (v !== undefined && !HOP_BY_HOP.has(k)) out[k] = v
  return out
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

const TAGS_LIST = /^\/v2\/(.+)\/tags\/list$/

export async function startRegistryProxy (opts: RegistryProxyOptions): Promise<RegistryProxyHandle> {
  const upstream = new URL(opts.upstream.url)
  const agent = new HttpsAgent({ keepAlive: true, ca: opts.upstream.caPem, maxSockets: 32 })
  const serving = await opts.upstream.ca.issueServerCert()
  let counts = new Map<string, number>()
  let log: ProxyLogEntry[] = []
  let total = 0
  let fault = opts.fault
  const pageTags = opts.pageTags ?? true

  interface Upstream { status: number; headers: IncomingHttpHeaders; body: Buffer }

  const forwardBuffered = (req: IncomingMessage, path: string, body?: IncomingMessage): Promise<Upstream> =>
    new Promise((resolve, reject) => {
      const up = httpsRequest({
        protocol: 'https:',
        hostname: upstream.hostname,
        port: upstream.port,
        method: req.method,
        path,
        agent,
        headers: endToEnd(req.headers)
      }, (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('end', () => resolve({ status: res.statusCode ?? 502, headers: res.headers, body: Buffer.concat(chunks) }))
        res.on('error', reject)
      })
      up.on('error', reject)
      if (body === undefined) up.end()
      else body.pipe(up)
    })

  const forwardStreaming = (req: IncomingMessage, res: ServerResponse, entry: ProxyLogEntry): Promise<void> =>
    new Promise((resolve, reject) => {
      const up = httpsRequest({
        protocol: 'https:',
        hostname: upstream.hostname,
        port: upstream.port,
        method: req.method,
        path: req.url,
        agent,
        headers: endToEnd(req.headers)
      }, (upRes) => {
        entry.status = upRes.statusCode
        res.writeHead(upRes.statusCode ?? 502, endToEnd(upRes.headers))
        upRes.pipe(res)
        upRes.on('end', resolve)
        upRes.on('error', reject)
      })
      up.on('error', reject)
      req.pipe(up)
    })

  const sendBuffered = (res: ServerResponse, u: Upstream, body: Buffer, extra: OutgoingHttpHeaders = {}): void => {
    const headers = { ...endToEnd(u.headers), ...extra }
    // HEAD answers keep the upstream content-length (it describes the GET body).
    if (body.length > 0 || !('content-length' in headers)) headers['content-length'] = body.length
    res.writeHead(u.status, headers)
    res.end(body)
  }

  const pageTagList = async (req: IncomingMessage, res: ServerResponse, name: string, query: URLSearchParams, entry: ProxyLogEntry): Promise<boolean> => {
    const nParam = query.get('n')
    const last = query.get('last')
    if (nParam === null && last === null && opts.defaultPageSize === undefined) return false
    let n: number | undefined
    if (nParam !== null) {
      if (!/^\d+$/.test(nParam)) {
        const body = Buffer.from(JSON.stringify({ errors: [{ code: 'PAGINATION_NUMBER_INVALID', message: 'invalid number of results requested', detail: { n: nParam } }] }))
        res.writeHead(400, { 'content-type': 'application/json', 'content-length': body.length })
        res.end(body)
        entry.status = 400
        return true
      }
      n = Number(nParam)
    } else {
      n = opts.defaultPageSize
    }
    const u = await forwardBuffered(req, `/v2/${name}/tags/list`)
    entry.status = u.status
    if (u.status !== 200) { sendBuffered(res, u, u.body); return true }
    const all = ((JSON.parse(u.body.toString('utf8')) as { tags: string[] | null }).tags ?? [])
      .slice().sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
    const after = last === null ? all : all.filter((t) => t > last)
    const page = n === undefined ? after : after.slice(0, n)
    const more = n !== undefined && n > 0 && after.length > page.length
    const body = Buffer.from(JSON.stringify({ name, tags: page }))
    const headers: OutgoingHttpHeaders = {
      'content-type': 'application/json; charset=utf-8',
      'content-length': body.length,
      'docker-distribution-api-version': 'registry/2.0'
    }
    if (more) {
      const lastReturned = page[page.length - 1] ?? ''
      headers.link = `</v2/${name}/tags/list?n=${n}&last=${encodeURIComponent(lastReturned)}>; rel="next"`
    }
    res.writeHead(200, headers)
    res.end(body)
    return true
  }

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = req.url ?? '/'
    const parsed = new URL(path, 'https://proxy.invalid')
    const method = req.method ?? 'GET'
    const key = `${method} ${parsed.pathname}`
    const seen = (counts.get(key) ?? 0) + 1
    counts.set(key, seen)
    total++
    const entry: ProxyLogEntry = { method, path }
    log.push(entry)

    const f = fault === undefined
      ? undefined
      : (await fault({ method, path, pathname: parsed.pathname, query: parsed.searchParams, headers: req.headers, key, seen, total })) ?? undefined
    if (f) {
      entry.fault = f.action
      const delay = f.action === 'delay' ? f.ms : f.delayMs ?? 0
      if (delay > 0) await sleep(delay)
      switch (f.action) {
        case 'drop':
          req.socket.destroy()
          return
        case 'status': {
          const body = typeof f.body === 'string'
            ? Buffer.from(f.body)
            : Buffer.from(JSON.stringify(f.body ?? { errors: [{ code: f.status === 429 ? 'TOOMANYREQUESTS' : 'UNKNOWN', message: 'injected by test proxy' }] }))
          entry.status = f.status
          req.resume()
          res.writeHead(f.status, { 'content-type': 'application/json', 'content-length': body.length, ...f.headers })
          res.end(method === 'HEAD' ? undefined : body)
          return
        }
        case 'reset': {
          const u = await forwardBuffered(req, path, req)
          entry.status = u.status
          if (method === 'HEAD' || u.body.length === 0) {
            // No body to cut: break off inside the status line instead, so the client never gets
            // a complete response.
            req.socket.end(`HTTP/1.1 ${u.status} `, () => { req.socket.destroy() })
            return
          }
          const cut = Math.min(u.body.length, f.afterBytes ?? Math.floor(u.body.length / 2))
          const headers = endToEnd(u.headers)
          if (!('content-length' in headers)) headers['content-length'] = u.body.length
          res.writeHead(u.status, headers)
          res.flushHeaders()
          res.write(u.body.subarray(0, cut), () => { res.socket?.destroy() })
          return
        }
        case 'garbage': {
          const u = await forwardBuffered(req, path, req)
          entry.status = u.status
          const junk = f.body === undefined ? Buffer.from('\u0000garbage{not json') : Buffer.from(f.body)
          sendBuffered(res, u, method === 'HEAD' ? Buffer.alloc(0) : junk)
          return
        }
        case 'wrong-digest': {
          const u = await forwardBuffered(req, path, req)
          entry.status = u.status
          sendBuffered(res, u, u.body, {
            'docker-content-digest': f.digest ?? sha256('wrong')
          })
          return
        }
        case 'headers': {
          const u = await forwardBuffered(req, path, req)
          entry.status = u.status
          sendBuffered(res, u, u.body, f.headers)
          return
        }
        case 'delay':
          break
      }
    }

    const tagsList = TAGS_LIST.exec(parsed.pathname)
    if (pageTags && method === 'GET' && tagsList !== null && await pageTagList(req, res, tagsList[1] ?? '', parsed.searchParams, entry)) return
    await forwardStreaming(req, res, entry)
  }

  const server: Server = createServer({ cert: serving.certPem, key: serving.keyPem, keepAlive: true }, (req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) {
        const body = Buffer.from(JSON.stringify({ errors: [{ code: 'UNKNOWN', message: `test proxy: ${String(err)}` }] }))
        res.writeHead(502, { 'content-type': 'application/json', 'content-length': body.length })
        res.end(body)
      } else {
        res.destroy()
      }
    })
  })
  server.keepAliveTimeout = 30_000
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => { server.off('error', reject); resolve() })
  })
  const port = (server.address() as AddressInfo).port
  const host = `127.0.0.1:${port}`

  return {
    host,
    url: `https://${host}`,
    caPem: opts.upstream.caPem,
    dockerConfigJson: dockerConfigJsonFor(host, opts.upstream.username, opts.upstream.password),
    get fault () { return fault },
    set fault (h: ProxyFaultHook | undefined) { fault = h },
    counts: () => new Map(counts),
    count: (key: string) => counts.get(key) ?? 0,
    get log () { return log },
    resetCounts () { counts = new Map(); log = []; total = 0 },
    stop: () => new Promise<void>((resolve) => {
      server.close(() => resolve())
      server.closeAllConnections()
      agent.destroy()
    })
  }
}
