"""Where the `s3` handler puts a song, and what it writes beside it: keys and metadata.

Keys come from a template filled with values the provider controls, so every value is
sanitised into one safe key segment. Title metadata is UTF-8 percent-encoded (read it back with
`urllib.parse.unquote`), because S3 user metadata must be ASCII.
"""

from __future__ import annotations

import unicodedata
from urllib.parse import quote

from handlers._files import template_values
from handlers.base import HandlerError
from receiver.models import Event

__all__ = [
    "MAX_KEY_BYTES",
    "TEMPLATE_FIELDS",
    "check_key_text",
    "key_segment",
    "metadata",
    "render_key",
]

TEMPLATE_FIELDS = frozenset(
    {"prefix", "date", "title", "slug", "task_id", "clip_id", "platform", "ext"}
)
"""The names a key template may use."""

MAX_KEY_BYTES = 1024
"""S3's limit on a key."""

_MAX_SEGMENT_BYTES = 200
_AVOID = frozenset('/\\{}^%`[]"<>~#|')  # AWS lists these as characters to avoid in keys
_META_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")


def key_segment(value: str) -> str:
    """One key segment for `value`: no slashes, control characters, leading dots, or excess."""
    text = unicodedata.normalize("NFKC", value)
    text = "".join(
        "_" if ch in _AVOID else ch for ch in text if not unicodedata.category(ch).startswith("C")
    )
    text = " ".join(text.split()).lstrip(". ")
    while len(text.encode()) > _MAX_SEGMENT_BYTES:
        text = text[:-1]
    return text.rstrip() or "untitled"


def render_key(template: str, prefix: str, event: Event, ext: str) -> str:
    """`template` filled for `event`, each value one sanitised segment, empty and `.` segments
    dropped; a permanent HandlerError if the result climbs (`..`) or exceeds S3's limit."""
    safe = {name: key_segment(value) for name, value in template_values(event).items()}
    rendered = template.format(prefix=prefix, ext=ext, **safe)
    key = "/".join(part for part in rendered.split("/") if part not in ("", "."))
    if ".." in key.split("/") or len(key.encode()) > MAX_KEY_BYTES:
        raise HandlerError(f"rendered key for clip {event.clip_id} is not usable", retryable=False)
    return key


def check_key_text(name: str, text: str) -> None:
    """Refuse operator-written key text (`prefix`, the template) that is absolute, climbs, or
    holds control characters; the ValueError names the option."""
    if text.startswith("/") or ".." in text.split("/"):
        raise ValueError(f"{name} must not start with '/' or contain a '..' segment")
    if any(unicodedata.category(ch).startswith("C") for ch in text):
        raise ValueError(f"{name} must not contain control characters")


def metadata(event: Event) -> dict[str, str]:
    """S3 user metadata (x-amz-meta-*): ASCII only, about 2 KB in all."""
    return {
        "task-id": _ascii(event.task_id),
        "clip-id": _ascii(event.clip_id),
        "title": _ascii(event.title, limit=1024),
        "platform": _ascii(event.platform),
        "event-id": _ascii(event.id),
    }


def _ascii(value: str, limit: int = 256) -> str:
    """`value` UTF-8 percent-encoded (printable ASCII other than `%` kept), cut to `limit`."""
    text = value[:limit]
    while len(encoded := quote(text, safe=_META_SAFE)) > limit:
        text = text[:-1]
    return encoded
