// Child processes for the benchmarks: servers run in their own process (pinned to their own core
// when taskset is available) so the load generator and the server never share a core on this
// 2-core machine. CPU time and RSS are read from /proc, i.e. from outside the measured process.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process'
import { openSync, closeSync, readFileSync } from 'node:fs'
import { Agent, request } from 'undici'

/** Clock ticks per second for /proc/<pid>/stat utime/stime. */
const CLK_TCK = (() => {
  try { return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100 } catch { return 100 }
})()

export const HAS_TASKSET = (() => {
  try { execFileSync('taskset', ['-p', String(process.pid)], { stdio: 'ignore' }); return true } catch { return false }
})()

/** Pin every thread of this process to one CPU (taskset -a -p): the load generator's core. */
export function pinSelf (cpu: number): boolean {
  if (!HAS_TASKSET) return false
  execFileSync('taskset', ['-a', '-p', '-c', String(cpu), String(process.pid)], { stdio: 'ignore' })
  return true
}

/** Undo pinSelf: every CPU again. */
export function unpinSelf (cpus: number): void {
  if (!HAS_TASKSET) return
  execFileSync('taskset', ['-a', '-p', '-c', `0-${cpus - 1}`, String(process.pid)], { stdio: 'ignore' })
}

/** CPU seconds (user + system) a process has used so far. */
export function cpuSeconds (pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  // Fields after the ")" closing the command name; utime and stime are fields 14 and 15.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK
}

/** Resident set size of a process in bytes (VmRSS). */
export function rssBytes (pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return m === null ? 0 : Number(m[1]) * 1024
}

export interface ServerProcess {
  readonly name: string
  readonly child: ChildProcess
  readonly pid: number
  readonly url: string
  readonly exited: Promise<number | null>
  /** SIGTERM and wait for the exit (SIGKILL after 10 s). */
  stop (): Promise<number | null>
}

export interface SpawnServerOptions {
  readonly name: string
  readonly command: string
  readonly args: readonly string[]
  /** https://127.0.0.1:PORT the server will listen on. */
  readonly url: string
  /** CPU to pin the server to (taskset -c), when taskset exists. */
  readonly cpu?: number
  /** Where stdout and stderr go (a file: the server's logs are part of its work, not the load generator's). */
  readonly logFile: string
  readonly env?: NodeJS.ProcessEnv
}

export function spawnServer (opts: SpawnServerOptions): ServerProcess {
  const fd = openSync(opts.logFile, 'a')
  const [cmd, args] = opts.cpu !== undefined && HAS_TASKSET
    ? ['taskset', ['-c', String(opts.cpu), opts.command, ...opts.args]]
    : [opts.command, [...opts.args]]
  const child = spawn(cmd, args, { stdio: ['ignore', fd, fd], env: opts.env ?? process.env })
  closeSync(fd)
  if (child.pid === undefined) throw new Error(`${opts.name}: spawn failed`)
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  return {
    name: opts.name,
    child,
    pid: child.pid,
    url: opts.url,
    exited,
    async stop () {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode
      child.kill('SIGTERM')
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000)
      const code = await exited
      clearTimeout(timer)
      return code
    },
  }
}

/**
 * An undici dispatcher that trusts `ca` and checks the certificate's name (localhost). Without a
 * CA (a server that is making its own right now) the certificate is not checked: loopback only.
 */
export function trustingAgent (ca: string | undefined, connections?: number): Agent {
  const connect = ca === undefined ? { rejectUnauthorized: false } : { ca, servername: 'localhost' }
  return new Agent({ connect, ...(connections !== undefined ? { connections } : {}), keepAliveTimeout: 30_000 })
}

/** Poll GET /readyz until it answers 200; returns ms waited. Throws after timeoutMs. */
export async function waitReady (url: string, ca: string | undefined, timeoutMs = 15_000, intervalMs = 5): Promise<number> {
  const started = performance.now()
  const agent = trustingAgent(ca)
  try {
    for (;;) {
      try {
        const res = await request(`${url}/readyz`, { dispatcher: agent, headersTimeout: 2000, bodyTimeout: 2000 })
        await res.body.dump()
        if (res.statusCode === 200) return performance.now() - started
      } catch {
        // not listening yet
      }
      if (performance.now() - started > timeoutMs) throw new Error(`${url} not ready within ${timeoutMs} ms`)
      await new Promise(resolve => setTimeout(resolve, intervalMs))
    }
  } finally {
    await agent.close()
  }
}
