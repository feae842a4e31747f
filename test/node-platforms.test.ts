// The platform check's view of the cluster (issue 13): the Nodes' kubernetes.io/os and
// kubernetes.io/arch labels, through a real informer against the in-test API server.
import t from 'tap'
import { startFakeApiServer } from './support/fake-apiserver.js'
import { connectCluster } from '../src/cluster/connection.js'
import { NodePlatforms, nodeInformer } from '../src/cluster/node-platforms.js'
import { createLogger } from '../src/server/logger.js'
import { until } from './support/until.js'

const node = (name: string, arch: string, extra: Record<string, string> = {}) => ({
  apiVersion: 'v1',
  kind: 'Node',
  metadata: { name, labels: { 'kubernetes.io/os': 'linux', 'kubernetes.io/arch': arch, 'node.kubernetes.io/instance-type': 'm7g.large', ...extra } },
  status: { images: [{ names: ['ghcr.io/acme/web:v1'], sizeBytes: 1 }], nodeInfo: { architecture: arch } },
})

t.test('the distinct platforms of the Nodes, kept up to date; only two labels kept per Node', async t => {
  const s = await startFakeApiServer()
  t.teardown(() => s.stop())
  s.seed(node('a', 'amd64'))
  s.seed(node('b', 'amd64'))
  const informer = nodeInformer(connectCluster({ kubeConfig: s.kubeConfig() }), { logger: createLogger({ level: 'silent' }) })
  t.teardown(() => informer.stop())
  const platforms = new NodePlatforms(informer, [{ os: 'linux', architecture: 's390x' }])
  t.same(platforms.platforms(), [{ os: 'linux', architecture: 's390x' }], 'checks.nodePlatforms until the Nodes are listed')
  informer.start()
  await informer.waitForSync()
  t.same(platforms.platforms(), [{ os: 'linux', architecture: 'amd64' }])
  t.same(informer.get('a'), { metadata: { name: 'a', resourceVersion: informer.get('a')!.metadata!.resourceVersion, labels: { 'kubernetes.io/os': 'linux', 'kubernetes.io/arch': 'amd64' } } }, 'status and other labels are dropped')
  await s.waitForWatches('nodes')
  s.seed(node('c', 'arm64'))
  await until('the arm64 node is seen', () => platforms.platforms().length === 2)
  t.same(platforms.platforms().map(p => p.architecture).sort(), ['amd64', 'arm64'])
})
