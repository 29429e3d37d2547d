"""A sonic (Suno-backed) task: two clips, each with its own `state`, and no overall status.

The poll answer is `{"code": 200, "message": "success", "data": [clip, clip]}`; a clip's
`duration` is a number there and a string (e.g. `"104.88"`) in callbacks, as upstream-api.md
describes. The sandbox makes no video: `video_url` stays empty, as upstream before rendering.
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime
from typing import Any, ClassVar

from receiver.sandbox.options import SONIC_CONCAT_COST, SONIC_CREATE_COST
from receiver.sandbox.sonic_rules import SonicRequest
from receiver.sandbox.tasks import Timeline, iso
from receiver.sandbox.words import derive_title, generate_lyrics, generate_tags, lyric_title

__all__ = ["SonicTask", "new_sonic_task", "sonic_cost"]

_CLIPS_PER_TASK = 2


def sonic_cost(task_type: str) -> float:
    """15 credits per sonic task, 2 for `concat_music`."""
    return SONIC_CONCAT_COST if task_type == "concat_music" else SONIC_CREATE_COST


@dataclasses.dataclass(slots=True, kw_only=True)
class SonicTask(Timeline):
    """One sonic task and its two clips (same words, different audio)."""

    family: ClassVar[str] = "sonic"
    clip_ids: tuple[str, ...]
    task_type: str
    title: str
    tags: str
    lyrics: str
    gpt_description_prompt: str | None
    mv: str
    make_instrumental: bool
    extra: dict[str, Any]

    def media_prompt(self, clip_id: str) -> str:
        # Each clip gets its own audio: the clip's position is part of what the WAV hashes.
        return f"{self.tags}\n{self.lyrics}\n#{self.clip_ids.index(clip_id) + 1}"

    def state(self, now: float) -> str:
        """One clip state for both clips: pending, running, streaming, succeeded or failed."""
        status = self.status(now)
        if status == "FAILED":
            return "failed"
        if status == "SUCCESS":
            return "succeeded"
        if self.is_streaming(now):
            return "streaming"
        return "pending" if status == "PENDING" else "running"

    def clip(self, clip_id: str, now: float, audio_seconds: float, *, text: bool) -> dict[str, Any]:
        """A clip at `now`; `text=True` writes `duration` as a string, as callbacks do."""
        media = f"{self.base_url}/media/{clip_id}"
        state = self.state(now)
        clip: dict[str, Any] = {
            "clip_id": clip_id,
            "state": state,
            "title": self.title,
            "tags": self.tags,
            "lyrics": self.lyrics,
            "image_url": f"{media}.png",
            "video_url": "",
            "mv": self.mv,
            "task_type": self.task_type,
            "make_instrumental": self.make_instrumental,
            "created_at": iso(self.created_at),
            **self.extra,
        }
        if self.gpt_description_prompt is not None:
            clip["gpt_description_prompt"] = self.gpt_description_prompt
        if state == "failed":
            clip["error_message"] = (
                f"generation failed (sandbox #fail marker); {self.refund_note()}"
            )
        elif state in ("streaming", "succeeded"):
            clip["audio_url"] = f"{media}.wav"
            clip["duration"] = f"{audio_seconds:.2f}" if text else audio_seconds
        return clip

    def answer(self, now: float, audio_seconds: float) -> dict[str, Any]:
        """`GET /api/v1/sonic/task/{id}`: both clips, no overall status."""
        data = [self.clip(c, now, audio_seconds, text=False) for c in self.clip_ids]
        return {"code": 200, "message": "success", "data": data}

    def callback(self, now: float, audio_seconds: float) -> tuple[str, dict[str, Any]]:
        """The `X-Webhook-Event` header and body, with both clips and `platform: sonic`."""
        event = "song.failed" if self.status(now) == "FAILED" else "song.completed"
        body = {
            "code": 200,
            "task_id": self.task_id,
            "platform": "sonic",
            "event": event,
            "message": "success",
            "data": [self.clip(c, now, audio_seconds, text=True) for c in self.clip_ids],
        }
        return event, body

    def describe(self, now: float) -> dict[str, Any]:
        """What `GET /sandbox/tasks` shows; never the webhook secret."""
        return {
            **self.describe_common(now),
            "family": "sonic",
            "task_type": self.task_type,
            "clip_ids": list(self.clip_ids),
            "state": self.state(now),
            "prompt": {
                "prompt": self.lyrics,
                "gpt_description_prompt": self.gpt_description_prompt,
                "tags": self.tags,
                "title": self.title,
            },
        }


def new_sonic_task(
    request: SonicRequest,
    *,
    markers: frozenset[str],
    base_url: str,
    delay_s: float,
    created_at: datetime,
) -> SonicTask:
    """A task for a valid request, with the words the service writes when none were given."""
    description = request.gpt_description_prompt or ""
    if request.custom_mode or request.task_type == "concat_music":
        lyrics = request.prompt or ""
        tags = request.tags or ""
        title = request.title or (lyric_title(lyrics) if lyrics else "Full Song")
    else:
        lyrics = generate_lyrics(description, request.make_instrumental)
        tags = generate_tags(description)
        title = derive_title(description, "")
    return SonicTask(
        task_id=str(uuid.uuid4()),
        clip_ids=tuple(str(uuid.uuid4()) for _ in range(_CLIPS_PER_TASK)),
        task_type=request.task_type,
        title=title,
        tags=tags,
        lyrics=lyrics,
        gpt_description_prompt=request.gpt_description_prompt,
        mv=request.mv,
        make_instrumental=request.make_instrumental,
        extra=request.extra,
        markers=markers,
        cost=sonic_cost(request.task_type),
        base_url=base_url,
        delay_s=delay_s,
        created_at=created_at,
        webhook_url=request.webhook_url,
        webhook_secret=request.webhook_secret,
    )
