"""How long the values a callback brings may be, read from the schema's columns: a route
refuses an overlong id (400) before the database would (a 500), without reaching into the
schema, and the two cannot drift."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from receiver.store.schema import events, inbox

__all__ = ["EVENT_HEADER_CHARS", "ID_LIMITS"]


def _chars(column: sa.Column[Any]) -> int:
    length = getattr(column.type, "length", None)
    if not isinstance(length, int):
        raise TypeError(f"{column} has no length")
    return length


ID_LIMITS: Mapping[str, int] = {
    "task_id": _chars(events.c.task_id),
    "clip_id": _chars(events.c.clip_id),
    "platform": _chars(events.c.platform),
    "webhook_id": _chars(inbox.c.webhook_id),
}
"""Longest value each stored id may have, by the name the callback gives it."""

EVENT_HEADER_CHARS = _chars(inbox.c.event_header)
"""The stored X-Webhook-Event header is cut to this (informational, so cut, not refused)."""
