"""partition ownership: leases, epochs, members, and the partition count

Several projector processes divide the read model's partitions between them
(app/infrastructure/postgres/leases.py). Each partition of each layout of each read model
(a REDIS_PREFIX) has one row: its owner and lease, and the epoch of the owner's
acquisition, taken from a sequence, so it only ever grows; Redis refuses a write whose
epoch is older than one it has seen. Members are the projector processes alive now;
projection_layout keeps the partition count a rebuild chose.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 19:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.TIMESTAMP(timezone=True)


def upgrade() -> None:
    op.execute(sa.schema.CreateSequence(sa.Sequence("projection_epochs")))
    op.create_table(
        "projection_owners",
        sa.Column("read_model", sa.Text, nullable=False),
        sa.Column("layout", sa.Text, nullable=False),
        sa.Column("partition", sa.Integer, nullable=False),
        sa.Column("epoch", sa.BigInteger, nullable=False, server_default=sa.text("0")),
        sa.Column("owner", sa.Text, nullable=True),
        sa.Column("owner_pid", sa.Integer, nullable=True),
        sa.Column("owner_host", sa.Text, nullable=True),
        sa.Column("lease_until", TIMESTAMP, nullable=True),
        sa.Column("acquired_at", TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("read_model", "layout", "partition", name="pk_projection_owners"),
    )
    op.create_table(
        "projector_members",
        sa.Column("member", sa.Text, nullable=False),
        sa.Column("read_model", sa.Text, nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("host", sa.Text, nullable=False),
        sa.Column("started_at", TIMESTAMP, nullable=False, server_default=sa.text("now()")),
        sa.Column("seen_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("member", name="pk_projector_members"),
    )
    op.create_table(
        "projection_layout",
        sa.Column("read_model", sa.Text, nullable=False),
        sa.Column("partitions", sa.Integer, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False, server_default=sa.text("now()")),
        sa.PrimaryKeyConstraint("read_model", name="pk_projection_layout"),
    )


def downgrade() -> None:
    op.drop_table("projection_layout")
    op.drop_table("projector_members")
    op.drop_table("projection_owners")
    op.execute(sa.schema.DropSequence(sa.Sequence("projection_epochs")))
