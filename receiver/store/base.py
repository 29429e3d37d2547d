"""The narrow `Store` interface every backend implements, and the records that cross it."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, Protocol

from receiver.models import Event
from receiver.states import EventKind, FinishState, Source, TaskState
from receiver.store.queries import Queries
from receiver.store.sessions import AdminSessions

__all__ = [
    "Claim",
    "Claimed",
    "DeadAlert",
    "DuePoll",
    "Finish",
    "Finished",
    "Inbound",
    "IngestResult",
    "NewTask",
    "Refusal",
    "Replay",
    "Router",
    "Store",
]

Router = Callable[[str, str, Mapping[str, str], Sequence[str] | None], list[tuple[str, int]]]
"""(kind, platform, labels, task's own handler choice) → (handler name, stage) to deliver to."""


@dataclasses.dataclass(frozen=True, slots=True)
class NewTask:
    """A task the relay is about to create upstream; stored before the create call."""

    id: str
    family: str
    platform: str
    prompt: str | None
    params: Mapping[str, Any]
    labels: Mapping[str, str]
    handlers: Sequence[str] | None
    deadline_at: float | None = None
    next_poll_at: float | None = None
    """When the poller first asks the provider (None: never; a callback is expected)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Inbound:
    """A verified callback (or poll answer) reduced to what the store needs."""

    source: Source
    body: bytes
    platform: str
    clips: Sequence[tuple[EventKind, str, Mapping[str, Any]]]
    task_id: str | None = None
    task_ref: str | None = None
    webhook_id: str | None = None
    event_header: str | None = None
    message: str | None = None
    replay_key: str | None = None
    """A digest of what was signed (route, timestamp, body): the same signed callback again is
    a duplicate whatever its unsigned headers say (`receiver.signing.replay_key`)."""
    webhook_key: str | None = None
    """A digest of the route, the body's task id and `X-Webhook-Id`: the provider's event id,
    scoped so one task's ids cannot shadow another's (`receiver.signing.webhook_key`)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Refusal:
    """Why a verified inbound was not stored: an HTTP status, an error code and the detail."""

    status: int
    error: str
    detail: str


@dataclasses.dataclass(frozen=True, slots=True)
class IngestResult:
    """What one inbound changed: nothing (a duplicate, or refused), or new events and
    deliveries. A duplicate or a refusal stores nothing, not even the body."""

    duplicate: bool
    task_ref: str | None
    event_ids: tuple[str, ...] = ()
    deliveries: int = 0
    refused: Refusal | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Claim:
    """A delivery this worker now holds a lease on, with everything its handler reads."""

    delivery_id: str
    handler: str
    attempt: int
    event: Event
    previous_result: Mapping[str, Any] | None = None
    """This delivery's result from an earlier successful run (kept across a replay)."""
    results: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    """Results of this event's deliveries that had succeeded when it was claimed (every
    handler it runs `after` among them), by handler name."""
    task_results: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    """Per handler, its latest successful result for the task's other events."""


@dataclasses.dataclass(frozen=True, slots=True)
class Claimed:
    """One claim's deliveries, and when the next one becomes due when it took fewer than
    asked (so an idle dispatcher knows how long to sleep without another read)."""

    claims: tuple[Claim, ...]
    next_due_at: float | None


@dataclasses.dataclass(frozen=True, slots=True)
class DeadAlert:
    """The `delivery.dead` event a dead finish raises, in the finish's own transaction."""

    event: Event
    """The event whose delivery died (the alert is about the same task and clip)."""
    clip: Mapping[str, Any]
    """The alert's payload (`receiver.delivery.alerts.DeadNotice`)."""
    targets: tuple[tuple[str, int], ...]
    """(handler, stage) to deliver the alert to; none: no event is stored."""


@dataclasses.dataclass(frozen=True, slots=True)
class Finish:
    """The outcome of one attempt: `succeeded`, `pending` again at `retry_at`, or `dead`."""

    delivery_id: str
    owner: str
    attempt: int
    state: FinishState
    error: str | None = None
    blame: str | None = None
    retry_at: float | None = None
    result: Mapping[str, Any] | None = None
    alert: DeadAlert | None = None
    """Raised only if this finish records the delivery as dead."""


@dataclasses.dataclass(frozen=True, slots=True)
class Finished:
    """A recorded finish (one whose lease had run out raises `LeaseLost` instead)."""

    event_settled: bool
    """No delivery of the event is open any more (its spool can go)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Replay:
    """Which finished deliveries to make due again (every given filter must match)."""

    delivery_id: str | None = None
    event_id: str | None = None
    handler: str | None = None
    dead_since: float | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class DuePoll:
    """A task leased to this poller: ask the provider about it."""

    id: str
    upstream_id: str | None
    family: str
    platform: str
    poll_attempts: int
    deadline_at: float | None


class Store(Protocol):
    """Durable tasks, events and the delivery outbox. All writes are single transactions."""

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def ping(self) -> str | None:
        """Reach the database; return the schema revision."""
        ...

    def add_listener(self, wake: Callable[[], None], topic: str = "deliveries") -> None:
        """Call `wake` after a commit that made deliveries due (`deliveries`) or scheduled a
        task's first poll (`polls`), in this process or (PostgreSQL) another one."""
        ...

    async def create_task(self, task: NewTask) -> None: ...
    async def task_submitted(self, task_ref: str, upstream_id: str) -> None: ...
    async def task_state(
        self, task_ref: str, state: TaskState, error: str | None = None
    ) -> None: ...
    async def record_inbound(self, inbound: Inbound, route: Router) -> IngestResult: ...

    async def claim(
        self, owner: str, limit: int, lease_s: float, exclude: Collection[str] = ()
    ) -> list[Claim]: ...
    async def claim_due(
        self, owner: str, limit: int, lease_s: float, exclude: Collection[str] = ()
    ) -> Claimed: ...
    async def finish(self, finish: Finish) -> Finished:
        """Record one attempt's outcome; `LeaseLost` (nothing changed) when the lease ran out
        and another worker took the delivery over: its attempt is the one that counts."""
        ...

    async def extend_lease(self, delivery_id: str, owner: str, lease_s: float) -> None:
        """Renew our lease; `LeaseLost` when it is no longer ours."""
        ...

    async def extend_leases(
        self, delivery_ids: Collection[str], owner: str, lease_s: float
    ) -> None:
        """Renew every lease still ours, in one transaction; then `LeaseLost` naming the
        deliveries that are no longer ours (their rows are left alone)."""
        ...

    async def release(self, delivery_ids: Collection[str], owner: str) -> int:
        """Expire our leases now so another worker takes the deliveries (shutdown)."""
        ...

    async def succeed(self, claim: Claim, owner: str, result: Mapping[str, Any] | None) -> None:
        """`finish` as succeeded; `LeaseLost` as there."""
        ...

    async def fail(
        self, claim: Claim, owner: str, error: str, blame: str, retry_at: float | None
    ) -> None:
        """`finish` as pending again at `retry_at` (None: dead); `LeaseLost` as there."""
        ...

    async def next_due_at(self, exclude: Collection[str] = ()) -> float | None: ...
    async def event_settled(self, event_id: str) -> bool: ...
    async def replay(
        self,
        *,
        delivery_id: str | None = None,
        event_id: str | None = None,
        handler: str | None = None,
        dead_since: float | None = None,
    ) -> int: ...

    async def claim_polls(self, limit: int, lease_s: float) -> list[DuePoll]: ...
    async def next_poll_due(self) -> float | None: ...
    async def poll_done(
        self, task_ref: str, next_poll_at: float | None, error: str | None = None
    ) -> None: ...

    reads: Queries
    """The operator surface's reads (API, dashboard, CLI), with typed rows."""

    sessions: AdminSessions
    """Dashboard sessions: opened at sign-in, checked on every page, revoked at logout."""
