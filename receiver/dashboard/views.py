"""What the dashboard pages show, built from store rows: songs, a task's timeline, payloads.

Pure functions over the store's typed rows, so the routes stay thin; every string that
could hold a secret is redacted here already (the template's finalize hook is the second net).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from receiver.models import TASK_LEVEL_CLIP
from receiver.redact import Redactor
from receiver.rows import DeliveryDetail, EventRow, InboxRow, TaskDetail, TaskRow
from receiver.services import CHAT_CHANNEL_LABEL, CHAT_LABEL, CHAT_USER_LABEL
from receiver.states import EventKind, Source

__all__ = [
    "Landing",
    "Song",
    "TimelineEntry",
    "disk_file",
    "landings",
    "latest_songs",
    "payloads",
    "requester",
    "song",
    "song_label",
    "task_songs",
    "timeline",
]


@dataclasses.dataclass(frozen=True, slots=True)
class Song:
    """One clip as the pages show it: cover, title, player."""

    event_id: str
    kind: str
    title: str
    audio_url: str | None
    image_url: str | None
    duration: float | None
    tags: str | None
    error: str | None
    lyrics: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One line of a task's history; `state` picks the badge colour."""

    at: float
    what: str
    state: str
    detail: str = ""
    note: str = ""


_SHOWN_KINDS = frozenset(
    {EventKind.COMPLETED, EventKind.STREAMING, EventKind.FAILED, EventKind.TIMED_OUT}
)


def song(event: EventRow, redactor: Redactor) -> Song:
    """An events row as a `Song`; URLs must be http(s) to be used as a source at all."""
    clip = event.clip
    duration = clip.get("duration")
    return Song(
        event_id=event.id,
        kind=event.kind,
        title=str(clip.get("title") or "Untitled"),
        audio_url=_media_url(clip.get("audio_url") or clip.get("wav_url"), redactor),
        image_url=_media_url(clip.get("image_url"), redactor),
        duration=float(duration) if isinstance(duration, int | float) else None,
        tags=str(clip.get("tags") or clip.get("sound") or "") or None,
        error=redactor.text(str(_error_of(event, clip))) or None,
        lyrics=_lyrics(clip, redactor),
    )


def _lyrics(clip: Mapping[str, Any], redactor: Redactor) -> str | None:
    lyrics = clip.get("lyrics")
    if not isinstance(lyrics, str) or not lyrics.strip():
        return None
    return redactor.text(lyrics.strip())


def _error_of(event: EventRow, clip: Mapping[str, Any]) -> str:
    return str(event.error or clip.get("error_message") or clip.get("error") or "")


def _media_url(value: Any, redactor: Redactor) -> str | None:
    if not isinstance(value, str) or not value.startswith(("https://", "http://")):
        return None
    return redactor.text(value)


def latest_songs(events: Iterable[EventRow], redactor: Redactor) -> dict[str, list[Song]]:
    """Task → its songs, one per clip (the clip's latest state wins). Keyed by the relay's
    task id (`task_ref`), or the provider's for a task the relay never stored."""
    per_clip: dict[tuple[str, str], EventRow] = {}
    for event in events:
        if event.kind in _SHOWN_KINDS:
            per_clip[(event.task_ref or event.task_id, event.clip_id)] = event
    found: dict[str, list[Song]] = {}
    for (task, _), event in per_clip.items():
        found.setdefault(task, []).append(song(event, redactor))
    return found


def task_songs(events: Iterable[EventRow], redactor: Redactor) -> list[Song]:
    """One task's songs (its `task_detail()` events), one per clip."""
    return [found for songs in latest_songs(events, redactor).values() for found in songs]


def timeline(task: TaskDetail, redactor: Redactor) -> list[TimelineEntry]:
    """Everything that happened to a task, in time order (`task_detail()` rows)."""
    text = redactor.text
    entries = [
        TimelineEntry(
            at=task.created_at,
            what=f"Submitted to {task.family}",
            state="submitted",
            detail=text(task.prompt or ""),
            note=f"upstream id {task.upstream_id}" if task.upstream_id else "",
        )
    ]
    for row in task.inbox:
        if row.source == Source.RELAY:
            continue
        label = "Callback received" if row.source == Source.CALLBACK else "Poll answer"
        entries.append(
            TimelineEntry(
                at=row.received_at,
                what=label,
                state=row.source,
                detail=text(row.event_header or ""),
                note=text(f"webhook id {row.webhook_id}") if row.webhook_id else "",
            )
        )
    for event in task.events:
        entries.append(
            TimelineEntry(
                at=event.received_at,
                what=f"Event {event.kind}",
                state=event.kind,
                detail=text(str(event.clip.get("title") or event.error or "")),
                note=_clip_note(event),
            )
        )
        for delivery in event.deliveries:
            entries.extend(_delivery_entries(delivery, redactor))
    if task.error:
        entries.append(
            TimelineEntry(
                at=task.updated_at,
                what=f"Task {task.state}",
                state=task.state,
                detail=text(task.error),
            )
        )
    return sorted(entries, key=lambda e: e.at)


def _clip_note(event: EventRow) -> str:
    if event.clip_id == TASK_LEVEL_CLIP:
        return f"whole task · via {event.source}"
    return f"clip {event.clip_id} · via {event.source}"


def _delivery_entries(delivery: DeliveryDetail, redactor: Redactor) -> list[TimelineEntry]:
    handler = delivery.handler
    entries = [
        TimelineEntry(
            at=delivery.created_at,
            what=f"Delivery to {handler} queued",
            state="queued",
            note=f"now {delivery.state} after {delivery.attempts} attempt(s)",
        )
    ]
    previous = 0
    for attempt in delivery.attempt_log:
        blame = f"blame: {attempt.blame}" if attempt.blame else ""
        # A replay restarts the count at 1: say so, or the log reads as a duplicate.
        replay = "Replay, attempt" if attempt.number <= previous else "Attempt"
        previous = attempt.number
        entries.append(
            TimelineEntry(
                at=attempt.started_at,
                what=f"{replay} {attempt.number} → {handler}",
                state=attempt.outcome,
                detail=redactor.text(attempt.error or ""),
                note=blame,
            )
        )
    return entries


def payloads(
    task: TaskRow, bodies: Iterable[InboxRow], redactor: Redactor
) -> list[tuple[str, str]]:
    """(caption, pretty redacted JSON): the task as submitted, then each inbound body."""
    shown = [
        (
            "Task parameters (as sent upstream)",
            redactor.pretty({"params": task.params, "labels": task.labels}),
        )
    ]
    for row in bodies:
        if row.source == Source.RELAY or not row.body:
            continue
        caption = f"{row.source.capitalize()} body"
        if row.event_header:
            caption += f" · {row.event_header}"
        shown.append((caption, redactor.pretty(row.body)))
    return shown


@dataclasses.dataclass(frozen=True, slots=True)
class Landing:
    """One line of "where this copy landed": a caption, the text, a link when it is web."""

    label: str
    text: str
    href: str | None = None


_RESULT_LINES = (
    ("path", "File"),
    ("cover", "Cover"),
    ("lyrics", "Lyrics"),
    ("metadata", "Metadata"),
    ("url", "URL"),
)
"""Result keys the built-in handlers use (disk: path/cover/lyrics/metadata; s3: url)."""
_SKIPPED_KEYS = frozenset({"bucket", "key", "size", "etag", "cover_key", "event", "thread_ts"})
"""Details already said by the lines above (s3's url holds bucket and key)."""


def landings(result: Mapping[str, Any] | None, redactor: Redactor) -> list[Landing]:
    """A delivery's stored `result` as lines: disk paths, an S3 or web URL, a Slack message
    (its permalink when stored, else channel and ts), then any other scalar field."""
    if not result:
        return []
    # Paths and URLs only lose known secrets (a presigned link keeps working, like a media
    # URL); every other field also goes through the secret-named-key net.
    text = {k: redactor.text(v) for k, v in result.items() if isinstance(v, str) and v}
    found: list[Landing] = []
    for key, caption in _RESULT_LINES:
        if key in text:
            found.append(Landing(caption, text[key], _web(text[key]) if key == "url" else None))
    if "permalink" in text:
        found.append(Landing("Message", text["permalink"], _web(text["permalink"])))
    elif text.get("channel") and text.get("ts"):
        found.append(Landing("Message", f"channel {text['channel']} · ts {text['ts']}"))
    used = {key for key, _ in _RESULT_LINES} | {"permalink", "channel", "ts"} | _SKIPPED_KEYS
    others = redactor.value({k: v for k, v in result.items() if k not in used})
    for key, value in others.items():
        if isinstance(value, str | int | float | bool) and value != "":
            found.append(Landing(str(key), str(value)))
    return found


def _web(url: str) -> str | None:
    return url if url.startswith(("https://", "http://")) else None


def disk_file(result: Mapping[str, Any] | None, directory: str) -> Path | None:
    """The audio file a disk delivery wrote, only if it is a regular file inside the disk
    handler's configured `directory` once every `..` and symlink is resolved; else None.

    The stored path is data (a replayed or edited row could hold anything), so it is never
    trusted: this is what keeps the download route from serving arbitrary files."""
    stored = (result or {}).get("path")
    if not isinstance(stored, str) or not stored or "\x00" in stored:
        return None
    base = Path(directory).resolve()
    try:
        target = Path(stored).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if base not in target.parents or not target.is_file():
        return None
    return target


def song_label(event: EventRow, task: TaskRow | None, songs: Iterable[Song]) -> str:
    """What a link to an event's song reads: its title, else the task's first titled song,
    the requested title or the prompt — never the event kind."""
    if event.clip.get("title"):
        return str(event.clip["title"])
    titled = next((s.title for s in songs if s.title != "Untitled"), None)
    if titled:
        return titled
    params: Mapping[str, Any] = task.params if task is not None else {}
    if params.get("title"):
        return str(params["title"])
    prompt = (task.prompt if task is not None else None) or ""
    if not prompt:
        return "Untitled song"
    return prompt if len(prompt) <= 60 else prompt[:59] + "…"


_CHAT_APPS = {"slack": "Slack", "discord": "Discord"}


def requester(labels: Mapping[str, Any]) -> str | None:
    """Who asked for a task from chat and where ("Requested by U123 in Slack, channel C456"),
    read from the labels the chat apps set; None for a task not asked for from chat. An
    operator answering "who spent these credits?" should not have to decode labels."""
    app = labels.get(CHAT_LABEL)
    if not app:
        return None
    where = _CHAT_APPS.get(str(app), str(app))
    user, channel = labels.get(CHAT_USER_LABEL), labels.get(CHAT_CHANNEL_LABEL)
    said = f"Requested by {user} in {where}" if user else f"Requested in {where}"
    return f"{said}, channel {channel}" if channel else said
