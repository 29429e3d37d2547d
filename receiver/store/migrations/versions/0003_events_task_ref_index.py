"""an index on events.task_ref

Each delivery reads the task's earlier handler results (`results_for_task`) by
`events.task_ref`; without an index that is a scan of every stored event, so dispatch slowed
down in proportion to history (3.5 instead of 50 deliveries/s at 100k stored events).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_events_task_ref", "events", ["task_ref"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_events_task_ref", table_name="events")
