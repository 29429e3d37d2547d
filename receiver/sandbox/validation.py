"""Check a producer create body the way the provider does, with its status codes and messages.

Kept apart from the routes so each rule reads as one line and the order of checks is visible.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import re
import socket
from typing import Any
from urllib.parse import urlsplit

from receiver.upstream.task_types import is_retired_task_type

__all__ = [
    "CreateRequest",
    "Rejected",
    "check_webhook_url",
    "optional",
    "validate_create",
]


_MV = re.compile(r"FUZZ-\d+(\.\d+)?")
_MAX_TITLE = 80
_MAX_WEBHOOK_URL = 1024


class Rejected(Exception):
    """The request is refused with `status` and a human `message` (the error body's text)."""

    def __init__(self, status: int, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after


@dataclasses.dataclass(frozen=True, slots=True)
class CreateRequest:
    """A valid `create_music` body, with defaults applied."""

    sound: str
    lyrics: str
    title: str | None
    mv: str
    seed: str | None
    make_instrumental: bool
    webhook_url: str | None
    webhook_secret: str | None


def optional(body: dict[str, Any], key: str, kind: type, kind_name: str) -> Any:
    """`body[key]` if absent, null or of type `kind`; otherwise a 400 naming the key."""
    value = body.get(key)
    if value is not None and not isinstance(value, kind):
        raise Rejected(400, f"{key} must be {kind_name}")
    return value


async def validate_create(body: Any) -> CreateRequest:
    """Return the request, or raise `Rejected` with the first problem found."""
    if not isinstance(body, dict):
        raise Rejected(400, "the request body must be a JSON object")
    task_type = body.get("task_type")
    if task_type is None or task_type == "":
        raise Rejected(400, "task_type is required; use create_music")
    if not isinstance(task_type, str):
        raise Rejected(400, "task_type must be a string; use create_music")
    if is_retired_task_type(task_type):
        raise Rejected(
            410,
            f"task_type {task_type} has been retired and is no longer available; "
            "send a fresh create_music task instead.",
        )
    if task_type != "create_music":
        raise Rejected(400, f"task_type {task_type} is not supported; use create_music")
    sound = optional(body, "sound", str, "a string") or ""
    lyrics = optional(body, "lyrics", str, "a string") or ""
    if not sound.strip() and not lyrics.strip():
        raise Rejected(400, "sound or lyrics is required (at least one must be non-empty)")
    title = optional(body, "title", str, "a string")
    if title is not None and len(title) > _MAX_TITLE:
        raise Rejected(400, f"title is too long: at most {_MAX_TITLE} characters are allowed")
    mv = body.get("mv")
    mv = "FUZZ-2.0" if mv is None else mv
    if not isinstance(mv, str) or not _MV.fullmatch(mv):
        raise Rejected(400, "mv is invalid: expected FUZZ-<n>[.<n>], e.g. FUZZ-2.0")
    seed = optional(body, "seed", str, "a string")
    instrumental = optional(body, "make_instrumental", bool, "a boolean (true or false)")
    webhook_url = optional(body, "webhook_url", str, "a string") or None
    if webhook_url is not None:
        await check_webhook_url(webhook_url)
    secret = optional(body, "webhook_secret", str, "a string") or None
    return CreateRequest(
        sound=sound,
        lyrics=lyrics,
        title=title or None,
        mv=mv,
        seed=seed,
        make_instrumental=bool(instrumental),
        webhook_url=webhook_url,
        webhook_secret=secret,
    )


async def check_webhook_url(url: str) -> None:
    """The provider wants public HTTPS; the sandbox also allows plain HTTP to private hosts.

    That allowance exists so a relay on loopback or on a container network can receive sandbox
    callbacks without TLS. A host name is resolved, and every address must be loopback or
    private, so `http://` never leaves the local network.
    """
    if len(url) > _MAX_WEBHOOK_URL:
        raise Rejected(400, f"webhook_url is too long: at most {_MAX_WEBHOOK_URL} characters")
    try:
        parts = urlsplit(url)
        host = parts.hostname
        _ = parts.port  # raises ValueError on a malformed port
    except ValueError:
        raise Rejected(400, "webhook_url is not a valid URL") from None
    if parts.scheme not in ("https", "http") or not host:
        raise Rejected(400, "webhook_url must be an https:// URL")
    if parts.scheme == "http" and not await _is_local(host):
        raise Rejected(
            400,
            "webhook_url must use https (the sandbox allows http only for loopback "
            "and private network hosts)",
        )


async def _is_local(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return _private(ipaddress.ip_address(host))
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        return False
    addresses = {info[4][0] for info in infos}
    return bool(addresses) and all(_private(ipaddress.ip_address(a)) for a in addresses)


def _private(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return address.is_loopback or address.is_private or address.is_link_local
