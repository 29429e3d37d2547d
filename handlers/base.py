"""What a handler is, what it gets, and how it says it failed.

A handler type is a class with a pydantic `Config` model and `__init__(name, config)`; an
instance is created once per configured `[[handlers]]` entry and reused for every event, so
costly clients are built once (lazily, on first use).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

import httpx
import structlog
from pydantic import BaseModel, SecretStr

from receiver.errors import RelayError
from receiver.models import Event

__all__ = [
    "CHAT_EVENTS",
    "Blame",
    "CheckStatus",
    "Checkable",
    "Handler",
    "HandlerCheck",
    "HandlerContext",
    "HandlerError",
    "HandlerResult",
    "HoldsSecrets",
    "SpoolAccess",
    "SpooledFile",
    "config_secrets",
    "secrets_of",
]

CHAT_EVENTS: tuple[str, ...] = ("task.submitted", "song.completed", "song.failed", "task.timed_out")
"""The default events of a handler that talks to people (Slack, Discord): "generating…" when
the task is submitted, then the song or why there is none."""

HandlerResult = Mapping[str, Any]
"""What a handler hands back (a file path, an S3 key, a Slack ts); stored with the delivery."""

Blame = Literal["destination", "unavailable", "relay"]
"""Whom an operator should look at: the destination refused, it was down, or our side failed."""


class HandlerError(RelayError):
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
    """Results of this event's other handlers that already succeeded, by handler name.

    A handler listed in this one's `after` has finished (succeeded or dead) before this runs,
    so e.g. Slack can link the copy an `s3` handler stored."""
    previous_result: HandlerResult | None = None
    """This very delivery's result from an earlier successful run (a replay): use it to
    update what was sent instead of sending it twice."""
    task_results: Mapping[str, HandlerResult] = dataclasses.field(default_factory=dict)
    """Per handler name, the result of its latest successful delivery for an *earlier* event
    of the same task (e.g. the Slack `ts` of the "generating…" message posted on submit)."""
    task_url: str | None = None
    """The relay's dashboard page for this task, when `RELAY_PUBLIC_URL` is public HTTPS."""


@runtime_checkable
class Handler(Protocol):
    """A destination for events. Raise `HandlerError` to fail; return a result to record."""

    Config: ClassVar[type[BaseModel]]
    name: str
    # Optional: `default_events: ClassVar[tuple[str, ...]]` — the events this type receives
    # when its `[[handlers]]` entry sets no `events` (else routing.DEFAULT_EVENTS).

    async def handle(self, event: Event, ctx: HandlerContext) -> HandlerResult | None: ...


CheckStatus = Literal["ok", "warn", "fail"]


@dataclasses.dataclass(frozen=True, slots=True)
class HandlerCheck:
    """What a handler's dry run found: `doctor` prints it as one line of its report."""

    status: CheckStatus
    detail: str
    advice: str = ""


@runtime_checkable
class Checkable(Protocol):
    """Optional capability: a dry run of the handler's credentials for `aimusic-relay doctor`.

    It must leave no trace a person sees (Slack's `auth.test`, S3's `HeadBucket`, a
    directory's permissions): where the only real test would notify someone, check the form of
    the URL and say so. Return a `HandlerCheck`; an exception is reported as a failed check.
    """

    async def check(self) -> HandlerCheck: ...


@runtime_checkable
class HoldsSecrets(Protocol):
    """Optional capability: every secret value the handler holds, for redaction.

    The relay hides these in logs, errors, the dashboard and doctor's report. A handler that
    does not implement it is redacted by `config_secrets(config)`, which finds `SecretStr`
    fields and header values; implement it when a secret lives elsewhere (an access key id).
    """

    def secrets(self) -> Iterable[str]: ...


def config_secrets(config: BaseModel | None) -> list[str]:
    """Every `SecretStr` value in a handler's options, and every value of a dict option
    (headers carry tokens); the default answer of `HoldsSecrets.secrets()`."""
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, SecretStr):
            found.append(value.get_secret_value())
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)
        elif isinstance(value, dict):
            found.extend(str(item) for item in value.values())
        elif isinstance(value, BaseModel):
            for field in type(value).model_fields:
                walk(getattr(value, field))

    walk(config)
    return [value for value in found if value]


def secrets_of(handler: object) -> list[str]:
    """Every secret value a handler holds: its own `secrets()`, else what its options show.
    The relay's redactors (logs, dashboard, doctor) hide these."""
    if isinstance(handler, HoldsSecrets):
        return [value for value in handler.secrets() if value]
    return config_secrets(getattr(handler, "config", None))
