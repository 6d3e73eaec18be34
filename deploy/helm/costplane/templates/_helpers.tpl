{{/* Chart name, cut to the 63 characters of a label value. */}}
{{- define "costplane.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-scoped name; the release name alone when it already holds the chart's. */}}
{{- define "costplane.fullname" -}}
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

{{- define "costplane.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: immutable once installed. */}}
{{- define "costplane.selectorLabels" -}}
app.kubernetes.io/name: {{ include "costplane.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "costplane.labels" -}}
helm.sh/chart: {{ include "costplane.chart" . }}
{{ include "costplane.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: costplane
{{- end }}

{{- define "costplane.clickhouse.fullname" -}}
{{- printf "%s-clickhouse" (include "costplane.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "costplane.clickhouse.selectorLabels" -}}
app.kubernetes.io/name: {{ include "costplane.name" . }}-clickhouse
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "costplane.clickhouse.labels" -}}
helm.sh/chart: {{ include "costplane.chart" . }}
{{ include "costplane.clickhouse.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.clickhouse.image.tag | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: costplane
app.kubernetes.io/component: clickhouse
{{- end }}

{{/* "clickhouse" or "duckdb", from which ClickHouse (if any) is configured. */}}
{{- define "costplane.store" -}}
{{- if and .Values.clickhouse.enabled .Values.externalClickhouse.url }}
{{- fail "set either clickhouse.enabled (bundled) or externalClickhouse.url, not both" }}
{{- end }}
{{- if or .Values.clickhouse.enabled .Values.externalClickhouse.url }}clickhouse{{ else }}duckdb{{ end }}
{{- end }}

{{- define "costplane.secretName" -}}
{{- default (include "costplane.fullname" .) .Values.existingSecret }}
{{- end }}

{{- define "costplane.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The ClickHouse cluster name in effect ("" without cluster mode). */}}
{{- define "costplane.clickhouse.cluster" -}}
{{- if .Values.clickhouse.enabled }}{{ .Values.clickhouse.cluster }}{{ else }}{{ .Values.externalClickhouse.cluster }}{{ end }}
{{- end }}

{{/*
A secret value kept across upgrades: the given value, else the release's
Secret's key if it already exists, else a random one. Generated values are
remembered for the rest of the render, so every template that needs one
(the Secret, the Grafana datasource) gets the same. `helm template` cannot
look up, so there it is random each time.
*/}}
{{- define "costplane.secretValue" -}}
{{- $ctx := index . 0 }}{{ $key := index . 1 }}{{ $given := index . 2 }}
{{- if $given }}
{{- $given }}
{{- else }}
{{- if not (hasKey $ctx.Values "_generated") }}
{{- $_ := set $ctx.Values "_generated" dict }}
{{- end }}
{{- $memo := $ctx.Values._generated }}
{{- if not (hasKey $memo $key) }}
{{- $existing := lookup "v1" "Secret" $ctx.Release.Namespace (include "costplane.secretName" $ctx) }}
{{- if and $existing (hasKey ($existing.data | default dict) $key) }}
{{- $_ := set $memo $key (index $existing.data $key | b64dec) }}
{{- else }}
{{- $_ := set $memo $key (randAlphaNum 40) }}
{{- end }}
{{- end }}
{{- index $memo $key }}
{{- end }}
{{- end }}

{{/*
costplane.toml from a two-level dict: top-level scalars first, then one
table per section. Strings are written as JSON strings, which TOML reads
as basic strings; numbers and booleans as they are.
*/}}
{{- define "costplane.toml" -}}
{{- range $k, $v := . }}
{{- if not (kindIs "map" $v) }}
{{ $k }} = {{ include "costplane.tomlValue" $v }}
{{- end }}
{{- end }}
{{- range $section, $table := . }}
{{- if kindIs "map" $table }}

[{{ $section }}]
{{- range $k, $v := $table }}
{{ $k }} = {{ include "costplane.tomlValue" $v }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{- define "costplane.tomlValue" -}}
{{- if kindIs "string" . }}{{ toJson . }}
{{- else if kindIs "bool" . }}{{ . }}
{{- else if or (kindIs "float64" .) (kindIs "int" .) (kindIs "int64" .) }}{{ int64 . }}
{{- else }}{{ fail (printf "costplane.toml: unsupported value %v" .) }}
{{- end }}
{{- end }}
