"""The Helm chart renders (with the Go-template subset in tests/helm_template.py, helm being absent
here), agrees with the code (env names are Settings fields, ports are the defaults, probes hit the
served /ready and /health, the command is a real CLI command, drains fit in the grace period), and
the plain manifests in deploy/k8s are what the chart renders for release `shieldes`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helm_template import Chart, TemplateError, parse
from tests.integration.test_deploy_manifests import (
    DEFAULTS,
    FOREIGN_ENVS,
    K8S,
    ROOT,
    SETTING_ENVS,
    assert_cli_command,
    k8s_docs,
    served_paths,
)

CHART = Chart(ROOT / "deploy" / "helm" / "shieldes")
REQUIRED = {
    "database": {"url": "postgresql://shieldes:pw@db.example.com:5432/shieldes"},
    "secrets": {"clusterSecret": "c" * 32, "encryptionKey": "e" * 32, "adminToken": "a" * 32},
}


def render(extra: dict[str, Any] | None = None, **kw: Any) -> list[dict[str, Any]]:
    values = yaml.safe_load(yaml.safe_dump(REQUIRED))
    for key, value in (extra or {}).items():
        values[key] = {**values.get(key, {}), **value} if isinstance(value, dict) else value
    return CHART.manifests(values, **kw)


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"{kind} {name}: {len(found)} rendered"
    return found[0]


def container(doc: dict[str, Any]) -> dict[str, Any]:
    c: dict[str, Any] = doc["spec"]["template"]["spec"]["containers"][0]
    return c


def test_renderer_follows_go_template_semantics() -> None:
    chart = Chart.__new__(Chart)
    chart.defines, chart.files = {}, {}
    chart.funcs = CHART.funcs
    data = {"Values": {"a": 0, "b": [1, 2], "m": {"y": 2, "x": 1}, "s": ""}}

    def run(src: str) -> str:
        return chart._run(parse(src), data, {"$": data})

    assert run("x\n  {{- if .Values.a }}A{{ else if .Values.b }}B{{ else }}C{{ end -}}\n  y") == "xBy"
    assert run("{{ range $i, $v := .Values.b }}{{ $i }}={{ $v }};{{ end }}") == "0=1;1=2;"
    assert run("{{ range $k, $v := .Values.m }}{{ $k }}{{ $v }}{{ end }}") == "x1y2"  # maps in key order
    assert run('{{ .Values.s | default "d" | quote }} {{ .Values.missing }}|') == '"d" |'
    assert run('{{ $n := printf "%s-%s" "a" "b" }}{{ $n }}{{ with .Values.m }}{{ .x }}{{ end }}') == "a-b1"
    with pytest.raises(TemplateError, match="outside the supported subset"):
        run("{{ lookup \"v1\" }}")


def test_required_values_are_named() -> None:
    with pytest.raises(TemplateError, match=r"database\.url"):
        CHART.manifests({"secrets": REQUIRED["secrets"]})
    with pytest.raises(TemplateError, match=r"secrets\.clusterSecret"):
        CHART.manifests({"database": REQUIRED["database"]})


def test_migration_hook_runs_before_nodes_with_its_secret() -> None:
    docs = render()
    job, secret = one(docs, "Job"), one(docs, "Secret")
    assert container(job)["command"] == ["alembic", "upgrade", "head"]
    hooks = job["metadata"]["annotations"]
    assert set(hooks["helm.sh/hook"].split(",")) == {"pre-install", "pre-upgrade"}
    # the Secret the Job reads must exist first: it is a hook too, with a lower weight
    assert set(secret["metadata"]["annotations"]["helm.sh/hook"].split(",")) == {"pre-install", "pre-upgrade"}
    assert int(secret["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(hooks["helm.sh/hook-weight"])
    ref = container(job)["env"][0]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": secret["metadata"]["name"], "key": "SHIELDES_DATABASE_URL"}
    assert secret["stringData"]["SHIELDES_DATABASE_URL"] == REQUIRED["database"]["url"]


def test_env_ports_probes_and_command_match_the_code() -> None:
    docs = render({"gossipTLS": {"enabled": True, "secretName": "gossip-tls"},
                   "secrets": {"providerKeys": {"OPENAI_API_KEY": "sk-x"}}})
    sts = one(docs, "StatefulSet")
    c = container(sts)
    names = {e["name"] for e in c["env"]} | set(one(docs, "ConfigMap")["data"]) | set(one(docs, "Secret")["stringData"])
    assert {n for n in names if n.startswith("SHIELDES_")} <= SETTING_ENVS
    assert names - SETTING_ENVS <= FOREIGN_ENVS
    assert {"SHIELDES_GOSSIP_TLS_CERT", "SHIELDES_GOSSIP_TLS_KEY", "SHIELDES_GOSSIP_TLS_CA"} <= names
    config = one(docs, "ConfigMap")["data"]
    assert int(config["SHIELDES_PORT"]) == DEFAULTS.port and int(config["SHIELDES_GOSSIP_PORT"]) == DEFAULTS.gossip_port
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"http": DEFAULTS.port, "gossip": DEFAULTS.gossip_port}
    assert {"/ready", "/health"} <= served_paths()
    assert c["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert_cli_command(c["command"])
    env = {e["name"]: e for e in c["env"]}
    assert env["SHIELDES_NODE_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert env["SHIELDES_GOSSIP_TLS_CA"]["value"].startswith(mounts["gossip-tls"])
    assert "SHIELDES_TLS_CERT" not in names and "scheme" not in c["readinessProbe"]["httpGet"]
    peers = config["SHIELDES_PEERS"].split(",")
    assert peers == [f"shieldes-{i}.shieldes-gossip.default.svc.cluster.local:7946" for i in range(3)]


def test_https_on_the_api_port_mounts_the_secret_and_probes_over_https() -> None:
    c = container(one(render({"tls": {"enabled": True, "secretName": "api-tls"}}), "StatefulSet"))
    env = {e["name"]: e["value"] for e in c["env"] if "value" in e}
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert env["SHIELDES_TLS_CERT"] == mounts["tls"] + "/tls.crt"
    assert env["SHIELDES_TLS_KEY"] == mounts["tls"] + "/tls.key"
    sts = one(render({"tls": {"enabled": True, "secretName": "api-tls"}}), "StatefulSet")
    volumes = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == "api-tls"
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert c[probe]["httpGet"]["scheme"] == "HTTPS", probe
    with pytest.raises(TemplateError, match=r"set tls\.secretName"):
        render({"tls": {"enabled": True}})


def test_cluster_shape_services_pdb_and_drain() -> None:
    docs = render({"replicas": 5, "antiAffinity": "hard", "preStopSleep": 15, "shutdownGrace": 40,
                   "terminationGracePeriodSeconds": 70})
    sts = one(docs, "StatefulSet")
    assert sts["spec"]["replicas"] == 5
    pod = sts["spec"]["template"]["spec"]
    selector = sts["spec"]["selector"]["matchLabels"]
    assert selector.items() <= sts["spec"]["template"]["metadata"]["labels"].items()
    hard = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]
    assert hard["labelSelector"]["matchLabels"] == selector
    gossip = one(docs, "Service", "shieldes-gossip")["spec"]
    assert gossip["clusterIP"] == "None" and gossip["publishNotReadyAddresses"] is True
    assert sts["spec"]["serviceName"] == "shieldes-gossip"
    http = one(docs, "Service", "shieldes")["spec"]
    assert http["selector"] == selector and http["ports"][0]["targetPort"] == "http"
    assert "publishNotReadyAddresses" not in http  # client traffic follows readiness
    assert one(docs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"] == selector
    pre_stop = container(sts)["lifecycle"]["preStop"]["exec"]["command"]
    grace = float(one(docs, "ConfigMap")["data"]["SHIELDES_SHUTDOWN_GRACE"])
    assert pre_stop == ["sleep", "15"] and grace == 40
    assert pod["terminationGracePeriodSeconds"] > float(pre_stop[1]) + grace
    # readiness notices a draining node within the preStop sleep, before SIGTERM
    probe = container(sts)["readinessProbe"]
    assert probe["periodSeconds"] * probe["failureThreshold"] < float(pre_stop[1])


def test_external_secrets_and_database() -> None:
    docs = CHART.manifests({"secrets": {"existingSecret": "vault-shieldes"},
                            "database": {"existingSecret": "pg-app", "existingSecretKey": "uri"}})
    assert not [d for d in docs if d["kind"] == "Secret"]
    c = container(one(docs, "StatefulSet"))
    assert {"secretRef": {"name": "vault-shieldes"}} in c["envFrom"]
    url = next(e for e in c["env"] if e["name"] == "SHIELDES_DATABASE_URL")
    assert url["valueFrom"]["secretKeyRef"] == {"name": "pg-app", "key": "uri"}
    assert container(one(docs, "Job"))["env"][0] == url


def _comparable(doc: dict[str, Any]) -> tuple[tuple[str, str], Any]:
    """The part of a manifest that must agree between the chart and deploy/k8s."""
    key = (doc["kind"], doc["metadata"]["name"])
    if doc["kind"] == "Secret":
        return key, sorted(doc["stringData"])
    if doc["kind"] == "ConfigMap":
        return key, doc["data"]
    if doc["kind"] == "Job":
        return ("Job", "migrate"), doc["spec"]["template"]
    spec = yaml.safe_load(yaml.safe_dump(doc["spec"]))
    if doc["kind"] == "StatefulSet":
        spec["template"]["metadata"].pop("annotations", None)  # the chart's config checksum
    return key, spec


def test_plain_manifests_are_the_chart_rendered() -> None:
    """deploy/k8s is the chart rendered for release `shieldes` in namespace `shieldes` (plus the
    Namespace itself); a change to one without the other fails here."""
    values = {"secrets": {"providerKeys": {"OPENAI_API_KEY": "", "ANTHROPIC_API_KEY": ""}}}
    chart = dict(_comparable(d) for d in render(values, namespace="shieldes"))
    plain = dict(_comparable(d) for d in k8s_docs() if d["kind"] != "Namespace")
    assert sorted(chart) == sorted(plain)
    for key in chart:
        assert chart[key] == plain[key], f"{key}: deploy/k8s differs from the chart"


def test_chart_files_are_listed() -> None:
    templates = {p.name for p in (CHART.root / "templates").iterdir()}
    assert {"statefulset.yaml", "services.yaml", "pdb.yaml", "migrate-job.yaml", "secret.yaml",
            "configmap.yaml", "networkpolicy.yaml", "_helpers.tpl"} <= templates
    assert Path(K8S / "kustomization.yaml").exists()
