"""`delivery.dead`: what the relay tells its subscribers when it gives up on a delivery.

The event is stored by the same transaction that records the dead letter (see
`receiver.store.outbox`), so an alert is neither lost nor doubled. It is the relay's own
event: its `clip` is a `DeadNotice`, not a provider's clip, and it carries no audio URL, so
handlers that file songs have nothing to download for it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Final

from receiver.models import Event
from receiver.states import EventKind

__all__ = ["BLAME_MEANING", "DEAD_KIND", "DeadNotice"]

DEAD_KIND: Final = EventKind.DELIVERY_DEAD
"""The event kind raised when a delivery is dead-lettered (never for one of its own kind)."""

BLAME_MEANING: Mapping[str, str] = {
    "destination": "the destination refused it",
    "unavailable": "the destination was down or too slow",
    "relay": "the relay's own side: config or a bug",
}
"""A dead letter's `blame` in words, for a reader who has not read the README."""

_ACTIONS = {
    "s3": "S3 upload",
    "disk": "disk copy",
    "slack": "Slack post",
    "apprise": "Apprise notification",
    "forward": "webhook forward",
}


@dataclasses.dataclass(frozen=True, slots=True)
class DeadNotice:
    """A `delivery.dead` event's payload: which handler gave up on what, why, and where to
    replay it."""

    handler: str
    handler_type: str
    event_kind: str
    event_id: str
    delivery_id: str
    title: str
    task_id: str
    task_ref: str | None
    clip_id: str
    error: str
    blame: str
    attempts: int
    dashboard_url: str | None

    @classmethod
    def for_death(
        cls,
        event: Event,
        *,
        handler: str,
        handler_type: str,
        delivery_id: str,
        error: str,
        blame: str,
        attempts: int,
        public_url: str,
    ) -> DeadNotice:
        """The notice of `handler`'s delivery of `event` dying, linking the task's dashboard
        page (where each delivery has its Replay button) under `RELAY_PUBLIC_URL`."""
        base = public_url.rstrip("/")
        url = f"{base}/admin/tasks/{event.task_ref}" if event.task_ref and base else None
        return cls(
            handler=handler,
            handler_type=handler_type,
            event_kind=event.kind,
            event_id=event.id,
            delivery_id=delivery_id,
            title=str(event.clip.get("title") or event.prompt or "untitled"),
            task_id=event.task_id,
            task_ref=event.task_ref,
            clip_id=event.clip_id,
            error=error,
            blame=blame,
            attempts=attempts,
            dashboard_url=url,
        )

    @classmethod
    def of(cls, event: Event) -> DeadNotice:
        """Read back from a `delivery.dead` event; a missing field gets a neutral value."""
        clip = event.clip
        attempts = clip.get("attempts")
        url = clip.get("dashboard_url")
        return cls(
            handler=str(clip.get("handler") or "?"),
            handler_type=str(clip.get("handler_type") or ""),
            event_kind=str(clip.get("event_kind") or ""),
            event_id=str(clip.get("event_id") or ""),
            delivery_id=str(clip.get("delivery_id") or ""),
            title=str(clip.get("title") or "untitled"),
            task_id=str(clip.get("task_id") or event.task_id),
            task_ref=str(clip.get("task_ref") or event.task_ref or "") or None,
            clip_id=str(clip.get("clip_id") or event.clip_id),
            error=str(clip.get("error") or event.error or "unknown error"),
            blame=str(clip.get("blame") or "relay"),
            attempts=attempts if isinstance(attempts, int) else 0,
            dashboard_url=url if isinstance(url, str) and url else None,
        )

    def as_clip(self) -> dict[str, Any]:
        """The payload as stored in the event's `clip`."""
        return dataclasses.asdict(self)

    @property
    def action(self) -> str:
        """What the handler was doing, in words: `S3 upload`; a plugin's is `delivery`."""
        return _ACTIONS.get(self.handler_type, "delivery")

    @property
    def tries(self) -> str:
        """`after 3 attempts`, or nothing when the count is unknown."""
        if self.attempts <= 0:
            return ""
        return f"after {self.attempts} attempt{'s' if self.attempts != 1 else ''}"
