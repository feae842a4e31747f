// Starts a real pullpin (createApp) over TLS on a free loopback port, with its logs captured,
// and a client that trusts its self-signed CA.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { Agent, request } from 'undici'
import { createApp, type App, type AppOptions } from '../../src/app.js'
import { parseConfig } from '../../src/policy/config.js'
import { createLogger } from '../../src/server/logger.js'
import { SelfSignedDirectorySource } from '../../src/certs/self-signed.js'
import type { CertificateSource } from '../../src/certs/certificate-source.js'
import type { Pod } from '../../src/mutate/pod.js'
import { admissionReview, applyResponsePatch, type ReviewOptions } from './pods.js'

export class LogCapture extends Writable {
  readonly lines: string[] = []
  override _write (chunk: Buffer, _enc: string, cb: () => void): void {
    for (const line of chunk.toString('utf8').split('\n')) if (line !== '') this.lines.push(line)
    cb()
  }

  get records (): any[] { return this.lines.map(l => JSON.parse(l)) }
  get text (): string { return this.lines.join('\n') }
}

export interface RunningPullpin {
  app: App
  url: string
  ca: string
  logs: LogCapture
  agent: Agent
  post (path: string, body: unknown, headers?: Record<string, string>): Promise<{ status: number; json: any; text: string }>
  get (path: string): Promise<{ status: number; text: string }>
  close (): Promise<void>
}

export async function startPullpin (configYaml: string, opts: Partial<AppOptions> & { certificates?: CertificateSource } = {}): Promise<RunningPullpin> {
  const dir = await mkdtemp(join(tmpdir(), 'pullpin-test-'))
  const certificates = opts.certificates ?? new SelfSignedDirectorySource(dir, { dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] })
  const tls = await certificates.load()
  const logs = new LogCapture()
  const app = await createApp({
    config: parseConfig(configYaml, 'test config'),
    logger: createLogger({ level: 'debug', destination: logs }),
    certificates,
    host: '127.0.0.1',
    port: 0,
    ownNamespace: 'pullpin-system',
    ...opts,
  })
  const url = await app.start()
  const ca = tls.ca ?? tls.cert
  const agent = new Agent({ connect: { ca, servername: 'localhost' } })
  return {
    app,
    url,
    ca,
    logs,
    agent,
    async post (path, body, headers = {}) {
      const res = await request(url + path, {
        method: 'POST',
        dispatcher: agent,
        headers: { 'content-type': 'application/json', ...headers },
        body: typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body),
      })
      const text = await res.body.text()
      let json: any
      try { json = JSON.parse(text) } catch { json = undefined }
      return { status: res.statusCode, json, text }
    },
    async get (path) {
      const res = await request(url + path, { dispatcher: agent })
      return { status: res.statusCode, text: await res.body.text() }
    },
    async close () {
      await app.shutdown()
      await agent.destroy()
      await rm(dir, { recursive: true, force: true })
    },
  }
}

/** POST /mutate of `pod` to a running pullpin: its AdmissionResponse, and the pod its patch makes. */
export async function mutatePod (p: RunningPullpin, pod: Pod, opts: ReviewOptions = {}): Promise<{ response: any, result: Pod }> {
  const res = await p.post('/mutate', admissionReview(pod, opts))
  if (res.status !== 200) throw new Error(`HTTP ${res.status}: ${res.text}`)
  return { response: res.json.response, result: applyResponsePatch(pod, res.json.response) as Pod }
}
