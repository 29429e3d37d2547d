"""Every named state and kind the relay stores, filters on and answers with, spelled once.

They are `StrEnum`s, so a member *is* its string: what the database holds and the JSON says
is unchanged (`TaskState.FAILED == "failed"`), while code names a state by attribute and the
type checker and the OpenAPI document (its enums come from here) catch a misspelt one.
"""

from __future__ import annotations

import enum
from typing import Literal

__all__ = [
    "DELIVERY_STATES",
    "EVENT_KINDS",
    "FAMILIES",
    "FINAL_KINDS",
    "FINAL_TASK_STATES",
    "FINISHED_DELIVERY_STATES",
    "QUEUED_DELIVERY_STATES",
    "SETTLED_TASK_STATES",
    "TASK_STATES",
    "AttemptOutcome",
    "DeliveryState",
    "EventKind",
    "Family",
    "FinishState",
    "Source",
    "TaskOrigin",
    "TaskState",
]


class TaskState(enum.StrEnum):
    """Where a task stands (`tasks.state`)."""

    SUBMITTING = "submitting"
    SUBMITTED = "submitted"
    RUNNING = "running"
    STREAMING = "streaming"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    UNKNOWN = "unknown"
    """The create call's outcome could not be known (timeout or 5xx); never re-sent."""


class DeliveryState(enum.StrEnum):
    """Where one (event, handler) pair of the outbox stands (`deliveries.state`)."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    DEAD = "dead"


class AttemptOutcome(enum.StrEnum):
    """How one run of a delivery ended (`attempts.outcome`); running while it runs."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    LOST = "lost"
    """Its lease ran out (the worker stopped) before it ended; another worker took it over."""


class EventKind(enum.StrEnum):
    """What happened to one clip (or, for `task.*` and clip-less failures, to the whole task);
    `delivery.dead` is the relay's own: a delivery of the clip's event was dead-lettered."""

    SUBMITTED = "task.submitted"
    STREAMING = "song.streaming"
    COMPLETED = "song.completed"
    FAILED = "song.failed"
    TIMED_OUT = "task.timed_out"
    DELIVERY_DEAD = "delivery.dead"


class Family(enum.StrEnum):
    """An upstream API family; nuro is retired (its calls raise `TaskGone`) but its callbacks
    parse."""

    PRODUCER = "producer"
    SONIC = "sonic"
    NURO = "nuro"


class TaskOrigin(enum.StrEnum):
    """Who created a task: this relay, or the provider's callback of a task made elsewhere."""

    RELAY = "relay"
    EXTERNAL = "external"


class Source(enum.StrEnum):
    """How an inbound and its events reached us (`inbox.source`, `events.source`); relay:
    the relay's own (`task.submitted`, `delivery.dead`)."""

    CALLBACK = "callback"
    POLL = "poll"
    RELAY = "relay"


TASK_STATES: tuple[TaskState, ...] = tuple(TaskState)
"""Every task state, in lifecycle order: what `?state=` and `tasks --state` accept."""

DELIVERY_STATES: tuple[DeliveryState, ...] = tuple(DeliveryState)
"""Every delivery state, in lifecycle order: what `/api/deliveries?state=` accepts."""

EVENT_KINDS: tuple[EventKind, ...] = tuple(EventKind)
"""Every event kind: what `/api/events?kind=` accepts."""

FAMILIES: tuple[Family, ...] = tuple(Family)
"""Every family name `UpstreamClient.create` and `UpstreamClient.task` accept."""

FINAL_TASK_STATES: frozenset[TaskState] = frozenset(
    {TaskState.SUCCEEDED, TaskState.FAILED, TaskState.TIMED_OUT}
)
"""States a callback or poll cannot move a task out of."""

SETTLED_TASK_STATES: frozenset[TaskState] = FINAL_TASK_STATES | {TaskState.UNKNOWN}
"""States after which nothing more will happen by itself (`submit --wait` stops)."""

FinishState = Literal[DeliveryState.SUCCEEDED, DeliveryState.PENDING, DeliveryState.DEAD]
"""Where an attempt leaves its delivery: done, to run again later, or dead-lettered."""

QUEUED_DELIVERY_STATES: tuple[DeliveryState, ...] = (DeliveryState.PENDING, DeliveryState.RUNNING)
"""Deliveries still to run: the queue depth."""

FINISHED_DELIVERY_STATES: frozenset[DeliveryState] = frozenset(
    {DeliveryState.SUCCEEDED, DeliveryState.DEAD}
)
"""Deliveries that will not run again unless replayed (and so may be replayed)."""

FINAL_KINDS: frozenset[EventKind] = frozenset(
    {EventKind.COMPLETED, EventKind.FAILED, EventKind.TIMED_OUT}
)
"""Kinds after which the clip will not change any more."""
