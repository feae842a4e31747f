// What the young generation sees of an operation: bytes allocated per call (from the GC
// profiler's heap sizes around each GC), and where they are allocated (the sampling heap profiler,
// keeping samples of objects that were collected since, so short-lived garbage counts too).
import { Session } from 'node:inspector/promises'
import v8 from 'node:v8'

/** Mean bytes allocated per call of `op`, run `n` times. */
export async function allocatedPerCall (n: number, op: () => unknown): Promise<number> {
  const profiler = new v8.GCProfiler()
  const start = v8.getHeapStatistics().used_heap_size
  profiler.start()
  for (let i = 0; i < n; i++) await op()
  const end = v8.getHeapStatistics().used_heap_size
  const { statistics } = profiler.stop()
  let total = 0
  let last = start
  for (const gc of statistics) {
    total += gc.beforeGC.heapStatistics.usedHeapSize - last
    last = gc.afterGC.heapStatistics.usedHeapSize
  }
  return (total + end - last) / n
}

interface ProfileNode { callFrame: { functionName: string; url: string; lineNumber: number }; selfSize: number; children: ProfileNode[] }

/** The functions that allocate most, as [bytes per call, "function file:line"], run `n` times. */
export async function allocationSites (n: number, op: () => unknown, top = 30): Promise<Array<[number, string]>> {
  const session = new Session()
  session.connect()
  try {
    await session.post('HeapProfiler.enable')
    // The two include flags are in the DevTools protocol but not in Node 20's typings.
    await session.post('HeapProfiler.startSampling', { samplingInterval: 256, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true } as { samplingInterval: number })
    for (let i = 0; i < n; i++) await op()
    const { profile } = await session.post('HeapProfiler.stopSampling') as unknown as { profile: { head: ProfileNode } }
    const bySite = new Map<string, number>()
    const walk = (node: ProfileNode): void => {
      const f = node.callFrame
      const site = `${f.functionName === '' ? '(anonymous)' : f.functionName} ${f.url.replace(/^.*\/(node_modules\/|src\/|bench\/)/, '$1')}:${f.lineNumber + 1}`
      if (node.selfSize > 0) bySite.set(site, (bySite.get(site) ?? 0) + node.selfSize)
      for (const c of node.children) walk(c)
    }
    walk(profile.head)
    return [...bySite].map(([site, bytes]): [number, string] => [bytes / n, site]).sort((a, b) => b[0] - a[0]).slice(0, top)
  } finally {
    session.disconnect()
  }
}
