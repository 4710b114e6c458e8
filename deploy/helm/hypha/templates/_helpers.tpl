{{/*
The chart's templates read the plain manifests (files/*.yaml are links to
deploy/*.yaml) and set only what values.yaml controls, so `kubectl apply -k
deploy/` and this chart cannot drift apart: an edit of deploy/ is an edit of
both.
*/}}

{{/*
hypha.objects: the objects of one plain manifest, parsed, as a JSON list
(call with: list $ "files/agent.yaml"). Documents holding only comments are
skipped; a file that is missing or does not parse fails the render.
*/}}
{{- define "hypha.objects" -}}
{{- $root := index . 0 }}
{{- $path := index . 1 }}
{{- $text := $root.Files.Get $path }}
{{- if not $text }}
{{- fail (printf "%s is missing or empty: it must be a link to the plain manifest in deploy/" $path) }}
{{- end }}
{{- $objects := list }}
{{- range $doc := regexSplit "(?m)^---[ \\t]*$" $text -1 }}
{{- $obj := fromYaml $doc }}
{{- if hasKey $obj "Error" }}
{{- fail (printf "%s does not parse: %s" $path $obj.Error) }}
{{- end }}
{{- if $obj.kind }}
{{- $objects = append $objects $obj }}
{{- end }}
{{- end }}
{{- toJson $objects }}
{{- end }}

{{/*
hypha.namespace: puts a namespaced object (one whose manifest names a
namespace) and the ServiceAccounts a binding names into the release's
namespace (call with: list $ $obj; changes $obj).
*/}}
{{- define "hypha.namespace" -}}
{{- $root := index . 0 }}
{{- $obj := index . 1 }}
{{- if hasKey $obj.metadata "namespace" }}
{{- $_ := set $obj.metadata "namespace" $root.Release.Namespace }}
{{- end }}
{{- range $s := $obj.subjects | default list }}
{{- if and (eq $s.kind "ServiceAccount") (hasKey $s "namespace") }}
{{- $_ := set $s "namespace" $root.Release.Namespace }}
{{- end }}
{{- end }}
{{- end }}

{{/* hypha.image: repository:tag, the tag defaulting to the chart's appVersion. */}}
{{- define "hypha.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* hypha.podCIDRs: podCIDR as a JSON list (a single prefix or a list of them). */}}
{{- define "hypha.podCIDRs" -}}
{{- $cidrs := .Values.podCIDR }}
{{- if kindIs "string" $cidrs }}
{{- $cidrs = list $cidrs }}
{{- end }}
{{- toJson $cidrs }}
{{- end }}

{{/* hypha.agentConfig: agent.config with routing.clusterCIDRs from podCIDR, as a dict in JSON. */}}
{{- define "hypha.agentConfig" -}}
{{- $config := deepCopy (.Values.agent.config | default dict) }}
{{- $routing := $config.routing | default dict }}
{{- if hasKey $routing "clusterCIDRs" }}
{{- fail "agent.config.routing.clusterCIDRs: set podCIDR instead (it is both the agent's clusterCIDRs and the operator's pool)" }}
{{- end }}
{{- $_ := set $routing "clusterCIDRs" (include "hypha.podCIDRs" . | fromJsonArray) }}
{{- $_ = set $config "routing" $routing }}
{{- toJson $config }}
{{- end }}

{{/*
hypha.operatorConfig: operator.config with ipam.clusterPool.cidrs from
podCIDR (cluster-pool mode) and leaderElection.namespace defaulting to the
release's namespace, as a dict in JSON.
*/}}
{{- define "hypha.operatorConfig" -}}
{{- $config := deepCopy (.Values.operator.config | default dict) }}
{{- $ipam := $config.ipam | default dict }}
{{- if eq ($ipam.mode | default "") "cluster-pool" }}
{{- $pool := $ipam.clusterPool | default dict }}
{{- if hasKey $pool "cidrs" }}
{{- fail "operator.config.ipam.clusterPool.cidrs: set podCIDR instead (it is both the agent's clusterCIDRs and the operator's pool)" }}
{{- end }}
{{- $_ := set $pool "cidrs" (include "hypha.podCIDRs" . | fromJsonArray) }}
{{- $_ = set $ipam "clusterPool" $pool }}
{{- end }}
{{- $_ := set $config "ipam" $ipam }}
{{- $election := $config.leaderElection | default dict }}
{{- if not $election.namespace }}
{{- $_ = set $election "namespace" .Release.Namespace }}
{{- end }}
{{- $_ = set $config "leaderElection" $election }}
{{- toJson $config }}
{{- end }}

{{/*
hypha.workload: what values set on the pod template of the agent's DaemonSet
or the operator's Deployment (call with: list $ $obj $values $container
$listenPort; changes $obj): the image and its pull policy on every container,
tolerations, and on the main container resources and, when the component's
config names listen.port, the ports of its probes and of a port named
metrics. An empty tolerations or resources value leaves the field out.
*/}}
{{- define "hypha.workload" -}}
{{- $root := index . 0 }}
{{- $obj := index . 1 }}
{{- $values := index . 2 }}
{{- $name := index . 3 }}
{{- $port := index . 4 }}
{{- $pod := $obj.spec.template.spec }}
{{- if $values.tolerations }}
{{- $_ := set $pod "tolerations" $values.tolerations }}
{{- else }}
{{- $_ := unset $pod "tolerations" }}
{{- end }}
{{- $found := false }}
{{- range $c := concat ($pod.initContainers | default list) ($pod.containers | default list) }}
{{- $_ := set $c "image" (include "hypha.image" $root) }}
{{- $_ = set $c "imagePullPolicy" $root.Values.image.pullPolicy }}
{{- if eq $c.name $name }}
{{- $found = true }}
{{- if $values.resources }}
{{- $_ = set $c "resources" $values.resources }}
{{- else }}
{{- $_ = unset $c "resources" }}
{{- end }}
{{- if $port }}
{{- range $probe := list "readinessProbe" "livenessProbe" "startupProbe" }}
{{- $p := index $c $probe }}
{{- if and $p $p.httpGet }}
{{- $_ = set $p.httpGet "port" $port }}
{{- end }}
{{- end }}
{{- range $p := $c.ports | default list }}
{{- if eq $p.name "metrics" }}
{{- $_ = set $p "containerPort" $port }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- if not $found }}
{{- fail (printf "%s %s has no container named %s" $obj.kind $obj.metadata.name $name) }}
{{- end }}
{{- end }}
