"""The rows the store's read queries return, as pydantic models: one definition for the code
that reads them (the API, the CLI, the dashboard), the JSON the API answers with, and the
OpenAPI document's schemas (generated from these classes, never written out by hand).

Times are unix seconds in Python and ISO 8601 (UTC) in JSON, as they always were on the wire.
Fields are in table column order, which is the order of keys in the JSON. The hot paths
(ingest, claim, outbox) never build these: only the operator surface's reads do, once a row.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, WithJsonSchema

from receiver.states import (
    AttemptOutcome,
    DeliveryState,
    EventKind,
    Family,
    Source,
    TaskOrigin,
    TaskState,
)

__all__ = [
    "ROW_MODELS",
    "AttemptRow",
    "DeliveryDetail",
    "DeliveryRow",
    "EventDetail",
    "EventRow",
    "InboxRow",
    "InboxSummary",
    "Row",
    "TaskDetail",
    "TaskRow",
    "UnixTime",
    "iso_time",
]


def iso_time(seconds: float) -> str:
    """Unix seconds as the API shows every time: ISO 8601 with microseconds and `+00:00`."""
    return datetime.fromtimestamp(seconds, tz=UTC).isoformat()


UnixTime = Annotated[
    float,
    PlainSerializer(iso_time, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
"""A stored time: unix seconds (a float, so both dialects sort it alike); ISO 8601 in JSON."""


class Row(BaseModel):
    """A read-only row; columns it does not name (an inbox row's dedupe keys) are dropped."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class TaskRow(Row):
    """A task row."""

    model_config = ConfigDict(title="Task")

    id: str = Field(description="The relay's own id (also in callback tokens).")
    upstream_id: str | None = Field(description="The provider's task id, once known.")
    family: Family
    platform: str
    state: TaskState = Field(
        description="`unknown`: the create call's outcome could not be known (never re-sent)."
    )
    origin: TaskOrigin
    prompt: str | None
    params: dict[str, Any]
    labels: dict[str, str]
    handlers: list[str] | None = Field(description="null: every matching handler.")
    error: str | None
    created_at: UnixTime
    updated_at: UnixTime
    next_poll_at: UnixTime | None
    poll_attempts: int
    deadline_at: UnixTime | None


class InboxSummary(Row):
    """A raw inbound without its body (the task's timeline)."""

    id: str
    webhook_id: str | None
    source: Source
    event_header: str | None
    received_at: UnixTime


class InboxRow(Row):
    """An inbound with its raw body as received (the dashboard shows it redacted)."""

    id: str
    webhook_id: str | None
    task_id: str | None
    source: Source
    event_header: str | None
    body: bytes
    received_at: UnixTime


class EventRow(Row):
    """Something that happened to one clip of a task."""

    model_config = ConfigDict(title="Event")

    id: str
    inbox_id: str | None
    dedupe_key: str
    task_id: str = Field(description="The provider's task id.")
    task_ref: str | None = Field(description="The relay's task id.")
    clip_id: str
    kind: EventKind
    platform: str
    source: Source
    clip: dict[str, Any]
    error: str | None
    received_at: UnixTime


class DeliveryRow(Row):
    """One (event, handler) pair in the outbox."""

    model_config = ConfigDict(title="Delivery")

    id: str
    event_id: str
    handler: str = Field(description="The handler's configured name.")
    state: DeliveryState
    attempts: int
    next_attempt_at: UnixTime
    lease_owner: str | None
    lease_until: float | None = Field(description="Unix seconds.")
    last_error: str | None
    blame: str | None
    result: dict[str, Any] | None
    created_at: UnixTime
    updated_at: UnixTime
    stage: int


class AttemptRow(Row):
    """One run of a delivery."""

    model_config = ConfigDict(title="Attempt")

    id: int
    delivery_id: str
    number: int
    started_at: UnixTime
    finished_at: UnixTime | None
    outcome: AttemptOutcome
    error: str | None
    blame: str | None


class DeliveryDetail(DeliveryRow):
    """A delivery with every attempt, oldest first."""

    model_config = ConfigDict(title="DeliveryDetail")

    attempt_log: list[AttemptRow]


class EventDetail(EventRow):
    """An event with its deliveries."""

    model_config = ConfigDict(title="EventDetail")

    deliveries: list[DeliveryDetail]


class TaskDetail(TaskRow):
    """A task with its inbound payloads, events, deliveries and every attempt."""

    model_config = ConfigDict(title="TaskDetail")

    events: list[EventDetail]
    inbox: list[InboxSummary]


ROW_MODELS: tuple[type[Row], ...] = (TaskRow, EventRow, DeliveryRow, TaskDetail)
"""The rows the API answers with; the OpenAPI document registers each (and what it nests)."""
