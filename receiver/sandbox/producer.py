"""A producer `create_music` task: one clip, an overall `status`, the credits note in `message`."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from receiver.sandbox.tasks import Timeline, iso

__all__ = ["ProducerTask"]


@dataclasses.dataclass(slots=True, kw_only=True)
class ProducerTask(Timeline):
    """One producer `create_music` task and its single clip."""

    family: ClassVar[str] = "producer"
    clip_id: str
    sound: str
    lyrics: str
    title: str
    mv: str
    seed: str | None
    make_instrumental: bool

    @property
    def clip_ids(self) -> tuple[str, ...]:
        return (self.clip_id,)

    @property
    def prompt(self) -> str:
        """What the media is derived from: the same prompt always makes the same song."""
        return f"{self.sound}\n{self.lyrics}"

    def media_prompt(self, clip_id: str) -> str:
        return self.prompt

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
            "created_at": iso(self.created_at),
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

    def message(self, now: float) -> str:
        status = self.status(now)
        if status == "FAILED":
            return f"generation failed (sandbox #fail marker); {self.refund_note()}."
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

    def callback(self, now: float, audio_seconds: float) -> tuple[str, dict[str, Any]]:
        """The `X-Webhook-Event` header and body; a streaming clip goes under `song.completed`."""
        answer = self.answer(now, audio_seconds)
        event = "song.failed" if answer["status"] == "FAILED" else "song.completed"
        body = {
            "code": 200,
            "task_id": self.task_id,
            "platform": "producer",
            "event": event,
            "status": answer["status"],
            "message": answer["message"],
            "data": answer["data"],
        }
        return event, body

    def describe(self, now: float) -> dict[str, Any]:
        """What `GET /sandbox/tasks` shows; never the webhook secret."""
        return {
            **self.describe_common(now),
            "family": "producer",
            "clip_id": self.clip_id,
            "prompt": {"sound": self.sound, "lyrics": self.lyrics, "title": self.title},
        }
