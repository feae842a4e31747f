// The cluster integration's public surface: the only module family that uses
// @kubernetes/client-node. src/app.ts and src/cli.ts see these functions and plain data.
export { connectCluster, type ClusterConnection, type ClusterConnectOptions } from './connection.js'
export { createClusterIntegration, type ClusterIntegration, type ClusterIntegrationOptions, type CredentialSink } from './integration.js'
export { SecretCertificateSource, type SecretCertificateOptions } from './tls-secret-source.js'
export type { ClusterMetrics } from './metrics.js'
export { createAdmittedPinsReader } from './admitted-pins.js'
export { clusterReads, type ClusterReads, type EventFacts, type PodFacts } from './doctor-reads.js'
