"""The `disk` handler: file each finished song (audio, cover, metadata, lyrics) under a directory.

Names come from a template filled with values the provider controls (titles, ids), so every
value is sanitised and the result must stay inside the configured directory. Files are put in
place with an atomic rename, so a replay overwrites the same names instead of adding copies.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import secrets
import shutil
import unicodedata
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, field_validator

from handlers._files import audio_extension, check_template, fetch_cover, template_values
from handlers.base import HandlerCheck, HandlerContext, HandlerError, config_secrets
from receiver.models import Event

__all__ = ["DiskHandler", "safe_name"]

TEMPLATE_FIELDS = frozenset({"date", "title", "slug", "clip_id", "task_id", "platform", "ext"})
"""The names a template may use (`slug`: the title as ASCII lowercase words joined by dashes)."""

_SONG_KINDS = frozenset({"song.completed", "song.streaming"})
_FAILURE_KINDS = frozenset({"song.failed", "task.timed_out"})
_RESERVED = frozenset(
    {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"}
    | {f"{port}{n}" for port in ("COM", "LPT") for n in range(10)}
)
_WINDOWS_FORBIDDEN = frozenset('/\\<>:"|?*')
_MAX_CHARS = 100
_MAX_VALUE_BYTES = 120
_MAX_STEM_BYTES = 200  # leaves room for ".failed.json" and temp names within NAME_MAX (255)


def safe_name(value: str) -> str:
    """One file-name component for `value` that is harmless on Linux, macOS and Windows."""
    text = unicodedata.normalize("NFKC", value)
    text = "".join(
        "_" if ch in _WINDOWS_FORBIDDEN else ch
        for ch in text
        if not unicodedata.category(ch).startswith("C")  # control, format, unassigned
    )
    text = " ".join(text.split()).lstrip(". ")
    text = text[:_MAX_CHARS]
    while len(text.encode()) > _MAX_VALUE_BYTES:
        text = text[:-1]
    text = text.rstrip(". ")  # Windows drops trailing dots and spaces
    if not text:
        return "untitled"
    if text.split(".", 1)[0].strip().upper() in _RESERVED:
        return f"_{text}"
    return text


class DiskHandler:
    """Writes `<stem>.<ext>` (audio), the cover, `<stem>.json` and `<stem>.txt` under `path`."""

    class Config(BaseModel):
        """Options of one `type = "disk"` entry in relay.toml."""

        model_config = ConfigDict(extra="forbid")

        path: str = "songs"
        template: str = "{date}/{slug}-{clip_id}.{ext}"  # no name a shell must quote
        cover: bool = True
        metadata: bool = True
        lyrics: bool = True

        @field_validator("template")
        @classmethod
        def _check_template(cls, template: str) -> str:
            check_template("template", template, TEMPLATE_FIELDS)
            literal_parts = PurePosixPath(template.replace("\\", "/"))
            if literal_parts.is_absolute() or ".." in literal_parts.parts:
                raise ValueError("template must be a relative path without '..'")
            return template

    def __init__(self, name: str, config: DiskHandler.Config) -> None:
        self.name = name
        self.config = config

    async def handle(self, event: Event, ctx: HandlerContext) -> dict[str, Any] | None:
        """File a song or a failure; raise a permanent HandlerError when that cannot work."""
        if event.kind in _FAILURE_KINDS:
            failed = self._target(event, "failed.json")
            await asyncio.to_thread(_write_json, failed, self._failure(event))
            return {"path": None, "cover": None, "metadata": str(failed), "lyrics": None}
        if event.kind not in _SONG_KINDS:
            return None
        if not event.audio_url:
            raise HandlerError(
                f"{event.kind} for clip {event.clip_id} has no audio URL", retryable=False
            )
        audio = await ctx.spool.fetch(event.audio_url)
        ext = audio_extension(audio)
        target = self._target(event, ext)
        stem = target.name[: -len(ext) - 1]
        await asyncio.to_thread(_place, audio.path, target)

        cover: Path | None = None
        found = await fetch_cover(event, ctx, self.name) if self.config.cover else None
        if found is not None:
            image, cover_ext = found
            cover = target.with_name(f"{stem}.{cover_ext}")
            await asyncio.to_thread(_place, image.path, cover)

        lyrics_file: Path | None = None
        lyrics = event.clip.get("lyrics")
        if self.config.lyrics and isinstance(lyrics, str) and lyrics.strip():
            lyrics_file = target.with_name(f"{stem}.txt")
            await asyncio.to_thread(_write_text, lyrics_file, lyrics)

        metadata: Path | None = None
        if self.config.metadata:
            metadata = target.with_name(f"{stem}.json")
            details = self._metadata(
                event,
                audio=target.name,
                cover=cover.name if cover else None,
                lyrics=lyrics_file.name if lyrics_file else None,
            )
            await asyncio.to_thread(_write_json, metadata, details)
        return {
            "path": str(target),
            "cover": str(cover) if cover else None,
            "metadata": str(metadata) if metadata else None,
            "lyrics": str(lyrics_file) if lyrics_file else None,  # every file written is named
        }

    async def check(self) -> HandlerCheck:
        """Whether `path` is (or can be created as) a writable directory, judged from its
        permissions: doctor changes nothing, not even a directory's mtime."""
        return await asyncio.to_thread(_check_directory, self.config.path)

    def secrets(self) -> Iterable[str]:
        """None by default; whatever a plugin subclass adds to the options."""
        return config_secrets(self.config)

    def _target(self, event: Event, ext: str) -> Path:
        """The rendered template under `path`, refused unless it stays inside `path`."""
        safe = {key: safe_name(value) for key, value in template_values(event).items()}
        relative = self.config.template.format(**safe, ext=safe_name(ext))
        *folders, name = [
            f"_{part}" if part.startswith("-") else part  # `rm *` would read "-rf" as options
            for part in relative.replace("\\", "/").split("/")
            if part
        ]
        parts = [_fit(folder, "") for folder in folders] + [_fit(name, f".{ext}")]
        base = Path(self.config.path).resolve()
        target = base.joinpath(*parts).resolve()
        if base not in target.parents:
            raise HandlerError(
                f"rendered file name for clip {event.clip_id} leaves {base}", retryable=False
            )
        return target

    def _metadata(
        self, event: Event, *, audio: str, cover: str | None, lyrics: str | None
    ) -> dict[str, Any]:
        clip = event.clip
        return {
            "event_id": event.id,
            "event": event.kind,
            "task_id": event.task_id,
            "clip_id": event.clip_id,
            "platform": event.platform,
            "title": event.title,
            "tags": clip.get("tags"),
            "duration": clip.get("duration"),
            "prompt": event.prompt,
            "labels": dict(event.labels),
            "received_at": event.received_at.isoformat(),
            "audio_url": _without_query(event.audio_url),
            "image_url": _without_query(event.image_url),
            "files": {"audio": audio, "cover": cover, "lyrics": lyrics},
        }

    def _failure(self, event: Event) -> dict[str, Any]:
        reason = event.error or event.clip.get("error_message") or event.clip.get("error")
        if not reason:
            reason = "timed out" if event.kind == "task.timed_out" else "unknown"
        return {
            "event_id": event.id,
            "event": event.kind,
            "reason": str(reason),
            "task_id": event.task_id,
            "clip_id": event.clip_id,
            "platform": event.platform,
            "title": event.title,
            "prompt": event.prompt,
            "labels": dict(event.labels),
            "received_at": event.received_at.isoformat(),
        }


def _check_directory(path: str) -> HandlerCheck:
    target = Path(path).resolve()
    if target.exists() and not target.is_dir():
        return HandlerCheck("fail", f"{target} is a file, not a directory", "change `path`")
    existing = target
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        return HandlerCheck("fail", f"{existing} is a file: cannot create {target}")
    if existing != target:
        if os.access(existing, os.W_OK | os.X_OK):
            return HandlerCheck("ok", f"{target} will be created (parent {existing} writable)")
        return HandlerCheck("fail", f"cannot create {target}: {existing} is not writable")
    # access(2) also answers EROFS for a read-only mount.
    if not os.access(target, os.W_OK | os.X_OK):
        return HandlerCheck(
            "fail", f"{target} is not writable", "fix the permissions, or change `path`"
        )
    return HandlerCheck("ok", f"{target} is writable")


def _fit(name: str, suffix: str) -> str:
    """Shorten a path component too long for the file system, deterministically and uniquely."""
    stem = name[: -len(suffix)] if suffix and name.endswith(suffix) else name
    if len(stem.encode()) <= _MAX_STEM_BYTES:
        return name
    digest = hashlib.sha256(stem.encode()).hexdigest()[:10]
    while len(stem.encode()) > _MAX_STEM_BYTES - len(digest) - 1:
        stem = stem[:-1]
    return f"{stem}~{digest}{suffix}"


def _without_query(url: str | None) -> str | None:
    """The URL without credentials, query or fragment: signed CDN links carry secrets there."""
    if not url:
        return None
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _place(source: Path, target: Path) -> None:
    """Hard-link (or copy) `source` to a temp name beside `target`, then rename over it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".tmp-{secrets.token_hex(8)}")
    try:
        try:
            os.link(source, temp)
        except OSError:
            shutil.copyfile(source, temp)
        os.replace(temp, target)
    finally:
        # rename() is a no-op when both names are already links to one file; drop the temp.
        with contextlib.suppress(OSError):
            temp.unlink(missing_ok=True)


def _write_text(target: Path, text: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".tmp-{secrets.token_hex(8)}")
    try:
        temp.write_text(text, encoding="utf-8")
        os.replace(temp, target)
    finally:
        with contextlib.suppress(OSError):
            temp.unlink(missing_ok=True)


def _write_json(target: Path, data: dict[str, Any]) -> None:
    _write_text(target, json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")
