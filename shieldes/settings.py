"""Configuration: every knob is a SHIELDES_* environment variable (or a line in .env)."""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shieldes import settings_env
from shieldes.settings_env import default_data_dir, default_node_id

__all__ = ["Settings", "default_data_dir", "table_source"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SHIELDES_", env_file=".env", extra="ignore")

    # Storage
    database_url: str | None = Field(
        default=None, description="postgresql://user:pass@host:port/db; unset starts an embedded Postgres"
    )
    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="where the embedded Postgres and the local encryption key live (one per user)",
    )
    db_pool_size: int = Field(default=4, ge=1, description="connections per node for appends and reads")
    db_request_timeout: float = Field(
        default=5.0, gt=0,
        description="seconds a request waits on Postgres (conversations, a stored response not in this node's "
                    "memory, admin config writes) before a 503 to retry: a stalled database holds none longer; "
                    "a stored-response write past it (plus 1 s per MB written) is cancelled and retried")
    db_admin_read_timeout: float = Field(
        default=30.0, gt=0,
        description="seconds an admin read waits on Postgres (usage, audit log, request log, config at a point, "
                    "cluster) before a 503 to retry: longer than db_request_timeout, as such reads may scan much; "
                    "in direct mode the CLI's reads and each config write (then maybe written: look before "
                    "retrying) wait the same")

    # Identity and network
    node_id: str = Field(default_factory=default_node_id, description="unique name of this node")
    host: str = "0.0.0.0"
    port: int = Field(default=8080, ge=0, le=65535)
    gossip_port: int = Field(default=7946, ge=0, le=65535)
    metrics_port: int | None = Field(
        default=None, ge=0, le=65535,
        description="also serve /metrics, /health and /ready on this port (of this process alone); "
                    "`serve --workers N`: worker K on metrics_port + K - 1, so each worker is scraped")
    advertise_host: str | None = Field(default=None, description="address peers use to reach this node")
    peers: str = Field(default="", description="static gossip peers, comma separated host:port")
    tls_cert: Path | None = Field(
        default=None, description="PEM certificate (chain) to serve HTTPS on the API port (with tls_key)")
    tls_key: Path | None = Field(default=None, description="PEM private key of tls_cert")
    tls_reload_interval: float = Field(
        default=10.0, ge=0,
        description="at most this often (seconds, as connections come and pushes go) a node looks whether the "
        "files of tls_cert/tls_key or of gossip TLS changed and uses the new ones for new connections (0: read at "
        "start only)")
    region: str | None = Field(
        default=None, description="this node's region: routing prefers deployments added with the same --region")

    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="log level of `shieldes serve` (debug shows the embedded Postgres' output)"
    )

    # Secrets
    cluster_secret: str | None = Field(default=None, description="HMAC key for gossip messages")
    gossip_tls_cert: Path | None = Field(default=None, description="PEM certificate for mutual TLS on gossip")
    gossip_tls_key: Path | None = Field(default=None, description="PEM private key of gossip_tls_cert")
    gossip_tls_ca: Path | None = Field(default=None, description="PEM CA that signs every node's gossip certificate")
    encryption_key: str | None = Field(default=None, description="encrypts provider keys stored in the log")
    encryption_key_old: str | None = Field(
        default=None, description="the previous encryption key, still accepted for decryption during a rotation"
    )
    admin_token: str | None = Field(
        default=None, description="bootstrap token for the admin API and console (role admin); the CLI "
        "sends it to SHIELDES_ADMIN_URL")
    admin_url: str | None = Field(
        default=None, description="the CLI's admin commands go through this node's admin API "
        "(http(s)://HOST:PORT) with SHIELDES_ADMIN_TOKEN instead of writing to Postgres")

    # Console sign-in with OpenID Connect (optional; all of issuer, client id and secret enable it)
    oidc_issuer: str | None = Field(default=None, description="OIDC issuer URL (discovery at /.well-known/...)")
    oidc_client_id: str | None = Field(default=None, description="OIDC client id of the console")
    oidc_client_secret: str | None = Field(default=None, description="OIDC client secret (also signs sessions)")
    oidc_role_claim: str = Field(default="roles", description="ID token claim holding the user's groups/roles")
    oidc_role_map: str = Field(
        default="", description="claim value to role, e.g. 'platform=admin,sre=operator' (unmapped values that "
        "name a role are used as is)")
    oidc_redirect_url: str | None = Field(
        default=None, description="callback URL registered at the provider (default: this node's /ui/oidc/callback)")
    oidc_session_seconds: float = Field(default=8 * 3600.0, gt=0, description="console session lifetime after sign-in")
    oidc_idle_seconds: float = Field(
        default=1800.0, ge=0, description="console idle timeout: an SSO session unused this long is refused on "
                                          "every node, and a console signed in with a token forgets it (0: none)")
    admin_sign_in_failures: int = Field(
        default=10, ge=0, description="failed admin API / console sign-ins a client address may make per minute "
        "before it is answered 429 (per node; 0: no bound)")
    admin_sign_in_failures_total: int = Field(
        default=100, ge=0, description="failed admin API / console sign-ins per minute on a node, all addresses "
        "together, before guessable credentials are answered 429 (0: no bound)")
    trusted_proxies: str = Field(
        default="", description="load balancers / ingresses (addresses or networks, comma-separated) whose "
        "X-Forwarded-For names the client (request log, traces, sign-in limit)")

    # Gateway behaviour
    # Anthropic takes Messages requests up to 32 MB: a coding agent's turn carries every screenshot of its
    # conversation, and the gateway must not refuse what the provider takes
    max_body_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)
    upstream_connect_timeout: float = Field(default=5.0, gt=0)
    upstream_timeout: float = Field(default=600.0, gt=0)
    upstream_retries: int = Field(default=2, ge=0, description="extra attempts across deployments")
    retry_backoff: float = Field(default=0.05, ge=0)
    breaker_failures: int = Field(default=5, ge=1, description="consecutive failures that open a circuit")
    breaker_cooldown: float = Field(default=10.0, gt=0)
    shutdown_grace: float = Field(default=30.0, ge=0, description="seconds to let in-flight requests finish")
    disconnect_drain_seconds: float = Field(
        default=10.0, ge=0, description="after a client leaves mid-stream, read the upstream for its usage"
    )
    stream_stall_seconds: float = Field(
        default=30.0, gt=0, description="seconds of upstream silence mid-stream after which a client leaving counts "
        "as the deployment's failure (it stalled) rather than the client's impatience; raise it for models that "
        "think silently for longer")
    header_timeout: float = Field(
        default=30.0, gt=0, description="seconds a client has to send a request's line and headers (from the "
        "connection's opening, or the first byte of a later request); past it: 408 and the connection closed")
    body_timeout: float = Field(
        default=60.0, gt=0, description="seconds a request's body may go without a byte arriving (a slow upload "
        "is fine, a stalled one is not); past it: 408 and the connection closed")
    max_upstream_body_bytes: int = Field(
        default=256 * 1024 * 1024, ge=1024, description="most bytes of an upstream's answer the node holds at "
        "once: a JSON answer (chat, media, MCP) read whole, or one event of a stream; past it: 502 and the "
        "attempt counted as the deployment's failure")
    open_files_check_interval: float = Field(
        default=5.0, gt=0, description="seconds between counts of the node's open files against its limit "
        "(a warning past 80% of it, a note once back under 70%)")

    # Budgets
    allow_unpriced: bool = Field(
        default=False, description="serve models without a price to keys and teams with a budget (they cost $0)"
    )
    budget_max_tokens: int = Field(
        default=4096, ge=1, description="completion cap set on budgeted requests that name no max_tokens"
    )

    # Usage accounting
    flush_interval: float = Field(default=0.5, gt=0, description="seconds between batched usage appends")
    usage_buffer_max: int = Field(default=1_000_000, ge=1, description="max unflushed usage deltas held")

    # Cluster
    poll_interval: float = Field(default=1.0, gt=0, description="position poll that backs up LISTEN")
    gossip_interval: float = Field(default=0.15, gt=0)
    heartbeat_interval: float = Field(default=1.0, gt=0)
    node_timeout: float = Field(default=5.0, gt=0, description="peers silent this long leave the fan-out")
    dead_node_retention: float = Field(default=86_400.0, ge=0, description="seconds a node that stopped "
                                       "heartbeating without leaving (killed, lost) stays in cluster_nodes, "
                                       "shown dead by `cluster status`, before the leader removes its row "
                                       "(0: kept until removed by hand)")
    gossip_fanout: int = Field(default=0, ge=-100_000, description="peers pushed to per gossip round, the rest "
                               "pulled by digest (0: every peer every round; -1: automatic, ceil(log2 N) + 1 "
                               "and every peer within node_timeout / 3; -X: every peer while the cluster has "
                               "fewer than X nodes, automatic from X on; k: k peers)")

    # Snapshots and compaction
    snapshot_every_events: int = Field(default=100_000, ge=1)
    snapshot_every_seconds: float = Field(default=300.0, gt=0)
    snapshots_kept: int = Field(default=3, ge=1)
    compact_retain_seconds: float = Field(default=7 * 24 * 3600.0, ge=0)
    compact_interval: float = Field(default=3600.0, gt=0)

    # Stored responses (POST /v1/responses with store: true)
    responses_retention_seconds: float = Field(
        default=30 * 24 * 3600.0, gt=0,
        description="stored responses older than this are unreadable and their daily partitions dropped")
    responses_read_wait: float = Field(
        default=2.0, ge=0,
        description="seconds a node polls Postgres for a response id another node may still be writing")
    responses_cache_bytes: int = Field(
        default=64 * 1024 * 1024, ge=0,
        description="bytes (as JSON) of recent stored responses each node keeps in memory")
    responses_history_bytes: int = Field(
        default=32 * 1024 * 1024, ge=0,
        description="bytes (as JSON, counted per response) of stored responses' conversations each node keeps "
        "parsed, so a continuation by previous_response_id reads only its own items (0: none kept)")
    memory_trim_interval: float = Field(
        default=10.0, ge=0,
        description="seconds without a request after which a node gives the free memory of its C heap back to the "
        "system (0: never; a burst of large bodies otherwise leaves its RSS hundreds of MB up)")
    responses_pending_bytes: int = Field(
        default=256 * 1024 * 1024, gt=0,
        description="bytes (as JSON) of stored responses a node holds waiting for Postgres; past them a request "
        "with store: true gets a 503 to retry, before any upstream call")
    responses_purge_interval: float = Field(
        default=3600.0, gt=0, description="seconds between retention purges of stored responses")
    responses_background_max: int = Field(
        default=64, ge=0,
        description="background responses (background: true) a node runs at once; past them a create gets a 503 "
        "to retry (on another node)")

    # Request log, logs and traces
    request_log: bool = Field(default=True, description="write one row per HTTP request to the request log")
    request_log_retention: int = Field(
        default=30, ge=1, description="days of request log kept (e.g. 30 or 30d); older daily partitions are dropped"
    )
    request_log_buffer: int = Field(
        default=100_000, ge=1, description="request log rows held while Postgres is away; beyond it the oldest drop"
    )
    request_log_interval: float = Field(default=1.0, gt=0, description="seconds between request log batch writes")
    request_log_upkeep_interval: float = Field(
        default=3600.0, gt=0, description="seconds between partition creation/retention runs on the leader"
    )
    capture_bodies: Literal["off", "errors", "all"] = Field(
        default="off", description="store request/response bodies: off, errors (status >= 400) or all"
    )
    capture_max_bytes: int = Field(default=16_384, ge=0, description="bodies are cut to this many bytes each")
    capture_redact: list[str] = Field(
        default_factory=list, description='extra regexes redacted from captured bodies (JSON list, e.g. ["\\\\d{16}"])'
    )
    log_format: Literal["text", "json"] = Field(default="text", description="process log lines as text or JSON")
    access_log: bool = Field(default=True, description="one access log line per request (logger shieldes.access)")
    otel_endpoint: str | None = Field(
        default=None, description="OTLP/HTTP endpoint for traces, e.g. http://collector:4318 (needs shieldes[otel])"
    )
    otel_service_name: str = Field(default="shieldes", description="service.name of exported traces")

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower(cls, v: object) -> object:
        return settings_env.lower(v)

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, v: Path) -> Path:
        return settings_env.absolute(v)

    @field_validator("database_url", "oidc_issuer", "oidc_client_id", "oidc_client_secret", "oidc_redirect_url",
                     "otel_endpoint")
    @classmethod
    def _blank_is_none(cls, v: str | None) -> str | None:
        return settings_env.blank_is_none(v)

    @field_validator("oidc_role_map")
    @classmethod
    def _role_map(cls, v: str) -> str:
        return settings_env.role_map(v)

    @field_validator("capture_redact")
    @classmethod
    def _regexes(cls, v: list[str]) -> list[str]:
        return settings_env.regexes(v)

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, v: str) -> str:
        return settings_env.networks(v)

    @field_validator("request_log_retention", mode="before")
    @classmethod
    def _days(cls, v: object) -> object:
        return settings_env.days(v)

    def static_peers(self) -> list[str]:
        return [p.strip() for p in self.peers.split(",") if p.strip()]


# --- the table shieldes/settings_table.py holds, for reading settings without pydantic ---------

_KINDS: dict[Any, tuple[str, bool]] = {
    str: ("str", False), str | None: ("str", True), int: ("int", False), float: ("float", False),
    bool: ("bool", False), Path: ("path", False), Path | None: ("path", True),
}


def _kind(annotation: Any) -> tuple[str, bool, tuple[str, ...]]:
    if typing.get_origin(annotation) is Literal:
        return "literal", False, tuple(typing.get_args(annotation))
    if annotation in _KINDS:
        return (*_KINDS[annotation], ())
    return "json", isinstance(annotation, types.UnionType) and type(None) in typing.get_args(annotation), ()


def table_source() -> str:
    """The text of shieldes/settings_table.py: each field's kind, default, bounds and validators."""
    validators: dict[str, list[tuple[str, str]]] = {}
    for name, decorator in Settings.__pydantic_decorators__.field_validators.items():
        assert name in settings_env.VALIDATORS, f"{name}: add it to settings_env.VALIDATORS"
        for field in decorator.info.fields:
            validators.setdefault(field, []).append((name, decorator.info.mode))
    config = Settings.model_config
    assert not config.get("case_sensitive") and config.get("env_nested_delimiter") is None
    lines = [
        '"""Generated from shieldes.settings.Settings by `python -m shieldes.settings --write`:',
        'do not edit. Per field: kind, nullable, default, default factory, bounds, choices, validators."""',
        "",
        "from __future__ import annotations",
        "",
        "from typing import Any",
        "",
        f"ENV_PREFIX = {config.get('env_prefix')!r}",
        f"ENV_FILE = {config.get('env_file')!r}",
        "FIELDS: dict[str, tuple[Any, ...]] = {",
    ]
    for name, info in Settings.model_fields.items():
        kind, nullable, choices = _kind(info.annotation)
        factory = info.default_factory.__name__ if info.default_factory is not None else None
        assert factory is None or factory in settings_env.FACTORIES, f"{name}: add {factory} to FACTORIES"
        default = None if factory is not None else info.default
        bounds = tuple((op, getattr(m, op)) for m in info.metadata for op in ("ge", "gt", "le", "lt")
                       if hasattr(m, op))
        entry = (kind, nullable, default, factory, bounds, choices, tuple(validators.get(name, ())))
        lines.append(f"    {name!r}: {entry!r},")
    lines.append("}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # `--write` rewrites the table in place (a `>` redirect would empty it first)
    import sys
    from pathlib import Path

    if sys.argv[1:] == ["--write"]:
        Path(__file__).with_name("settings_table.py").write_text(table_source())
    else:
        print(table_source(), end="")
