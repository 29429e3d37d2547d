"""What the message-writing handlers (slack, discord, apprise, disk, s3) share: template
checks, durations, sung lyric lines, URL tests, and the wording of a dry run that sends
nothing."""

from __future__ import annotations

import re
import string
from collections.abc import Collection
from typing import Any
from urllib.parse import urlsplit

__all__ = ["NOT_SENT", "check_fields", "duration", "is_web", "sung_lines"]

NOT_SENT = "not sent: that would notify someone"
"""Why a dry run stopped at a URL's form: the only real test would reach a person."""
_SECTION_MARKER = re.compile(r"\[[^\]]*\]")


def check_fields(key: str, template: str, fields: Collection[str]) -> None:
    """Refuse a template that does not parse, uses a field not in `fields`, or a format spec
    or conversion (a provider's value could make `{title:>9999}` huge); each message names
    the config `key` and lists the allowed fields."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"{key} {template!r} is not a valid template: {exc}") from exc
    unknown = [f"{{{f}}}" for _, f, _, _ in parsed if f is not None and f not in fields]
    if unknown:
        allowed = ", ".join(sorted(fields))
        raise ValueError(f"unknown {key} field {', '.join(unknown)}; use one of {allowed}")
    if any(spec or conversion for _, f, spec, conversion in parsed if f is not None):
        raise ValueError(f"{key} fields take no format spec or conversion")


def duration(value: Any, *, zero: bool = False) -> str | None:
    """Seconds as `m:ss`; None when missing, not a number, negative, or 0 unless `zero`."""
    try:
        seconds = round(float(value))
    except (TypeError, ValueError, OverflowError):
        return None
    if seconds > 0 or (zero and seconds == 0):
        return f"{seconds // 60}:{seconds % 60:02d}"
    return None


def is_web(url: str) -> bool:
    """True for an http(s) URL with a host: the only links a message may carry."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def sung_lines(lyrics: str) -> list[str]:
    """The lines of `lyrics` a person would sing, whitespace folded: blank lines and section
    markers such as `[Verse]` left out (a chat quote shows the song, not its layout)."""
    stripped = (" ".join(line.split()) for line in lyrics.splitlines())
    return [line for line in stripped if line and not _SECTION_MARKER.fullmatch(line)]
