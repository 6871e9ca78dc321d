"""The MCP gateway's pure decisions: a key's allow-list, registering a server, reading JSON-RPC
posts, filtering tools/list answers and relaying server-sent events."""

from __future__ import annotations

import orjson
import pytest

from shieldes.errors import CommandRejected
from shieldes.mcp.access import allows_method, allows_server, allows_tool, check_entries, filter_tools
from shieldes.mcp.jsonrpc import McpRefused, check_access, filtered, parse_post
from shieldes.mcp.servers import header_refs, mcp_server_added, parse_header
from shieldes.mcp.sse import EventSplitter, rewrite_event
from shieldes.projections.commands import CreateKey, UpdateKey, decide
from shieldes.projections.config import apply_config
from shieldes.projections.shared_commands import AddMcpServer, RemoveMcpServer, SetMcpHeaders
from shieldes.projections.state import ConfigState, McpServer

SERVERS = {"github": McpServer("github", "https://x.io/mcp"), "jira": McpServer("jira", "https://j.io/mcp")}


def test_no_entries_allow_nothing_and_a_server_entry_allows_all_of_it() -> None:
    for entries in (None, ()):
        assert not allows_server(entries, "github") and not allows_tool(entries, "github", "search")
    assert allows_server(("*",), "github") and allows_tool(("*",), "jira", "anything")
    assert allows_tool(("github",), "github", "search") and not allows_server(("github",), "jira")
    assert allows_method(("github",), "github", "resources/read")


def test_tool_entries_allow_those_tools_and_the_session_only() -> None:
    entries = ("github/search", "jira")
    assert allows_server(entries, "github") and allows_tool(entries, "github", "search")
    assert not allows_tool(entries, "github", "delete_repo")
    for method in ("initialize", "ping", "tools/list", "notifications/initialized"):
        assert allows_method(entries, "github", method)
    assert not allows_method(entries, "github", "resources/read")
    assert not allows_method(entries, "github", "prompts/get")
    tools = [{"name": "search"}, {"name": "delete_repo"}, {"bogus": 1}]
    assert filter_tools(entries, "github", tools) == [{"name": "search"}]
    assert filter_tools(entries, "jira", tools) == tools


def test_entries_are_checked_against_the_registered_servers() -> None:
    assert check_entries(["github/search", "jira/*", "*"], SERVERS) == ("github/search", "jira", "*")
    with pytest.raises(CommandRejected, match="no MCP server named 'slack'"):
        check_entries(["slack"], SERVERS)
    for bad in ("github/", "github/a b", "/x", "gi thub", "github/a,b"):
        with pytest.raises(CommandRejected, match="invalid --mcp entry"):
            check_entries([bad], SERVERS)
    with pytest.raises(CommandRejected, match="twice"):
        check_entries(["github", "github/*"], SERVERS)


def test_decide_and_fold_a_server_and_a_keys_access() -> None:
    state = ConfigState()
    events = decide(state, AddMcpServer("github", "https://x.io/mcp/", {"Authorization": "enc:abc"}))
    for e in events:
        state = apply_config(state, e)
    assert state.mcp_servers["github"] == McpServer("github", "https://x.io/mcp", {"Authorization": "enc:abc"})
    for e in decide(state, CreateKey("key_1", "agent", "h1", "sk-a", mcp=("github/search",))):
        state = apply_config(state, e)
    assert state.mcp_access == {"key_1": ("github/search",)}
    for e in decide(state, CreateKey("key_2", "plain", "h2", "sk-b")):
        state = apply_config(state, e)
    assert "key_2" not in state.mcp_access
    update = decide(state, UpdateKey("agent", rpm=10))
    assert [e.TYPE for e in update] == ["rate_limit.set"]  # access unchanged: not written again
    for e in decide(state, UpdateKey("agent", mcp=None)):
        state = apply_config(state, e)
    assert state.mcp_access == {}
    with pytest.raises(CommandRejected, match="nothing to change"):
        decide(state, UpdateKey("agent", mcp=None))
    state = apply_config(state, decide(state, SetMcpHeaders("github", {"Authorization": "enc:def"}))[0])
    assert state.mcp_servers["github"] == McpServer("github", "https://x.io/mcp", {"Authorization": "enc:def"})
    state = apply_config(state, decide(state, RemoveMcpServer("github"))[0])
    assert state.mcp_servers == {}
    for gone in (RemoveMcpServer("github"), SetMcpHeaders("github", {})):
        with pytest.raises(CommandRejected, match="see `shieldes mcp list`"):
            decide(state, gone)


def test_registered_headers_are_refs_and_checked() -> None:
    assert parse_header("Authorization: Bearer a:b") == ("Authorization", "Bearer a:b")
    for bad in ("Authorization", ": x", "X-A:"):
        with pytest.raises(CommandRejected):
            parse_header(bad)
    with pytest.raises(CommandRejected, match="has no 'Name:' part") as no_colon:
        parse_header("Authorization Bearer secret-value")
    assert "secret-value" not in str(no_colon.value)
    refs = header_refs({"Authorization": "Bearer t"}, {"X-Team": "TEAM"}, "a-passphrase")
    assert refs["X-Team"] == "env:TEAM" and refs["Authorization"].startswith("enc:")
    assert "Bearer t" not in refs["Authorization"]
    with pytest.raises(CommandRejected, match="control character"):
        header_refs({"X-A": "a\r\nHost: evil"}, {}, "k")
    with pytest.raises(CommandRejected, match="given both"):
        header_refs({"Authorization": "x"}, {"authorization": "VAR"}, "k")
    with pytest.raises(CommandRejected, match=r"needs SHIELDES_ENCRYPTION_KEY.*--header-env 'Name: VAR'"):
        header_refs({"Authorization": "Bearer t"}, {}, None)  # (no encryption key: not the provider's advice)
    assert header_refs({}, {"X-Team": "TEAM"}, None) == {"X-Team": "env:TEAM"}
    with pytest.raises(CommandRejected, match="set by the gateway"):
        mcp_server_added(ConfigState(), "s", "https://x.io", {"Mcp-Session-Id": "env:X"})
    with pytest.raises(CommandRejected, match="env:VAR or encrypted"):
        mcp_server_added(ConfigState(), "s", "https://x.io", {"Authorization": "Bearer plaintext"})
    with pytest.raises(CommandRejected, match="invalid --url"):
        mcp_server_added(ConfigState(), "s", "file:///etc/passwd", {})


def _post(*messages: dict[str, object], batch: bool = False) -> bytes:
    return orjson.dumps(list(messages) if batch else messages[0])


def test_a_post_is_read_for_its_method_tool_and_tool_lists() -> None:
    call = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "search", "arguments": {}}}
    listing = {"jsonrpc": "2.0", "id": "a", "method": "tools/list"}
    posted = parse_post(_post(call, listing, batch=True))
    assert (posted.method, posted.tool, posted.tools_list_ids, posted.tool_calls) == ("tools/call", "search",
                                                                                      ("a",), 1)
    reply = parse_post(_post({"jsonrpc": "2.0", "id": 3, "result": {}}))  # a client's answer to the server
    assert reply.method is None and reply.tool_calls == 0
    for raw, status in ((b"{nope", 400), (b"[]", 400), (b'{"id": 1}', 400)):
        with pytest.raises(McpRefused) as refused:
            parse_post(raw)
        assert refused.value.status == status
    with pytest.raises(McpRefused, match=r"params\.name"):
        parse_post(_post({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {}}))


def test_a_tool_outside_the_allow_list_is_refused_naming_the_setting() -> None:
    call = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "delete_repo"}}
    with pytest.raises(McpRefused) as refused:
        check_access(parse_post(_post(call)), ("github/search",), "github", "agent")
    assert refused.value.ids == (7,) and refused.value.code == "tool_not_allowed"
    assert "`shieldes key update agent --mcp ...,github/delete_repo`" in refused.value.message
    check_access(parse_post(_post(call)), ("github",), "github", "agent")
    resources = {"jsonrpc": "2.0", "id": 8, "method": "resources/read", "params": {"uri": "x"}}
    with pytest.raises(McpRefused, match="may use only some tools"):
        check_access(parse_post(_post(resources)), ("github/search",), "github", "agent")


def test_tools_list_answers_are_filtered_and_others_left_alone() -> None:
    answer = {"jsonrpc": "2.0", "id": 1, "result": {"tools": [{"name": "search"}, {"name": "delete_repo"}],
                                                    "nextCursor": "c"}}
    cut = filtered(answer, (1,), ("github/search",), "github")
    assert cut["result"] == {"tools": [{"name": "search"}], "nextCursor": "c"}
    assert filtered(answer, (2,), ("github/search",), "github") is answer
    progress = {"jsonrpc": "2.0", "method": "notifications/progress", "params": {}}
    assert filtered(progress, (1,), ("github/search",), "github") is progress


def test_events_are_split_as_they_complete_and_only_changed_ones_rewritten() -> None:
    splitter = EventSplitter()
    assert splitter.feed(b"event: message\r\ndata: {\"a\"") == []
    assert splitter.feed(b": 1}\r\n\r\nid: 2\ndata: {}\n\nda") == [b"event: message\r\ndata: {\"a\": 1}\r\n\r\n",
                                                                  b"id: 2\ndata: {}\n\n"]
    assert splitter.rest() == b"da"
    event = b"event: message\nid: 9\ndata: {\"id\":1,\"result\":{\"tools\":[{\"name\":\"a\"},{\"name\":\"b\"}]}}\n\n"
    out = rewrite_event(event, lambda m: {**m, "result": {"tools": m["result"]["tools"][:1]}})
    assert out == b'event: message\nid: 9\ndata: {"id":1,"result":{"tools":[{"name":"a"}]}}\n\n'
    assert rewrite_event(event, lambda m: m) is event
    assert rewrite_event(b": keep-alive\n\n", lambda m: 1 / 0) == b": keep-alive\n\n"


def test_the_startup_report_names_mcp_headers_this_node_cannot_read() -> None:
    from shieldes.checks import startup_report
    from shieldes.secrets import Keyring

    state = ConfigState()
    for command in (AddMcpServer("github", "https://x.io/mcp", {"Authorization": Keyring("k").encrypt("Bearer t"),
                                                                "X-Team": "env:TEAM"}),):
        for e in decide(state, command):
            state = apply_config(state, e)
    configured, missing = startup_report(state, keyring=Keyring("k"), environ={"TEAM": "a"}, priced=lambda m: True,
                                         peers=0, gossip=False)
    assert "mcp servers: github" in configured and not [m for m in missing if "MCP" in m]
    _, missing = startup_report(state, keyring=Keyring(None), environ={}, priced=lambda m: True, peers=0,
                                gossip=False)
    lines = [m for m in missing if m.startswith("MCP server 'github'")]
    assert len(lines) == 2 and any("set TEAM in the environment" in m for m in lines)
    assert any("SHIELDES_ENCRYPTION_KEY" in m for m in lines) and all("502" in m for m in lines)


def test_a_session_id_is_bound_to_the_key_and_server_that_opened_it() -> None:
    from shieldes.mcp.sessions import PREFIX, session_key, unwrap, wrap

    key = session_key("cluster-secret")
    upstream = "5f0c2d5e8b1a4a6f9e0d7c3b2a1f0e9d"
    sid = wrap(key, "key_a", "github", upstream)
    assert sid.startswith(PREFIX) and upstream not in sid
    assert all(0x21 <= ord(c) <= 0x7E for c in sid)  # visible ASCII, as MCP asks of a session id
    assert wrap(key, "key_a", "github", upstream) == sid  # the same on every answer and every node
    assert unwrap(session_key("cluster-secret"), "key_a", "github", sid) == upstream
    # a key with an odd id, a server name with dots: no triple spells another
    assert wrap(key, "a", "b.c", "x") != wrap(key, "a.b", "c", "x")

    def refused(key_bytes: bytes, key_id: str, server: str, given: str) -> McpRefused:
        with pytest.raises(McpRefused) as exc:
            unwrap(key_bytes, key_id, server, given)
        return exc.value

    for key_bytes, key_id, server, given in (
        (key, "key_b", "github", sid),  # another key
        (key, "key_a", "jira", sid),  # another server
        (session_key("other-cluster"), "key_a", "github", sid),  # another cluster's secret
        (key, "key_a", "github", upstream),  # the server's bare id
        (key, "key_a", "github", sid[:-1] + ("A" if sid[-1] != "A" else "B")),  # the MAC altered
        (key, "key_a", "github", PREFIX + wrap(key, "key_a", "github", "other")[len(PREFIX):].split(".")[0]
         + "." + sid.split(".")[-1]),  # another upstream id under this one's MAC
        (key, "key_a", "github", PREFIX + "!!!.???"),
        (key, "key_a", "github", ""),
    ):
        exc = refused(key_bytes, key_id, server, given)
        assert exc.status == 404 and exc.code == "mcp_session_not_found"
        assert "initialize without Mcp-Session-Id" in exc.message
