"""events.recorded_at: when the database appended the event (for lag, in seconds)

occurred_at is the domain's moment, taken in the command handler before the write's
round trips; recorded_at is the database clock at the INSERT, the transaction's last
statement before COMMIT. Projection lag is measured from it.

Added nullable and without a default first, then given the default: a volatile default
in ADD COLUMN would rewrite the whole events table under an exclusive lock. Rows from
before this migration keep NULL (readers fall back to occurred_at).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 01:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("events", sa.Column("recorded_at", sa.TIMESTAMP(timezone=True), nullable=True))
    op.alter_column("events", "recorded_at", server_default=sa.text("clock_timestamp()"))


def downgrade() -> None:
    op.drop_column("events", "recorded_at")
