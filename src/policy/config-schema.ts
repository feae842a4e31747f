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
        selection: {
          description: 'optIn: only namespaces labelled enabled or audit are reviewed. all: every namespace but the excluded ones and those labelled disabled (enabled means the default mode, audit still means audit).',
          enum: ['optIn', 'all'],
          default: 'optIn',
        },
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
    registry: {
      description: 'Registry access, used by pinning and the pull-readiness checks alike.',
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        hosts: {
          ...globList,
          description: 'The only registries pullpin contacts (kubelet host-glob rules). Images elsewhere are left as they are, with no warning (a metric counts them).',
          default: [],
        },
        allowPrivate: {
          ...globList,
          description: 'Registries allowed to resolve to loopback, link-local or private addresses.',
          default: [],
        },
        lookupBudgetMs: {
          description: 'Registry lookup budget: the registry lookups of one review (pinning and checks) give up after this, and the pod is admitted with what the cache knows (never denied for it). Must fit in the review deadline (--review-deadline-ms) with a 500 ms margin, after cluster.copyCreateBudgetMs when copies are made at admission.',
          type: 'integer',
          minimum: 50,
          maximum: 30000,
          default: 2000,
        },
        credentials: {
          type: 'object',
          additionalProperties: false,
          default: {},
          properties: {
            dockerConfigFiles: {
              description: 'dockerconfigjson files with registry credentials for lookups (standalone; in a cluster the pull-secret sources are used).',
              type: 'array',
              items: { type: 'string', minLength: 1 },
              default: [],
            },
          },
        },
        options: {
          description: 'Per-registry transport settings, keyed by registry host[:port].',
          type: 'object',
          default: {},
          additionalProperties: {
            type: 'object',
            additionalProperties: false,
            properties: {
              caFile: { description: 'PEM file with the CA of a registry behind a private CA.', type: 'string', minLength: 1 },
              timeoutMs: { type: 'integer', minimum: 50, maximum: 60000 },
              retries: { type: 'integer', minimum: 0, maximum: 10 },
              maxConcurrency: { type: 'integer', minimum: 1, maximum: 256 },
              tokenRealmHosts: { ...globList, description: 'Extra hosts allowed as the Bearer token realm.' },
            },
          },
        },
        cache: {
          type: 'object',
          additionalProperties: false,
          default: {},
          properties: {
            ttlSeconds: { description: 'How long a tag → digest answer is fresh.', type: 'integer', minimum: 1, default: 60 },
            staleWhileRevalidateSeconds: { description: 'After the TTL, serve the old digest this long while refreshing in the background.', type: 'integer', minimum: 0, default: 30 },
            staleIfErrorSeconds: { description: 'When the registry fails, keep serving the last known digest (marked stale) this long.', type: 'integer', minimum: 0, default: 3600 },
            negativeTtlSeconds: { description: 'How long "tag not found" (and a refused pull credential) is remembered.', type: 'integer', minimum: 0, default: 10 },
            maxEntries: { description: 'LRU bound on cached tags.', type: 'integer', minimum: 1, default: 10000 },
            maxRepositories: { description: 'LRU bound on repositories with a SHA-tag index.', type: 'integer', minimum: 1, default: 1000 },
            tagListMinIntervalSeconds: { description: 'At most one tag-list refresh per repository this often.', type: 'integer', minimum: 0, default: 10 },
            activeSeconds: { description: 'Images looked up within this long are kept fresh by background refreshes (jittered); others are only looked up again when a pod names them.', type: 'integer', minimum: 0, default: 600 },
            ownerPins: { description: 'Pins remembered per rollout revision (a ReplicaSet\'s pod-template-hash, a StatefulSet\'s or DaemonSet\'s controller-revision-hash, a Job) so its pods share one pin; the revision used least recently is forgotten first.', type: 'integer', minimum: 0, default: 10000 },
            maxImmutableEntries: { description: 'LRU bound on answers that never change (manifests and config blobs by digest, verified SHA tags, pull-access answers per credential), kept without expiry.', type: 'integer', minimum: 1, default: 10000 },
          },
        },
      },
    },
    checks: {
      description: 'Pull-readiness checks of every image on registry.hosts (README "Checks").',
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        exists: {
          description: 'A tag, SHA tag or digest the registry says does not exist: warn, deny the pod (only on a definite "not found", never on a timeout), or off.',
          // false: a bare `off` as YAML 1.1 readers (Helm) read it; normalised to 'off'.
          enum: ['warn', 'deny', 'off', false],
          default: 'warn',
        },
        pullAccess: {
          description: 'Warn when the credential the pod will use (the pull secret pullpin injects) is refused by the registry, or when an image needs credentials and no pull secret matches it.',
          enum: ['warn', 'off', false],
          default: 'warn',
        },
        platforms: {
          description: 'Warn when an image has no build for the os/architecture of the nodes the pod can land on.',
          enum: ['warn', 'off', false],
          default: 'warn',
        },
        nodePlatforms: {
          description: 'The nodes\' platforms (os/architecture[/variant]) when no cluster is connected; with a cluster they are read from the Nodes.',
          type: 'array',
          items: { type: 'string', pattern: '^[a-z0-9]+/[a-z0-9_]+(/[a-z0-9]+)?$' },
          uniqueItems: true,
          default: ['linux/amd64'],
        },
      },
    },
    pinning: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        enabled: {
          description: 'Rewrite unpinned image tags (:latest, :main, no tag) to the SHA tag (or digest) of the same image.',
          type: 'boolean',
          default: false,
        },
        format: {
          description: 'tag: repo:SHA; digest: repo@sha256:…; tag+digest: repo:SHA@sha256:….',
          enum: ['tag', 'digest', 'tag+digest'],
          default: 'tag',
        },
        shaTagPatterns: {
          description: 'Tags that are immutable git-SHA tags (regular expressions). An image whose tag matches one is already pinned.',
          type: 'array',
          items: { type: 'string', minLength: 1 },
          minItems: 1,
          default: ['^[0-9a-f]{40}$', '^sha-[0-9a-f]{7,40}$'],
        },
        shaTagTemplates: {
          description: 'How CI names the SHA tag of a commit: {revision} is the commit an image names in org.opencontainers.image.revision, {revision:N} its first N characters. A moved tag is pinned by asking for these tags first (a few requests) before listing the repository. Each must give tags that shaTagPatterns match (checked at start). [] turns this off.',
          type: 'array',
          items: { type: 'string', minLength: 1 },
          uniqueItems: true,
          default: ['{revision}', 'sha-{revision:7}'],
        },
        skipImages: {
          ...globList,
          description: 'Images never pinned, as globs over the normalized name (docker.io/library/nginx) with * and ?.',
          default: [],
        },
        warmup: {
          ...globList,
          description: 'Repositories (registry/repository) whose SHA-tag index is built at start.',
          default: [],
        },
      },
    },
    limits: {
      description: 'Bounds on the work one review may cause, whatever the pod says (README, "Hostile input").',
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        maxImagesPerReview: {
          description: 'More distinct images than this in one pod: the pod is admitted unchanged with a warning (denied when failOpen is false).',
          type: 'integer',
          minimum: 1,
          default: 1000,
        },
        indexHeadsPerRepository: {
          description: 'At most this many SHA tags are HEADed by one build or refresh of a repository\'s SHA-tag index; the next refresh goes on from there.',
          type: 'integer',
          minimum: 1,
          default: 1000,
        },
        indexHeadsPerReview: {
          description: 'At most this many SHA-tag HEADs are started on behalf of one review, over all its repositories.',
          type: 'integer',
          minimum: 1,
          default: 2000,
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
          source: {
            description: 'Where the credentials come from: a kubernetes.io/dockerconfigjson Secret (namespace, name) that pullpin copies under `name` into every opted-in namespace; or `ecr` / `exec`, credentials pullpin fetches itself and keeps fresh, written into those copies (with a cluster) and used for its own registry lookups.',
            oneOf: [
              {
                type: 'object',
                additionalProperties: false,
                required: ['namespace', 'name'],
                properties: {
                  namespace: { type: 'string', pattern: '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$', maxLength: 63 },
                  name: { type: 'string', pattern: '^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$', maxLength: 253 },
                },
              },
              {
                type: 'object',
                additionalProperties: false,
                required: ['ecr'],
                properties: {
                  ecr: {
                    description: 'Amazon ECR: GetAuthorizationToken with the AWS SDK\'s default credential chain (IRSA web identity, EKS Pod Identity, environment).',
                    type: 'object',
                    additionalProperties: false,
                    required: ['region'],
                    properties: {
                      region: { type: 'string', pattern: '^[a-z0-9-]+$', maxLength: 64 },
                      registryIds: { description: 'AWS account IDs of the registries (default: the caller\'s account).', type: 'array', items: { type: 'string', pattern: '^[0-9]{12}$' }, uniqueItems: true },
                      endpoint: { description: 'ECR API endpoint override (VPC endpoint, FIPS).', type: 'string', pattern: '^https?://' },
                    },
                  },
                },
              },
              {
                type: 'object',
                additionalProperties: false,
                required: ['exec'],
                properties: {
                  exec: {
                    description: 'A kubelet credential provider plugin (credentialprovider.kubelet.k8s.io/v1), run by pullpin.',
                    type: 'object',
                    additionalProperties: false,
                    required: ['command'],
                    properties: {
                      command: { description: 'Absolute path of the plugin binary.', type: 'string', pattern: '^/' },
                      args: { type: 'array', items: { type: 'string' } },
                      env: { description: 'Extra environment of the plugin (added to pullpin\'s).', type: 'object', additionalProperties: { type: 'string' } },
                      images: { description: 'Images the plugin is asked about (one request each). Default: the entry\'s `registries` without wildcards.', type: 'array', items: { type: 'string', minLength: 1 }, minItems: 1, uniqueItems: true },
                      timeoutSeconds: { description: 'A plugin run that takes longer is killed and counts as a failure (default 30).', type: 'number', exclusiveMinimum: 0, maximum: 600 },
                      defaultCacheDurationSeconds: { description: 'Lifetime of an answer without cacheDuration (default 300), as the kubelet\'s defaultCacheDuration.', type: 'number', exclusiveMinimum: 0 },
                    },
                  },
                },
              },
            ],
          },
        },
      },
    },
    injection: {
      description: 'Where the pull secrets go: pod (pod.spec.imagePullSecrets at admission), serviceaccount (the ServiceAccounts listed in serviceAccounts, kept in sync; needs a cluster), or both.',
      enum: ['pod', 'serviceaccount', 'both'],
      default: 'pod',
    },
    serviceAccounts: {
      ...globList,
      items: { type: 'string', pattern: '^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$', maxLength: 253 },
      description: 'ServiceAccounts of opted-in namespaces that get the pull secrets in serviceaccount/both injection modes.',
      default: ['default'],
    },
    reports: {
      description: 'Where findings go besides admission warnings (README, "Where findings appear"). Used only with a cluster connection.',
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        events: {
          description: 'An events.k8s.io/v1 Event on the controlling owner (ReplicaSet, StatefulSet, DaemonSet, Job) of a pod with findings, aggregated into one series per owner and reason. Needs create/patch on events.',
          type: 'boolean',
          default: true,
        },
        eventsPerSecond: { description: 'Event writes (creates and series patches) per second, all namespaces together.', type: 'number', exclusiveMinimum: 0, maximum: 1000, default: 5 },
        eventBurst: { description: 'Event writes allowed at once before eventsPerSecond applies.', type: 'integer', minimum: 1, maximum: 10000, default: 25 },
        policyReports: {
          description: 'One wgpolicyk8s.io/v1alpha2 PolicyReport per opted-in namespace, named pullpin, with a result per workload and finding; written by the leader, only when the PolicyReport CRD is installed. Needs RBAC on policyreports.',
          type: 'boolean',
          default: false,
        },
        policyReportDelaySeconds: { description: 'PolicyReport writes wait this long after a change, so a rollout makes one write per namespace.', type: 'number', minimum: 0, maximum: 3600, default: 10 },
      },
    },
    cluster: {
      description: 'Settings used only when pullpin is connected to a cluster (in-cluster or --kubeconfig).',
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        copyCreateBudgetMs: {
          description: 'Copy creation budget: how long the first pod of a freshly labelled namespace waits for its pull-secret copy to be created; past it the secret is injected with a warning. Runs before the registry lookups, so both must fit in the review deadline.',
          type: 'integer',
          minimum: 100,
          maximum: 30000,
          default: 1500,
        },
        resyncSeconds: {
          description: 'Full reconcile of every namespace this often, on top of the watch events.',
          type: 'number',
          minimum: 1,
          default: 300,
        },
        leaderElection: {
          type: 'object',
          additionalProperties: false,
          default: {},
          properties: {
            leaseName: { description: 'coordination.k8s.io/v1 Lease in pullpin\'s namespace; its holder reconciles copies.', type: 'string', minLength: 1, maxLength: 253, default: 'pullpin-leader' },
            leaseDurationSeconds: { description: 'How long a non-leader waits after the last renewal it saw before taking over.', type: 'integer', minimum: 1, default: 15 },
            renewDeadlineSeconds: { description: 'The leader steps down when it could not renew for this long (must be below leaseDurationSeconds).', type: 'number', exclusiveMinimum: 0, default: 10 },
            retryPeriodSeconds: { description: 'How often the Lease is renewed or tried.', type: 'number', exclusiveMinimum: 0, default: 2 },
          },
        },
        certificateSecret: {
          description: 'Secret in pullpin\'s namespace that holds the self-managed CA and serving certificate (without --tls-cert/--tls-key).',
          type: 'string',
          minLength: 1,
          maxLength: 253,
          default: 'pullpin-tls',
        },
        certificateValidityDays: { description: 'Validity of a self-managed serving certificate (the CA lives 10 times longer).', type: 'number', exclusiveMinimum: 0, default: 365 },
        renewBeforeDays: { description: 'Renew a self-managed serving certificate this long before it expires.', type: 'number', exclusiveMinimum: 0, default: 30 },
        webhookConfigurationName: {
          description: 'pullpin\'s MutatingWebhookConfiguration, whose caBundle the leader keeps equal to the serving CA. Empty: never patched.',
          type: 'string',
          maxLength: 253,
          default: 'pullpin',
        },
        validatingWebhookConfigurationName: {
          description: 'pullpin\'s ValidatingWebhookConfiguration (the workload webhook), whose caBundle the leader keeps equal to the serving CA too. Empty: never patched.',
          type: 'string',
          maxLength: 253,
          default: '',
        },
        placeholderSecrets: {
          description: 'Fill Carvel secretgen placeholder Secrets (annotated secretgen.carvel.dev/image-pull-secret) in opted-in namespaces. Needs list/watch/update on Secrets cluster-wide.',
          type: 'boolean',
          default: false,
        },
      },
    },
  },
} as const
