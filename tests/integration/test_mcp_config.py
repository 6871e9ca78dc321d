"""MCP servers as config: `shieldes mcp add|list|remove`, `key --mcp`, the admin API's
/admin/v1/mcp-servers, and their header values kept secret everywhere."""

from __future__ import annotations

from tests.cli import count_events, invoke, ok, refused
from tests.integration.admin_client import AdminClient
from tests.integration.gateway_harness import harness
from tests.integration.test_cli_secrets import dump_database

SECRET = "Bearer ghp-PLAINTEXT-mcp-token-789"
ENC = {"SHIELDES_ENCRYPTION_KEY": "a-passphrase"}
API = "/admin/v1"


def test_mcp_servers_through_the_cli(database_url: str) -> None:
    row = ok(database_url, "mcp", "add", "github", "--url", "https://mcp.example.com/mcp/",
             "--header", f"Authorization: {SECRET}", "--header-env", "X-Team: TEAM_ID", env=ENC)
    assert row["name"] == "github" and row["url"] == "https://mcp.example.com/mcp" and row["route"] == "/mcp/github"
    assert row["headers"] == {"Authorization": "encrypted", "X-Team": "env:TEAM_ID"}
    listed = ok(database_url, "mcp", "list", env=ENC)
    assert [m["name"] for m in listed] == ["github"] and listed[0]["headers"] == row["headers"]
    table = invoke(database_url, "mcp", "list", env=ENC)
    assert table.exit_code == 0 and "github" in table.stdout and "encrypted" in table.stdout

    # the header's value is stored encrypted, never printed, in no table in plaintext
    for args in (("mcp", "list"), ("audit", "log"), ("config", "show")):
        result = invoke(database_url, "--json", *args, env=ENC)
        assert result.exit_code == 0 and "PLAINTEXT" not in result.stdout, args
    assert "PLAINTEXT" not in dump_database(database_url)
    # the audit role reads which headers a server gets, not their values (encrypted or env:)
    [added] = [e for e in ok(database_url, "audit", "log") if e["type"] == "mcp_server.added"]
    assert added["data"]["headers"] == {"Authorization": "redacted", "X-Team": "redacted"}

    before = count_events(database_url)
    assert "already exists" in refused(database_url, "mcp", "add", "github", "--url", "https://x.io/mcp")
    assert "invalid --url 'ftp://x'" in refused(database_url, "mcp", "add", "other", "--url", "ftp://x")
    bad = refused(database_url, "mcp", "add", "other", "--url", "https://x.io", "--header", "Authorization")
    assert "use 'Name: value'" in bad
    assert "cannot be registered" in refused(database_url, "mcp", "add", "other", "--url", "https://x.io",
                                             "--header", "Host: evil", env=ENC)
    assert "invalid MCP server name" in refused(database_url, "mcp", "add", "a/b", "--url", "https://x.io")
    assert "no MCP server named 'nope'" in refused(database_url, "mcp", "remove", "nope")
    assert "no MCP server named 'jira'" in refused(database_url, "key", "create", "--name", "k", "--mcp",
                                                  "github,jira/search")
    assert "invalid --mcp entry" in refused(database_url, "key", "create", "--name", "k", "--mcp", "github/a b")
    assert count_events(database_url) == before  # nothing refused was written

    # a key's MCP access: none by default, set, replaced, cleared
    assert ok(database_url, "key", "create", "--name", "plain")["mcp"] == []
    key = ok(database_url, "key", "create", "--name", "agent", "--mcp", "github/search_code,github/get_issue")
    assert key["mcp"] == ["github/search_code", "github/get_issue"]
    assert ok(database_url, "key", "update", "agent", "--mcp", "github")["mcp"] == ["github"]
    assert ok(database_url, "key", "show", "agent")["mcp"] == ["github"]
    assert ok(database_url, "key", "update", "agent", "--no-mcp")["mcp"] == []
    assert "contradict" in refused(database_url, "key", "update", "agent", "--mcp", "*", "--no-mcp")
    assert ok(database_url, "key", "update", "agent", "--mcp", "*")["mcp"] == ["*"]

    # changed in place: a moved endpoint, a rotated token (the whole set replaced), keys keep their access
    moved = ok(database_url, "mcp", "update", "github", "--url", "https://mcp2.example.com/mcp", env=ENC)
    assert moved["url"] == "https://mcp2.example.com/mcp" and moved["headers"] == row["headers"]
    rotated = ok(database_url, "mcp", "update", "github", "--header", "Authorization: Bearer ghp-PLAINTEXT-new",
                 env=ENC)
    assert rotated["url"] == "https://mcp2.example.com/mcp" and rotated["headers"] == {"Authorization": "encrypted"}
    assert ok(database_url, "key", "show", "agent")["mcp"] == ["*"]
    assert "PLAINTEXT" not in dump_database(database_url)
    assert "nothing to change" in refused(database_url, "mcp", "update", "github")
    assert "no MCP server named 'nope'" in refused(database_url, "mcp", "update", "nope", "--url", "https://x.io")
    assert "invalid --url" in refused(database_url, "mcp", "update", "github", "--url", "ftp://x")

    assert ok(database_url, "mcp", "remove", "github")["removed"] is True
    assert ok(database_url, "mcp", "list") == []


async def test_mcp_servers_through_the_admin_api(database_url: str) -> None:
    async with harness(database_url, providers=False, admin_token="boot-token-123", encryption_key="pass") as h:
        api = AdminClient(h.base, "boot-token-123")
        status, added = await api.post(f"{API}/mcp-servers", {
            "name": "github", "url": "https://mcp.example.com/mcp",
            "headers": {"Authorization": SECRET}, "header_envs": {"X-Team": "TEAM_ID"}})
        assert status == 201, added
        assert added["headers"] == {"Authorization": "encrypted", "X-Team": "env:TEAM_ID"} and "position" in added
        assert "PLAINTEXT" not in str(added)
        status, listed = await api.get(f"{API}/mcp-servers")
        assert status == 200 and [m["name"] for m in listed["data"]] == ["github"] and "PLAINTEXT" not in str(listed)
        status, one = await api.get(f"{API}/mcp-servers/github")
        assert status == 200 and one["url"] == "https://mcp.example.com/mcp"

        status, bad = await api.post(f"{API}/mcp-servers", {"name": "x", "url": "nope"})
        assert status == 400 and "invalid `url` 'nope'" in bad["error"]["message"]
        status, missing = await api.call("DELETE", f"{API}/mcp-servers/nope")
        assert status == 404 and missing["error"]["code"] == "mcp_server_not_found"
        status, rotated = await api.call("PATCH", f"{API}/mcp-servers/github",
                                         {"headers": {"Authorization": "Bearer PLAINTEXT-rotated"}})
        assert status == 200 and rotated["headers"] == {"Authorization": "encrypted"}, rotated
        assert rotated["url"] == "https://mcp.example.com/mcp" and "PLAINTEXT" not in str(rotated)
        status, same = await api.call("PATCH", f"{API}/mcp-servers/github", {})
        assert status == 400 and "send `url`, or the new set in `headers`" in same["error"]["message"], same
        assert "GET /admin/v1/mcp-servers" in missing["error"]["message"]
        status, unknown = await api.post(f"{API}/keys", {"name": "k", "mcp": ["jira"]})
        assert status == 400 and "no MCP server named 'jira'" in unknown["error"]["message"]
        assert "POST /admin/v1/mcp-servers" in unknown["error"]["message"]

        status, key = await api.post(f"{API}/keys", {"name": "agent", "mcp": ["github/search_code"]})
        assert status == 201 and key["mcp"] == ["github/search_code"]
        status, key = await api.call("PATCH", f"{API}/keys/agent", {"mcp": None})
        assert status == 200 and key["mcp"] == []
        status, removed = await api.call("DELETE", f"{API}/mcp-servers/github")
        assert status == 200 and removed["removed"] is True
        assert (await api.get(f"{API}/mcp-servers"))[1]["data"] == []


def test_mcp_list_table(database_url: str) -> None:
    ok(database_url, "mcp", "add", "github", "--url", "https://api.githubcopilot.com/mcp/",
       "--header", f"Authorization: {SECRET}", env=ENC)
    assert invoke(database_url, "mcp", "list", env=ENC).stdout.splitlines() == [  # as docs/cli.md shows it
        "NAME    URL                                ROUTE        HEADERS",
        "github  https://api.githubcopilot.com/mcp  /mcp/github  Authorization=encrypted",
    ]


async def test_a_header_value_without_an_encryption_key_is_refused_naming_header_env(database_url: str) -> None:
    """With an external database and no SHIELDES_ENCRYPTION_KEY a header value cannot be stored; the
    refusal names the MCP way around it (--header-env, header_envs), not a provider's option."""
    message = refused(database_url, "mcp", "add", "github", "--url", "https://x.io/mcp",
                      "--header", f"Authorization: {SECRET}")
    assert "SHIELDES_ENCRYPTION_KEY" in message and "--header-env 'Name: VAR'" in message, message
    assert "--api-key-env" not in message and "PLAINTEXT" not in message
    async with harness(database_url, providers=False, admin_token="boot-token-123") as h:
        api = AdminClient(h.base, "boot-token-123")
        status, body = await api.post(f"{API}/mcp-servers", {"name": "github", "url": "https://x.io/mcp",
                                                             "headers": {"Authorization": SECRET}})
        assert status == 400 and 'send it in `header_envs` ({"Name": "VAR"})' in body["error"]["message"], body
        assert "PLAINTEXT" not in str(body)
