"""Lyrics: producer `lyrics-create` (a task polled like any producer task) and sonic `lyrics`.

The docs do not show either body in full, so these shapes are the sandbox's choice:

- `POST /api/v1/producer/lyrics-create` takes `{"prompt": "..."}` (required, at most 400
  characters), costs 1 credit (refunded on failure) and answers `{"message": "success",
  "task_id": ...}`. Its poll answer (`GET /api/v1/producer/task/{id}`) carries `status` and,
  once SUCCESS, `data: [{"title": ..., "lyrics": ...}]`. It sends no callbacks.
- `POST /api/v1/sonic/lyrics` takes `{"description": "..."}` (required, at most 400
  characters), costs 1 credit and answers at once with two results under the key `text`:
  `{"code": 200, "message": "success", "data": [{"title": ..., "text": ...}, ...]}`.
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime
from typing import Any, ClassVar

from receiver.sandbox.options import LYRICS_COST
from receiver.sandbox.tasks import Timeline
from receiver.sandbox.validation import Rejected
from receiver.sandbox.words import derive_title, generate_lyrics

__all__ = ["LyricsTask", "new_lyrics_task", "sonic_lyrics_answer", "validate_text"]

_MAX_PROMPT = 400
_SONIC_VARIANTS = ("", " (alternate take)")


def validate_text(body: Any, key: str) -> str:
    """`body[key]`: a non-empty string of at most 400 characters, or a 400 naming the key."""
    if not isinstance(body, dict):
        raise Rejected(400, "the request body must be a JSON object")
    value = body.get(key)
    if not isinstance(value, str) or not value.strip():
        raise Rejected(400, f"{key} is required (a non-empty string)")
    if len(value) > _MAX_PROMPT:
        raise Rejected(400, f"{key} is too long: at most {_MAX_PROMPT} characters are allowed")
    return value


@dataclasses.dataclass(slots=True, kw_only=True)
class LyricsTask(Timeline):
    """A producer `lyrics-create` task: one set of lyrics once it succeeds, no clips."""

    family: ClassVar[str] = "producer"
    prompt: str

    @property
    def clip_ids(self) -> tuple[str, ...]:
        return ()

    def media_prompt(self, clip_id: str) -> str:  # pragma: no cover - it has no clips
        return self.prompt

    def has_audio(self, now: float) -> bool:
        return False

    def answer(self, now: float, audio_seconds: float) -> dict[str, Any]:
        """The producer poll answer: `status`, a message, and the lyrics once SUCCESS."""
        status = self.status(now)
        data: list[dict[str, Any]] = []
        if status == "SUCCESS":
            lyrics = generate_lyrics(self.prompt, instrumental=False)
            data.append({"title": derive_title(self.prompt, lyrics), "lyrics": lyrics})
        message = {
            "PENDING": "task is queued.",
            "RUNNING": "task is running.",
            "SUCCESS": "success",
            "FAILED": f"lyrics generation failed (sandbox #fail marker); {self.refund_note()}.",
        }[status]
        return {"code": 200, "status": status, "message": message, "data": data}

    def callback(self, now: float, audio_seconds: float) -> tuple[str, dict[str, Any]]:
        """Never sent (lyrics-create takes no webhook); shaped like a producer callback."""
        answer = self.answer(now, audio_seconds)
        event = "song.failed" if answer["status"] == "FAILED" else "song.completed"
        return event, {**answer, "task_id": self.task_id, "platform": "producer", "event": event}

    def describe(self, now: float) -> dict[str, Any]:
        """What `GET /sandbox/tasks` shows."""
        return {**self.describe_common(now), "family": "lyrics", "prompt": {"prompt": self.prompt}}


def new_lyrics_task(
    prompt: str, *, markers: frozenset[str], base_url: str, delay_s: float, created_at: datetime
) -> LyricsTask:
    """A lyrics-create task on the usual timeline (`#fail` and the never marker work too)."""
    return LyricsTask(
        task_id=str(uuid.uuid4()),
        prompt=prompt,
        markers=markers,
        cost=LYRICS_COST,
        base_url=base_url,
        delay_s=delay_s,
        created_at=created_at,
    )


def sonic_lyrics_answer(description: str) -> dict[str, Any]:
    """Two sets of lyrics for `description`, as `POST /api/v1/sonic/lyrics` answers."""
    results = []
    for variant in _SONIC_VARIANTS:
        text = generate_lyrics(description + variant, instrumental=False)
        results.append({"title": derive_title(description, text) + variant.title(), "text": text})
    return {"code": 200, "message": "success", "data": results}
