// Running the `pullpin` CLI in tests: in this process (most cases: a spawn costs seconds on a loaded
// machine) or as a real process (node --import tsx src/cli.ts), plus the config files the doctor
// tests write for a test registry.
import { spawn } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { main } from '../../src/cli.js'
import { dockerConfigJsonFor, type RegistryFixture } from './registry.js'

const root = fileURLToPath(new URL('../..', import.meta.url))

export interface Ran { code: number | null, stdout: string, stderr: string }

/** `pullpin ARGS` in this process, with an empty environment and `stdin` as its standard input. */
export async function inProcess (args: string[], stdin = ''): Promise<Ran> {
  const out: string[] = []
  const err: string[] = []
  const code = await main(args, { out: (s) => out.push(s), err: (s) => err.push(s), env: {}, readStdin: () => Promise.resolve(stdin) })
  return { code, stdout: out.join(''), stderr: err.join('') }
}

/** `pullpin ARGS` as a real process, `stdin` piped in; no kubeconfig or docker config of the machine. */
export function spawnCli (args: string[], stdin = '', env: NodeJS.ProcessEnv = { ...process.env, KUBECONFIG: '', DOCKER_CONFIG: '' }): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', join(root, 'src', 'cli.ts'), ...args], { stdio: ['pipe', 'pipe', 'pipe'], cwd: root, env })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
    child.once('error', reject)
    child.once('close', (code) => resolve({ code, stdout, stderr }))
    child.stdin.end(stdin)
  })
}

/** A temporary directory of numbered files, removed by remove(). */
export class TempFiles {
  #count = 0
  private constructor (readonly dir: string) {}
  static async create (prefix: string): Promise<TempFiles> { return new TempFiles(await mkdtemp(join(tmpdir(), prefix))) }
  async file (content: string): Promise<string> {
    const f = join(this.dir, `f${this.#count++}`)
    await writeFile(f, content)
    return f
  }

  remove (): Promise<void> { return rm(this.dir, { recursive: true, force: true }) }
}

/**
 * `--config` and `--docker-config` arguments for registry `r`: a pullpin config whose registry
 * section names it (with its CA unless `ca` is false) and a docker config with `user`/`password`.
 */
export async function doctorConfigFor (files: TempFiles, r: RegistryFixture, opts: { user?: string, password?: string, ca?: boolean, top?: string } = {}): Promise<string[]> {
  const docker = await files.file(dockerConfigJsonFor(r.host, opts.user ?? r.username, opts.password ?? r.password))
  const config = await files.file(`
namespaces:
  labels: {}
pullSecrets:
  - name: local-registry
    registries: ["${r.host}"]
registry:
  hosts: ["${r.host}"]
  allowPrivate: ["${r.host}"]
  options:
    "${r.host}": { ${opts.ca === false ? '' : `caFile: "${r.caFile}", `}timeoutMs: 10000 }
${opts.top ?? ''}`)
  return ['--config', config, '--docker-config', docker]
}

/** The doctor check line whose title contains `title`, as "<mark> <detail>" (the title left out). */
export function checkLine (out: string, title: string): string {
  const found = out.split('\n').find(l => /^[✓✗–] /.test(l) && l.includes(title))
  if (found === undefined) return `(no line "${title}")`
  return `${found.slice(0, 2)}${found.slice(found.indexOf(': ') + 2)}`
}
