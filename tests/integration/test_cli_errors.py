"""Bad or refused admin commands: non-zero exit, one `error: ...` line on stderr, nothing appended."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from psycopg.conninfo import conninfo_to_dict

from tests import pg
from tests.cli import count_events, invoke, ok, populate, refused

BAD = [
    # (args, a fragment the message must contain)
    (["team", "create", "eng"], "already exists"),
    (["key", "create", "--name", "app"], "already exists"),
    (
        [
            "provider",
            "add",
            "openai",
            "--type",
            "openai",
            "--base-url",
            "https://x.io",
            "--api-key-env",
            "K",
            "--models",
            "a",
        ],
        "already exists",
    ),
    (["key", "revoke", "nope"], "no virtual key"),
    (["key", "revoke", "old"], "already revoked"),
    (["key", "rotate", "nope"], "no virtual key"),
    (["key", "show", "nope"], "no virtual key"),
    (["key", "update", "nope", "--rpm", "5"], "no virtual key"),
    (["key", "update", "app"], "nothing to change"),
    (["key", "update", "app", "--rpm", "5", "--no-rpm"], "contradict"),
    (["key", "create", "--name", "k2", "--team", "nope"], "no team"),
    (["key", "create", "--name", "k2", "--rpm", "-1"], "--rpm"),
    (["key", "create", "--name", "k2", "--rpm", "abc"], "--rpm"),
    (["key", "create", "--name", "k2", "--budget", "-5"], "--budget"),
    (["key", "create", "--name", "k2", "--budget", "nan"], "--budget"),
    (["key", "create", "--name", "k2", "--budget", "1", "--budget-period", "7x"], "malformed budget period"),
    (["key", "create", "--name", "k2", "--expires-in", "soon"], "--expires-in"),
    (["key", "create", "--name", "k2", "--expires-at", "2001-01-01"], "in the past"),
    (["key", "create", "--name", "k2", "--models", " , "], "--models"),
    (["key", "create", "--name", "k2", "--models", "a,a"], "twice"),
    (["key", "create"], "--name"),
    (["budget", "set", "app", "--amount", "-1"], "--amount"),
    (["budget", "set", "app", "--amount", "1", "--period", "0d"], "malformed budget period"),
    (["budget", "set", "nope", "--amount", "1"], "no virtual key"),
    (["budget", "set", "--team", "nope", "--amount", "1"], "no team"),
    (["budget", "set", "app", "--team", "eng", "--amount", "1"], "exactly one"),
    (["budget", "set", "old", "--amount", "1"], "revoked"),
    (["budget", "show", "nope"], "no virtual key"),
    (["budget", "remove", "--team", "eng", "--amount", "1"], "--amount"),
    (
        [
            "provider",
            "add",
            "p2",
            "--type",
            "openai",
            "--base-url",
            "ftp://x",
            "--api-key-env",
            "K",
            "--models",
            "a",
        ],
        "--base-url",
    ),
    (["provider", "add", "p2", "--type", "bogus", "--base-url", "https://x.io", "--models", "a"], "--type"),
    (
        [
            "provider",
            "add",
            "p2",
            "--type",
            "openai",
            "--base-url",
            "https://x.io",
            "--api-key-env",
            "BAD-VAR",
            "--models",
            "a",
        ],
        "environment variable",
    ),
    (
        [
            "provider",
            "add",
            "p2",
            "--type",
            "openai",
            "--base-url",
            "https://x.io",
            "--api-key",
            "sk-1",
            "--models",
            "a",
        ],
        "SHIELDES_ENCRYPTION_KEY",
    ),
    (
        [
            "provider",
            "add",
            "p2",
            "--type",
            "openai",
            "--base-url",
            "https://x.io",
            "--models",
            "a",
            "--weight",
            "0",
        ],
        "--weight",
    ),
    (["provider", "remove", "nope"], "no provider"),
    (["provider", "update", "nope", "--weight", "2"], "no provider"),
    (["provider", "update", "openai"], "nothing to change"),
    (["pricing", "set", "gpt-4o", "--input", "-1", "--output", "1"], "--input"),
    (["pricing", "set", "gpt-4o", "--input", "inf", "--output", "1"], "--input"),
    (["team", "create", "t2", "--budget", "5", "--budget-period", "1y"], "malformed budget period"),
    (["usage", "--key", "nope"], "no virtual key"),
    (["logs", "--key", "nope"], "no virtual key"),
    (["logs", "--key", "k\x00"], "NUL"),
    # a time ago from before the year 1 (the `d` meant as "everything"): refused, not a traceback
    (["usage", "--since", "999999999d"], "--since '999999999d' reaches back before the year 1; give a shorter"),
    (["logs", "--since", "99999999999999999999w"], "reaches back before the year 1"),
    (["audit", "log", "--until", "99999999999999d"], "--until '99999999999999d' reaches back before the year 1"),
    # a header given twice: the last one won, silently (lists refuse repeated entries)
    (["mcp", "add", "m9", "--url", "https://x.io/mcp", "--header-env", "A: X", "--header-env", "A: Y"],
     "--header-env 'A' is given twice; give each header once"),
    (["pricing", "set", "gpt-4o", "--input", "1", "--output", "1", "--multiplier", "flex=0.5", "--multiplier",
      "flex=2"], "--multiplier flex is given twice; give each once"),
    (["pricing", "set", "gpt-4o", "--input", "1", "--output", "1", "--per-use", "container=1", "--per-use",
      "container=2"], "--per-use container is given twice"),
    (["pricing", "set", "gpt-4o", "--input", "1", "--output", "1", "--modality", "audio_input=1", "--modality",
      "audio_input=3"], "--modality audio_input is given twice"),
    (["key", "create", "--name", "k2", "--models", "a", "--models", "b"], "--models is given twice; give it once"),
    (["logs", "--limit", "5", "--limit=7"], "--limit is given twice"),
    (["--admin-url", "http://a:1", "--admin-url", "http://b:2", "key", "list"], "--admin-url is given twice"),
    (["logs", "--request-id", "0f0f0f0f"], "no request with id '0f0f0f0f' in the request log: it may be older"),
    (["logs", "--request-id", "0f0f0f0f", "--key", "app"], "that the other filters keep (drop them"),
    (["logs", "--route", "chat/completions"], "malformed route 'chat/completions': use a route such as"),
    (["usage", "--since", "yesterday"], "--since"),
    (["usage", "--since", "2026-02-01", "--until", "2026-01-01"], "--since is after --until"),
    (["audit", "log", "--since", "last week"], "--since"),
    (["audit", "log", "--limit", "0"], "--limit"),
    (["audit", "log", "--type", "virtual_key.revokd"], "did you mean 'virtual_key.revoked'?"),
    (["audit", "log", "--type", ""], "unknown event type '': use a family"),
    # an empty filter matches nothing: an empty answer that reads as "none such"
    (["audit", "log", "--actor", ""], "the actor filter is empty and would match nothing; give a value or leave it"),
    (["logs", "--tag", ""], "the tag filter is empty and would match nothing"),
    (["session", "list", "--user", ""], "the user filter is empty and would match nothing"),
    # control characters and SQL-looking text are refused as names, never executed or crashed on
    (["team", "create", "x'; DROP TABLE events; --"], "invalid team name"),
    (["key", "create", "--name", "a\x00b"], "invalid key name"),
    (["key", "create", "--name", "a\x1b[31mred"], "invalid key name"),
    (["key", "create", "--name", "k2", "--models", "gpt\n4"], "invalid model name"),
    # a model pattern: `*` only at the end, and never where one exact model is meant
    (["key", "create", "--name", "k2", "--models", "gpt-*-mini"], "'*' may only end a pattern"),
    (["provider", "add", "p2", "--type", "openai", "--base-url", "https://x.io", "--models", "*claude"],
     "'*' may only end a pattern"),
    (["pricing", "set", "claude-*-x", "--input", "1", "--output", "1"], "'*' may only end a pattern"),
    (["routing", "set", "claude-*", "--strategy", "cost"], "a pattern is not a model here"),
    (["pricing", "unset", "claude-*"], "no price was set for 'claude-*'"),
    (
        ["provider", "add", "p\x07", "--type", "openai", "--base-url", "https://x.io", "--models", "a"],
        "invalid provider name",
    ),
    (["audit", "log", "--subject", "a\x00b"], "NUL"),
    (["usage", "--key", "k\x00"], "NUL"),
    (["budget", "show", "--team", "\x00"], "no team"),
    (
        ["key", "create", "--name", "k2", "--budget", "1", "--budget-period", "1d\x00"],
        "malformed budget period",
    ),
    (
        ["provider", "add", "p2", "--type", "openai", "--base-url", "https://x.io/\x00", "--models", "a"],
        "--base-url",
    ),
    # hosts and ports no request could be sent to: refused here, not at every request later
    (["provider", "add", "p2", "--type", "openai", "--base-url", "http://[::1", "--models", "a"], "IPv6"),
    (["provider", "add", "p2", "--type", "anthropic", "--base-url", "http://[zz]/v1", "--models", "a"], "--base-url"),
    (["provider", "add", "p2", "--type", "openai", "--base-url", "http://x.io:99999", "--models", "a"], "port"),
    (["provider", "add", "p2", "--type", "openai", "--base-url", "http://x.io:abc", "--models", "a"], "port"),
    (["provider", "update", "openai", "--base-url", "http://[::1"], "--base-url"),
    (["provider", "add", "p2", "--type", "anthropic", "--base-url", "https://x.io", "--models", "a", "--responses",
      "native"], "type 'anthropic' has no /v1/responses of its own (only openai and azure have one)"),
    (["routing", "set", "gpt-4o", "--strategy", "cost", "--default"], "pass either --strategy or --default, not both"),
    (["routing", "set", "gpt-4o"], "or --default to forget gpt-4o's strategy"),
    # the CLI's own words (the admin API names GET /admin/v1/sessions instead: test_admin_api_wording.py)
    (["session", "revoke", "ses_nope"], "is running (it expired or never existed); see `shieldes session list`"),
    (["session", "revoke", "--user", "nobody@example.com"],
     "'nobody@example.com' has no console session running; see `shieldes session list` for the users signed in"),
    (["session", "revoke"], "name the session to end: SESSION_ID (from `shieldes session list`), or --user USER"),
    (["session", "revoke", "ses_x", "--user", "a@example.com"], "pass either SESSION_ID or --user USER, not both"),
]


@pytest.fixture(scope="module")
def populated(pg_server: str) -> Iterator[str]:
    """One populated database for every refusal: a refused command appends nothing, so they can share it."""
    with pg.seeded(pg_server, populate) as url:
        yield url


@pytest.mark.parametrize(("args", "fragment"), BAD, ids=[" ".join(a)[:60] for a, _ in BAD])
def test_refused_commands_append_nothing(populated: str, args: list[str], fragment: str) -> None:
    before = count_events(populated)
    line = refused(populated, *args)
    assert fragment in line, line
    assert count_events(populated) == before


JSON_REFUSALS = [
    # (args, exit code, error code): the same refusal with --json at the root and on the command
    (["key", "revoke", "nope"], 1, "key_not_found"),
    (["key", "create", "--name", "app"], 1, None),  # whatever code the refusal has, it is there
    (["key", "create", "--name", "k2", "--rpm", "abc"], 2, "usage_error"),
    (["key", "nosuch"], 2, "usage_error"),
    (["key", "create", "--name", "k2", "--models", "a", "--models", "b"], 2, "usage_error"),  # (b alone, silently)
    (["budget", "set", "app", "--team", "eng", "--amount", "1"], 1, None),
]


def test_a_limit_past_any_count_lists_every_key(populated: str) -> None:
    """(a --limit beyond what a list can index was a traceback)"""
    assert [k["name"] for k in ok(populated, "key", "list", "--limit", "9" * 25)] == ["app"]


@pytest.mark.parametrize(("args", "exit_code", "code"), JSON_REFUSALS, ids=[" ".join(a) for a, _, _ in JSON_REFUSALS])
def test_json_refusals_are_json_on_stderr(populated: str, args: list[str], exit_code: int, code: str | None) -> None:
    """With --json a refusal is one JSON line on stderr, {"error": {"message", "code"}}, with the
    exit code the plain line has; stdout stays empty (a script reading JSON from it reads nothing)."""
    plain = invoke(populated, *args)
    assert plain.exit_code == exit_code and plain.stderr.startswith("error: ")
    for given in (["--json", *args], [*args, "--json"]):
        result = invoke(populated, *given)
        assert result.exit_code == exit_code, (given, result.stderr)
        assert result.stdout == ""
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        error = json.loads(lines[0])["error"]
        assert error["message"] == plain.stderr.strip().removeprefix("error: ")
        assert isinstance(error["code"], str) and error["code"]
        if code is not None:
            assert error["code"] == code


def test_unreachable_database(database_url: str) -> None:
    url = "postgresql://nobody:secretpw@127.0.0.1:1/nowhere"
    for args in (["key", "list"], ["key", "create", "--name", "a"], ["key", "revoke", "a"]):
        line = refused(url, *args)
        assert "cannot reach Postgres at nobody@127.0.0.1:1/nowhere" in line and "SHIELDES_DATABASE_URL" in line
        assert "secretpw" not in line
    assert "SHIELDES_DATABASE_URL" in refused("mysql://x", "team", "list")


def test_a_unix_socket_database_is_named_as_user_path_and_database(database_url: str) -> None:
    """The embedded Postgres' kind of URL (`?host=/dir`): `user@/dir (unix socket)/db`, not
    `/dir (unix socket)/db` with the user left out, and never the password."""
    url = "postgresql://app:secretpw@/shieldes?host=/nonexistent/pg"
    for args in (["db", "status"], ["key", "list"], ["db", "upgrade"]):
        line = refused(url, *args)
        assert "cannot reach Postgres at app@/nonexistent/pg (unix socket)/shieldes:" in line, line
        assert "SHIELDES_DATABASE_URL" in line and "secretpw" not in line
    info = conninfo_to_dict(database_url)
    if str(info.get("host", "")).startswith("/"):  # the embedded test server: where `db upgrade` looked
        done = ok(database_url, "db", "upgrade")
        assert done["database"] == f"{info['user']}@{info['host']} (unix socket)/{info['dbname']}"


def test_schema_not_at_head(empty_database_url: str) -> None:
    for args in (["key", "create", "--name", "a"], ["usage"], ["audit", "log"], ["audit", "verify"]):
        assert "shieldes db upgrade" in refused(empty_database_url, *args)
    result = invoke(empty_database_url, "db", "upgrade")
    assert result.exit_code == 0
    assert ok(empty_database_url, "key", "list") == []


def test_odd_but_valid_text_round_trips(database_url: str) -> None:
    """Free-form text (the actor) that looks like SQL or holds control characters is stored as text,
    found by filters, and printed without raw control characters."""
    actor = "x'); DROP TABLE events; --\x1b[31m\u00e9"
    ok(
        database_url,
        "pricing",
        "set",
        "gpt-4o",
        "--input",
        "1",
        "--output",
        "2",
        env={"SHIELDES_ACTOR": actor},
    )
    assert [e["actor"] for e in ok(database_url, "audit", "log", "--actor", actor)] == [actor]
    table = invoke(database_url, "audit", "log")
    assert table.exit_code == 0 and "\x1b" not in table.stdout and "DROP TABLE events" in table.stdout
    assert ok(database_url, "audit", "log", "--subject", "'; DROP TABLE events; --", "--type", "pricing") == []
    assert "unknown event type '%_'" in refused(database_url, "audit", "log", "--type", "%_")  # no LIKE wildcard
    assert count_events(database_url) == 1


def test_usage_errors_are_one_line_and_bare_groups_show_help() -> None:
    url = "postgresql://unused@127.0.0.1:1/x"  # never reached: click refuses before any I/O
    for args in (
        ["key", "bogus"],
        ["key", "create", "--bogus"],
        ["key", "create", "--name"],
        ["budget", "set", "k"],
    ):
        line = refused(url, *args, code=2)
        assert line.endswith("--help`"), line
    bare = invoke(url, "key")
    assert bare.exit_code == 2 and "Commands:" in bare.stderr and "create" in bare.stderr


def test_compact_retain_reads_durations_as_the_other_commands_do() -> None:
    url = "postgresql://unused@127.0.0.1:1/x"  # never reached: the duration is read before any I/O
    retain = refused(url, "compact", "--retain", "soon")
    expires = refused(url, "key", "create", "--name", "k", "--expires-in", "soon")
    assert retain == expires.replace("--expires-in", "--retain"), (retain, expires)
    assert "use a number and a unit s, m, h, d or w" in retain
