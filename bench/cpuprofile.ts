// Reads a V8 .cpuprofile (node --cpu-prof) and tells where the time went: self time per function,
// and inclusive time (the function and everything it called) per function, in % of all samples.
import { readFileSync } from 'node:fs'

interface ProfileNode {
  id: number
  callFrame: { functionName: string; url: string; lineNumber: number }
  hitCount?: number
  children?: number[]
}

interface Profile { nodes: ProfileNode[]; startTime: number; endTime: number }

export interface FunctionTime {
  readonly fn: string
  readonly selfPct: number
  readonly totalPct: number
}

export interface ProfileSummary {
  readonly durationMs: number
  readonly samples: number
  /** % of samples in (idle) and (garbage collector). */
  readonly idlePct: number
  readonly gcPct: number
  readonly functions: FunctionTime[]
}

function label (node: ProfileNode, root: string): string {
  const { functionName, url, lineNumber } = node.callFrame
  const file = url.replace(/^file:\/\//, '').replace(root, '')
  return `${functionName === '' ? '(anonymous)' : functionName} ${file === '' ? '' : `${file}:${lineNumber + 1}`}`.trim()
}

/** `root` is cut from file paths to keep them short (e.g. the repository's directory + '/'). */
export function summarize (file: string, root: string): ProfileSummary {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile
  const byId = new Map(profile.nodes.map(n => [n.id, n]))
  const parent = new Map<number, number>()
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id)
  const self = new Map<string, number>()
  const total = new Map<string, number>()
  let samples = 0
  let idle = 0
  let gc = 0
  for (const n of profile.nodes) {
    const hits = n.hitCount ?? 0
    if (hits === 0) continue
    samples += hits
    const name = label(n, root)
    if (n.callFrame.functionName === '(idle)') idle += hits
    if (n.callFrame.functionName === '(garbage collector)') gc += hits
    self.set(name, (self.get(name) ?? 0) + hits)
    // Inclusive: each distinct function on the stack gets the hits once (recursion counted once).
    const seen = new Set<string>()
    for (let id: number | undefined = n.id; id !== undefined; id = parent.get(id)) {
      const fn = label(byId.get(id)!, root)
      if (seen.has(fn)) continue
      seen.add(fn)
      total.set(fn, (total.get(fn) ?? 0) + hits)
    }
  }
  const pct = (x: number): number => Math.round((x / Math.max(1, samples)) * 1000) / 10
  const functions = [...total.keys()].map(fn => ({ fn, selfPct: pct(self.get(fn) ?? 0), totalPct: pct(total.get(fn) ?? 0) }))
  return { durationMs: (profile.endTime - profile.startTime) / 1000, samples, idlePct: pct(idle), gcPct: pct(gc), functions }
}

/** Where the self time went, by owner: pullpin's code, each npm package, Node.js itself, native code, GC, idle. */
export function byOwner (s: ProfileSummary): Array<{ owner: string; selfPct: number }> {
  const owners = new Map<string, number>()
  for (const f of s.functions) {
    if (f.selfPct === 0) continue
    const file = f.fn.slice(f.fn.lastIndexOf(' ') + 1)
    let owner: string
    if (f.fn.startsWith('(idle)')) owner = '(idle)'
    else if (f.fn.startsWith('(garbage collector)')) owner = '(garbage collector)'
    else if (/node_modules\//.test(file)) owner = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(file)![1]!
    else if (file.includes('.cache/bench/dist/') || file.startsWith('src/')) owner = 'pullpin'
    else if (file.startsWith('node:')) owner = 'node.js (JavaScript)'
    else owner = 'native (syscalls, TLS, V8 builtins)'
    owners.set(owner, (owners.get(owner) ?? 0) + f.selfPct)
  }
  return [...owners].map(([owner, selfPct]) => ({ owner, selfPct: Math.round(selfPct * 10) / 10 })).sort((a, b) => b.selfPct - a.selfPct)
}
