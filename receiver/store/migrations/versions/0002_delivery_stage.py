"""delivery stage (handler ordering with `after`) and an index on deliveries.event_id

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "stage",
                sa.Integer(),
                server_default="0",
                nullable=False,
                comment="runs after the event's deliveries with a lower stage have finished",
            )
        )
        batch_op.create_index("ix_deliveries_event_id", ["event_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_deliveries_event_id")
        batch_op.drop_column("stage")
