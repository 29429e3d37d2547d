"""Tables. Times are unix seconds (float) so both dialects compare and sort them alike."""

from __future__ import annotations

import sqlalchemy as sa

__all__ = ["admin_sessions", "attempts", "deliveries", "events", "inbox", "metadata", "tasks"]

metadata = sa.MetaData()

tasks = sa.Table(
    "tasks",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True, comment="relay's own id; in callback tokens"),
    sa.Column("upstream_id", sa.String(128), unique=True, nullable=True),
    sa.Column("family", sa.String(32), nullable=False),
    sa.Column("platform", sa.String(32), nullable=False),
    sa.Column("state", sa.String(32), nullable=False),
    sa.Column("origin", sa.String(16), nullable=False, comment="relay | external"),
    sa.Column("prompt", sa.Text, nullable=True),
    sa.Column("params", sa.JSON, nullable=False),
    sa.Column("labels", sa.JSON, nullable=False),
    sa.Column("handlers", sa.JSON, nullable=True, comment="null: every matching handler"),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("next_poll_at", sa.Float, nullable=True),
    sa.Column("poll_attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("deadline_at", sa.Float, nullable=True),
)
sa.Index("ix_tasks_created_at", tasks.c.created_at)
sa.Index("ix_tasks_next_poll_at", tasks.c.next_poll_at)

inbox = sa.Table(
    "inbox",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("webhook_id", sa.String(256), nullable=True),
    sa.Column("task_id", sa.String(128), nullable=True),
    sa.Column("source", sa.String(16), nullable=False, comment="callback | poll"),
    sa.Column("event_header", sa.String(64), nullable=True),
    sa.Column("body", sa.LargeBinary, nullable=False, comment="the raw bytes as received"),
    sa.Column("received_at", sa.Float, nullable=False),
    sa.Column(
        "replay_key",
        sa.String(64),
        nullable=True,
        comment="digest of route, signed timestamp and body",
    ),
    sa.Column(
        "webhook_key",
        sa.String(64),
        nullable=True,
        comment="digest of route, task id and X-Webhook-Id",
    ),
)
sa.Index("ix_inbox_task_id", inbox.c.task_id)
sa.Index("ux_inbox_replay_key", inbox.c.replay_key, unique=True)
sa.Index("ux_inbox_webhook_key", inbox.c.webhook_key, unique=True)

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("inbox_id", sa.String(64), sa.ForeignKey("inbox.id"), nullable=True),
    sa.Column("dedupe_key", sa.String(320), unique=True, nullable=False),
    sa.Column("task_id", sa.String(128), nullable=False),
    sa.Column("task_ref", sa.String(64), nullable=True),
    sa.Column("clip_id", sa.String(128), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("platform", sa.String(32), nullable=False),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("clip", sa.JSON, nullable=False),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("received_at", sa.Float, nullable=False),
)
sa.Index("ix_events_task_id", events.c.task_id)
sa.Index("ix_events_received_at", events.c.received_at)
sa.Index("ix_events_task_ref", events.c.task_ref)

deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("event_id", sa.String(64), sa.ForeignKey("events.id"), nullable=False),
    sa.Column("handler", sa.String(128), nullable=False),
    sa.Column(
        "state", sa.String(16), nullable=False, comment="pending | running | succeeded | dead"
    ),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", sa.Float, nullable=False),
    sa.Column("lease_owner", sa.String(128), nullable=True),
    sa.Column("lease_until", sa.Float, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("blame", sa.String(16), nullable=True),
    sa.Column("result", sa.JSON, nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column(
        "stage",
        sa.Integer,
        nullable=False,
        server_default="0",
        comment="runs after the event's deliveries with a lower stage have finished",
    ),
    sa.UniqueConstraint("event_id", "handler", name="uq_deliveries_event_handler"),
)
sa.Index("ix_deliveries_due", deliveries.c.state, deliveries.c.next_attempt_at)
sa.Index("ix_deliveries_event_id", deliveries.c.event_id)

attempts = sa.Table(
    "attempts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("delivery_id", sa.String(64), sa.ForeignKey("deliveries.id"), nullable=False),
    sa.Column("number", sa.Integer, nullable=False),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("finished_at", sa.Float, nullable=True),
    sa.Column("outcome", sa.String(16), nullable=False, comment="running | succeeded | failed"),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("blame", sa.String(16), nullable=True),
)
sa.Index("ix_attempts_delivery_id", attempts.c.delivery_id)

admin_sessions = sa.Table(
    "admin_sessions",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True, comment="SHA-256 of the cookie's session id"),
    sa.Column("opened_at", sa.Float, nullable=False),
    sa.Column("revoked_at", sa.Float, nullable=True, comment="set by logout; null: open"),
)
sa.Index("ix_admin_sessions_opened_at", admin_sessions.c.opened_at)
