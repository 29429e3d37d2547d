"""Check a sonic create body the way upstream-api.md describes it; the first problem is a 400.

Each rule is one line in `validate_sonic`, in the order the checks run.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, TypeGuard

from receiver.sandbox.validation import Rejected, check_webhook_url, optional

__all__ = ["SONIC_MODELS", "SONIC_TASK_TYPES", "SonicRequest", "prompt_limit", "validate_sonic"]

SONIC_TASK_TYPES = (
    "create_music",
    "extend_music",
    "cover_music",
    "concat_music",
    "persona_music",
    "extend_upload_music",
    "cover_upload_music",
)
"""Every sonic `task_type`; each makes two songs."""

SONIC_MODELS = ("sonic-v3-5", "sonic-v4", "sonic-v4-5", "sonic-v4-5-plus", "sonic-v5")
"""Valid `mv` values; the sunoapi brand's `chirp-*` names are accepted as well."""

_CHIRP = re.compile(r"chirp-[a-z0-9][a-z0-9.-]*")
_LONG_PROMPT_VERSIONS = frozenset({"v4-5", "v4-5-plus", "v5"})
_SHORT_PROMPT, _LONG_PROMPT = 3000, 5000
_MAX_DESCRIPTION = 400
_TITLE_BELOW = 80
_TAGS_BELOW = 200
_STRINGS = (
    "prompt",
    "gpt_description_prompt",
    "title",
    "tags",
    "negative_tags",
    "continue_clip_id",
    "persona_id",
    "vocal_gender",
    "webhook_url",
    "webhook_secret",
)
_NEEDS_CLIP = frozenset(
    {"extend_music", "extend_upload_music", "cover_music", "cover_upload_music", "concat_music"}
)
_BOOLS = ("make_instrumental", "auto_lyrics")
_WEIGHTS = ("weirdness_constraint", "style_weight", "audio_weight")


@dataclasses.dataclass(frozen=True, slots=True)
class SonicRequest:
    """A valid sonic create body; `extra` keeps the task-type-specific fields for the clips."""

    task_type: str
    custom_mode: bool
    mv: str
    prompt: str | None
    gpt_description_prompt: str | None
    title: str | None
    tags: str | None
    make_instrumental: bool
    webhook_url: str | None
    webhook_secret: str | None
    extra: dict[str, Any]


def prompt_limit(mv: str) -> int:
    """Lyrics may be 5000 characters on v4-5 and later, 3000 before."""
    version = mv.removeprefix("sonic-").removeprefix("chirp-")
    return _LONG_PROMPT if version in _LONG_PROMPT_VERSIONS else _SHORT_PROMPT


def _is_number(value: object) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


async def validate_sonic(body: Any) -> SonicRequest:
    """Return the request, or raise `Rejected` with the first problem found."""
    if not isinstance(body, dict):
        raise Rejected(400, "the request body must be a JSON object")
    task_type = body.get("task_type")
    if not isinstance(task_type, str) or not task_type:
        raise Rejected(400, f"task_type is required; use one of {', '.join(SONIC_TASK_TYPES)}")
    if task_type not in SONIC_TASK_TYPES:
        raise Rejected(
            400, f"task_type {task_type} is not supported; use one of {', '.join(SONIC_TASK_TYPES)}"
        )
    custom_mode = body.get("custom_mode")
    if not isinstance(custom_mode, bool):
        raise Rejected(
            400,
            "custom_mode is required and must be true (you write the lyrics in prompt) "
            "or false (describe the song in gpt_description_prompt)",
        )
    mv = body.get("mv")
    if not isinstance(mv, str) or not (mv in SONIC_MODELS or _CHIRP.fullmatch(mv)):
        raise Rejected(400, f"mv is invalid: use one of {', '.join(SONIC_MODELS)}")
    text = {key: optional(body, key, str, "a string") for key in _STRINGS}
    flags = {key: optional(body, key, bool, "a boolean (true or false)") for key in _BOOLS}
    prompt, description = text["prompt"], text["gpt_description_prompt"]
    if task_type == "concat_music":
        pass  # joins existing clips: no lyrics or description needed
    elif custom_mode and not (prompt or "").strip():
        raise Rejected(400, "prompt (the lyrics) is required when custom_mode is true")
    elif not custom_mode and not (description or "").strip():
        raise Rejected(400, "gpt_description_prompt is required when custom_mode is false")
    limit = prompt_limit(mv)
    if prompt is not None and len(prompt) > limit:
        raise Rejected(400, f"prompt is too long: at most {limit} characters with {mv}")
    if description is not None and len(description) > _MAX_DESCRIPTION:
        raise Rejected(
            400, f"gpt_description_prompt is too long: at most {_MAX_DESCRIPTION} characters"
        )
    if text["title"] is not None and len(text["title"]) >= _TITLE_BELOW:
        raise Rejected(400, f"title is too long: fewer than {_TITLE_BELOW} characters allowed")
    if text["tags"] is not None and len(text["tags"]) >= _TAGS_BELOW:
        raise Rejected(400, f"tags is too long: fewer than {_TAGS_BELOW} characters allowed")
    if task_type in _NEEDS_CLIP and not text["continue_clip_id"]:
        raise Rejected(400, f"continue_clip_id is required for {task_type}")
    continue_at = body.get("continue_at")
    if task_type.startswith("extend") and (not _is_number(continue_at) or continue_at < 0):
        raise Rejected(400, f"continue_at (seconds, a number >= 0) is required for {task_type}")
    if task_type == "persona_music" and not text["persona_id"]:
        raise Rejected(400, "persona_id is required for persona_music")
    if text["vocal_gender"] is not None and text["vocal_gender"] not in ("f", "m"):
        raise Rejected(400, "vocal_gender is invalid: use f or m")
    for key in _WEIGHTS:
        value = body.get(key)
        if value is not None and not (_is_number(value) and 0 <= value <= 1):
            raise Rejected(400, f"{key} must be a number between 0 and 1")
    webhook_url = text["webhook_url"] or None
    if webhook_url is not None:
        await check_webhook_url(webhook_url)
    extra_keys = ("continue_clip_id", "persona_id", "vocal_gender", "negative_tags")
    extra = {k: text[k] for k in extra_keys if text[k] is not None}
    if continue_at is not None:
        extra["continue_at"] = continue_at
    extra.update({k: body[k] for k in _WEIGHTS if body.get(k) is not None})
    if flags["auto_lyrics"] is not None:
        extra["auto_lyrics"] = flags["auto_lyrics"]
    return SonicRequest(
        task_type=task_type,
        custom_mode=custom_mode,
        mv=mv,
        prompt=prompt,
        gpt_description_prompt=description,
        title=text["title"] or None,
        tags=text["tags"] or None,
        make_instrumental=bool(flags["make_instrumental"]),
        webhook_url=webhook_url,
        webhook_secret=text["webhook_secret"] or None,
        extra=extra,
    )
