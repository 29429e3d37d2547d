"""The buttons under a finished song in chat — Regenerate, Extend, Remix — and their wire form.

A button must say, in at most 100 characters (Discord's `custom_id` limit; Slack's `action_id`
allows 255), which song of which task it acts on, so that a click needs nothing but the store
to be answered. Pure, and free of `receiver.chat` (which imports the handlers, never the other
way), so the Slack handler renders the buttons and both chat apps read them back.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any, Literal, get_args

__all__ = [
    "LABELS",
    "MAX_CHARS",
    "SONIC_PLATFORMS",
    "Button",
    "ButtonKind",
    "buttons_for",
    "clip_seconds",
    "decode",
    "encode",
]

ButtonKind = Literal["regenerate", "extend", "remix"]
KINDS: tuple[ButtonKind, ...] = get_args(ButtonKind)

MAX_CHARS = 100
"""The longest wire form: Discord's `custom_id` limit, the tighter of the two platforms."""

LABELS: Mapping[ButtonKind, str] = {
    "regenerate": "🔁 Regenerate",
    "extend": "⏩ Extend",
    "remix": "🎨 Remix",
}
"""What each button says, the same in Slack and Discord."""

SONIC_PLATFORMS = frozenset({"sonic", "suno"})
"""Platform names of the sonic family (the sunoapi brand calls it suno): the only family whose
`extend_music` still works (producer's answers 410 Gone)."""

_PREFIX = "song"
_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")
"""A task ref or clip id we put on the wire: uuids and the relay's hex ids, nothing that could
hold the separator."""


@dataclasses.dataclass(frozen=True, slots=True)
class Button:
    """One button: what to do (`kind`) to which song (`clip_id`, the provider's clip id) of
    which relay task (`task_ref`)."""

    kind: ButtonKind
    task_ref: str
    clip_id: str


def encode(button: Button) -> str:
    """`song:<kind>:<task_ref>:<clip_id>`, or ValueError naming what cannot go on the wire."""
    for name in ("task_ref", "clip_id"):
        value = getattr(button, name)
        if not _ID.fullmatch(value):
            raise ValueError(f"button {name} {value!r} is not 1-64 letters, digits, '_.-'")
    text = f"{_PREFIX}:{button.kind}:{button.task_ref}:{button.clip_id}"
    if len(text) > MAX_CHARS:
        raise ValueError(f"button {text!r} is longer than {MAX_CHARS} characters")
    return text


def decode(text: str) -> Button | None:
    """The button `encode` wrote, or None for anything else (another app's action, a forgery
    that got past nothing but still must not reach the store as a query)."""
    parts = text.split(":")
    if len(parts) != 4 or parts[0] != _PREFIX or len(text) > MAX_CHARS:
        return None
    _, kind, task_ref, clip_id = parts
    if kind not in KINDS or not _ID.fullmatch(task_ref) or not _ID.fullmatch(clip_id):
        return None
    return Button(kind=_kind(kind), task_ref=task_ref, clip_id=clip_id)


def buttons_for(
    platform: str, task_ref: str | None, clip_id: str, clip: Mapping[str, Any]
) -> list[Button]:
    """The buttons a finished clip gets: Regenerate always; Extend for a sonic clip whose
    length is known (extend continues at its end); Remix when it has lyrics to sing again.
    None at all without a relay task (a song made elsewhere) or with ids that do not fit."""
    if not task_ref:
        return []
    kinds: list[ButtonKind] = ["regenerate"]
    if platform.lower() in SONIC_PLATFORMS and clip_seconds(clip) is not None:
        kinds.append("extend")
    if str(clip.get("lyrics") or "").strip():
        kinds.append("remix")
    buttons = [Button(kind, task_ref, clip_id) for kind in kinds]
    try:
        for button in buttons:
            encode(button)
    except ValueError:
        return []
    return buttons


def clip_seconds(clip: Mapping[str, Any]) -> float | None:
    """The clip's length in seconds (a number when polled, a string such as "104.88" in
    callbacks), or None when absent or not a positive number."""
    value = clip.get("duration")
    if isinstance(value, bool):
        return None
    try:
        seconds = float(value) if isinstance(value, int | float | str) else None
    except ValueError:
        return None
    return seconds if seconds is not None and 0 < seconds < float("inf") else None


def _kind(text: str) -> ButtonKind:
    for kind in KINDS:
        if kind == text:
            return kind
    raise ValueError(f"unknown button kind {text!r}")  # pragma: no cover - checked by decode
