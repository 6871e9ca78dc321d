"""The alert rules and the Grafana dashboard query only metrics that real nodes export, with the
labels they export, and are valid PromQL for promtool (Debian's `prometheus` package; installed by
.ci/run); the metrics table of docs/observability.md names what a node exports, labels included."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import aiohttp
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from shieldes.gateway.metrics import Metrics
from shieldes.node import Node
from shieldes.projections.commands import SetBudget
from shieldes.projections.shared_commands import UpdateProvider
from shieldes.settings import Settings
from shieldes.usage.units import Units
from tests.integration.gateway_harness import harness, wait_until

ROOT = Path(__file__).resolve().parent.parent.parent
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "shieldes.json"
SYNTHETIC = {"up"}  # written by Prometheus itself for every target
HTTPS_ONLY = ("shieldes_tls_",)  # exported by a node serving HTTPS (test_https.py checks them on one)
METRIC = re.compile(r"\b(shieldes_[a-z0-9_]+|process_[a-z0-9_]+|up)\b")
DOC = ROOT / "docs" / "observability.md"
TARGET_LABELS = {"job", "instance"}  # Prometheus adds them to every series it scrapes
SELECTOR = re.compile(r"\b([a-z_][a-z0-9_]*)\s*\{([^}]*)\}")
MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
GROUPING = re.compile(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)")
RULE_TEMPLATE = re.compile(r"\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)")
LEGEND_TEMPLATE = re.compile(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}")


def rule_exprs() -> dict[str, str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {r["alert"]: r["expr"] for g in groups for r in g["rules"]}


def dashboard_exprs() -> dict[str, str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return {f"{p['title']} [{t['refId']}]": t["expr"] for p in panels for t in p.get("targets", [])}


def label_uses() -> dict[str, tuple[str, set[str]]]:
    """Each rule and dashboard query: its expression, and the labels its grouping clauses, its
    annotations (`$labels.x`) or its legend (`{{x}}`) read off the result."""
    uses: dict[str, tuple[str, set[str]]] = {}
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            read = set(RULE_TEMPLATE.findall(" ".join(rule.get("annotations", {}).values())))
            uses[rule["alert"]] = (rule["expr"], read)
    for p in json.loads(DASHBOARD.read_text())["panels"]:
        for t in p.get("targets", []):
            uses[f"{p['title']} [{t['refId']}]"] = (t["expr"], set(LEGEND_TEMPLATE.findall(t.get("legendFormat", ""))))
    for expr, read in uses.values():
        for clause in GROUPING.findall(expr):
            read |= {label.strip() for label in clause.split(",") if label.strip()}
    return uses


def documented_series() -> list[tuple[str, set[str]]]:
    """The series docs/observability.md's metrics table names, with the labels it gives them (a
    cell's trailing `{labels}` applies to its names without their own; `_suffix` continues the
    name before it: `shieldes_deployment_error_rate`, `_latency_seconds`)."""
    table = DOC.read_text().split("\n## Metrics", 1)[1]
    found: list[tuple[str, set[str]]] = []
    for line in table.splitlines():
        if not line.startswith("| `"):
            continue
        cell = line.split(" | ")[0]
        shared = re.search(r"`\{([a-z_,]+)\}`", cell)
        prefix = ""
        for name, labels in re.findall(r"`((?:shieldes|process)_[a-z0-9_*]+|_[a-z0-9_]+)(?:\{([a-z_,]*)\})?`", cell):
            if name.startswith("_"):
                name = prefix + name
            else:
                prefix = "_".join(name.split("_")[:2])
            given = labels or (shared.group(1) if shared else "")
            found.append((name, {label for label in given.split(",") if label}))
    return found


def families(text: str) -> dict[str, tuple[str, set[str], set[str]]]:
    """Exported family name (as documented: counters with _total) -> type, sample names, labels."""
    out: dict[str, tuple[str, set[str], set[str]]] = {}
    for family in text_string_to_metric_families(text):
        name = family.name + "_total" if family.type == "counter" else family.name
        labels = {label for s in family.samples for label in s.labels} - {"le"}
        out[name] = (family.type, {s.name for s in family.samples}, labels)
    return out


def conditional_series() -> str:
    """The series a plain node's scrape lacks, from the same exporter: a port's certificate (a node
    serving HTTPS, test_https.py), media units (after a media call, test_media_routes.py) and MCP
    requests (test_mcp_gateway.py)."""
    metrics = Metrics()
    metrics.watch_tls("api", SimpleNamespace(expires_at=2e9, loaded=1, refused=0))
    metrics.media_units("openai", "dall-e-3", Units(images=1))
    metrics.mcp_request("search", "tools/call", "ok")  # (a family without samples shows no labels)
    return metrics.render().decode()


def labels_of(text: str) -> dict[str, set[str]]:
    """Sample name -> the labels its samples carry."""
    out: dict[str, set[str]] = {"up": set()}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, set()).update(s.labels)
    return out


def unexported_labels(text: str) -> dict[str, list[str]]:
    """The labels a rule or dashboard query selects, groups by or shows that no series it reads has."""
    labels = labels_of(text)
    wrong: dict[str, list[str]] = {}
    for where, (expr, read) in label_uses().items():
        names = METRIC.findall(expr)
        available = TARGET_LABELS.union(*(labels.get(n, set()) for n in names))
        bad = sorted(label for label in read if label not in available)
        for name, matchers in SELECTOR.findall(expr):
            if name in labels:
                bad += [f"{name}{{{label}}}" for label in MATCHER.findall(matchers)
                        if label not in labels[name] | TARGET_LABELS]
        if bad:
            wrong[where] = bad
    return wrong


def undocumented_differences(text: str) -> list[str]:
    """Where the metrics table and the scrape disagree: a name not exported, a counter that is not
    one, labels other than the documented ones."""
    exported = families(text)
    wrong: list[str] = []
    for name, labels in documented_series():
        if "*" in name:
            pattern = re.compile(re.escape(name).replace(r"\*", "[a-z0-9_]+"))
            if not any(pattern.fullmatch(n) for n in exported):
                wrong.append(f"{name}: nothing exported matches")
            continue
        if name not in exported:
            wrong.append(f"{name}: not exported")
            continue
        kind, samples, has = exported[name]
        if name.endswith("_total") != (kind == "counter"):
            wrong.append(f"{name}: exported as a {kind}")
        if samples and has != labels:
            wrong.append(f"{name}: documented with {sorted(labels)}, exported with {sorted(has)}")
    return wrong


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing: .ci/run installs Debian's `prometheus` package")
        pytest.skip("promtool not installed (apt-get install -y prometheus)")
    return found


def test_promtool_accepts_rules_config_and_dashboard_queries(tmp_path: Path) -> None:
    tool = promtool()
    for args in (["check", "rules", str(RULES)], ["check", "config", str(RULES.parent / "prometheus.yml")]):
        done = subprocess.run([tool, *args], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
    # the dashboard's queries, with Grafana's variables filled in, as recording rules: promtool parses them
    records = [{"record": f"dashboard:q{i}", "expr": grafana_to_promql(expr)}
               for i, expr in enumerate(dashboard_exprs().values())]
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": records}]}))
    done = subprocess.run([tool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_rule_tests_pass() -> None:
    """deploy/prometheus/alerts_test.yml: the alerts fire on the series they are about and stay
    quiet on the others (a stream's duration is no latency)."""
    tool = promtool()
    done = subprocess.run([tool, "test", "rules", str(RULES.parent / "alerts_test.yml")], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def grafana_to_promql(expr: str, rate_interval: str = "1m") -> str:
    """A dashboard query as Prometheus runs it for Grafana (its variables filled in)."""
    return expr.replace("$__rate_interval", rate_interval).replace("$job", "shieldes")


def test_deployment_panels_show_nothing_for_a_deployment_no_longer_called(tmp_path: Path) -> None:
    """A deployment's moving error rate and latency stand still once no call goes to it: the
    panels show them only for the nodes that called it in the window, and nothing once none does
    (not the last value forever, nor a frozen value of a node that stopped over the live one)."""
    tool = promtool()
    exprs = dashboard_exprs()
    panels = {"shieldes_deployment_error_rate": grafana_to_promql(exprs["Error rate by deployment [A]"]),
              "shieldes_deployment_latency_seconds": grafana_to_promql(exprs["Latency by deployment [A]"])}
    tests = []
    for metric, expr in panels.items():
        def series(instance: str, deployment: str, values: str, name: str = metric) -> dict[str, str]:
            return {"series": f'{name}{{job="shieldes",instance="{instance}",deployment="{deployment}"}}',
                    "values": values}
        calls = "shieldes_deployment_requests_60s"
        tests.append({"interval": "1m", "input_series": [
            # node a calls openai throughout; its azure calls stop after 5 minutes
            series("a:8080", "openai", "0.6x40"), series("a:8080", "openai", "4x40", calls),
            series("a:8080", "azure", "0.8x40"), series("a:8080", "azure", "3x5 0x35", calls),
            # node b called openai long ago: its value stands still, higher than a's live one
            series("b:8080", "openai", "0.9x40"), series("b:8080", "openai", "0x40", calls),
        ], "promql_expr_test": [
            {"expr": expr, "eval_time": "3m", "exp_samples": [
                {"labels": "{deployment=\"azure\"}", "value": 0.8},
                {"labels": "{deployment=\"openai\"}", "value": 0.6}]},
            {"expr": expr, "eval_time": "20m", "exp_samples": [
                {"labels": "{deployment=\"openai\"}", "value": 0.6}]},
        ]})
    path = tmp_path / "panels_test.yml"
    path.write_text(yaml.safe_dump({"evaluation_interval": "1m", "tests": tests}))
    done = subprocess.run([tool, "test", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_rules_cover_the_operational_risks() -> None:
    rules = rule_exprs()
    assert len(rules) >= 10
    for needle in ("up{", "leader_elections", "gossip_peer_age", "log_lag", "deployment_error_rate",
                   "deployment_latency", "budget_used_ratio", "usage_buffer_max", "process_open_fds",
                   "event_loop_lag"):
        assert any(needle in expr for expr in rules.values()), f"no alert uses {needle}"
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
            assert rule["annotations"]["summary"], rule["alert"]


def test_dashboard_is_importable() -> None:
    dash = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    assert {v["name"] for v in dash["templating"]["list"]} == {"datasource", "job"}
    for p in dash["panels"]:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, p["title"]
        if p["type"] != "row":
            assert p["datasource"]["uid"] == "${datasource}" and p["targets"], p["title"]


def exported(text: str) -> set[str]:
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names |= {s.name for s in family.samples}
    return names


async def test_every_queried_metric_is_exported_by_a_running_node(database_url: str) -> None:
    """Two real nodes gossiping on one database, traffic on a budgeted key, then a scrape: every
    metric the rules and the dashboard query has samples (no alert watches a name nobody exports)."""
    cluster = {"cluster_secret": "alerts-test-secret", "gossip_port": 0, "heartbeat_interval": 0.1,
               "gossip_interval": 0.05}
    async with harness(database_url, **cluster) as h:
        key = await h.create_key("metered")
        await h.admin(SetBudget("key", "metered", 0.05, "1d"))
        await h.admin(UpdateProvider("openai", options={"rpm": "1000"}))  # a quota: its use is a gauge
        peer = Node(Settings(database_url=database_url, node_id="peer", host="127.0.0.1", port=0,
                             shutdown_grace=1.0, **cluster))
        await peer.start()
        try:
            await h.sync()
            headers = {"Authorization": f"Bearer {key}"}
            body = {"model": "gpt-4o-mini", "max_tokens": 16,
                    "messages": [{"role": "user", "content": "count these words"}]}
            h.upstream.inject("/v1/chat/completions", status=500, times=1)  # one failed upstream attempt
            async with aiohttp.ClientSession() as http:
                for _ in range(3):
                    async with http.post(h.base + "/v1/chat/completions", json=body, headers=headers) as r:
                        assert r.status == 200, await r.text()
                # and a stream: its time to first token is a series of its own
                async with http.post(h.base + "/v1/chat/completions", json=dict(body, stream=True),
                                     headers=headers) as r:
                    assert r.status == 200 and b"[DONE]" in await r.read()
                cluster = h.node.cluster
                assert cluster is not None and cluster.gossip is not None
                await wait_until(lambda: "peer" in [n.node_id for n in cluster.membership.alive_peers()])
                await wait_until(lambda: "peer" in cluster.gossip.stats.peers)  # type: ignore[union-attr]
                await wait_until(lambda: cluster.convergence.seconds() is not None)  # the peer acknowledged us
                # the cluster gauges come from the heartbeats: one that reports the quota
                await wait_until(lambda: any(
                    (n.info.get("deployments") or {}).get("openai", {}).get("rpm") == 1000
                    for n in cluster.membership.nodes))
                async with http.get(h.base + "/metrics") as r:
                    text = await r.text()
        finally:
            await peer.stop()
    text += conditional_series()
    names = exported(text)
    queried: dict[str, set[str]] = {}
    for where, expr in {**rule_exprs(), **dashboard_exprs()}.items():
        for name in METRIC.findall(expr):
            queried.setdefault(name, set()).add(where)
    missing = {name: sorted(where) for name, where in queried.items()
               if name not in names | SYNTHETIC}
    assert not missing, f"queried but not exported: {missing}"
    assert not unexported_labels(text), f"labels queried but not exported: {unexported_labels(text)}"
    assert not undocumented_differences(text), "docs/observability.md's metrics table and a node's " \
        f"scrape disagree: {undocumented_differences(text)}"
    # and the new gauges carry sensible values
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(text) for s in f.samples}
    ratio = samples[("shieldes_budget_used_ratio", (("kind", "key"), ("name", "metered")))]
    assert 0 < ratio < 0.5
    assert samples[("shieldes_usage_buffer_max_deltas", ())] == h.settings.usage_buffer_max
    assert samples[("shieldes_gossip_peer_age_seconds", (("peer", "peer"),))] < 2
    assert 0 < samples[("shieldes_deployment_error_rate", (("deployment", "openai"),))] < 1
    assert samples[("shieldes_deployment_circuit_open", (("deployment", "openai"),))] == 0
    assert sum(v for (n, _), v in samples.items() if n == "shieldes_cluster_leader_elections_total") <= 1
