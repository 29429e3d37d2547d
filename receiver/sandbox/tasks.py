"""Sandbox tasks: what every family shares (a clock, markers, credits, callbacks) and the registry.

State is a pure function of elapsed time, so a poll always sees the same timeline the callback
sender follows, however late either of them runs. The only side effect of reaching a final
state, refunding a failed task, happens once in `TaskRegistry.settle`, which every reader calls.
The families' own tasks live in `producer.py`, `sonic.py` and `lyrics.py`.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterable
from datetime import datetime
from typing import Any, ClassVar, Literal, Protocol

__all__ = [
    "MARKERS",
    "NEVER",
    "CallbackAttempt",
    "Job",
    "Status",
    "TaskRegistry",
    "Timeline",
    "find_markers",
    "iso",
]

Status = Literal["PENDING", "RUNNING", "SUCCESS", "FAILED"]
"""A task's overall status on the sandbox's clock (producer polls show it as `status`)."""

MARKERS = ("#fail", "#nocallback", "#dup", "#slowcallback", "#badsig", "#streaming")
"""Prompt markers that make the sandbox misbehave on purpose (see the package docstring)."""

NEVER = "#never"
"""How a task that never finishes is marked internally, whatever `never_finish_marker` says."""

_PENDING_SHARE = 0.2
_STREAMING_SHARE = 0.5


def find_markers(texts: Iterable[str | None], never_marker: str | None) -> frozenset[str]:
    """The markers found anywhere in `texts`; the never-finish marker is recorded as `NEVER`."""
    joined = "\n".join(text for text in texts if text)
    found = {marker for marker in MARKERS if marker in joined}
    if never_marker and never_marker in joined:
        found.add(NEVER)
    return frozenset(found)


def iso(moment: datetime) -> str:
    """A UTC timestamp the way the provider writes it: ISO 8601 with a `Z`."""
    return moment.isoformat().replace("+00:00", "Z")


@dataclasses.dataclass(frozen=True, slots=True)
class CallbackAttempt:
    """One try at delivering one callback: an HTTP status, or the error that prevented one."""

    kind: Literal["streaming", "final"]
    webhook_id: str
    attempt: int
    status: int | None
    error: str | None
    at: str

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class Job(Protocol):
    """What the registry, the callback sender and the media routes need of any task."""

    family: ClassVar[str]
    task_id: str
    markers: frozenset[str]
    cost: float
    webhook_url: str | None
    webhook_secret: str | None
    settled: bool
    refunded: bool
    attempts: list[CallbackAttempt]

    @property
    def clip_ids(self) -> tuple[str, ...]: ...

    def status(self, now: float) -> Status: ...

    def streaming_at(self) -> float: ...

    def final_at(self) -> float: ...

    def has_audio(self, now: float) -> bool: ...

    def media_prompt(self, clip_id: str) -> str: ...

    def answer(self, now: float, audio_seconds: float) -> dict[str, Any]: ...

    def callback(self, now: float, audio_seconds: float) -> tuple[str, dict[str, Any]]: ...

    def describe(self, now: float) -> dict[str, Any]: ...


@dataclasses.dataclass(slots=True, kw_only=True)
class Timeline:
    """The clock every task runs on: PENDING for 20% of `delay_s`, RUNNING, then final.

    `#fail` makes the final state FAILED; `NEVER` keeps the task RUNNING forever.
    """

    task_id: str
    markers: frozenset[str]
    cost: float
    base_url: str
    delay_s: float
    created_at: datetime
    webhook_url: str | None = None
    webhook_secret: str | None = None
    started: float = dataclasses.field(default_factory=time.monotonic)
    settled: bool = False
    refunded: bool = False
    attempts: list[CallbackAttempt] = dataclasses.field(default_factory=list)

    def status(self, now: float) -> Status:
        # Compared with the same absolute instants the callback job sleeps until, so a
        # snapshot taken "at final_at()" is final without any floating-point doubt.
        if now >= self.final_at():
            return "FAILED" if "#fail" in self.markers else "SUCCESS"
        return "PENDING" if now < self.started + _PENDING_SHARE * self.delay_s else "RUNNING"

    def streaming_at(self) -> float:
        """Monotonic time at which a `#streaming` task's clips start streaming."""
        return self.started + _STREAMING_SHARE * self.delay_s

    def final_at(self) -> float:
        """Monotonic time of the final state; infinity for a task marked to never finish."""
        return math.inf if NEVER in self.markers else self.started + self.delay_s

    def is_streaming(self, now: float) -> bool:
        return (
            "#streaming" in self.markers
            and self.status(now) == "RUNNING"
            and now >= self.streaming_at()
        )

    def has_audio(self, now: float) -> bool:
        return self.status(now) == "SUCCESS" or self.is_streaming(now)

    def refund_note(self) -> str:
        return f"the {self.cost:g} credits were refunded"

    def describe_common(self, now: float) -> dict[str, Any]:
        """The part of `GET /sandbox/tasks` every family shares; never the webhook secret."""
        return {
            "task_id": self.task_id,
            "status": self.status(now),
            "markers": sorted(self.markers),
            "webhook_url": self.webhook_url,
            "cost": self.cost,
            "refunded": self.refunded,
            "created_at": self.created_at.isoformat(),
            "callback_attempts": [attempt.as_json() for attempt in self.attempts],
        }


class TaskRegistry:
    """Every task of one sandbox app, and the account's credit balance."""

    def __init__(self, credits: float) -> None:
        self._credits = float(credits)
        self._tasks: dict[str, Job] = {}
        self._by_clip: dict[str, Job] = {}

    @property
    def credits(self) -> float:
        self.settle(time.monotonic())
        return self._credits

    def charge(self, cost: float) -> bool:
        """Take `cost` credits if the balance covers it; False leaves the balance unchanged."""
        if self.credits < cost:
            return False
        self._credits -= cost
        return True

    def add(self, task: Job) -> None:
        self._tasks[task.task_id] = task
        for clip_id in task.clip_ids:
            self._by_clip[clip_id] = task

    def get(self, task_id: str, family: str) -> Job | None:
        """The task if it belongs to `family`'s poll endpoint (another family's id is unknown)."""
        self.settle(time.monotonic())
        task = self._tasks.get(task_id)
        return task if task is not None and task.family == family else None

    def by_clip(self, clip_id: str) -> Job | None:
        return self._by_clip.get(clip_id)

    def all(self) -> list[Job]:
        self.settle(time.monotonic())
        return list(self._tasks.values())

    def settle(self, now: float) -> None:
        """Apply the once-only effects of tasks that reached a final state: refund failures."""
        for task in self._tasks.values():
            if task.settled or task.status(now) not in ("SUCCESS", "FAILED"):
                continue
            task.settled = True
            if task.status(now) == "FAILED":
                task.refunded = True
                self._credits += task.cost
