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

{{- define "bakery.agent.fullname" -}}
{{- printf "%s-agent" (include "bakery.fullname" .) }}
{{- end }}

{{- define "bakery.collector.fullname" -}}
{{- printf "%s-collector" (include "bakery.fullname" .) }}
{{- end }}

{{/* The Secret that holds the agents' bearer token (key "token"). */}}
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

{{/* repository:tag, or repository@digest when a digest is set. */}}
{{- define "bakery.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
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

{{/* Where the OTLP backend's CA and client certificate are mounted. */}}
{{- define "bakery.otlpTlsDir" -}}/etc/bakery/otlp-tls{{- end }}
