"""The admin CLI through a node's admin API (SHIELDES_ADMIN_URL / --admin-url): a real node on a real
Postgres, the CLI over real HTTP: run in pytest's process (tests/cli.py), and as real `python -m
shieldes` processes where what is checked is the process (the modules a remote command loads). What a
remote command does is checked through the direct CLI and SQL; its output equals the direct mode's
for the same command; refusals are one `error:` line; a remote command loads no database driver,
framework or node."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import pytest

from tests.cli import completed
from tests.integration.gateway_harness import Harness, harness, wait_until
from tests.integration.test_cli_imports import heavy, imported
from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
BOOT = "boot-" + "remote-cli-token-for-tests-" * 2
NO_DATABASE = "postgresql://nobody@127.0.0.1:9/none"  # a remote command must never need it
IGNORED = ("id", "prefix", "key", "position", "name")  # what two creates never share
# Commands run at once by together(): one, as click's runner swaps this process's stdout, stderr and
# environment for the command it runs
AT_ONCE = 1


class Ran:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err

    def json(self) -> Any:
        assert self.code == 0, (self.code, self.out, self.err)
        return json.loads(self.out)

    def error(self, code: int = 1) -> str:
        lines = self.err.strip().splitlines()
        assert self.code == code and len(lines) == 1 and lines[0].startswith("error: "), (self.code, self.err)
        assert "Traceback" not in self.out + self.err
        return lines[0]


async def shieldes(*args: str, **env: str) -> Ran:
    """The command in a thread, so the node on this loop answers it."""
    full = {"SHIELDES_ACTOR": "tester", "SHIELDES_ENCRYPTION_KEY": "", "SHIELDES_ADMIN_URL": "", **env}
    done = await asyncio.wait_for(asyncio.to_thread(completed, *args, env=full), 60)
    return Ran(done.returncode, done.stdout, done.stderr)


async def remote(h: Harness, *args: str, token: str = BOOT) -> Ran:
    return await shieldes(*args, SHIELDES_ADMIN_URL=h.base, SHIELDES_ADMIN_TOKEN=token,
                          SHIELDES_DATABASE_URL=NO_DATABASE)


async def direct(h: Harness, *args: str) -> Ran:
    return await shieldes(*args, SHIELDES_DATABASE_URL=h.database_url)


async def together(*runs: Awaitable[Ran]) -> list[Ran]:
    """Commands none of which changes what another reads, AT_ONCE at a time; their results in order."""
    gate = asyncio.Semaphore(AT_ONCE)

    async def one(run: Awaitable[Ran]) -> Ran:
        async with gate:
            return await run

    return list(await asyncio.gather(*(one(run) for run in runs)))


def without(row: dict[str, Any], *names: str) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in names}


async def test_keys_teams_budgets_and_tokens_through_the_api(database_url: str) -> None:
    async with harness(database_url, admin_token=BOOT) as h:
        team = (await remote(h, "--json", "team", "create", "eng", "--budget", "100", "--budget-period", "1mo")).json()
        assert team["name"] == "eng" and team["budget_usd"] == 100 and team["budget_period"] == "1mo"

        created = (await remote(h, "key", "create", "--name", "app", "--models", "gpt-4o", "--rpm", "60",
                                "--budget", "5", "--team", "eng", "--expires-in", "30d", "--json")).json()
        assert created["key"].startswith(created["prefix"]) and created["team"] == "eng"
        shown = (await direct(h, "--json", "key", "show", "app")).json()
        assert shown == without(created, "position", "key")
        assert h.sql("SELECT metadata->>'actor' FROM events WHERE type = 'virtual_key.created'") == [
            ("bootstrap-token",)]

        updated = (await remote(h, "--json", "key", "update", "app", "--no-rpm", "--tpm", "1000",
                                "--models", "gpt-4o,gpt-4o-mini", "--no-expiry")).json()
        assert (updated["rpm"], updated["tpm"], updated["models"], updated["expires_at"]) == (
            None, 1000, ["gpt-4o", "gpt-4o-mini"], None)
        assert (await direct(h, "--json", "key", "show", "app")).json() == without(updated, "position")

        rotated = (await remote(h, "--json", "key", "rotate", "app")).json()
        assert rotated["key"] != created["key"] and rotated["prefix"] != created["prefix"]
        assert h.sql("SELECT data->>'prefix' FROM events WHERE type = 'virtual_key.rotated'") == [(rotated["prefix"],)]
        bare = (await remote(h, "key", "rotate", "app", "--secret-only")).out
        assert bare.startswith("sk-shd-") and bare.count("\n") == 1 and bare.strip() != rotated["key"], bare

        budget = (await remote(h, "--json", "budget", "set", "app", "--amount", "7.5", "--period", "1d")).json()
        assert without(budget, "position") == {"subject_kind": "key", "subject": "app", "subject_id": created["id"],
                                               "amount_usd": 7.5, "period": "1d"}
        assert (await direct(h, "--json", "key", "show", "app")).json()["budget_usd"] == 7.5
        removed = (await remote(h, "--json", "budget", "remove", "--team", "eng")).json()
        assert removed["removed"] is True
        assert (await direct(h, "--json", "team", "list")).json()[0]["budget_usd"] is None

        revoked = (await remote(h, "--json", "key", "revoke", "app")).json()
        assert without(revoked, "position") == {"id": created["id"], "name": "app", "revoked": True}
        assert (await direct(h, "--json", "key", "show", "app")).json()["status"] == "revoked"
        assert (await remote(h, "key", "revoke", "app")).error() == "error: key 'app' is already revoked"

        token = (await remote(h, "--json", "admin-token", "create", "--name", "ci", "--role", "viewer")).json()
        assert token["token"].startswith(token["prefix"]) and token["role"] == "viewer"
        gone = (await remote(h, "--json", "admin-token", "revoke", "ci")).json()
        assert gone["status"] == "revoked"
        assert (await direct(h, "--json", "admin-token", "list")).json() == [without(gone, "position")]


@pytest.mark.timeout(300)  # some hundred CLI processes, each a Python start, four at a time
async def test_outputs_equal_the_direct_modes(database_url: str) -> None:
    async with harness(database_url, admin_token=BOOT) as h:
        await together(*(run(h, "team", "create", f"{mode}-eng", "--budget", "50")
                         for mode, run in (("r", remote), ("d", direct))))
        for args in (("--json",), ()):
            r, d = await together(*(run(h, *args, "key", "create", "--name", f"{mode}-app{len(args)}", "--models",
                                        "gpt-4o,not-served", "--budget", "3", "--team", f"{mode}-eng")
                                    for mode, run in (("r", remote), ("d", direct))))
            assert r.code == d.code == 0 and r.err == d.err  # the same warning lines
            assert "warning: no provider serves model 'not-served' yet" in r.err or args
            if args:
                rj, dj = json.loads(r.out), json.loads(d.out)
                assert without(rj, *IGNORED, "team") == without(dj, *IGNORED, "team")
                assert list(rj) == list(dj)
            else:
                assert r.out.splitlines()[0] == d.out.splitlines()[0]  # the table's header
                assert len(r.out.splitlines()) == len(d.out.splitlines())
        # reads of the same state print the same bytes, as tables and as JSON
        await together(direct(h, "key", "revoke", "d-app1"),
                       direct(h, "admin-token", "create", "--name", "reader", "--role", "viewer"))
        await h.sync()  # the node reads what the direct commands wrote (its LISTEN wake-up may still be on its way)
        reads = [(args, read) for read in (("key", "list"), ("key", "list", "--all"), ("key", "show", "r-app0"),
                                           ("team", "list"), ("admin-token", "list"), ("budget", "show", "d-app0"),
                                           ("budget", "show", "--team", "r-eng"))
                 for args in (("--json",), ())]
        ran = await together(*(run(h, *args, *read) for args, read in reads for run in (remote, direct)))
        for (_, read), r, d in zip(reads, ran[::2], ran[1::2], strict=True):
            assert (r.code, r.out, r.err) == (d.code, d.out, d.err), read
        teams = (await remote(h, "--json", "team", "list")).json()
        assert {t["name"]: t["keys"] for t in teams} == {"d-eng": 1, "r-eng": 2}  # d-app1 is revoked
        # refusals and malformed options: the same line and exit code
        await together(direct(h, "team", "create", "plain"), direct(h, "key", "create", "--name", "plain-key"))
        await h.sync()
        refusals = ((("budget", "remove", "plain-key"), 1), (("budget", "remove", "--team", "plain"), 1),
                    (("usage", "--key", "nope"), 1), (("logs", "--key", "nope"), 1),
                    (("key", "show", "nope"), 1), (("key", "revoke", "nope"), 1), (("key", "rotate", "nope"), 1),
                    (("key", "update", "nope", "--rpm", "5"), 1), (("key", "update", "r-app0"), 1),
                    (("key", "create", "--name", "r-app0"), 1), (("budget", "set", "nope", "--amount", "1"), 1),
                    (("budget", "show", "--team", "nope"), 1),
                    (("team", "create", "r-eng"), 1), (("key", "create", "--name", "x", "--models", "a,,b"), 1),
                    (("key", "create", "--name", "x", "--rpm", "many"), 2), (("key", "frobnicate"), 2))
        ran = await together(*(run(h, *args, *bad) for bad, _ in refusals for args in ((), ("--json",))
                               for run in (remote, direct)))
        for (bad, code), i in zip(refusals, range(0, len(ran), 4), strict=True):
            r, d = ran[i:i + 2]
            assert r.error(code) == d.error(code), bad
            r, d = ran[i + 2:i + 4]  # as JSON: message and code
            assert (r.code, r.out, r.err) == (d.code, d.out, d.err) and json.loads(r.err)["error"]["code"], bad
            if "nope" in bad:  # the admin API's code for what is missing, whichever way the command went
                assert json.loads(r.err)["error"]["code"].endswith("_not_found"), (bad, r.err)


async def test_tokens_roles_unknown_routes_and_an_unreachable_node(database_url: str) -> None:
    async with harness(database_url, admin_token=BOOT) as h:
        events = h.sql("SELECT count(*) FROM events")[0][0]
        bad = (await remote(h, "key", "create", "--name", "x", token="wrong")).error()
        assert f"the admin API at {h.base} refused SHIELDES_ADMIN_TOKEN" in bad and "admin-token create" in bad
        missing = (await remote(h, "key", "list", token="")).error()
        assert "SHIELDES_ADMIN_TOKEN is not set" in missing

        viewer = (await remote(h, "--json", "admin-token", "create", "--name", "v", "--role", "viewer")).json()
        refused = (await remote(h, "key", "create", "--name", "x", token=viewer["token"])).error()
        assert "viewer role may not" in refused and "SHIELDES_ADMIN_TOKEN to a token of role operator or admin" \
            in refused
        assert (await remote(h, "--json", "key", "list", token=viewer["token"])).json() == []
        operator = (await remote(h, "--json", "admin-token", "create", "--name", "o", "--role", "operator")).json()
        assert "role admin" in (await remote(h, "team", "create", "t", token=operator["token"])).error()

        # an admin command the CLI does not send through the API refuses and appends nothing; local ones ignore the URL
        # (one that reads a file is refused before it reads it: the file's errors do not hide the refusal)
        for args in (("routing", "set", "gpt-4o", "--strategy", "cost"), ("audit", "verify"),
                     ("snapshot", "create"), ("logs", "--follow"), ("pricing", "import", "/nonexistent/prices.json"),
                     ("config", "import", "/nonexistent/config.yaml")):
            line = (await remote(h, *args)).error()
            assert "does not run through the admin API" in line and "unset SHIELDES_ADMIN_URL" in line, line
        status = await shieldes("--admin-url", h.base, "--json", "db", "status", SHIELDES_DATABASE_URL=database_url)
        assert status.code == 0, status.err
        assert h.sql("SELECT count(*) FROM events")[0][0] == events + 2  # the two tokens

        port = free_port()  # nothing listens on it
        url = f"http://127.0.0.1:{port}"
        down = (await shieldes("--admin-url", url, "key", "create", "--name", "x", SHIELDES_ADMIN_TOKEN=BOOT,
                               SHIELDES_DATABASE_URL=NO_DATABASE)).error()
        assert down.startswith(f"error: cannot reach the admin API at {url} (") and down.endswith(
            "; start a node or unset SHIELDES_ADMIN_URL")
        tls = (await shieldes("--admin-url", "https://" + h.base.split("://", 1)[1], "key", "list",
                              SHIELDES_ADMIN_TOKEN=BOOT)).error()  # https:// to a node serving plain HTTP
        assert tls.endswith(f"; the node answers plain HTTP there: set SHIELDES_ADMIN_URL to {h.base}, or serve "
                            "HTTPS on the node"), tls
        assert "not an http(s) URL" in (await shieldes("--admin-url", "gw:8080", "key", "list",
                                                       SHIELDES_ADMIN_TOKEN=BOOT)).error()
        api_path = (await shieldes("--admin-url", h.base + "/v1", "key", "list", SHIELDES_ADMIN_TOKEN=BOOT)).error()
        assert f"{h.base}/v1 serves no admin API route for GET /v1/admin/v1/keys" in api_path, api_path
        assert "without a path (e.g. http://gateway:8080)" in api_path
        unclosed = (await shieldes("--admin-url", "http://[::1", "key", "list", SHIELDES_ADMIN_TOKEN=BOOT)).error()
        assert "is not a URL" in unclosed and "http://[::1]:8080" in unclosed, unclosed


async def test_a_lost_answer_to_a_create_is_retried_without_a_second_create(database_url: str) -> None:
    """A proxy that closes the first connection after passing the request on (the node wrote the
    key; its answer never arrives): the CLI retries with the same Idempotency-Key and the node
    answers with the first write, so one key exists; its secret cannot be shown again, and the
    CLI says so and how to get a new one."""
    async with harness(database_url, admin_token=BOOT) as h:
        seen: list[bytes] = []

        async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", h.node.port)
            head = await reader.readuntil(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            body = await reader.readexactly(length)
            seen.append(head)
            up_w.write(head + body)
            answer = await up_r.read(65536)  # the node has written the key once it answers
            if len(seen) > 1:
                writer.write(answer)
                await writer.drain()
            writer.close()
            up_w.close()

        server = await asyncio.start_server(relay, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        try:
            team = await shieldes("--admin-url", url, "--json", "team", "create", "ops", SHIELDES_ADMIN_TOKEN=BOOT)
            assert team.json()["name"] == "ops" and len(seen) == 2
            keys = [line.split(b": ")[1] for h_ in seen for line in h_.split(b"\r\n")
                    if line.lower().startswith(b"idempotency-key")]
            assert len(keys) == 2 and keys[0] == keys[1]
            seen.clear()
            lost = await shieldes("--admin-url", url, "key", "create", "--name", "k", SHIELDES_ADMIN_TOKEN=BOOT)
            assert "was created but its secret was lost" in lost.error() and "shieldes key rotate k" in lost.err
        finally:
            server.close()
            await server.wait_closed()
        assert h.sql("SELECT type, count(*) FROM events WHERE type IN ('team.created', 'virtual_key.created') "
                     "GROUP BY type ORDER BY type") == [("team.created", 1), ("virtual_key.created", 1)]
        # the replay was found through config_index (migration 0011), not by a scan of the log
        assert h.sql("SELECT e.type FROM config_index c JOIN events e USING (position) "
                     "WHERE c.idempotency_key IS NOT NULL ORDER BY position") == [("team.created",),
                                                                                  ("virtual_key.created",)]


async def test_a_remote_key_write_imports_no_database_driver_framework_or_node(database_url: str,
                                                                               tmp_path: Path) -> None:
    async with harness(database_url, admin_token=BOOT) as h:
        env = {"SHIELDES_ADMIN_URL": h.base, "SHIELDES_ADMIN_TOKEN": BOOT}
        for args in (("key", "create", "--name", "light"), ("key", "revoke", "light")):
            modules = await asyncio.to_thread(imported, NO_DATABASE, *args, tmp=tmp_path, env=env)
            assert "shieldes.cli.remote" in modules and "http.client" in modules  # it ran remotely
            banned = ("psycopg", "psycopg_pool", "aiohttp", "pydantic", "shieldes.node", "shieldes.config_writer",
                      "shieldes.projections.commands", "asyncio")
            assert sorted(m for m in modules if any(m == b or m.startswith(b + ".") for b in banned)) == []
            assert heavy(modules) == []
        assert h.sql("SELECT count(*) FROM events WHERE type IN ('virtual_key.created', 'virtual_key.revoked')"
                     ) == [(2,)]


async def test_remote_team_commands_import_no_domain_model(database_url: str, tmp_path: Path) -> None:
    """`team create|list` and `budget show --team` through the API load neither the database driver
    nor the commands (a list of ten thousand teams is mostly the command's start)."""
    async with harness(database_url, admin_token=BOOT) as h:
        env = {"SHIELDES_ADMIN_URL": h.base, "SHIELDES_ADMIN_TOKEN": BOOT}
        for args in (("team", "create", "light-team", "--budget", "5"), ("--json", "team", "list"),
                     ("budget", "show", "--team", "light-team")):
            modules = await asyncio.to_thread(imported, NO_DATABASE, *args, tmp=tmp_path, env=env)
            assert "shieldes.cli.remote" in modules  # it ran remotely
            banned = ("psycopg", "aiohttp", "pydantic", "shieldes.config_writer", "shieldes.projections.commands",
                      "shieldes.events", "shieldes.snapshots", "asyncio")
            assert sorted(m for m in modules if any(m == b or m.startswith(b + ".") for b in banned)) == [], args
            assert heavy(modules) == []


async def test_remote_reads_of_the_request_log_and_usage_import_no_database_driver(database_url: str,
                                                                                 tmp_path: Path) -> None:
    """`logs` and `usage` through the API load neither psycopg nor asyncio: the request log's
    filters are read without the store that holds its SQL."""
    async with harness(database_url, admin_token=BOOT) as h:
        env = {"SHIELDES_ADMIN_URL": h.base, "SHIELDES_ADMIN_TOKEN": BOOT}
        for args in (("logs", "--limit", "5"), ("--json", "logs", "--status", "4xx", "--since", "1h"), ("usage",)):
            modules = await asyncio.to_thread(imported, NO_DATABASE, *args, tmp=tmp_path, env=env)
            assert "shieldes.cli.remote" in modules and "http.client" in modules, args  # it ran remotely
            banned = ("psycopg", "psycopg_pool", "asyncio", "aiohttp", "pydantic", "shieldes.db",
                      "shieldes.requestlog.store", "shieldes.events")
            assert sorted(m for m in modules if any(m == b or m.startswith(b + ".") for b in banned)) == [], args
            # of the request log (a node's module in HEAVY), only its driver-free filters
            assert [m for m in heavy(modules) if m not in ("shieldes.requestlog", "shieldes.requestlog.filters")
                    ] == [], args


async def test_providers_prices_aliases_and_cluster_status_through_the_api(database_url: str) -> None:
    async with harness(database_url, admin_token=BOOT) as h:
        add = ("provider", "add", "{m}-up", "--type", "openai", "--base-url", h.upstream.url, "--api-key-env",
               "UP_KEY", "--models", "gpt-4o,{m}-unpriced", "--weight", "2", "--region", "eu")
        made = await together(*(run(h, "--json", *(a.format(m=m) for a in add)) for m, run in (("r", remote),
                                                                                              ("d", direct))))
        r, d = made[0].json(), made[1].json()
        assert r["unpriced_models"] == ["r-unpriced"] and "warning: no price for r-unpriced" in made[0].err
        assert list(r) == list(d) and without(r, "name", "models", "position", "unpriced_models") == without(
            d, "name", "models", "position", "unpriced_models")
        upd = ("provider", "update", "{m}-up", "--weight", "3", "--no-api-key", "--responses", "native")
        r, d = (ran.json() for ran in await together(remote(h, "--json", *(a.format(m="r") for a in upd)),
                                                     direct(h, "--json", *(a.format(m="d") for a in upd))))
        assert list(r) == list(d) and (r["weight"], r["api_key"], r["responses"]) == (3, None, "native")
        await h.sync()  # the node reads what the direct commands wrote

        price = (await remote(h, "--json", "pricing", "set", "org/model-x", "--input", "1", "--output", "2",
                              "--cache-read", "0.1")).json()
        assert without(price, "position") == {"model": "org/model-x", "input_per_1m": 1, "output_per_1m": 2,
                                              "cache_read_per_1m": 0.1, "cache_write_per_1m": None, "per_image": None,
                                              "long_context": None, "per_web_search": None, "multipliers": None,
                                              "per_use": None, "modalities": None}
        alias = (await remote(h, "--json", "model", "alias", "smart", "--target", "r-up/gpt-4o:3", "--target",
                              "openai/gpt-4o", "--fallback", "gpt-4o-mini")).json()
        assert alias["targets"][0] == {"provider": "r-up", "model": "gpt-4o", "weight": 3}
        reads = [(args, read) for read in (("provider", "list"), ("pricing", "list", "--source", "override"),
                                           ("pricing", "list", "--model", "gpt-4o-mi"), ("model", "list"))
                 for args in (("--json",), ())]
        ran = await together(*(run(h, *args, *read) for args, read in reads for run in (remote, direct)))
        for (_, read), r_, d_ in zip(reads, ran[::2], ran[1::2], strict=True):
            assert (r_.code, r_.out, r_.err) == (d_.code, d_.out, d_.err), read
        # an alias named like a served model takes that model's requests from the providers it leaves
        # out: allowed, with the same warning line either way (a `warnings` list with --json)
        took = {run: await run(h, "model", "alias", "gpt-4o", "--target", "openai/gpt-4o-mini")
                for run in (remote, direct)}
        assert took[remote].err == took[direct].err and took[remote].code == 0, took[remote].err
        assert took[remote].err.startswith("warning: alias 'gpt-4o' takes the requests for model 'gpt-4o' away from "
                                           "provider(s) ") and "--target openai/gpt-4o " in took[remote].err
        assert (await remote(h, "--json", "model", "alias", "gpt-4o", "--target", "openai/gpt-4o-mini")).json()[
            "warnings"] == (await direct(h, "--json", "model", "alias", "gpt-4o", "--target", "openai/gpt-4o-mini")
                            ).json()["warnings"] != []
        assert (await direct(h, "model", "remove", "gpt-4o")).code == 0
        assert "warnings" not in alias and "warning" not in (await direct(  # one that targets them all: nothing said
            h, "model", "alias", "quiet", "--target", "openai/gpt-4o-mini")).err
        assert (await direct(h, "model", "remove", "quiet")).code == 0
        assert (await remote(h, "--json", "model", "remove", "smart")).json()["removed"] is True
        assert (await remote(h, "--json", "provider", "remove", "r-up")).json()["removed"] is True
        assert [p["name"] for p in (await direct(h, "--json", "provider", "list")).json()] == ["claude", "d-up",
                                                                                               "openai"]
        assert (await direct(h, "--json", "model", "list")).json() == []
        refused = await remote(h, "provider", "remove", "nope"), await direct(h, "provider", "remove", "nope")
        assert refused[0].error() == refused[1].error()

        await h.sync()
        status = (await remote(h, "--json", "cluster", "status")).json()
        assert [n["node_id"] for n in status["nodes"]] == [h.settings.node_id]
        assert set(status) == set((await direct(h, "--json", "cluster", "status")).json())


async def test_https_through_a_proxy_with_a_path_prefix(database_url: str, tmp_path: Path) -> None:
    """An https URL is verified against the trusted certificates (here a test CA, through
    SSL_CERT_FILE) and its path is kept as a prefix, for a TLS proxy in front of the nodes."""
    import ssl

    from tests.integration.test_gossip_tls import issue, make_ca

    ca = make_ca("proxy CA")
    tls = issue(ca, "proxy")
    (tmp_path / "cert.pem").write_bytes(tls.cert)
    (tmp_path / "key.pem").write_bytes(tls.key)
    (tmp_path / "ca.pem").write_bytes(tls.ca)
    (tmp_path / "other.pem").write_bytes(issue(make_ca("someone else"), "x").ca)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    paths: list[bytes] = []

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while chunk := await reader.read(65536):
                writer.write(chunk)
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async with harness(database_url, admin_token=BOOT) as h:
        async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                first = await reader.readline()
            except (ConnectionError, ssl.SSLError):  # the client refused the certificate
                writer.close()
                return
            method, path, version = first.split(b" ", 2)
            paths.append(path)
            up_r, up_w = await asyncio.open_connection("127.0.0.1", h.node.port)
            up_w.write(b" ".join((method, path.removeprefix(b"/gw"), version)))
            await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))

        server = await asyncio.start_server(relay, "127.0.0.1", 0, ssl=context)
        url = f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}/gw/"
        try:
            made = await shieldes("--admin-url", url, "--json", "key", "create", "--name", "tls",
                                  SHIELDES_ADMIN_TOKEN=BOOT, SSL_CERT_FILE=str(tmp_path / "ca.pem"))
            assert made.json()["name"] == "tls" and paths == [b"/gw/admin/v1/keys"]
            untrusted = await shieldes("--admin-url", url, "key", "list", SHIELDES_ADMIN_TOKEN=BOOT,
                                       SSL_CERT_FILE=str(tmp_path / "other.pem"))
            line = untrusted.error()
            assert line.startswith(f"error: cannot reach the admin API at {url.rstrip('/')} (") and \
                "CERTIFICATE_VERIFY_FAILED" in line
        finally:
            server.close()
            await server.wait_closed()
        assert h.sql("SELECT data->>'name' FROM events WHERE type = 'virtual_key.created'") == [("tls",)]


async def test_logs_through_the_api_print_what_direct_mode_prints(database_url: str) -> None:
    """`shieldes logs` with a node's admin API only: the same rows, columns and refusals as on
    Postgres, the filters passed to GET /admin/v1/requests and its pages followed; and `budget show`
    of a key without a budget gives the same spend as on Postgres."""
    async with harness(database_url, admin_token=BOOT, request_log_interval=0.05) as h:
        narrow = await h.create_key("narrow", models=("gpt-4o-mini",))
        await h.sync()
        await h.chat_logged(narrow, ("gpt-4o-mini", "gpt-4o", "gpt-4o"))
        filters = (("logs", "--key", "narrow"), ("logs", "--key", "narrow", "--status", "403"),
                   ("logs", "--route", "/v1/*", "--model", "gpt-4o", "--limit", "1"),
                   ("logs", "--error-code", "model_not_allowed"))
        ran = await together(*(run(h, *json_, *args) for args in filters for json_ in (("--json",), ())
                               for run in (direct, remote)))
        for args, i in zip(filters, range(0, len(ran), 4), strict=True):
            here, there, here_table, there_table = ran[i:i + 4]
            assert here.json() == there.json() and there.json(), args
            assert here_table.out == there_table.out, args
        refused = (await remote(h, "--json", "logs", "--key", "narrow", "--status", "403")).json()
        assert refused == (await remote(h, "--json", "logs", "--error-code", "model_not_allowed")).json()
        assert len(refused) == 2 and all("may not use model 'gpt-4o'" in r["error_message"] for r in refused)
        one = (await remote(h, "logs", "--request-id", refused[0]["request_id"])).out
        assert one == (await direct(h, "logs", "--request-id", refused[0]["request_id"])).out and "ERROR_MESSAGE" in one
        assert (await remote(h, "logs", "--key", "nope")).error() == \
            "error: no virtual key named or with id 'nope'; see `shieldes key list`"
        # an id no row has: why, as GET /admin/v1/requests/{id} says it (not an empty table), in both modes
        unknown = (await remote(h, "logs", "--request-id", "0f0f0f0f")).error()
        assert unknown == (await direct(h, "logs", "--request-id", "0f0f0f0f")).error()
        assert unknown.startswith("error: no request with id '0f0f0f0f' in the request log: it may be older than")
        # a key without a budget: its spend over the last 30 days, through the API as on Postgres
        spent = (await remote(h, "--json", "budget", "show", "narrow")).json()
        assert spent == (await direct(h, "--json", "budget", "show", "narrow")).json()
        assert spent["amount_usd"] is None and spent["spent_nusd"] > 0
        # usage per key: the same rows (zeros for keys without usage) for any role that may read usage
        await h.create_key("idle")
        await h.sync()
        auditor = (await remote(h, "--json", "admin-token", "create", "--name", "aud", "--role", "auditor")).json()
        usages = (("usage",), ("usage", "--key", "narrow"),
                  ("usage", "--since", "7d", "--until", "1d"))  # times ago, as the days they fall on
        ran = await together(*(run for args in usages for run in (direct(h, "--json", *args), remote(
            h, "--json", *args), remote(h, "--json", *args, token=auditor["token"]))))
        for args, i in zip(usages, range(0, len(ran), 3), strict=True):
            here, there, audited = (r.json() for r in ran[i:i + 3])
            assert there == here, args
            assert audited == here, args
        # read: the usage and the unrevoked keys' names and ids, a page at a time; never the whole
        # config (a million keys' worth of it), which a usage reader had to fetch for the zero rows
        logged = "SELECT count(*) FROM request_log WHERE route LIKE %s"
        await wait_until(lambda: h.sql(logged, "/admin/v1/usage/keys")[0][0] >= 6)
        assert h.sql(logged, "/admin/v1/config%") == [(0,)]
        per_key = {r["key"]: r["requests"] for r in (await remote(h, "--json", "usage")).json()}
        assert per_key == {"narrow": 1, "idle": 0}
        assert (await remote(h, "--json", "key", "revoke", "idle")).code == 0
        assert (await remote(h, "--json", "usage", "--key", "idle")).json() == []  # as in direct mode
        assert (await direct(h, "--json", "usage", "--key", "idle")).json() == []
        assert (await remote(h, "usage", "--key", "nope")).error() == \
            "error: no virtual key named or with id 'nope'; see `shieldes key list`"


async def test_key_list_filters_by_team_and_name_and_stops_at_a_limit_alike_in_both_modes(database_url: str) -> None:
    # at a million keys a whole listing is a million rows: `key list` narrows as GET /admin/v1/keys does
    async with harness(database_url, admin_token=BOOT) as h:
        assert [r.code for r in await together(*(direct(h, "team", "create", team) for team in ("eng", "ops")))] \
            == [0, 0]
        made = await together(*(direct(h, "key", "create", "--name", name, *(("--team", team) if team else ()))
                                for name, team in (("eng-bot", "eng"), ("eng-App", "eng"), ("eng-old", "eng"),
                                                   ("ops-bot", "ops"), ("solo", None))))
        assert [r.code for r in made] == [0] * 5
        assert (await direct(h, "key", "revoke", "eng-old")).code == 0
        await h.sync()  # the node reads what the direct commands wrote
        expected = {("--team", "eng"): ["eng-App", "eng-bot"],
                    ("--team", "eng", "--all"): ["eng-App", "eng-bot", "eng-old"],
                    ("--search", "BOT"): ["eng-bot", "ops-bot"],
                    ("--search", "o", "--all", "--limit", "2"): ["eng-bot", "eng-old"],
                    ("--limit", "3"): ["eng-App", "eng-bot", "ops-bot"],
                    ("--team", "ops", "--search", "eng"): []}
        ran = await together(*(run for args in expected for run in (
            remote(h, "--json", "key", "list", *args), direct(h, "--json", "key", "list", *args),
            direct(h, "key", "list", *args))))
        for (args, names), i in zip(expected.items(), range(0, len(ran), 3), strict=True):
            r, d, table = ran[i:i + 3]
            assert [k["name"] for k in d.json()] == names, args
            assert (r.code, r.out, r.err) == (d.code, d.out, d.err), args
            assert table.code == 0 and len(table.out.splitlines()) == 1 + len(names), args  # a header, then the keys
        refusals = ((("--team", "nope"), 1, "no team named or with id 'nope'"),
                    (("--limit", "0"), 2, "'--limit': 0 is not in the range"))
        ran = await together(*(run(h, "key", "list", *bad) for bad, _, _ in refusals for run in (remote, direct)))
        for (bad, code, said), r, d in zip(refusals, ran[::2], ran[1::2], strict=True):
            assert r.error(code) == d.error(code) and said in d.err, bad


async def test_a_key_update_to_unpriced_models_under_a_budget_says_so_alike_in_both_modes(database_url: str) -> None:
    """As `key create --budget` does: the models a budget refuses for want of a price are named, in a
    warning line and in `unpriced_models` (a key update used to say nothing, then 403 model_not_priced)."""
    async with harness(database_url, admin_token=BOOT) as h:
        made = await direct(h, "provider", "add", "cheap", "--type", "openai", "--base-url", h.upstream.url,
                            "--api-key-env", "UP_KEY", "--models", "no-price-model")
        assert made.code == 0, made.err
        for name in ("r", "d"):
            assert (await direct(h, "key", "create", "--name", name, "--budget", "5")).code == 0
        await h.sync()
        ran = {run: await run(h, "--json", "key", "update", name, "--models", "no-price-model")
               for run, name in ((remote, "r"), (direct, "d"))}
        for one in ran.values():
            assert one.json()["unpriced_models"] == ["no-price-model"]
            assert one.err.startswith("warning: no price for no-price-model: requests for it from keys or teams "
                                      "with a budget are refused (403 model_not_priced)"), one.err
        assert ran[remote].err == ran[direct].err
        quiet = await remote(h, "--json", "key", "update", "r", "--rpm", "5")  # models untouched: nothing said
        assert "unpriced_models" not in quiet.json() and quiet.err == ""


async def test_a_budget_set_on_keys_allowed_unpriced_models_says_so_alike_in_both_modes(database_url: str) -> None:
    """As `key create --budget` does: a budget set on a key, or on a team whose keys may use models
    with no price, names those models (requests for them are refused, 403 model_not_priced); a
    budget on a team whose keys use only priced models says nothing."""
    async with harness(database_url, admin_token=BOOT) as h:
        made = await direct(h, "provider", "add", "cheap", "--type", "openai", "--base-url", h.upstream.url,
                            "--api-key-env", "UP_KEY", "--models", "no-price-model,priced-model")
        assert made.code == 0, made.err
        setup = [("pricing", "set", "priced-model", "--input", "1", "--output", "2"), ("team", "create", "quiet")]
        for mode in ("r", "d"):
            setup += [("key", "create", "--name", mode, "--models", "no-price-model"), ("team", "create", f"t{mode}"),
                      ("key", "create", "--name", f"{mode}-member", "--team", f"t{mode}", "--models", "no-price-model"),
                      ("key", "create", "--name", f"{mode}-priced", "--team", f"t{mode}", "--models", "priced-model")]
        setup += [("key", "create", "--name", "q", "--team", "quiet", "--models", "priced-model")]
        for args in setup:
            assert (await direct(h, *args)).code == 0, args
        await h.sync()
        said = ("warning: no price for no-price-model: requests for it from keys or teams with a budget are refused "
                "(403 model_not_priced)")
        for budget_of in (lambda mode: (mode,), lambda mode: ("--team", f"t{mode}")):
            ran = {run: await run(h, "--json", "budget", "set", *budget_of(name), "--amount", "5")
                   for run, name in ((remote, "r"), (direct, "d"))}
            for one in ran.values():
                assert one.json()["unpriced_models"] == ["no-price-model"]
                assert one.err.startswith(said) and one.err.count("\n") == 1, one.err
            assert ran[remote].err == ran[direct].err
            table = await direct(h, "budget", "set", *budget_of("d"), "--amount", "6")
            assert table.code == 0 and table.err.startswith(said), table.err
        for run in (remote, direct):  # the quiet team's keys use priced models only
            quiet = await run(h, "--json", "budget", "set", "--team", "quiet", "--amount", "5")
            assert "unpriced_models" not in quiet.json() and quiet.err == ""


async def test_an_empty_name_or_filter_is_refused_alike_in_both_modes(database_url: str) -> None:
    """`key show ''` through the API asked for /admin/v1/keys/, which no route served: the error said
    to fix SHIELDES_ADMIN_URL. Now each is the direct mode's line; an empty --key or --team filter,
    which the API took for no filter (every key's usage, every key), is refused in both modes."""
    async with harness(database_url, admin_token=BOOT) as h:
        commands = [("key", "show", ""), ("key", "revoke", ""), ("key", "update", "", "--rpm", "5"),
                    ("budget", "show", ""), ("budget", "show", "--team", ""), ("budget", "remove", ""),
                    ("provider", "remove", ""), ("model", "remove", ""), ("mcp", "remove", ""),
                    ("pricing", "unset", ""), ("admin-token", "revoke", ""), ("session", "revoke", ""),
                    ("usage", "--key", ""), ("key", "list", "--team", "")]
        for args in commands:
            here, there = await direct(h, *args), await remote(h, *args)
            assert there.error() == here.error(), args
            assert "SHIELDES_ADMIN_URL" not in there.err, args
        assert (await remote(h, "usage", "--key", "")).error() == (
            "error: the key filter is empty and would match nothing; give a value or leave it out")


async def test_a_rotation_of_an_expired_key_says_its_new_secret_is_refused_alike_in_both_modes(
        database_url: str) -> None:
    """A rotation changes the secret, not the expiry: an expired key's new secret is refused (401)
    until the expiry is moved, and `key rotate` says so (it used to say nothing)."""
    import time
    from datetime import datetime

    from tests.integration.admin_client import AdminClient

    async with harness(database_url, admin_token=BOOT) as h:
        expiry = {}
        for name in ("r", "d", "api"):
            made = await direct(h, "--json", "key", "create", "--name", name, "--expires-in", "0.3s")
            expiry[name] = datetime.fromisoformat(made.json()["expires_at"].replace("Z", "+00:00")).timestamp()
        assert (await direct(h, "key", "create", "--name", "live", "--expires-in", "30d")).code == 0
        await wait_until(lambda: time.time() > max(expiry.values()))  # the keys' expiry has passed
        await h.sync()

        def said(name: str) -> str:
            at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expiry[name]))
            return (f"key {name!r} expired at {at}: its new secret is refused (401) until the expiry is extended "
                    f"(`shieldes key update {name} --expires-in 30d`, or --no-expiry)")

        for run, name in ((remote, "r"), (direct, "d")):
            as_json = await run(h, "--json", "key", "rotate", name)
            assert as_json.json()["warnings"] == [said(name)] and as_json.json()["status"] == "expired"
            table = await run(h, "key", "rotate", name)
            assert table.code == 0 and table.err == f"warning: {said(name)}\n", table.err
            only = await run(h, "key", "rotate", name, "--secret-only")
            assert only.out.startswith("sk-shd-") and only.out.count("\n") == 1
            assert only.err == f"warning: {said(name)}\n"
        for run in (remote, direct):  # a key that has not expired: nothing said
            fine = await run(h, "--json", "key", "rotate", "live")
            assert "warnings" not in fine.json() and fine.err == ""
        status, answer = await AdminClient(h.base, BOOT).post("/admin/v1/keys/api/rotate")
        assert status == 200 and answer["warnings"] == [
            f"key 'api' expired at {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(expiry['api']))}: its new secret "
            "is refused (401) until the expiry is extended (PATCH /admin/v1/keys/api with a later `expires_at`, or "
            "null for none)"]
