"""What the file-writing handlers (disk, s3) share: file extensions and name templates."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection
from datetime import UTC
from pathlib import PurePosixPath
from urllib.parse import urlsplit

from handlers._text import check_fields
from handlers.base import HandlerContext, HandlerError, SpooledFile
from receiver.models import Event

__all__ = [
    "AUDIO_SUFFIXES",
    "IMAGE_SUFFIXES",
    "TYPES",
    "audio_extension",
    "check_template",
    "content_type",
    "fetch_cover",
    "slugify",
    "template_values",
]

TYPES = {  # extension -> content type, for files served without a useful type
    "mp3": "audio/mpeg", "m4a": "audio/mp4", "mp4": "video/mp4", "aac": "audio/aac",
    "wav": "audio/wav", "flac": "audio/flac", "ogg": "audio/ogg", "oga": "audio/ogg",
    "opus": "audio/opus", "webm": "audio/webm",
    "jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp",
    "gif": "image/gif",
}  # fmt: skip
_AUDIO_TYPES = {
    "audio/mpeg": "mp3", "audio/mp3": "mp3", "audio/x-mpeg": "mp3", "audio/mpeg3": "mp3",
    "audio/x-mp3": "mp3", "audio/mp4": "m4a", "audio/x-m4a": "m4a", "audio/m4a": "m4a",
    "video/mp4": "mp4", "audio/aac": "aac", "audio/x-aac": "aac", "audio/wav": "wav",
    "audio/x-wav": "wav", "audio/wave": "wav", "audio/vnd.wave": "wav", "audio/flac": "flac",
    "audio/x-flac": "flac", "audio/ogg": "ogg", "audio/opus": "opus", "audio/webm": "webm",
    "video/webm": "webm",
}  # fmt: skip
_IMAGE_TYPES = {
    "image/jpeg": "jpg", "image/jpg": "jpg", "image/png": "png", "image/webp": "webp",
    "image/gif": "gif",
}  # fmt: skip
AUDIO_SUFFIXES = frozenset(
    {"mp3", "m4a", "mp4", "aac", "wav", "flac", "ogg", "oga", "opus", "webm"}
)
"""The only extensions a song is filed under: none is a side file's (.json, .txt) or a cover's."""
IMAGE_SUFFIXES = frozenset({"jpg", "jpeg", "png", "webp", "gif"})
"""The only extensions a cover is filed under: raster images, never SVG or HTML (script)."""
_GENERIC_TYPES = frozenset({"application/octet-stream", "binary/octet-stream"})
_SLUG_LETTERS = str.maketrans(
    {
        "ß": "ss",
        "æ": "ae",
        "œ": "oe",
        "ø": "o",
        "đ": "d",
        "ð": "d",
        "ł": "l",
        "þ": "th",
        "\u0131": "i",
    }
)  # Latin letters that NFKD leaves whole: spelled out rather than dropped
_NOT_SLUG = re.compile(r"[^a-z0-9]+")
_MAX_SLUG = 80


def _extension(
    spooled: SpooledFile, types: dict[str, str], allowed: frozenset[str], default: str, what: str
) -> str:
    """By the content type when it is a known one of `types`; by the URL's suffix (when one of
    `allowed`, else `default` if there is none) when the type is generic or missing. Anything
    else raises a permanent error naming what was refused, so a provider's file can never be
    named like a side file or as something a browser or shell would run."""
    media = spooled.content_type
    if media in types:
        return types[media]
    suffix = PurePosixPath(urlsplit(spooled.url).path).suffix.lower().lstrip(".")
    if media is None or media in _GENERIC_TYPES:
        if not suffix:
            return default
        if suffix in allowed:
            return suffix
        refused = f"{media or 'no content type'} at a URL ending .{suffix[:16]}"
    else:
        refused = f"content type {media}"
    raise HandlerError(
        f"refusing the {what}: {refused} is not one the relay saves "
        f"(it keeps {what} only as {', '.join(sorted(allowed))})",
        retryable=False,
    )


def content_type(spooled: SpooledFile, name: str) -> str:
    """The served content type unless it is generic, else one from `name`'s extension."""
    if spooled.content_type and spooled.content_type not in _GENERIC_TYPES:
        return spooled.content_type
    return TYPES.get(name.rsplit(".", 1)[-1], "application/octet-stream")


def audio_extension(spooled: SpooledFile) -> str:
    """The song's extension (one of AUDIO_SUFFIXES), or a permanent HandlerError."""
    return _extension(spooled, _AUDIO_TYPES, AUDIO_SUFFIXES, "mp3", "audio")


async def fetch_cover(
    event: Event, ctx: HandlerContext, handler: str
) -> tuple[SpooledFile, str] | None:
    """The event's cover and its extension (one of IMAGE_SUFFIXES), or None when there is no
    cover or it is refused for good (the song matters more than its cover); a retryable
    failure propagates so the delivery is tried again."""
    if not event.image_url:
        return None
    try:
        image = await ctx.spool.fetch(event.image_url)
        return image, _extension(image, _IMAGE_TYPES, IMAGE_SUFFIXES, "jpg", "cover")
    except HandlerError as exc:
        if exc.retryable:
            raise
        ctx.log.warning("cover skipped", handler=handler, reason=exc.message)
        return None


def slugify(text: str) -> str:
    """`text` as a name no shell needs quoted: ASCII letters and digits, lowercase, one dash
    between words, accents folded (`Café Noir` → `cafe-noir`); nothing left is `untitled`."""
    folded = unicodedata.normalize("NFKD", text.lower()).translate(_SLUG_LETTERS)
    ascii_only = folded.encode("ascii", "ignore").decode()
    slug = _NOT_SLUG.sub("-", ascii_only).strip("-")[:_MAX_SLUG].rstrip("-")
    return slug or "untitled"


def template_values(event: Event) -> dict[str, str]:
    """The event's values a name template may use (not yet sanitised)."""
    return {
        "date": event.received_at.astimezone(UTC).date().isoformat(),
        "title": event.title,
        "slug": slugify(event.title),
        "clip_id": event.clip_id,
        "task_id": event.task_id,
        "platform": event.platform,
    }


def check_template(key: str, template: str, fields: Collection[str]) -> str:
    """Refuse a template with unknown fields, format specs or conversions, or no `.{ext}` end;
    the message names the config `key` and lists the allowed fields."""
    check_fields(key, template, fields)
    if not template.endswith(".{ext}"):
        raise ValueError(f"{key} must end with .{{ext}}")
    return template
