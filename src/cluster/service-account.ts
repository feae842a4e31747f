// Where the kubelet mounts a pod's service account credentials (token, ca.crt, namespace). Kept
// apart from connection.ts so that src/cli.ts can detect "running in a pod" without loading
// @kubernetes/client-node.
export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount'
