"""The shapes that cross our boundaries: upstream payloads (lenient) and our events (frozen).

Upstream models keep unknown fields (`extra="allow"`): the provider adds fields without notice,
and a raw payload must never lose data on its way through us.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

from receiver.states import EventKind, Source

__all__ = [
    "CallbackBody",
    "Clip",
    "CreateAnswer",
    "Credits",
    "Event",
    "LyricsAnswer",
    "LyricsResult",
    "LyricsTaskAnswer",
    "TaskAnswer",
    "header_contradicts",
    "normalise",
]

TASK_LEVEL_CLIP = "-"
"""Clip id used for events about a whole task that carries no clips (a failure, a timeout)."""


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class Clip(_Lenient):
    """One song in a task answer or callback; fields differ by family, so most are optional.

    The id is read from `clip_id`, or from `id` (nuro's callbacks) when `clip_id` is absent.
    """

    clip_id: str = Field(validation_alias=AliasChoices("clip_id", "id"))
    state: str | None = None
    title: str | None = None
    sound: str | None = None
    tags: str | None = None
    lyrics: str | None = None
    image_url: str | None = None
    audio_url: str | None = None
    wav_url: str | None = None
    video_url: str | None = None
    duration: float | None = None
    mv: str | None = None

    @field_validator("duration", mode="before")
    @classmethod
    def _duration_from_text(cls, value: Any) -> Any:
        # Polls send a number, callbacks a string such as "104.88".
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                return None
        return value


class CallbackBody(_Lenient):
    """A callback body: the family's poll answer, maybe with task_id/platform/event on top."""

    code: int | None = None
    task_id: str | None = None
    platform: str | None = None
    event: str | None = None
    status: str | None = None
    message: str | None = None
    data: list[Clip] = Field(default_factory=list)

    @field_validator("data", mode="before")
    @classmethod
    def _single_clip_as_list(cls, value: Any) -> Any:
        if value is None:
            return []
        if isinstance(value, dict):
            return [value]
        return value


class TaskAnswer(CallbackBody):
    """`GET .../task/{id}`: same clip list as a callback, plus an overall status."""


class CreateAnswer(_Lenient):
    """`POST .../create`: `{"message": "success", "task_id": ...}`, with or without `code`."""

    task_id: str
    message: str | None = None
    code: int | None = None


class Credits(_Lenient):
    """`GET /api/v1/get-credits`."""

    credits: float = 0
    extra_credits: float = 0


def _as_list(value: Any) -> Any:
    """`null` is no results and a lone object is one result."""
    if value is None:
        return []
    return [value] if isinstance(value, dict) else value


class LyricsResult(_Lenient):
    """One set of written lyrics; the text comes as `lyrics` or (sonic) `text`."""

    title: str | None = None
    lyrics: str | None = Field(default=None, validation_alias=AliasChoices("lyrics", "text"))
    clip_id: str | None = None


class LyricsTaskAnswer(_Lenient):
    """`GET /api/v1/producer/task/{id}` of a `lyrics-create` task: a status, then the lyrics.

    The docs do not show this answer; the shape is the sandbox's choice, kept lenient.
    """

    code: int | None = None
    status: str | None = None
    message: str | None = None
    data: list[LyricsResult] = Field(default_factory=list)

    _data_as_list = field_validator("data", mode="before")(_as_list)


class LyricsAnswer(_Lenient):
    """`POST /api/v1/sonic/lyrics`: two lyrics results at once (shape not shown in the docs)."""

    code: int | None = None
    message: str | None = None
    data: list[LyricsResult] = Field(default_factory=list)

    _data_as_list = field_validator("data", mode="before")(_as_list)


@dataclasses.dataclass(frozen=True, slots=True)
class Event:
    """One normalised thing that happened to one clip; what handlers receive."""

    id: str
    kind: EventKind
    task_id: str
    clip_id: str
    platform: str
    clip: Mapping[str, Any]
    source: Source
    received_at: datetime
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
    task_ref: str | None = None
    prompt: str | None = None
    error: str | None = None

    @property
    def dedupe_key(self) -> str:
        """Two events with the same key are the same fact, however they reached us."""
        return dedupe_key(self.task_id, self.clip_id, self.kind)

    @property
    def title(self) -> str:
        return str(self.clip.get("title") or "untitled")

    @property
    def audio_url(self) -> str | None:
        value = self.clip.get("audio_url") or self.clip.get("wav_url")
        return str(value) if value else None

    @property
    def image_url(self) -> str | None:
        value = self.clip.get("image_url")
        return str(value) if value else None


_STATE_TO_KIND: dict[str, EventKind] = {
    "succeeded": EventKind.COMPLETED,
    "success": EventKind.COMPLETED,
    "complete": EventKind.COMPLETED,
    "completed": EventKind.COMPLETED,
    "streaming": EventKind.STREAMING,
    "failed": EventKind.FAILED,
    "failure": EventKind.FAILED,
    "error": EventKind.FAILED,
}
"""A provider's clip or task state (any case) → the kind it reports; other states are pending."""


_HEADER_KINDS: frozenset[EventKind] = frozenset(
    {EventKind.COMPLETED, EventKind.FAILED, EventKind.STREAMING}
)


def _task_level_kind(body: CallbackBody) -> EventKind | None:
    """The kind the signed body states for the whole task: its `status`, then its `event`."""
    for value in (body.status, body.event):
        if value:
            kind = _STATE_TO_KIND.get(value.lower())
            if kind is None and value in _HEADER_KINDS:
                kind = EventKind(value)
            if kind is not None:
                return kind
    return None


def _header_kind(header_event: str | None) -> EventKind | None:
    return EventKind(header_event) if header_event in _HEADER_KINDS else None


def normalise(
    body: CallbackBody, header_event: str | None
) -> list[tuple[EventKind, str, dict[str, Any]]]:
    """Classify each clip by its own state; fall back to the body's task status or event, and
    only when the signed body says nothing at all, to the (unsigned) `X-Webhook-Event` header.

    Returns `(kind, clip_id, clip_fields)` for every clip that reached a reportable state.
    Clips still pending or running produce nothing. A failed task with no clips produces
    one task-level failure.
    """
    fallback = _task_level_kind(body) or _header_kind(header_event)
    found: list[tuple[EventKind, str, dict[str, Any]]] = []
    for clip in body.data:
        kind = _STATE_TO_KIND.get(clip.state.lower()) if clip.state else fallback
        if kind is None:
            continue
        found.append((kind, clip.clip_id, clip.model_dump(mode="json", exclude_none=True)))
    if not body.data and fallback == EventKind.FAILED:
        reason = {"error": body.message} if body.message else {}
        found.append((EventKind.FAILED, TASK_LEVEL_CLIP, reason))
    return found


def header_contradicts(body: CallbackBody, header_event: str | None) -> bool:
    """True when `X-Webhook-Event` names a kind the signed body contradicts, so it was ignored.

    The provider's documented mix — streaming clips under a `song.completed` header — is not a
    contradiction.
    """
    header = _header_kind(header_event)
    if header is None:
        return False
    signed = {_STATE_TO_KIND.get(c.state.lower()) for c in body.data if c.state}
    task_level = _task_level_kind(body)
    if task_level is not None:
        signed.add(task_level)
    signed.discard(None)
    if not signed or header in signed:
        return False
    return not (header == EventKind.COMPLETED and signed == {EventKind.STREAMING})


def dedupe_key(task_id: str, clip_id: str, kind: str) -> str:
    """The stored `events.dedupe_key` of a (task, clip, kind)."""
    return f"{task_id}:{clip_id}:{kind}"


def _as_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    return datetime.fromtimestamp(float(value), tz=UTC)


def event_from_row(row: Mapping[str, Any]) -> Event:
    """Rebuild an `Event` from a stored events row (see `receiver.store.schema.events`)."""
    return Event(
        id=row["id"],
        kind=row["kind"],
        task_id=row["task_id"],
        clip_id=row["clip_id"],
        platform=row["platform"],
        clip=row["clip"] or {},
        source=row["source"],
        received_at=_as_datetime(row["received_at"]),
        labels=row.get("labels") or {},
        task_ref=row.get("task_ref"),
        prompt=row.get("prompt"),
        error=row.get("error"),
    )
