"""The PostgreSQL schema as SQLAlchemy Core tables. Migrations create it; this module
only describes it (for Alembic and for the test that compares the two); the statements
that run are in the other modules of this folder."""

from typing import Any

from sqlalchemy import (
    ARRAY,
    TIMESTAMP,
    BigInteger,
    Column,
    Identity,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    Sequence,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.types import UserDefinedType

# Every constraint gets a predictable name, so migrations can refer to it.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class XID8(UserDefinedType[int]):
    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "xid8"


items = Table(
    "items",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("name", Text, nullable=False),
    Column("description", Text, nullable=True),
    Column("price", Numeric(11, 2), nullable=False),
    Column("tags", ARRAY(Text), nullable=False, server_default=text("'{}'")),
    Column("version", Integer, nullable=False),
    Column("created_at", TIMESTAMP(timezone=True), nullable=False),
    Column("updated_at", TIMESTAMP(timezone=True), nullable=False),
)

# The outbox and the log the projection reads, in position order.
events = Table(
    "events",
    metadata,
    Column("position", BigInteger, Identity(always=True), primary_key=True),
    Column("event_id", UUID(as_uuid=True), nullable=False, unique=True),
    Column("item_id", UUID(as_uuid=True), nullable=False),
    Column("item_version", Integer, nullable=False),
    Column("type", Text, nullable=False),
    Column("payload", JSONB, nullable=False),
    Column("occurred_at", TIMESTAMP(timezone=True), nullable=False),
    # The writing transaction's id: lets the projector tell a gap that a still-open
    # transaction will fill from one an aborted transaction left for good.
    Column("tx_id", XID8, nullable=False, server_default=text("pg_current_xact_id()")),
    # The database's clock at the INSERT (the last statement before COMMIT), where
    # occurred_at is the handler's: projection lag is measured from this one. NULL on
    # rows written before it existed.
    Column("recorded_at", TIMESTAMP(timezone=True), server_default=text("clock_timestamp()")),
    # The writing request's trace context (W3C traceparent) when tracing is on: the
    # projection batch that applies the event links to it (app/tracing.py).
    Column("trace_context", Text, nullable=True),
    UniqueConstraint("item_id", "item_version"),
)

# Idempotency-Key records, written in the same transaction as the change they answer.
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("key", Text, primary_key=True),
    Column("fingerprint", Text, nullable=False),
    Column("status", Integer, nullable=False),
    Column("headers", JSONB, nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("created_at", TIMESTAMP(timezone=True), nullable=False, index=True),
)

# Events the projector could not apply, kept until `items dead-letters retry` applies
# them. While an item has any, its later events wait here too (in position order).
dead_letters = Table(
    "dead_letters",
    metadata,
    Column("position", BigInteger, primary_key=True),
    Column("item_id", UUID(as_uuid=True), nullable=False, index=True),
    Column("event_type", Text, nullable=False),
    Column("error", Text, nullable=False),
    Column("failed_at", TIMESTAMP(timezone=True), nullable=False, server_default=text("now()")),
)

# Fencing tokens of partition ownership: every acquisition of a partition takes the next
# value, so a later owner always holds a higher epoch than any earlier one, whatever
# happened to Redis (the fence it checks there is only a copy).
projection_epochs = Sequence("projection_epochs", metadata=metadata)

# Who projects which partition of which layout of which read model (its REDIS_PREFIX),
# until when (leases.py). A lease that is not renewed lapses by the database's clock: a
# dead or stuck owner's partitions move within a lease, not when TCP notices a dead host.
projection_owners = Table(
    "projection_owners",
    metadata,
    Column("read_model", Text, primary_key=True),
    Column("layout", Text, primary_key=True),
    Column("partition", Integer, primary_key=True),
    Column("epoch", BigInteger, nullable=False, server_default=text("0")),
    Column("owner", Text, nullable=True),
    Column("owner_pid", Integer, nullable=True),
    Column("owner_host", Text, nullable=True),
    Column("lease_until", TIMESTAMP(timezone=True), nullable=True),
    Column("acquired_at", TIMESTAMP(timezone=True), nullable=True),
)

# The projector processes alive now (a heartbeat each): partitions are divided by them.
projector_members = Table(
    "projector_members",
    metadata,
    Column("member", Text, primary_key=True),
    Column("read_model", Text, nullable=False),
    Column("pid", Integer, nullable=False),
    Column("host", Text, nullable=False),
    Column("started_at", TIMESTAMP(timezone=True), nullable=False, server_default=text("now()")),
    Column("seen_at", TIMESTAMP(timezone=True), nullable=False),
)

# How many partitions each read model has: set by `items rebuild --partitions N`. Kept
# here, not only in Redis, so a read model restored after Redis lost its data gets the
# count it had, whatever PROJECTION_PARTITIONS a process was started with.
projection_layout = Table(
    "projection_layout",
    metadata,
    Column("read_model", Text, primary_key=True),
    Column("partitions", Integer, nullable=False),
    Column("updated_at", TIMESTAMP(timezone=True), nullable=False, server_default=text("now()")),
)

# The outbox relay's row per NATS stream: how far the broker has acknowledged (moved only
# after the acknowledgement), and the lease of the one relay that may publish now.
relay_checkpoints = Table(
    "relay_checkpoints",
    metadata,
    Column("stream", Text, primary_key=True),
    Column("position", BigInteger, nullable=False, server_default=text("0")),
    Column("owner", Text, nullable=True),
    Column("owner_pid", Integer, nullable=True),
    Column("owner_host", Text, nullable=True),
    Column("lease_until", TIMESTAMP(timezone=True), nullable=True),
    Column("acquired_at", TIMESTAMP(timezone=True), nullable=True),
    Column("updated_at", TIMESTAMP(timezone=True), nullable=False, server_default=text("now()")),
)
