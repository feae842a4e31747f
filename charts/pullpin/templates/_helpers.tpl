{{/* Chart name, truncated to 63 characters (label values and DNS-1123 labels). */}}
{{- define "pullpin.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release-chart, or the release name when it already contains the chart name. */}}
{{- define "pullpin.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "pullpin.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The recommended app.kubernetes.io labels, on every object. */}}
{{- define "pullpin.labels" -}}
helm.sh/chart: {{ include "pullpin.chart" . }}
{{ include "pullpin.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: pullpin
{{- end }}

{{- define "pullpin.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pullpin.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "pullpin.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "pullpin.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "pullpin.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{- define "pullpin.tlsSecretName" -}}
{{- default (printf "%s-tls" (include "pullpin.fullname" .)) .Values.certs.secretName }}
{{- end }}

{{- define "pullpin.webhookConfigurationName" -}}
{{- default (include "pullpin.fullname" .) .Values.webhook.configurationName }}
{{- end }}

{{/* Names of the cert-manager objects (cert-manager mode). */}}
{{- define "pullpin.certificateName" -}}
{{- printf "%s-serving" (include "pullpin.fullname" .) }}
{{- end }}

{{/*
pullpin answers within its deadline, and the API server gives up after timeoutSeconds: keep 500 ms
between the two for the network and the API server's own work, so a late answer is pullpin's
fail-open/deny decision rather than the API server's failurePolicy.
*/}}
{{- define "pullpin.reviewDeadlineMs" -}}
{{- max 100 (sub (mul .Values.webhook.timeoutSeconds 1000) 500) }}
{{- end }}

{{- define "pullpin.optInLabel" -}}
{{- $ns := .Values.config.namespaces | default dict }}
{{- $ns.optInLabel | default "pullpin.io/inject" }}
{{- end }}

{{/*
Namespaces the API server never sends: the release namespace (pullpin must not depend on itself to
start its own pods), kube-system, the extra ones from values, and the literal names (no glob) of
config.namespaces.exclude — pullpin skips those anyway, this saves the round trip. Globs stay with
pullpin: label selectors have no wildcard.
*/}}
{{- define "pullpin.excludedNamespaces" -}}
{{- $names := list .Release.Namespace "kube-system" }}
{{- $names = concat $names .Values.webhook.excludeNamespaces }}
{{- $ns := .Values.config.namespaces | default dict }}
{{- $exclude := $ns.exclude | default (list "kube-system" "kube-public" "kube-node-lease") }}
{{- range $exclude }}
{{- if not (regexMatch "[*?]" .) }}
{{- $names = append $names . }}
{{- end }}
{{- end }}
{{- toJson (uniq $names) }}
{{- end }}

{{/* Fail early on combinations the schema cannot express. */}}
{{- define "pullpin.validate" -}}
{{- if and (eq .Values.certs.mode "provided") (not .Values.certs.secretName) }}
{{- fail "certs.mode=provided needs certs.secretName: an existing kubernetes.io/tls Secret in the release namespace" }}
{{- end }}
{{- if and (eq .Values.certs.mode "provided") (not .Values.certs.caBundle) (not (hasKey .Values.webhook.annotations "cert-manager.io/inject-ca-from-secret")) }}
{{- fail "certs.mode=provided needs certs.caBundle (base64 PEM of the CA), or a cert-manager.io/inject-ca-from-secret annotation in webhook.annotations" }}
{{- end }}
{{- /* The server's start-time budget check (src/policy/budgets.ts), here so helm refuses it first:
copy creation (cluster mode, pod injection, a source) then registry lookups, + 500 ms, must fit the
review deadline derived from webhook.timeoutSeconds. */}}
{{- $config := .Values.config | default dict }}
{{- $pinning := $config.pinning | default dict }}
{{- $registry := $config.registry | default dict }}
{{- $checks := $config.checks | default dict }}
{{- $cluster := $config.cluster | default dict }}
{{- $lookup := 0 }}
{{- /* usesRegistry (src/policy/config.ts): hosts to contact, and pinning or a check that contacts them. */}}
{{- /* A bare `off` in values is read as false by Helm's YAML 1.1: both mean off. */}}
{{- $checking := false }}
{{- range $k := list "exists" "pullAccess" "platforms" }}
{{- $v := toString (hasKey $checks $k | ternary (index $checks $k) "warn") }}
{{- if not (has $v (list "off" "false")) }}{{ $checking = true }}{{ end }}
{{- end }}
{{- if and ($registry.hosts | default list) (or $pinning.enabled $checking) }}{{ $lookup = int (hasKey $registry "lookupBudgetMs" | ternary $registry.lookupBudgetMs 2000) }}{{ end }}
{{- $copy := 0 }}
{{- if ne ($config.injection | default "pod") "serviceaccount" }}
{{- range ($config.pullSecrets | default list) }}
{{- if .source }}{{ $copy = int (hasKey $cluster "copyCreateBudgetMs" | ternary $cluster.copyCreateBudgetMs 1500) }}{{ end }}
{{- end }}
{{- end }}
{{- $reviewMs := include "pullpin.reviewDeadlineMs" . | int }}
{{- if gt (add $lookup $copy 500) $reviewMs }}
{{- fail (printf "webhook.timeoutSeconds %d gives a review deadline of %d ms, too short for config.cluster.copyCreateBudgetMs (%d ms, 0 when no copy is made at admission) + config.registry.lookupBudgetMs (%d ms, 0 when no registry is contacted) + a 500 ms margin: raise webhook.timeoutSeconds or lower the budgets" (int .Values.webhook.timeoutSeconds) $reviewMs $copy $lookup) }}
{{- end }}
{{- $deadlineSeconds := div (add (include "pullpin.reviewDeadlineMs" . | int) 999) 1000 }}
{{- $drainSeconds := add .Values.shutdown.preStopSleepSeconds (div (add .Values.shutdown.delayMs 999) 1000) $deadlineSeconds }}
{{- if lt (int .Values.shutdown.terminationGracePeriodSeconds) (int $drainSeconds) }}
{{- fail (printf "shutdown.terminationGracePeriodSeconds (%d) must cover preStopSleepSeconds + delayMs + the review deadline (%d s), or in-flight reviews are cut" (int .Values.shutdown.terminationGracePeriodSeconds) (int $drainSeconds)) }}
{{- end }}
{{- end }}

{{/*
The config the server gets: .Values.config, plus the names only the chart knows, unless set there:
cluster.webhookConfigurationName (self-managed certificates: the leader keeps this webhook's caBundle
equal to its CA; otherwise "" so pullpin never touches a caBundle cert-manager or you manage),
cluster.certificateSecret (the Secret holding the self-managed CA and certificate) and the leader
election Lease (one per release, so two releases in one namespace do not share a leader).
*/}}
{{- define "pullpin.effectiveConfig" -}}
{{- $config := deepCopy (.Values.config | default dict) }}
{{- $cluster := deepCopy ($config.cluster | default dict) }}
{{- $selfManaged := eq .Values.certs.mode "self-managed" }}
{{- if not (hasKey $cluster "webhookConfigurationName") }}
{{- $_ := set $cluster "webhookConfigurationName" (ternary (include "pullpin.webhookConfigurationName" .) "" $selfManaged) }}
{{- end }}
{{- if not (hasKey $cluster "validatingWebhookConfigurationName") }}
{{- $_ := set $cluster "validatingWebhookConfigurationName" (ternary (include "pullpin.webhookConfigurationName" .) "" (and $selfManaged .Values.webhook.workloads.enabled)) }}
{{- end }}
{{- if and $selfManaged (not (hasKey $cluster "certificateSecret")) }}
{{- $_ := set $cluster "certificateSecret" (include "pullpin.tlsSecretName" .) }}
{{- end }}
{{- $election := deepCopy ($cluster.leaderElection | default dict) }}
{{- if not (hasKey $election "leaseName") }}
{{- $_ := set $election "leaseName" (printf "%s-leader" (include "pullpin.fullname" .)) }}
{{- end }}
{{- $_ := set $cluster "leaderElection" $election }}
{{- $_ := set $config "cluster" $cluster }}
{{- toYaml $config }}
{{- end }}

{{/*
The label matchers that select this release's series in the PrometheusRule: by default the labels
prometheus-operator gives the targets of this chart's ServiceMonitor (job = the Service's name,
namespace = the Service's namespace).
*/}}
{{- define "pullpin.monitoringSelector" -}}
{{- .Values.monitoring.selector | default (printf "job=%q,namespace=%q" (include "pullpin.fullname" .) .Release.Namespace) }}
{{- end }}
