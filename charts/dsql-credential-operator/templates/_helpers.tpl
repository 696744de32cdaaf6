{{/*
Chart name, truncated to the 63 characters a label value allows.
*/}}
{{- define "dsql-credential-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name: <release>-<chart>, or <release> when it already contains the chart
name. Truncated to 63 characters (DNS label limit).
*/}}
{{- define "dsql-credential-operator.fullname" -}}
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

{{/*
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "dsql-credential-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels on every resource.
*/}}
{{- define "dsql-credential-operator.labels" -}}
helm.sh/chart: {{ include "dsql-credential-operator.chart" . }}
{{ include "dsql-credential-operator.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: dsql-credential-operator
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Selector labels (stable across upgrades: never add to these).
*/}}
{{- define "dsql-credential-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dsql-credential-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
ServiceAccount name. EKS Pod Identity associations target <release namespace>/<this name>.
*/}}
{{- define "dsql-credential-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "dsql-credential-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Container image reference: repository:tag (tag defaults to appVersion), plus @digest when set.
*/}}
{{- define "dsql-credential-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- with .Values.image.digest }}@{{ . }}{{ end }}
{{- end }}

{{/*
Name of the leader-election Lease (and of its Role).
*/}}
{{- define "dsql-credential-operator.leaseName" -}}
{{- include "dsql-credential-operator.fullname" . }}
{{- end }}

{{/*
Cross-value checks the schema cannot express clearly; fail early with a message that says
what to change.
*/}}
{{- define "dsql-credential-operator.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.leaderElection.enabled) }}
{{- fail "replicaCount > 1 requires leaderElection.enabled=true: without it every replica would rotate the same secrets" }}
{{- end }}
{{- if and .Values.podDisruptionBudget.enabled (not (kindIs "invalid" .Values.podDisruptionBudget.minAvailable)) (not (kindIs "invalid" .Values.podDisruptionBudget.maxUnavailable)) }}
{{- fail "podDisruptionBudget: set minAvailable or maxUnavailable, not both" }}
{{- end }}
{{- end }}

{{/*
The access policy file the operator reads (--access-policy).
*/}}
{{- define "dsql-credential-operator.accessPolicy" -}}
{{ toYaml (dict "rules" .Values.accessPolicy.rules) }}
{{- end }}
