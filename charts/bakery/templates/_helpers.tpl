{{/*
Names, labels and the small computed values that several templates share.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "bakery.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The prefix of every resource name: fullnameOverride, else <release>-<chart>,
else the release name alone when it already contains the chart name.
Truncated so that the longest suffix ("-collector-data") still fits in 63.
*/}}
{{- define "bakery.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 48 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 48 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 48 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "bakery.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "bakery.labels" -}}
helm.sh/chart: {{ include "bakery.chart" . }}
app.kubernetes.io/name: {{ include "bakery.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: bakery
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels; call with (dict "root" $ "component" "agent"). */}}
{{- define "bakery.selectorLabels" -}}
app.kubernetes.io/name: {{ include "bakery.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* All labels of a component's objects; same argument as selectorLabels. */}}
{{- define "bakery.componentLabels" -}}
{{ include "bakery.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
A component's pod labels: its selector labels, then commonLabels and the
component's podLabels (podLabels win over commonLabels). Call with (dict "root"
$ "component" "agent" "podLabels" .Values.agent.podLabels).
*/}}
{{- define "bakery.podLabels" -}}
{{ include "bakery.selectorLabels" . }}
{{- with merge (dict) (.podLabels | default dict) (.root.Values.commonLabels | default dict) }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
The ServiceAccount each component runs as: serviceAccount.name, else
<fullname>-<component> when the chart creates it, else the namespace's
"default". The agents' projected tokens are accepted for this account only, so
with serviceAccountToken credentials the agent never falls back to "default"
(every pod of the namespace that mounts no other account runs as it).
*/}}
{{- define "bakery.agent.serviceAccountName" -}}
{{- $account := .Values.agent.serviceAccount }}
{{- if $account.create }}
{{- default (include "bakery.agent.fullname" .) $account.name }}
{{- else if $account.name }}
{{- $account.name }}
{{- else if include "bakery.serviceAccountToken" . }}
{{- fail "agent.serviceAccount.create is false: set agent.serviceAccount.name. The collector accepts the projected tokens of that one account (auth.agentCredential serviceAccountToken), and the namespace's default account is every other pod's too" }}
{{- else }}
{{- print "default" }}
{{- end }}
{{- end }}

{{- define "bakery.collector.serviceAccountName" -}}
{{- $account := .Values.collector.serviceAccount }}
{{- if $account.create }}
{{- default (include "bakery.collector.fullname" .) $account.name }}
{{- else }}
{{- default "default" $account.name }}
{{- end }}
{{- end }}

{{- define "bakery.agent.fullname" -}}
{{- printf "%s-agent" (include "bakery.fullname" .) }}
{{- end }}

{{- define "bakery.collector.fullname" -}}
{{- printf "%s-collector" (include "bakery.fullname" .) }}
{{- end }}

{{/*
"true" when the agents share one token from a Secret (auth.agentCredential:
sharedToken), which does not bind a node; "" with their projected
ServiceAccount tokens or without auth.
*/}}
{{- define "bakery.sharedToken" -}}
{{- if and (not .Values.auth.insecureNoAuth) (eq .Values.auth.agentCredential "sharedToken") }}true{{- end }}
{{- end }}

{{/* "true" when the agents present projected ServiceAccount tokens, reviewed by the collector. */}}
{{- define "bakery.serviceAccountToken" -}}
{{- if and (not .Values.auth.insecureNoAuth) (eq .Values.auth.agentCredential "serviceAccountToken") }}true{{- end }}
{{- end }}

{{/* The Secrets of the people's tokens (key "token"): read, and control. */}}
{{- define "bakery.readTokenSecretName" -}}
{{- default (printf "%s-read-token" (include "bakery.fullname" .)) .Values.auth.readToken.existingSecret }}
{{- end }}

{{- define "bakery.controlTokenSecretName" -}}
{{- default (printf "%s-control-token" (include "bakery.fullname" .)) .Values.auth.controlToken.existingSecret }}
{{- end }}

{{/*
Where the collector's TLS certificate comes from: "secret" (tls.secretName),
"certManager" (cert-manager Certificates) or "generated" (a CA made by the
chart). certificateSource auto picks cert-manager when the cluster serves
cert-manager.io/v1 (helm template cannot ask, so it generates there).
*/}}
{{- define "bakery.tlsSource" -}}
{{- if .Values.tls.secretName }}secret
{{- else if eq .Values.tls.certificateSource "certManager" }}certManager
{{- else if eq .Values.tls.certificateSource "generated" }}generated
{{- else if .Capabilities.APIVersions.Has "cert-manager.io/v1" }}certManager
{{- else }}generated
{{- end }}
{{- end }}

{{/* The kubernetes.io/tls Secret (tls.crt, tls.key, ca.crt) the collector serves. */}}
{{- define "bakery.tlsSecretName" -}}
{{- default (printf "%s-tls" (include "bakery.fullname" .)) .Values.tls.secretName }}
{{- end }}

{{/*
The DNS names the collector's certificate holds: the Service in every form a
client in the cluster may use, and localhost for `kubectl port-forward`.
*/}}
{{- define "bakery.tlsDnsNames" -}}
{{- $service := include "bakery.collector.fullname" . }}
{{- $ns := .Release.Namespace }}
{{- list $service (printf "%s.%s" $service $ns) (printf "%s.%s.svc" $service $ns) (printf "%s.%s.svc.cluster.local" $service $ns) "localhost" | toJson }}
{{- end }}

{{/* The Secret that holds the agents' shared bearer token (key "token"). */}}
{{- define "bakery.tokenSecretName" -}}
{{- if .Values.auth.existingSecret }}
{{- .Values.auth.existingSecret }}
{{- else }}
{{- printf "%s-token" (include "bakery.fullname" .) }}
{{- end }}
{{- end }}

{{/* The Secret that holds OTEL_EXPORTER_OTLP_HEADERS, or "" when there is none. */}}
{{- define "bakery.otlpHeadersSecretName" -}}
{{- if .Values.collector.otlp.existingSecret }}
{{- .Values.collector.otlp.existingSecret }}
{{- else if .Values.collector.otlp.headers }}
{{- printf "%s-otlp" (include "bakery.fullname" .) }}
{{- end }}
{{- end }}

{{- define "bakery.otlpHeadersSecretKey" -}}
{{- if .Values.collector.otlp.existingSecret }}
{{- .Values.collector.otlp.existingSecretKey }}
{{- else }}
{{- print "headers" }}
{{- end }}
{{- end }}

{{/*
registry/repository of an image: its own registry, else global.imageRegistry,
else the default one. A repository whose first part names a registry host (a
dot or a colon in it, or "localhost", as Docker reads references) is used as
it is. Call with (dict "root" $ "image" .Values.image "defaultRegistry" "ghcr.io").
*/}}
{{- define "bakery.imageRepository" -}}
{{- $repository := .image.repository }}
{{- $first := first (splitList "/" $repository) }}
{{- if and (contains "/" $repository) (or (contains "." $first) (contains ":" $first) (eq $first "localhost")) }}
{{- $repository }}
{{- else }}
{{- $registry := .image.registry | default ((.root.Values.global).imageRegistry) | default .defaultRegistry }}
{{- printf "%s/%s" (trimSuffix "/" $registry) $repository }}
{{- end }}
{{- end }}

{{/* The bakery image: registry/repository:tag, or @digest when a digest is set. */}}
{{- define "bakery.image" -}}
{{- $repository := include "bakery.imageRepository" (dict "root" . "image" .Values.image "defaultRegistry" "ghcr.io") }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" $repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The `helm test` pod's image. */}}
{{- define "bakery.testImage" -}}
{{- $repository := include "bakery.imageRepository" (dict "root" . "image" .Values.tests.image "defaultRegistry" "docker.io") }}
{{- printf "%s:%s" $repository .Values.tests.image.tag }}
{{- end }}

{{/*
Every pod's imagePullSecrets: global.imagePullSecrets (names or {name: ...})
then imagePullSecrets, each name once; nothing when there is none.
*/}}
{{- define "bakery.imagePullSecrets" -}}
{{- $names := list }}
{{- range concat ((.Values.global).imagePullSecrets | default list) (.Values.imagePullSecrets | default list) }}
{{- if kindIs "map" . }}
{{- $names = append $names .name }}
{{- else }}
{{- $names = append $names . }}
{{- end }}
{{- end }}
{{- if $names }}
imagePullSecrets:
{{- range uniq $names }}
  - name: {{ . | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/*
A securityContext: the values' map with `extra` set over it (keys whose value
is null are dropped, as Helm drops them when merging values). Call with (dict
"base" .Values.agent.containerSecurityContext "extra" (dict ...)).
*/}}
{{- define "bakery.securityContext" -}}
{{- $context := dict }}
{{- range $key, $value := .base }}
{{- if not (kindIs "invalid" $value) }}
{{- $_ := set $context $key $value }}
{{- end }}
{{- end }}
{{- range $key, $value := (.extra | default dict) }}
{{- $_ := set $context $key $value }}
{{- end }}
{{- toYaml $context }}
{{- end }}

{{/* The collector's in-cluster DNS name (resolvable from hostNetwork pods with
dnsPolicy ClusterFirstWithHostNet). */}}
{{- define "bakery.collector.host" -}}
{{- printf "%s.%s.svc" (include "bakery.collector.fullname" .) .Release.Namespace }}
{{- end }}

{{/* The URL the agents dial. */}}
{{- define "bakery.collector.url" -}}
{{- printf "%s://%s:%d" (ternary "https" "http" .Values.tls.enabled) (include "bakery.collector.host" .) (int .Values.collector.port) }}
{{- end }}

{{/* Where the token and TLS files are mounted, in both pods. */}}
{{- define "bakery.tokenDir" -}}/etc/bakery/token{{- end }}
{{- define "bakery.tlsDir" -}}/etc/bakery/tls{{- end }}
{{/* The agents' projected ServiceAccount token; the collector's people's tokens. */}}
{{- define "bakery.agentTokenDir" -}}/var/run/secrets/bakery{{- end }}
{{- define "bakery.readTokenDir" -}}/etc/bakery/read-token{{- end }}
{{- define "bakery.controlTokenDir" -}}/etc/bakery/control-token{{- end }}

{{/* Where the OTLP backend's CA and client certificate are mounted. */}}
{{- define "bakery.otlpTlsDir" -}}/etc/bakery/otlp-tls{{- end }}
