"""admin_sessions: dashboard sessions the database can end (logout revokes a copied cookie)

A session cookie is signed, not stored, so a copy of it stayed valid after logout until it
expired. Each sign-in now opens a row keyed by a digest of the cookie's session id; logout
sets `revoked_at`, and pages are served only while the row is open (receiver/store/sessions.py).
Cookies from before this revision carry no session id: their holders sign in once more.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "admin_sessions",
        sa.Column(
            "id",
            sa.String(length=64),
            nullable=False,
            comment="SHA-256 of the cookie's session id",
        ),
        sa.Column("opened_at", sa.Float(), nullable=False),
        sa.Column("revoked_at", sa.Float(), nullable=True, comment="set by logout; null: open"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_admin_sessions_opened_at", "admin_sessions", ["opened_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_admin_sessions_opened_at", table_name="admin_sessions")
    op.drop_table("admin_sessions")
