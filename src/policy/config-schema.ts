// The JSON Schema of pullpin's config file. It is the single source of truth: the server
// validates with it (ajv, defaults filled in), and the Helm chart's values.schema.json embeds it
// for `.Values.config` (scripts/gen-chart-schema.ts), so the chart and the server cannot drift.

const globList = {
  type: 'array',
  items: { type: 'string', minLength: 1 },
  uniqueItems: true,
} as const

export const configSchema = {
  $id: 'https://pullpin.io/schemas/config.json',
  title: 'pullpin configuration',
  type: 'object',
  additionalProperties: false,
  properties: {
    mode: {
      description: 'Default mode for opted-in namespaces (label value "enabled").',
      enum: ['enforce', 'audit'],
      default: 'enforce',
    },
    failOpen: {
      description: 'On an internal error: allow the pod unchanged with a warning (true) or deny it (false).',
      type: 'boolean',
      default: true,
    },
    namespaces: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        optInLabel: {
          description: 'Namespace label read for opt-in: enabled | audit | disabled.',
          type: 'string',
          pattern: '^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$',
          default: 'pullpin.io/inject',
        },
        exclude: {
          ...globList,
          description: 'Namespaces never mutated (globs with * and ?). The webhook\'s own namespace is always excluded.',
          default: ['kube-system', 'kube-public', 'kube-node-lease'],
        },
        labels: {
          description: 'Static namespace labels, used when no cluster is connected.',
          type: 'object',
          default: {},
          additionalProperties: { type: 'object', additionalProperties: { type: 'string' } },
        },
      },
    },
    pullSecrets: {
      type: 'array',
      default: [],
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['name'],
        properties: {
          name: {
            description: 'Secret name put in pod.spec.imagePullSecrets.',
            type: 'string',
            // RFC 1123 DNS subdomain, as Secret names must be.
            pattern: '^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$',
            maxLength: 253,
          },
          registries: {
            ...globList,
            description: 'Inject only when an image is on one of these registries (kubelet host-glob rules). Omitted: every pod.',
          },
        },
      },
    },
  },
} as const
