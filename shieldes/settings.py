"""Configuration: every knob is a SHIELDES_* environment variable (or a line in .env)."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shieldes.roles import parse_role_map


def _default_node_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def default_data_dir() -> Path:
    """One per user, found from any folder: $XDG_DATA_HOME/shieldes, else ~/.local/share/shieldes."""
    xdg = os.environ.get("XDG_DATA_HOME", "").strip()
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "share"
    return base / "shieldes"


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

    # Identity and network
    node_id: str = Field(default_factory=_default_node_id, description="unique name of this node")
    host: str = "0.0.0.0"
    port: int = Field(default=8080, ge=0, le=65535)
    gossip_port: int = Field(default=7946, ge=0, le=65535)
    advertise_host: str | None = Field(default=None, description="address peers use to reach this node")
    peers: str = Field(default="", description="static gossip peers, comma separated host:port")
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
        default=None, description="bootstrap token for the admin API and console (role admin)")

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

    # Gateway behaviour
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
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
    gossip_fanout: int = Field(default=0, ge=-1, description="peers pushed to per gossip round, the rest "
                               "pulled by digest (0: every peer every round; -1: automatic, ceil(log2 N) + 1 "
                               "and every peer within node_timeout / 3; k: k peers)")

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
    responses_purge_interval: float = Field(
        default=3600.0, gt=0, description="seconds between retention purges of stored responses")

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
        return v.strip().lower() if isinstance(v, str) else v

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, v: Path) -> Path:
        return v.expanduser().absolute()  # the same place whatever folder a later command runs in

    @field_validator("database_url", "oidc_issuer", "oidc_client_id", "oidc_client_secret", "oidc_redirect_url",
                     "otel_endpoint")
    @classmethod
    def _blank_is_none(cls, v: str | None) -> str | None:
        return v or None

    @field_validator("oidc_role_map")
    @classmethod
    def _role_map(cls, v: str) -> str:
        parse_role_map(v)  # refuse a bad map at start, not at the first sign-in
        return v

    @field_validator("request_log_retention", mode="before")
    @classmethod
    def _days(cls, v: object) -> object:
        """'30d', '2w' or a plain number of days."""
        if isinstance(v, str):
            text = v.strip().lower()
            for suffix, mult in (("d", 1), ("w", 7)):
                if text.endswith(suffix) and text[:-1].strip().isdigit():
                    return int(text[:-1]) * mult
        return v

    def static_peers(self) -> list[str]:
        return [p.strip() for p in self.peers.split(",") if p.strip()]
