// The one catalog of pullpin's coded errors (the fastify model: every error a caller may
// branch on has a stable `code`; messages are printf-style and say what to do next).
// @fastify/error is fastify's own helper for exactly this, so we use it rather than a
// home-grown Error subclass hierarchy.
import createError from '@fastify/error'

export type CodedError = Error & { code: string; statusCode?: number }

export function isCodedError (err: unknown, code?: string): err is CodedError {
  return err instanceof Error && typeof (err as { code?: unknown }).code === 'string' &&
    (code === undefined || (err as unknown as { code: string }).code === code)
}

// ---- configuration (exit code 2 at start) ----
export const ERR_CONFIG_READ = createError('PULLPIN_CONFIG_READ', 'cannot read config file %s: %s', 500)
export const ERR_CONFIG_INVALID = createError('PULLPIN_CONFIG_INVALID', 'invalid config %s: %s', 500)

// ---- admission review input (HTTP 4xx) ----
export const ERR_REVIEW_MALFORMED = createError('PULLPIN_REVIEW_MALFORMED', 'malformed AdmissionReview: %s', 400)
export const ERR_BODY_TOO_LARGE = createError('PULLPIN_BODY_TOO_LARGE', 'request body over %s bytes', 413)
export const ERR_UNSUPPORTED_MEDIA_TYPE = createError('PULLPIN_UNSUPPORTED_MEDIA_TYPE', 'content-type %s is not supported: send application/json', 415)
export const ERR_REQUEST_INVALID = createError('PULLPIN_REQUEST_INVALID', 'invalid request: %s', 400)

// ---- image references (issue 3: src/reference) ----
export const ERR_REFERENCE_INVALID = createError('PULLPIN_REFERENCE_INVALID', 'invalid image reference %s: %s', 400)

// ---- registry access (issue 3: src/registry) ----
export const ERR_REGISTRY_NOT_ALLOWED = createError('PULLPIN_REGISTRY_NOT_ALLOWED', 'registry %s is not on registry.hosts', 403)
export const ERR_REGISTRY_PRIVATE_ADDRESS = createError('PULLPIN_REGISTRY_PRIVATE_ADDRESS', 'registry %s resolves to %s (%s); list it in registry.allowPrivate to allow it', 403)
export const ERR_REGISTRY_REALM_REFUSED = createError('PULLPIN_REGISTRY_REALM_REFUSED', 'token realm %s refused for registry %s: %s', 502)
export const ERR_REGISTRY_UNAUTHORIZED = createError('PULLPIN_REGISTRY_UNAUTHORIZED', 'registry %s answered %s for %s: check the pull credentials', 502)
export const ERR_REGISTRY_NOT_FOUND = createError('PULLPIN_REGISTRY_NOT_FOUND', '%s not found on %s', 404)
export const ERR_REGISTRY_UNAVAILABLE = createError('PULLPIN_REGISTRY_UNAVAILABLE', 'registry %s unavailable: %s', 502)
export const ERR_REGISTRY_TIMEOUT = createError('PULLPIN_REGISTRY_TIMEOUT', 'registry %s did not answer within %s ms', 504)
export const ERR_REGISTRY_BAD_RESPONSE = createError('PULLPIN_REGISTRY_BAD_RESPONSE', 'registry %s sent a bad response: %s', 502)
export const ERR_DIGEST_MISMATCH = createError('PULLPIN_DIGEST_MISMATCH', 'registry %s: manifest digest %s does not match its content (%s)', 502)

// ---- cluster (issue 4: src/cluster) ----
// A kubeconfig that cannot be read or used: a configuration error (exit code 2), like the config file.
export const ERR_CONFIG_KUBECONFIG = createError('PULLPIN_CONFIG_KUBECONFIG', 'cannot use kubeconfig %s: %s', 500)
export const ERR_CLUSTER_UNAVAILABLE = createError('PULLPIN_CLUSTER_UNAVAILABLE', 'Kubernetes API unavailable: %s', 503)

// ---- credential sources (issue 17: src/credentials) ----
export const ERR_CREDENTIAL_SOURCE = createError('PULLPIN_CREDENTIAL_SOURCE', 'credential source %s: %s', 502)

// ---- certificates ----
export const ERR_TLS_FILES = createError('PULLPIN_TLS_FILES', 'cannot load TLS certificate/key: %s', 500)
