"""Sandbox tasks: what was asked, which state it is in now, and what was done about it.

State is a pure function of elapsed time, so a poll always sees the same timeline the callback
sender follows, however late either of them runs. The only side effect of reaching a final
state, refunding a failed task, happens once in `TaskRegistry.settle`, which every reader calls.
"""

from __future__ import annotations

import dataclasses
import hashlib
import string
import time
from datetime import datetime
from typing import Any, Literal

from receiver.sandbox.options import PRODUCER_CREATE_COST

__all__ = [
    "MARKERS",
    "CallbackAttempt",
    "SandboxTask",
    "Status",
    "TaskRegistry",
    "derive_title",
    "generate_lyrics",
]

Status = Literal["PENDING", "RUNNING", "SUCCESS", "FAILED"]
"""A producer task's overall status, as `GET /api/v1/producer/task/{id}` reports it."""

MARKERS = ("#fail", "#nocallback", "#dup", "#slowcallback", "#badsig", "#streaming")
"""Prompt markers that make the sandbox misbehave on purpose (see the package docstring)."""

_PENDING_SHARE = 0.2
_STREAMING_SHARE = 0.5
_WORDS = (
    "neon", "river", "midnight", "echo", "paper", "satellite", "velvet", "harbor",
    "ember", "glass", "summer", "signal", "orbit", "lantern", "static", "wildflower",
)  # fmt: skip


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


@dataclasses.dataclass(slots=True)
class SandboxTask:
    """One producer `create_music` task and its single clip."""

    task_id: str
    clip_id: str
    sound: str
    lyrics: str
    title: str
    mv: str
    seed: str | None
    make_instrumental: bool
    webhook_url: str | None
    webhook_secret: str | None
    markers: frozenset[str]
    base_url: str
    delay_s: float
    created_at: datetime
    started: float = dataclasses.field(default_factory=time.monotonic)
    settled: bool = False
    refunded: bool = False
    attempts: list[CallbackAttempt] = dataclasses.field(default_factory=list)

    @property
    def prompt(self) -> str:
        """What the media is derived from: the same prompt always makes the same song."""
        return f"{self.sound}\n{self.lyrics}"

    def status(self, now: float) -> Status:
        # Compared with the same absolute instants the callback job sleeps until, so a
        # snapshot taken "at final_at()" is final without any floating-point doubt.
        if now >= self.final_at():
            return "FAILED" if "#fail" in self.markers else "SUCCESS"
        return "PENDING" if now < self.started + _PENDING_SHARE * self.delay_s else "RUNNING"

    def streaming_at(self) -> float:
        """Monotonic time at which a `#streaming` task's clip starts streaming."""
        return self.started + _STREAMING_SHARE * self.delay_s

    def final_at(self) -> float:
        return self.started + self.delay_s

    def is_streaming(self, now: float) -> bool:
        return (
            "#streaming" in self.markers
            and self.status(now) == "RUNNING"
            and now >= self.streaming_at()
        )

    def clip(self, now: float, audio_seconds: float) -> dict[str, Any]:
        """The clip as the provider shows it at `now`: audio links only once audio exists."""
        status = self.status(now)
        media = f"{self.base_url}/media/{self.clip_id}"
        clip: dict[str, Any] = {
            "clip_id": self.clip_id,
            "state": "running",
            "title": self.title,
            "sound": self.sound,
            "lyrics": self.lyrics,
            "image_url": f"{media}.png",
            "mv": self.mv,
            "make_instrumental": self.make_instrumental,
            "created_at": self.created_at.isoformat().replace("+00:00", "Z"),
        }
        if self.seed is not None:
            clip["seed"] = self.seed
        if status == "FAILED":
            clip["state"] = "failed"
            clip["error_message"] = "generation failed: the prompt carries the #fail marker"
        elif status == "SUCCESS" or self.is_streaming(now):
            clip["state"] = "succeeded" if status == "SUCCESS" else "streaming"
            clip["audio_url"] = f"{media}.wav"
            clip["wav_url"] = f"{media}.wav"
            clip["duration"] = audio_seconds
        return clip

    def has_audio(self, now: float) -> bool:
        return self.status(now) == "SUCCESS" or self.is_streaming(now)

    def message(self, now: float) -> str:
        status = self.status(now)
        if status == "FAILED":
            return (
                "generation failed (sandbox #fail marker); "
                f"the {PRODUCER_CREATE_COST:g} credits were refunded."
            )
        return {
            "PENDING": "task is queued.",
            "RUNNING": "task is running.",
            "SUCCESS": "success",
        }[status]

    def answer(self, now: float, audio_seconds: float) -> dict[str, Any]:
        """The poll answer; callbacks reuse it with task_id, platform and event added."""
        return {
            "code": 200,
            "status": self.status(now),
            "message": self.message(now),
            "data": [self.clip(now, audio_seconds)],
        }

    def describe(self, now: float) -> dict[str, Any]:
        """What `GET /sandbox/tasks` shows; never the webhook secret."""
        return {
            "task_id": self.task_id,
            "clip_id": self.clip_id,
            "status": self.status(now),
            "prompt": {"sound": self.sound, "lyrics": self.lyrics, "title": self.title},
            "markers": sorted(self.markers),
            "webhook_url": self.webhook_url,
            "refunded": self.refunded,
            "created_at": self.created_at.isoformat(),
            "callback_attempts": [attempt.as_json() for attempt in self.attempts],
        }


class TaskRegistry:
    """Every task of one sandbox app, and the account's credit balance."""

    def __init__(self, credits: float) -> None:
        self._credits = float(credits)
        self._tasks: dict[str, SandboxTask] = {}
        self._by_clip: dict[str, SandboxTask] = {}

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

    def add(self, task: SandboxTask) -> None:
        self._tasks[task.task_id] = task
        self._by_clip[task.clip_id] = task

    def get(self, task_id: str) -> SandboxTask | None:
        self.settle(time.monotonic())
        return self._tasks.get(task_id)

    def by_clip(self, clip_id: str) -> SandboxTask | None:
        return self._by_clip.get(clip_id)

    def all(self) -> list[SandboxTask]:
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
                self._credits += PRODUCER_CREATE_COST


def _pick(digest: bytes, offset: int) -> str:
    return _WORDS[digest[offset] % len(_WORDS)]


def derive_title(sound: str, lyrics: str) -> str:
    """A title from the prompt, as the provider invents one when none is given."""
    source = sound.strip() or next((ln for ln in lyrics.splitlines() if ln.strip()), "")
    # Markers such as #fail steer the sandbox; they are not part of the song's name.
    words = [w.strip(string.punctuation) for w in source.split() if not w.startswith("#")]
    words = [w for w in words if w][:5]
    if not words:
        digest = hashlib.sha256(source.encode("utf-8")).digest()
        words = [_pick(digest, 0), _pick(digest, 1)]
    return " ".join(words).title()[:80]


def generate_lyrics(sound: str, instrumental: bool) -> str:
    """A few deterministic lines, so a style-only prompt still gets lyrics like upstream."""
    if instrumental:
        return "[Instrumental]"
    digest = hashlib.sha256(sound.encode("utf-8")).digest()
    return "\n".join(
        [
            "[Verse]",
            f"{_pick(digest, 0)} lights over the {_pick(digest, 1)}".capitalize(),
            f"we follow the {_pick(digest, 2)} home".capitalize(),
            "[Chorus]",
            f"{_pick(digest, 3)} and {_pick(digest, 4)}, sing it again".capitalize(),
        ]
    )
