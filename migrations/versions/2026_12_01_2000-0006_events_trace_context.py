"""events.trace_context: the writing request's W3C traceparent, when tracing is on

The projection batch that applies the event links to the write's trace (app/tracing.py).
Nullable, no default: ADD COLUMN of a nullable column without a default changes only
the catalog, not the table's rows.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 20:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("events", sa.Column("trace_context", sa.Text, nullable=True))


def downgrade() -> None:
    op.drop_column("events", "trace_context")
