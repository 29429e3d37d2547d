"""What the file-writing handlers (disk, s3) share: file extensions and name templates."""

from __future__ import annotations

import string
from collections.abc import Collection
from datetime import UTC
from pathlib import PurePosixPath
from urllib.parse import urlsplit

from handlers.base import HandlerContext, HandlerError, SpooledFile
from receiver.models import Event

__all__ = [
    "EXTENSIONS",
    "TYPES",
    "check_template",
    "extension_of",
    "fetch_cover",
    "template_values",
]

TYPES = {  # extension -> content type, for names and for files served without a useful type
    "mp3": "audio/mpeg", "wav": "audio/wav", "m4a": "audio/mp4", "aac": "audio/aac",
    "flac": "audio/flac", "ogg": "audio/ogg", "webm": "audio/webm", "mp4": "video/mp4",
    "png": "image/png", "jpg": "image/jpeg", "webp": "image/webp", "gif": "image/gif",
}  # fmt: skip
EXTENSIONS = {v: k for k, v in TYPES.items()} | {
    "audio/x-wav": "wav", "audio/wave": "wav", "audio/vnd.wave": "wav", "audio/mp3": "mp3",
    "audio/x-m4a": "m4a", "audio/m4a": "m4a", "audio/x-flac": "flac", "image/jpg": "jpg",
}  # fmt: skip
"""Content type -> extension."""


def extension_of(spooled: SpooledFile, *, default: str) -> str:
    """From the content type, else the URL's suffix, else `default`."""
    known = EXTENSIONS.get(spooled.content_type or "")
    if known:
        return known
    suffix = PurePosixPath(urlsplit(spooled.url).path).suffix.lower().lstrip(".")
    return suffix if suffix.isalnum() and suffix.isascii() and len(suffix) <= 8 else default


async def fetch_cover(
    event: Event, ctx: HandlerContext, audio_ext: str, handler: str
) -> tuple[SpooledFile, str] | None:
    """The event's cover and the extension to file it under, or None when there is no cover or
    its source refuses it for good (the song matters more than its cover); a retryable failure
    propagates so the delivery is tried again. The extension never equals the audio's, so an
    odd source cannot make the cover overwrite the song."""
    if not event.image_url:
        return None
    try:
        image = await ctx.spool.fetch(event.image_url)
    except HandlerError as exc:
        if exc.retryable:
            raise
        ctx.log.warning("cover skipped", handler=handler, reason=exc.message)
        return None
    ext = extension_of(image, default="jpg")
    return image, f"cover.{ext}" if ext == audio_ext else ext


def template_values(event: Event) -> dict[str, str]:
    """The event's values a name template may use (not yet sanitised)."""
    return {
        "date": event.received_at.astimezone(UTC).date().isoformat(),
        "title": event.title,
        "clip_id": event.clip_id,
        "task_id": event.task_id,
        "platform": event.platform,
    }


def check_template(key: str, template: str, fields: Collection[str]) -> str:
    """Refuse a template with unknown fields, format specs or conversions, or no `.{ext}` end;
    the message names the config `key` and lists the allowed fields."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"{key} {template!r} is not a valid format: {exc}") from exc
    unknown = [f"{{{f}}}" for _, f, _, _ in parsed if f is not None and f not in fields]
    if unknown:
        allowed = ", ".join(sorted(fields))
        raise ValueError(f"unknown {key} field {', '.join(unknown)}; use one of {allowed}")
    if any(spec or conversion for _, f, spec, conversion in parsed if f is not None):
        raise ValueError(f"{key} fields take no format spec or conversion")
    if not template.endswith(".{ext}"):
        raise ValueError(f"{key} must end with .{{ext}}")
    return template
