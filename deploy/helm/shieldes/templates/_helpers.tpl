{{- define "shieldes.fullname" -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}

{{- define "shieldes.gossipService" -}}
{{- printf "%s-gossip" (include "shieldes.fullname" .) -}}
{{- end -}}

{{- define "shieldes.secretName" -}}
{{- .Values.secrets.existingSecret | default (printf "%s-secrets" (include "shieldes.fullname" .)) -}}
{{- end -}}

{{- define "shieldes.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{- define "shieldes.selectorLabels" -}}
app.kubernetes.io/name: shieldes
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: gateway
{{- end -}}

{{- define "shieldes.labels" -}}
app.kubernetes.io/name: shieldes
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "shieldes.databaseUrl" -}}
- name: SHIELDES_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.database.existingSecret | default (include "shieldes.secretName" .) }}
      key: {{ .Values.database.existingSecretKey | default "SHIELDES_DATABASE_URL" }}
{{- end -}}

{{- define "shieldes.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities: {drop: ["ALL"]}
{{- end -}}

{{- define "shieldes.podSecurity" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
{{- end -}}

{{- define "shieldes.configChecksum" -}}
{{- printf "%s|%s|%s|%s" (toYaml .Values.config) (toYaml .Values.ports) (toYaml .Values.shutdownGrace) (toYaml .Values.secrets) | sha256sum | trunc 16 -}}
{{- end -}}
