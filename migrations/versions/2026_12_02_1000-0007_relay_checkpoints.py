"""relay_checkpoints: the outbox relay's position, and who holds the one active lease

`items relay` publishes every event to a NATS JetStream stream in position order. Its
row (one per stream) says how far the broker has acknowledged, moved only after the
acknowledgement, and which relay process holds the lease that lets it publish; a lease
not renewed lapses by the database's clock and a standby takes over.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.TIMESTAMP(timezone=True)


def upgrade() -> None:
    op.create_table(
        "relay_checkpoints",
        sa.Column("stream", sa.Text, nullable=False),
        sa.Column("position", sa.BigInteger, nullable=False, server_default=sa.text("0")),
        sa.Column("owner", sa.Text, nullable=True),
        sa.Column("owner_pid", sa.Integer, nullable=True),
        sa.Column("owner_host", sa.Text, nullable=True),
        sa.Column("lease_until", TIMESTAMP, nullable=True),
        sa.Column("acquired_at", TIMESTAMP, nullable=True),
        sa.Column("updated_at", TIMESTAMP, nullable=False, server_default=sa.text("now()")),
        sa.PrimaryKeyConstraint("stream", name="pk_relay_checkpoints"),
    )


def downgrade() -> None:
    op.drop_table("relay_checkpoints")
