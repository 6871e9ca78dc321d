"""SQLAlchemy table metadata mirroring the migrations (for alembic's autogenerate comparisons)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Identity,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData()

events = Table(
    "events",
    metadata,
    Column("position", BigInteger, primary_key=True),
    Column("stream", Text, nullable=False),
    Column("type", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("data", JSONB, nullable=False),
    Column("metadata", JSONB, nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Column("seq", BigInteger),
    Column("prev_hash", Text),
    Column("hash", Text),
)

log_head = Table(
    "log_head",
    metadata,
    Column("id", SmallInteger, primary_key=True),
    Column("position", BigInteger, nullable=False),
    Column("config_position", BigInteger, nullable=False),
    Column("config_hash", Text, nullable=False),
)

snapshots = Table(
    "snapshots",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("position", BigInteger, nullable=False),
    Column("schema_version", Text, nullable=False),
    Column("format", Integer, nullable=False),
    Column("state", LargeBinary, nullable=False),
    Column("checksum", Text, nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("node_id", Text),
    Column("leader_epoch", BigInteger),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("teams", LargeBinary),  # the teams part (migration 0012), sealed apart: teams_checksum
    Column("teams_checksum", Text),
)

cluster_nodes = Table(
    "cluster_nodes",
    metadata,
    Column("node_id", Text, primary_key=True),
    Column("http_address", Text),
    Column("gossip_address", Text),
    Column("version", Text),
    Column("boot_epoch", BigInteger, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("heartbeat_at", DateTime(timezone=True), nullable=False),
    Column("position", BigInteger, nullable=False),
    Column("info", JSONB, nullable=False),
)

leader_epoch = Table(
    "leader_epoch",
    metadata,
    Column("id", SmallInteger, primary_key=True),
    Column("epoch", BigInteger, nullable=False),
    Column("node_id", Text),
    Column("acquired_at", DateTime(timezone=True)),
)

# Partitioned by range of created_at (one partition per UTC day, created on demand).
stored_responses = Table(
    "stored_responses",
    metadata,
    Column("id", Text, primary_key=True),
    Column("created_at", DateTime(timezone=True), primary_key=True),
    Column("key_id", Text, nullable=False),
    Column("previous_response_id", Text),
    Column("model", Text, nullable=False),
    Column("input", JSONB, nullable=False),
    Column("response", JSONB, nullable=False),
)

# Conversations API: a conversation and its items in order (seq); items go with their conversation.
conversations = Table(
    "conversations",
    metadata,
    Column("id", Text, primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("key_id", Text, nullable=False),
    Column("metadata", JSONB, nullable=False),
)

conversation_items = Table(
    "conversation_items",
    metadata,
    Column("conversation_id", Text, ForeignKey("conversations.id", ondelete="CASCADE"), primary_key=True),
    Column("seq", BigInteger, Identity(always=True), primary_key=True),
    Column("id", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("item", JSONB, nullable=False),
    UniqueConstraint("conversation_id", "id"),
)

cluster_membership_log = Table(
    "cluster_membership_log",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Column("event", Text, nullable=False),
    Column("node_id", Text, nullable=False),
    Column("boot_epoch", BigInteger),
    Column("leader_epoch", BigInteger),
    Column("observed_by", Text, nullable=False),
    Column("details", JSONB, nullable=False),
)
