"""inbox dedupe rests on what is signed: a replay key, and webhook ids scoped to their route

`X-Webhook-Id` is not covered by the signature, so a captured callback replayed with fresh ids
stored its body again each time, and an id was global: task A's callback with id W made task
B's genuine callback with id W a "duplicate". Now `replay_key` (a digest of the route, the
signed timestamp and the raw body) is unique, and `webhook_key` (a digest of the route, the
body's task id and the header's id) replaces the global uniqueness of `webhook_id`, which is
kept for display.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# 0001 left the unique constraint on inbox.webhook_id unnamed; these are the names it has.
_SQLITE_NAMES = {"uq": "uq_%(table_name)s_%(column_0_name)s"}
_POSTGRES_CONSTRAINT = "inbox_webhook_id_key"


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("inbox", naming_convention=_SQLITE_NAMES) as batch_op:
            batch_op.drop_constraint("uq_inbox_webhook_id", type_="unique")
    else:
        op.drop_constraint(_POSTGRES_CONSTRAINT, "inbox", type_="unique")
    with op.batch_alter_table("inbox", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "replay_key",
                sa.String(length=64),
                nullable=True,
                comment="digest of route, signed timestamp and body",
            )
        )
        batch_op.add_column(
            sa.Column(
                "webhook_key",
                sa.String(length=64),
                nullable=True,
                comment="digest of route, task id and X-Webhook-Id",
            )
        )
        batch_op.create_index("ux_inbox_replay_key", ["replay_key"], unique=True)
        batch_op.create_index("ux_inbox_webhook_key", ["webhook_key"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("inbox", schema=None) as batch_op:
        batch_op.drop_index("ux_inbox_webhook_key")
        batch_op.drop_index("ux_inbox_replay_key")
        batch_op.drop_column("webhook_key")
        batch_op.drop_column("replay_key")
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("inbox", naming_convention=_SQLITE_NAMES) as batch_op:
            batch_op.create_unique_constraint("uq_inbox_webhook_id", ["webhook_id"])
    else:
        op.create_unique_constraint(_POSTGRES_CONSTRAINT, "inbox", ["webhook_id"])
