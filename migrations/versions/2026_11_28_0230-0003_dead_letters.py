"""dead_letters: events the projector could not apply, and those held behind them

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 02:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dead_letters",
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("item_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("event_type", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column(
            "failed_at",
            sa.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("position", name=op.f("pk_dead_letters")),
    )
    op.create_index(op.f("ix_dead_letters_item_id"), "dead_letters", ["item_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_dead_letters_item_id"), table_name="dead_letters")
    op.drop_table("dead_letters")
