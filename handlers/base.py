"""What a handler is, what it gets, and how it says it failed.

A handler type is a class with a pydantic `Config` model and `__init__(name, config)`; an
instance is created once per configured `[[handlers]]` entry and reused for every event, so
costly clients are built once (lazily, on first use).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

import httpx
import structlog
from pydantic import BaseModel

from receiver.models import Event

__all__ = [
    "Blame",
    "Handler",
    "HandlerContext",
    "HandlerError",
    "HandlerResult",
    "SpoolAccess",
    "SpooledFile",
]

HandlerResult = Mapping[str, Any]
"""What a handler hands back (a file path, an S3 key, a Slack ts); stored with the delivery."""

Blame = Literal["destination", "unavailable", "relay"]
"""Whom an operator should look at: the destination refused, it was down, or our side failed."""


class HandlerError(Exception):
    """A handler could not do its job; the dispatcher retries it or dead-letters it.

    `retryable=False` means trying again cannot help (bad config, 4xx from the destination).
    `retry_after` (seconds) is a floor for the next attempt, e.g. from a 429's Retry-After.
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool = True,
        retry_after: float | None = None,
        blame: Blame = "relay",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.retry_after = retry_after
        self.blame = blame


@dataclasses.dataclass(frozen=True, slots=True)
class SpooledFile:
    """A downloaded file that every handler of one event shares; read it, do not move it."""

    url: str
    path: Path
    size: int
    content_type: str | None


class SpoolAccess(Protocol):
    """Downloads each URL of an event once, to a local file, safely (size cap, SSRF guard)."""

    async def fetch(self, url: str) -> SpooledFile: ...


@dataclasses.dataclass(frozen=True, slots=True)
class HandlerContext:
    """Everything a handler may use besides the event itself."""

    http: httpx.AsyncClient
    spool: SpoolAccess
    log: structlog.stdlib.BoundLogger
    public_url: str
    delivery_id: str
    attempt: int
    results: Mapping[str, HandlerResult] = dataclasses.field(default_factory=dict)
    """Results of this event's other handlers that already succeeded, by handler name."""


@runtime_checkable
class Handler(Protocol):
    """A destination for events. Raise `HandlerError` to fail; return a result to record."""

    Config: ClassVar[type[BaseModel]]
    name: str

    async def handle(self, event: Event, ctx: HandlerContext) -> HandlerResult | None: ...
