"""Structured logs: JSON lines for machines, a readable console for people, secrets redacted.

Redaction is `receiver.redact`'s, as on every other surface: by key name (anything that looks
like a secret, token or signature) and by value (every configured secret is scrubbed wherever
it appears in any string, as are callback tokens), so a secret pasted into an error message
still never reaches the log.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any

import structlog

from receiver.redact import MASK, Redactor

__all__ = ["configure_logging", "get_logger", "hide_also"]


class _RedactProcessor:
    """The structlog processor: every field of an event through one `Redactor`."""

    __slots__ = ("_redactor",)

    def __init__(self, secret_values: Iterable[str]) -> None:
        self._redactor = Redactor(secret_values, MASK)

    def hide_also(self, values: Iterable[str]) -> None:
        self._redactor = self._redactor.with_values(values)

    def __call__(
        self, _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for key, value in list(event_dict.items()):
            event_dict[key] = self._redactor.field(key, value)
        return event_dict


_PROCESSORS: list[Any] = []
"""structlog's processor chain, changed in place: loggers are cached on first use (building
one per call was a measurable share of a callback's cost), and a cached logger keeps the list
it was built with, so a later `configure_logging` (new secrets to redact) must reach it."""


def configure_logging(
    level: str = "info", fmt: str = "auto", secret_values: Iterable[str] = ()
) -> None:
    """Set up structlog and the stdlib root logger (uvicorn's and httpx's logs go through it)."""
    json_output = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    redactor = _RedactProcessor(secret_values)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        # Before the redactor: a traceback quotes exception messages, which may quote a secret.
        structlog.processors.format_exc_info,
        redactor,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json_output
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    _PROCESSORS[:] = [
        # First: a line below the level costs a method call, not the whole chain (the hot
        # path logs each callback and delivery at info; production often runs warning).
        structlog.stdlib.filter_by_level,
        *shared,
        structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
    ]
    structlog.configure(
        processors=_PROCESSORS,
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("httpx", "httpcore", "aiosqlite", "sqlalchemy.engine", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # Apprise logs its own complaint about a URL (validating relay.toml, or a failed send) before
    # ours, and may quote parts of the URL, where tokens live. The apprise handler reads those
    # lines from Apprise's own capture (a handler on this logger, which still gets them) and
    # reports them scrubbed; they must not reach our output unscrubbed.
    logging.getLogger("apprise").propagate = False
    # Our request log replaces uvicorn's access log (which would print callback tokens).
    logging.getLogger("uvicorn.access").disabled = True


def hide_also(values: Iterable[str]) -> None:
    """Redact `values` too from now on: secrets known only once relay.toml is read (the chat
    apps'), after `configure_logging` ran with the environment's. In place, so cached loggers
    and the stdlib formatter, which share the processor, hide them as well."""
    values = list(values)
    for processor in _PROCESSORS:
        if isinstance(processor, _RedactProcessor) and values:
            processor.hide_also(values)


def get_logger(name: str = "aimusic_relay") -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger
