// No Docker engine runs here, so the image's rules are checked statically on the Dockerfile:
// multi-stage, npm ci + build first, every stage on Node 24 LTS (Node 20 reached end of life on
// 2026-04-30), production dependencies only in a slim/distroless final stage that does not run as
// root, no certificates or secrets copied in, and a
// .dockerignore that keeps node_modules, certs, .git, test and .cache out of the build context.
// The checker is exercised on broken variants too, so each rule is shown to be able to fail.
import t from 'tap'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const dockerfile = readFileSync(`${root}Dockerfile`, 'utf8')
const dockerignore = readFileSync(`${root}.dockerignore`, 'utf8')

interface Instruction { readonly op: string, readonly args: string, readonly line: number }
interface Stage { readonly base: string, readonly name: string | undefined, readonly index: number, readonly instructions: Instruction[] }

/** Dockerfile instructions with line continuations joined and comments dropped (Dockerfile reference, "Format"). */
function instructions (text: string): Instruction[] {
  const out: Instruction[] = []
  let buffer = ''
  let start = 0
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim()
    if (buffer === '' && (line === '' || line.startsWith('#'))) return
    if (buffer !== '' && line.startsWith('#')) return // comments inside a continuation are removed
    if (buffer === '') start = i + 1
    if (line.endsWith('\\')) { buffer += line.slice(0, -1) + ' '; return }
    buffer += line
    const m = /^(\S+)\s*(.*)$/.exec(buffer)
    if (m !== null) out.push({ op: m[1]!.toUpperCase(), args: m[2]!.trim(), line: start })
    buffer = ''
  })
  return out
}

function stages (text: string): Stage[] {
  const out: Stage[] = []
  for (const ins of instructions(text)) {
    if (ins.op === 'FROM') {
      const words = ins.args.split(/\s+/).filter(w => !w.startsWith('--platform'))
      const as = words.findIndex(w => w.toUpperCase() === 'AS')
      out.push({ base: words[0] ?? '', name: as >= 0 ? words[as + 1] : undefined, index: out.length, instructions: [] })
    } else {
      out.at(-1)?.instructions.push(ins)
    }
  }
  return out
}

// The production Node: 24 LTS, slim or distroless (https://github.com/GoogleContainerTools/distroless, nodejs24-debian12/13).
const NODE24_RUNTIME = /^(?:docker\.io\/)?(?:library\/)?node:24(?:\.\d+){0,2}-(?:bookworm-|trixie-)?slim(?:@sha256:[a-f0-9]{64})?$|^gcr\.io\/distroless\/nodejs24-debian1[23](?::(?:nonroot|latest|debug-nonroot))?(?:@sha256:[a-f0-9]{64})?$/
// A build stage's base: any node:24 image (the compiler runs on the Node that runs the result).
const NODE24_BUILD = /^(?:docker\.io\/)?(?:library\/)?node:24(?:[.-][\w.-]+)?(?:@sha256:[a-f0-9]{64})?$/
const INSTALLS_ALL = /\bnpm\s+(?:ci|install|i)\b(?![^&;|]*(?:--omit[= ]dev|--production|--only[= ]prod))/
const INSTALLS_PROD = /\bnpm\s+(?:ci|install|i)\b[^&;|]*(?:--omit[= ]dev|--production|--only[= ]prod)|\bnpm\s+prune\b[^&;|]*(?:--omit[= ]dev|--production)/
const SECRET_PATH = /(^|[\s/"'[,])(certs\/?|[^\s"',]*\.(pem|key|crt|p12|pfx)|\.npmrc|\.env(\.[\w-]+)?|\.docker\/?|id_rsa|[^\s"',]*secrets?\/?)(?=$|[\s"',\]])/i
const SECRET_ENV = /\b\w*(PASSWORD|PASSWD|TOKEN|SECRET|API_KEY|PRIVATE_KEY)\w*\s*=/i

/** Every broken rule, as a sentence; empty when the Dockerfile is acceptable. */
function dockerfileProblems (text: string): string[] {
  const problems: string[] = []
  const all = stages(text)
  if (all.length < 2) problems.push('not multi-stage: build and runtime must be separate stages')
  const first = all[0]
  const final = all.at(-1)
  if (first === undefined || final === undefined) return [...problems, 'no FROM']
  const runs = (s: Stage): string[] => s.instructions.filter(i => i.op === 'RUN').map(i => i.args)
  if (!runs(first).some(r => /\bnpm\s+ci\b/.test(r))) problems.push('the first stage does not run npm ci')
  if (!runs(first).some(r => /\bnpm\s+run\s+build\b|\btsc\b/.test(r))) problems.push('the first stage does not build')

  if (!NODE24_RUNTIME.test(final.base)) problems.push(`final base ${final.base} is not a slim or distroless Node 24 image`)
  for (const s of all.slice(0, -1)) if (!NODE24_BUILD.test(s.base)) problems.push(`stage ${s.name ?? s.index} builds on ${s.base}, not Node 24`)

  // Who the final stage runs as: its last USER, else the base image's default (root for node:*,
  // 65532 for distroless :nonroot).
  const users = final.instructions.filter(i => i.op === 'USER').map(i => i.args.split(':')[0]!.trim())
  const user = users.at(-1) ?? (/:(?:debug-)?nonroot\b/.test(final.base) ? 'nonroot' : 'root')
  if (user === 'root' || user === '0' || user === '') problems.push(`the final stage runs as root (${users.length === 0 ? 'no USER' : `USER ${user}`})`)

  // Dev dependencies in the final stage: installing everything there, copying node_modules from a
  // stage that installed everything (and did not prune), or copying the whole build context.
  const prodStages = new Set(all.filter(s => runs(s).some(r => INSTALLS_PROD.test(r)) && !runs(s).some(r => INSTALLS_ALL.test(r) && !INSTALLS_PROD.test(r))))
  for (const r of runs(final)) if (INSTALLS_ALL.test(r)) problems.push(`the final stage installs dev dependencies: RUN ${r}`)
  let hasNodeModules = runs(final).some(r => INSTALLS_PROD.test(r))
  for (const ins of final.instructions.filter(i => i.op === 'COPY' || i.op === 'ADD')) {
    const from = /--from=(\S+)/.exec(ins.args)?.[1]
    const paths = ins.args.split(/\s+/).filter(w => !w.startsWith('--'))
    const sources = paths.slice(0, -1)
    if (from === undefined && sources.some(s => s === '.' || s === './' || s === '*')) problems.push(`the final stage copies the whole build context (line ${ins.line})`)
    if (sources.some(s => /(^|\/)node_modules\/?$/.test(s))) {
      const stage = all.find(s => s.name === from || String(s.index) === from)
      if (stage === undefined || !prodStages.has(stage)) problems.push(`node_modules in the final stage come from ${from ?? 'the build context'}, which has dev dependencies`)
      else hasNodeModules = true
    }
  }
  if (!hasNodeModules) problems.push('the final stage has no production node_modules')

  for (const s of all) {
    for (const ins of s.instructions) {
      if ((ins.op === 'COPY' || ins.op === 'ADD') && SECRET_PATH.test(ins.args.replace(/--\S+/g, ''))) problems.push(`line ${ins.line} copies certificates or secrets: ${ins.op} ${ins.args}`)
      if ((ins.op === 'ENV' || ins.op === 'ARG') && SECRET_ENV.test(ins.args)) problems.push(`line ${ins.line} bakes a secret into the image: ${ins.op} ${ins.args}`)
    }
  }
  const entry = final.instructions.filter(i => i.op === 'ENTRYPOINT' || i.op === 'CMD').map(i => i.args).join(' ')
  if (!/dist\/cli\.js/.test(entry)) problems.push('the final stage does not start dist/cli.js')
  return problems
}

/** Entries a .dockerignore must have (Docker's rules: a leading / or trailing / names the same path). */
function dockerignoreMissing (text: string, required: readonly string[]): string[] {
  const entries = new Set(text.split('\n').map(l => l.trim()).filter(l => l !== '' && !l.startsWith('#') && !l.startsWith('!'))
    .map(l => l.replace(/^\/+/, '').replace(/\/+$/, '')))
  const negated = text.split('\n').map(l => l.trim()).filter(l => l.startsWith('!')).map(l => l.slice(1).replace(/^\/+/, '').replace(/\/+$/, ''))
  return required.filter(r => !entries.has(r) || negated.some(n => n === r || n.startsWith(`${r}/`)))
}

t.test('the Dockerfile follows the image rules', async t => {
  t.same(dockerfileProblems(dockerfile), [])
  const all = stages(dockerfile)
  t.ok(all.length >= 2, 'multi-stage')
  t.equal(all.at(-1)!.instructions.filter(i => i.op === 'USER').at(-1)?.args, '65532:65532', 'explicit numeric non-root user, so runAsNonRoot can be verified by the kubelet')
})

t.test('.dockerignore keeps local state and secrets out of the build context', async t => {
  t.same(dockerignoreMissing(dockerignore, ['node_modules', 'certs', '.git', 'test', '.cache']), [])
  t.same(dockerignoreMissing('node_modules\n/certs/\n.git\ntest\n', ['node_modules', 'certs', '.git', 'test', '.cache']), ['.cache'])
  t.same(dockerignoreMissing('node_modules\ncerts\n!certs/tls.key\n', ['certs']), ['certs'], 'a negation re-including certs/ is caught')
})

t.test('each rule can fail', async t => {
  const variant = (from: string | RegExp, to: string): string => {
    const out = dockerfile.replace(from, to)
    t.not(out, dockerfile, `variant applies: ${String(from)}`)
    return out
  }
  const cases: Array<[string, string, RegExp]> = [
    ['runs as root', variant(/^USER .*$/m, 'USER root'), /runs as root \(USER root\)/],
    ['runs as uid 0', variant(/^USER .*$/m, 'USER 0:0'), /runs as root/],
    ['no USER on a root base', variant(/^FROM gcr\.io\/distroless\/\S+/m, 'FROM node:24-slim').replace(/^USER .*$/m, ''), /runs as root \(no USER\)/],
    ['dev dependencies copied from the build stage', variant('COPY --from=prod-deps /app/node_modules', 'COPY --from=build /app/node_modules'), /come from build, which has dev dependencies/],
    ['npm ci in the final stage without --omit=dev', variant(/^(COPY --from=prod-deps .*)$/m, '$1\nRUN npm ci'), /installs dev dependencies/],
    ['the whole context copied into the final stage', variant(/^(COPY package\.json \.\/)$/m, 'COPY . .'), /copies the whole build context/],
    ['a full Node base', variant(/^FROM gcr\.io\/distroless\/\S+/m, 'FROM node:24'), /not a slim or distroless Node 24 image/],
    ['Node 18', variant(/^FROM gcr\.io\/distroless\/\S+/m, 'FROM node:18-slim'), /not a slim or distroless Node 24/],
    ['a Node 20 slim runtime (end of life)', variant(/^FROM gcr\.io\/distroless\/\S+/m, 'FROM node:20-bookworm-slim'), /not a slim or distroless Node 24/],
    ['a distroless Node 20 runtime', variant(/^FROM gcr\.io\/distroless\/\S+/m, 'FROM gcr.io/distroless/nodejs20-debian12:nonroot'), /not a slim or distroless Node 24/],
    ['a distroless Node 22 runtime', variant(/^FROM gcr\.io\/distroless\/\S+/m, 'FROM gcr.io/distroless/nodejs22-debian12:nonroot'), /not a slim or distroless Node 24/],
    ['the build stage on Node 20', variant(/^FROM node:\S+ AS build$/m, 'FROM node:20-bookworm-slim AS build'), /stage build builds on node:20-bookworm-slim, not Node 24/],
    ['the prod-deps stage on Node 22', variant(/^FROM node:\S+ AS prod-deps$/m, 'FROM node:22-bookworm-slim AS prod-deps'), /stage prod-deps builds on node:22-bookworm-slim, not Node 24/],
    ['certificates copied in', variant(/^(COPY examples .*)$/m, '$1\nCOPY certs/ ./certs/'), /copies certificates or secrets/],
    ['a key file copied in', variant(/^(COPY examples .*)$/m, '$1\nCOPY tls.key /app/'), /copies certificates or secrets/],
    ['.npmrc copied in', variant(/^(COPY package\.json package-lock\.json \.\/)$/m, 'COPY package.json package-lock.json .npmrc ./'), /copies certificates or secrets/],
    ['a token in ENV', variant(/^ENV NODE_ENV=production$/m, 'ENV NODE_ENV=production NPM_TOKEN=abc'), /bakes a secret/],
    ['single stage', 'FROM node:24-slim\nWORKDIR /app\nCOPY . .\nRUN npm ci && npm run build\nUSER node\nCMD ["node", "dist/cli.js"]\n', /not multi-stage/],
  ]
  for (const [name, text, expected] of cases) {
    t.match(dockerfileProblems(text).join('\n'), expected, name)
  }
  // Continuation lines are one instruction: `npm ci \` + `--omit=dev` on the next line is production-only.
  const continued = dockerfile.replace('npm ci --omit=dev --ignore-scripts', 'npm ci \\\n    --omit=dev --ignore-scripts')
  t.not(continued, dockerfile)
  t.same(dockerfileProblems(continued), [])
})
