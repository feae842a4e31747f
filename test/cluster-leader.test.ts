// Leader election on a coordination.k8s.io/v1 Lease: two replicas on one API server never both
// lead, a graceful stop hands over at once, a partitioned leader steps down before anyone else
// takes over, and only the leader reconciles copies.
import t from 'tap'
import { CoordinationV1Api, CoreV1Api, KubeConfig, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node'
import { startFakeApiServer, type FakeApiServer } from './support/fake-apiserver.js'
import { LogCapture } from './support/pullpin.js'
import { LeaderElector } from '../src/cluster/leader-election.js'
import { connectCluster, createClusterIntegration } from '../src/cluster/index.js'
import { parseConfig } from '../src/policy/config.js'
import { createLogger } from '../src/server/logger.js'
import { until } from './support/until.js'

// A renewal may be late by a stalled event loop on a loaded CI machine; the renew deadline leaves
// room for a few of those, so a slow machine does not make the leader step down on its own. The
// lease is much longer than the renew deadline, so "stepped down at the renew deadline" and "held
// on until the lease ran out" stay apart even with seconds of slack for a slow machine.
const TIMING = { leaseDurationMs: 4000, renewDeadlineMs: 1000, retryPeriodMs: 100 }
/** Timers fire late, and the elector counts in Date.now() while the test reads performance.now(). */
const CLOCK_SLACK_MS = 5

/**
 * A separate client per replica (as separate processes would have), whose network can be cut.
 * `lastRenewSent` is when the attempt whose lease write the API server accepted began (its read).
 */
function replicaClient (s: FakeApiServer): { api: CoordinationV1Api; cut: (v: boolean) => void; lastRenewSent: () => number } {
  const kc = new KubeConfig()
  kc.loadFromString(s.kubeconfigYaml())
  const real = kc.makeApiClient(CoordinationV1Api)
  let cut = false
  let lastRenewSent = 0
  let attemptStarted = 0
  const api = new Proxy(real, {
    get (target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver)
      if (typeof v !== 'function') return v
      return (...args: unknown[]) => {
        if (cut) return Promise.reject(Object.assign(new Error('connect ECONNREFUSED (partitioned)'), { code: 'ECONNREFUSED' }))
        // An attempt starts with its read; the elector times its renew deadline from there.
        if (prop === 'readNamespacedLease') attemptStarted = performance.now()
        const sent = attemptStarted
        const result = v.apply(target, args)
        if (prop !== 'replaceNamespacedLease' && prop !== 'createNamespacedLease') return result
        return (result as Promise<unknown>).then(r => { lastRenewSent = sent; return r })
      }
    },
  })
  return { api, cut: (v) => { cut = v }, lastRenewSent: () => lastRenewSent }
}

interface Span { id: string; from: number; to: number }

t.test('two replicas never both lead: handover on stop and on a partitioned leader', async (t) => {
  const s = await startFakeApiServer({ namespaces: ['default', 'pullpin'] })
  t.teardown(() => s.stop())
  const logs = new LogCapture()
  const logger = createLogger({ level: 'debug', destination: logs })
  const spans: Span[] = []
  const open = new Map<string, number>()
  const elector = (id: string, api: CoordinationV1Api): LeaderElector => new LeaderElector({
    coordination: api,
    namespace: 'pullpin',
    leaseName: 'pullpin-leader',
    identity: id,
    ...TIMING,
    logger,
    onStartedLeading: () => { open.set(id, performance.now()) },
    onStoppedLeading: () => { spans.push({ id, from: open.get(id) ?? 0, to: performance.now() }); open.delete(id) },
  })
  const ca = replicaClient(s)
  const cb = replicaClient(s)
  const cc = replicaClient(s)
  const a = elector('replica-a', ca.api)
  const b = elector('replica-b', cb.api)
  const c = elector('replica-c', cc.api)
  // Sample both flags all along: at no instant may two replicas believe they lead.
  let bothSamples = 0
  let samples = 0
  const all = [a, b, c]
  const sampler = setInterval(() => {
    samples++
    if (all.filter(e => e.isLeader()).length > 1) bothSamples++
  }, 1)
  t.teardown(() => clearInterval(sampler))

  a.start()
  await until('a leads', () => a.isLeader())
  b.start()
  c.start()
  await new Promise(resolve => setTimeout(resolve, TIMING.leaseDurationMs + 500)) // a keeps renewing, nobody takes over
  t.ok(a.isLeader(), 'the first replica keeps the lease while it renews')
  t.notOk(b.isLeader() || c.isLeader())
  const lease = () => s.get({ group: 'coordination.k8s.io', resource: 'leases', namespace: 'pullpin', name: 'pullpin-leader' })
  t.equal(lease().spec.holderIdentity, 'replica-a')
  t.equal(lease().spec.leaseDurationSeconds, 4)
  t.match(lease().spec.renewTime, /\.\d{6}Z$/, 'MicroTime with six fractional digits')

  // Graceful stop: the lease is released, another replica takes over without waiting it out.
  let started = performance.now()
  await a.stop()
  await until('handover', () => b.isLeader() || c.isLeader())
  const handover = performance.now() - started
  t.comment(`graceful handover: ${handover.toFixed(0)} ms (lease duration ${TIMING.leaseDurationMs} ms)`)
  t.ok(handover < TIMING.leaseDurationMs, 'released lease taken at once')
  const [leader, leaderClient, other] = b.isLeader() ? [b, cb, c] as const : [c, cc, b] as const
  t.equal(lease().spec.leaseTransitions, 1)

  // The leader loses the API server (its requests fail): it must step down within renewDeadline,
  // and the other may only take over once leaseDuration has passed since it last saw a renewal.
  // Both are timed from the leader's last renewal that landed: that is what the other replica saw.
  started = performance.now()
  leaderClient.cut(true)
  await until('old leader stepped down', () => !leader.isLeader(), 10_000)
  const stepDownAt = performance.now()
  // Read after the step-down: a renewal in flight at the cut may still have landed.
  const lastRenewal = leaderClient.lastRenewSent()
  await until('takeover', () => other.isLeader(), 15_000)
  const takeoverAt = performance.now()
  t.comment(`partitioned leader stepped down ${(stepDownAt - lastRenewal).toFixed(0)} ms after its last renewal (${(stepDownAt - started).toFixed(0)} ms after the cut); ` +
    `takeover ${(takeoverAt - lastRenewal).toFixed(0)} ms after it`)
  t.ok(lastRenewal > 0 && lastRenewal <= stepDownAt, 'the leader had renewed before it was cut off')
  t.ok(stepDownAt < takeoverAt, 'the old leader stepped down before anyone took over')
  t.ok(stepDownAt - lastRenewal >= TIMING.renewDeadlineMs - CLOCK_SLACK_MS, 'not before renewDeadline')
  t.ok(stepDownAt - lastRenewal < TIMING.leaseDurationMs - 1000, 'at renewDeadline, well before the lease could run out')
  t.ok(takeoverAt - lastRenewal >= TIMING.leaseDurationMs - CLOCK_SLACK_MS, 'nobody took over before the lease could have expired')
  leaderClient.cut(false)
  await new Promise(resolve => setTimeout(resolve, 500))
  t.notOk(leader.isLeader(), 'the old leader does not grab it back while it is renewed')

  await b.stop()
  await c.stop()
  clearInterval(sampler)
  // A 1 ms interval fires every 1–3 ms depending on load; this only checks the sampler ran throughout.
  t.ok(samples > 500, `sampled ${samples} times`)
  t.equal(bothSamples, 0, 'never two leaders at the same sample')
  for (const [x, y] of spans.flatMap((p, i) => spans.slice(i + 1).map(q => [p, q] as const))) {
    t.ok(x.to <= y.from || y.to <= x.from, `leadership spans of ${x.id} and ${y.id} do not overlap`)
  }
  t.ok(spans.length >= 2, 'leadership changed hands')
})

t.test('a lease held by a live holder is not taken; an expired one is, counting the transition', async (t) => {
  const s = await startFakeApiServer({ namespaces: ['default', 'pullpin'] })
  t.teardown(() => s.stop())
  const logger = createLogger({ level: 'silent' })
  const now = (): string => new Date().toISOString().replace(/\.(\d{3})Z$/, '.$1000Z')
  // The holder's lease says how long to wait it out, whatever this replica's own duration is.
  const holderSeconds = 1
  s.seed({ apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name: 'pullpin-leader', namespace: 'pullpin' }, spec: { holderIdentity: 'gone-replica', leaseDurationSeconds: holderSeconds, renewTime: now(), acquireTime: now(), leaseTransitions: 4 } })
  let led = 0
  const e = new LeaderElector({ coordination: replicaClient(s).api, namespace: 'pullpin', leaseName: 'pullpin-leader', identity: 'new', ...TIMING, logger, onStartedLeading: () => { led = performance.now() }, onStoppedLeading: () => {} })
  const started = performance.now()
  e.start()
  t.teardown(() => e.stop())
  await until('acquired', () => e.isLeader())
  t.ok(led - started >= holderSeconds * 1000 - 50, `waited out the holder's lease (${(led - started).toFixed(0)} ms)`)
  t.ok(led - started < TIMING.leaseDurationMs, 'the holder\'s lease, not this replica\'s own longer one')
  const lease = s.get({ group: 'coordination.k8s.io', resource: 'leases', namespace: 'pullpin', name: 'pullpin-leader' })
  t.equal(lease.spec.holderIdentity, 'new')
  t.equal(lease.spec.leaseTransitions, 5)
})

t.test('two pullpin replicas: only the leader reconciles; the other takes over when it stops', async (t) => {
  const s = await startFakeApiServer({ namespaces: ['default', 'pullpin', 'team-a', 'team-b'] })
  t.teardown(() => s.stop())
  const dc = Buffer.from(JSON.stringify({ auths: { 'ghcr.io': { auth: Buffer.from('bot:pw').toString('base64') } } })).toString('base64')
  s.seed({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'ghcr-source', namespace: 'pullpin' }, type: 'kubernetes.io/dockerconfigjson', data: { '.dockerconfigjson': dc } })
  const config = parseConfig('pullSecrets: [{name: ghcr-credentials, source: {namespace: pullpin, name: ghcr-source}}]')
  const replica = (id: string) => {
    const logs = new LogCapture()
    const kc = new KubeConfig()
    kc.loadFromString(s.kubeconfigYaml())
    const integration = createClusterIntegration({
      connection: connectCluster({ kubeConfig: kc }),
      config,
      ownNamespace: 'pullpin',
      identity: id,
      logger: createLogger({ level: 'debug', destination: logs }),
      backoff: { initialMs: 20, maxMs: 200 },
      leaderElection: TIMING,
    })
    return { integration, logs }
  }
  const r1 = replica('replica-1')
  const r2 = replica('replica-2')
  t.teardown(async () => { await r1.integration.stop(); await r2.integration.stop() })
  r1.integration.start()
  await until('r1 leads', () => r1.integration.isLeader())
  r2.integration.start()
  await r2.integration.waitForSync()

  const core = s.kubeConfig().makeApiClient(CoreV1Api)
  const label = (ns: string): Promise<unknown> => core.patchNamespace({ name: ns, body: { metadata: { labels: { 'pullpin.io/inject': 'enabled' } } } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch))
  await label('team-a')
  await until('copy in team-a', () => s.get({ resource: 'secrets', namespace: 'team-a', name: 'ghcr-credentials' }) !== undefined)
  await r1.integration.idle()
  const creates = (logs: LogCapture): number => logs.records.filter(r => r.msg === 'pull-secret copy created').length
  t.equal(creates(r1.logs), 1, 'the leader reconciled')
  t.equal(creates(r2.logs), 0, 'the other replica did not')
  t.notOk(r2.integration.isLeader())

  await r1.integration.stop()
  await until('r2 leads', () => r2.integration.isLeader())
  await label('team-b')
  await until('copy in team-b', () => s.get({ resource: 'secrets', namespace: 'team-b', name: 'ghcr-credentials' }) !== undefined)
  await r2.integration.idle()
  t.equal(creates(r2.logs), 1, 'the new leader reconciles')
  t.equal(s.list('secrets').filter(x => x.metadata.name === 'ghcr-credentials').length, 2, 'one copy per opted-in namespace, none twice')
})
