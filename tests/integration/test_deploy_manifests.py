"""The deploy files agree with the code: env names are Settings fields, ports are the defaults,
probes hit /ready and /health, commands are real CLI commands, drains fit in the grace period.

Docker and Kubernetes are not run here; the files are parsed and checked against Settings and the
click group, which is what drifts when the code changes."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from shieldes.cli.main import cli
from shieldes.settings import Settings

ROOT = Path(__file__).resolve().parent.parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
SETTING_ENVS = {f"SHIELDES_{name.upper()}" for name in Settings.model_fields}
# Environment the deploy files may set that are not shieldes settings: provider keys the nodes
# resolve through `--api-key-env`, and Postgres' own image settings.
FOREIGN_ENVS = {"OPENAI_API_KEY", "ANTHROPIC_API_KEY", "POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"}
DEFAULTS = Settings(node_id="t")
# Every node must hold the same values of these.
SHARED = (
    "SHIELDES_DATABASE_URL", "SHIELDES_CLUSTER_SECRET", "SHIELDES_ENCRYPTION_KEY", "SHIELDES_ADMIN_TOKEN",
)


def k8s_docs() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def k8s(kind: str) -> list[dict[str, Any]]:
    return [d for d in k8s_docs() if d["kind"] == kind]


def compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    return doc


def node_services() -> dict[str, dict[str, Any]]:
    return {n: s for n, s in compose()["services"].items() if n.startswith("shieldes-")}


def assert_cli_command(argv: list[str]) -> None:
    """`argv` names a real command: `shieldes ...` resolves in the click group, or alembic upgrade head."""
    if argv[0] == "alembic":
        assert argv == ["alembic", "upgrade", "head"], argv
        return
    assert argv[0] == "shieldes", argv
    command: click.Command = cli
    args = argv[1:]
    while isinstance(command, click.Group) and args and not args[0].startswith("-"):
        assert args[0] in command.commands, f"`{' '.join(argv)}`: no command {args[0]!r} in the shieldes CLI"
        command, args = command.commands[args[0]], args[1:]
    assert not isinstance(command, click.Group), f"`{' '.join(argv)}` names a group, not a command"
    ctx = command.make_context("shieldes", list(args), resilient_parsing=False)
    assert ctx is not None


def test_every_env_name_is_a_setting() -> None:
    names: set[str] = set()
    for doc in k8s("ConfigMap"):
        names |= set(doc["data"])
    for doc in k8s("Secret"):
        names |= set(doc["stringData"])
    for doc in k8s("StatefulSet") + k8s("Job"):
        for c in doc["spec"]["template"]["spec"]["containers"]:
            names |= {e["name"] for e in c.get("env", [])}
    for service in compose()["services"].values():
        names |= set(service.get("environment", {}))
    dockerfile_env = re.findall(r"\b(SHIELDES_[A-Z_]+)=", (DEPLOY / "Dockerfile").read_text())
    names |= set(dockerfile_env)
    unknown = {n for n in names if n.startswith("SHIELDES_")} - SETTING_ENVS
    assert not unknown, f"not shieldes settings: {sorted(unknown)}"
    assert names - SETTING_ENVS <= FOREIGN_ENVS, sorted(names - SETTING_ENVS - FOREIGN_ENVS)


def test_secrets_hold_what_every_node_must_share() -> None:
    (secret,) = k8s("Secret")
    assert set(SHARED) <= set(secret["stringData"])
    (sts,) = k8s("StatefulSet")
    container = sts["spec"]["template"]["spec"]["containers"][0]
    refs = {src.get("secretRef", {}).get("name") for src in container["envFrom"]}
    assert secret["metadata"]["name"] in refs


def test_ports_are_the_setting_defaults() -> None:
    (config,) = k8s("ConfigMap")
    assert int(config["data"]["SHIELDES_PORT"]) == DEFAULTS.port == 8080
    assert int(config["data"]["SHIELDES_GOSSIP_PORT"]) == DEFAULTS.gossip_port == 7946
    (sts,) = k8s("StatefulSet")
    ports = {p["name"]: p["containerPort"] for p in sts["spec"]["template"]["spec"]["containers"][0]["ports"]}
    assert ports == {"http": DEFAULTS.port, "gossip": DEFAULTS.gossip_port}
    services = {s["metadata"]["name"]: s["spec"] for s in k8s("Service")}
    gossip = services["shieldes-gossip"]
    assert gossip["clusterIP"] == "None" and gossip["ports"][0]["port"] == DEFAULTS.gossip_port
    http = services["shieldes"]
    assert http["type"] == "ClusterIP" and http["ports"][0]["targetPort"] == "http"
    assert sts["spec"]["serviceName"] == "shieldes-gossip"
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^EXPOSE 8080 7946$", dockerfile, re.M)
    for service in node_services().values():
        assert {int(p) for p in service["expose"]} == {DEFAULTS.port, DEFAULTS.gossip_port}
        assert int(service["environment"]["SHIELDES_PORT"]) == DEFAULTS.port


def served_paths() -> set[str]:
    from aiohttp import web

    from shieldes.gateway.routes import add_routes

    app = web.Application()
    add_routes(app)
    return {route.resource.canonical for route in app.router.routes() if route.resource is not None}


def test_probes_hit_ready_and_health() -> None:
    assert {"/ready", "/health"} <= served_paths()
    (sts,) = k8s("StatefulSet")
    c = sts["spec"]["template"]["spec"]["containers"][0]
    assert c["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    # /ready is 503 only while starting or draining (never for a database outage): it gates start-up
    assert c["startupProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    for service in node_services().values():
        assert "/ready" in " ".join(service["healthcheck"]["test"])
    assert "/health" in re.search(r"^HEALTHCHECK.*(?:\n .*)*", (DEPLOY / "Dockerfile").read_text(), re.M)[0]


def test_commands_are_real() -> None:
    (sts,) = k8s("StatefulSet")
    assert_cli_command(sts["spec"]["template"]["spec"]["containers"][0]["command"])
    (job,) = k8s("Job")
    assert job["spec"]["template"]["spec"]["containers"][0]["command"] == ["alembic", "upgrade", "head"]
    assert compose()["services"]["migrate"]["command"] == ["alembic", "upgrade", "head"]
    cmd = re.search(r"^CMD (\[.*\])$", (DEPLOY / "Dockerfile").read_text(), re.M)
    assert cmd is not None
    assert_cli_command(yaml.safe_load(cmd[1]))
    assert_cli_command(["shieldes", "db", "upgrade"])
    with pytest.raises(AssertionError):
        assert_cli_command(["shieldes", "no-such-command"])


def test_grace_period_outlasts_shutdown_grace() -> None:
    (config,) = k8s("ConfigMap")
    grace = float(config["data"].get("SHIELDES_SHUTDOWN_GRACE", DEFAULTS.shutdown_grace))
    (sts,) = k8s("StatefulSet")
    pod = sts["spec"]["template"]["spec"]
    pre_stop = pod["containers"][0]["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    assert pod["terminationGracePeriodSeconds"] > grace + float(pre_stop[1])
    for service in node_services().values():
        stop = int(str(service["stop_grace_period"]).rstrip("s"))
        assert stop > float(service["environment"]["SHIELDES_SHUTDOWN_GRACE"])


def test_cluster_shape() -> None:
    (sts,) = k8s("StatefulSet")
    assert sts["spec"]["replicas"] >= 3
    anti = sts["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    term = anti["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
    pod_labels = sts["spec"]["template"]["metadata"]["labels"]
    assert term["labelSelector"]["matchLabels"].items() <= pod_labels.items()
    (pdb,) = k8s("PodDisruptionBudget")
    assert pdb["spec"]["selector"] == sts["spec"]["selector"]
    env = {e["name"]: e for e in sts["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["SHIELDES_NODE_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    (config,) = k8s("ConfigMap")
    peers = Settings(node_id="t", peers=config["data"]["SHIELDES_PEERS"]).static_peers()
    assert len(peers) == 3
    assert all(p.endswith(".shieldes-gossip.shieldes.svc.cluster.local:7946") for p in peers)
    (policy,) = k8s("NetworkPolicy")
    assert policy["spec"]["podSelector"] == sts["spec"]["selector"]
    gossip_rule = next(r for r in policy["spec"]["ingress"] if r["ports"][0]["port"] == "gossip")
    assert gossip_rule["from"][0]["podSelector"] == sts["spec"]["selector"]
    listed = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    assert len({d["metadata"].get("namespace", "shieldes") for d in k8s_docs()}) == 1


def test_compose_runs_migrations_first_and_nodes_are_distinct() -> None:
    services = compose()["services"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["postgres"]["image"] == "postgres:16"
    nodes = node_services()
    assert len(nodes) == 3
    for name, service in nodes.items():
        assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        env = service["environment"]
        assert env["SHIELDES_NODE_ID"] == env["SHIELDES_ADVERTISE_HOST"] == name
        assert name not in env["SHIELDES_PEERS"]
    for key in SHARED:
        assert len({s["environment"][key] for s in nodes.values()}) == 1, key
        assert "${" in next(iter(nodes.values()))["environment"][key], f"{key} must come from the environment"
    assert services["migrate"]["environment"]["SHIELDES_DATABASE_URL"] == nodes["shieldes-1"]["environment"][
        "SHIELDES_DATABASE_URL"]


def test_nginx_streams_balances_and_survives_a_node_loss() -> None:
    conf = (DEPLOY / "nginx.conf").read_text()
    directives = {m[0]: m[1] for m in re.findall(r"^\s*(proxy_\w+|set|resolver|include)\s+([^;]*);", conf, re.M)}
    # every node answers to the alias nginx resolves at request time (a variable in proxy_pass)
    alias = directives["set"].split()[1]
    assert directives["proxy_pass"] == f"http://{directives['set'].split()[0]}:{DEFAULTS.port}"
    for service in node_services().values():
        assert alias in service["networks"]["default"]["aliases"]
    nginx = compose()["services"]["nginx"]
    assert directives["include"] == "/etc/nginx/resolver.conf" and "resolver.conf" in nginx["command"][-1]
    assert "valid=5s" in nginx["command"][-1]
    # a refused or timed-out connect goes to the next node, fast; a POST that reached a node never does
    retry = directives["proxy_next_upstream"].split()
    assert {"error", "timeout", "http_502", "http_503"} <= set(retry) and "non_idempotent" not in retry
    assert int(directives["proxy_connect_timeout"].rstrip("s")) <= 2
    assert directives["proxy_request_buffering"] == "on"  # the body can be sent again
    assert directives["proxy_buffering"] == "off"
    assert int(directives["proxy_read_timeout"].rstrip("s")) >= DEFAULTS.upstream_timeout
    body = re.search(r"client_max_body_size (\d+)m;", conf)
    assert body and int(body[1]) * 1024 * 1024 > DEFAULTS.max_body_bytes
    assert "./nginx.conf:/etc/nginx/nginx.conf:ro" in nginx["volumes"]
    assert all(nginx["depends_on"][n]["condition"] == "service_healthy" for n in node_services())
    for service in node_services().values():
        assert "/ready" in " ".join(service["healthcheck"]["test"])


def test_dockerfile_is_slim_and_unprivileged() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim", text, re.M)
    user = re.search(r"^USER (\S+)", text, re.M)
    assert user and user[1].split(":")[0] not in ("root", "0")
    copied = {part for line in re.findall(r"^COPY (.*)$", text, re.M) for part in shlex.split(line)[:-1]}
    for path in copied:  # a glob may match nothing (optional files); a plain path must exist
        assert any(c in path for c in "*?[") or (ROOT / path).exists(), f"Dockerfile copies missing {path}"
    assert {"pyproject.toml", "alembic.ini", "alembic", "shieldes"} <= copied
    sts_user = k8s("StatefulSet")[0]["spec"]["template"]["spec"]["securityContext"]["runAsUser"]
    assert str(sts_user) == user[1].split(":")[0]
