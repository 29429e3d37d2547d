"""The `apprise` handler: tell any Apprise URL (Discord, Telegram, Teams, e-mail, ntfy, …).

Apprise URLs carry their credentials inside them (`discord://<id>/<token>`), so no message,
log line or config error here ever shows one: a target is named by Apprise's own masked form
cut down to `scheme://host`. Each URL gets its own Apprise object, so a retry after a partial
failure notifies only the URLs that have not been told yet (remembered in memory, per
delivery). Apprise 2.3's `async_notify` runs each blocking send in its own thread pool, so
the event loop never waits on the network. What is sent is built in `apprise_messages`.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import re
import warnings
from collections.abc import Iterable
from typing import Any

import apprise
from apprise.plugins import N_MGR
from apprise.plugins.base import NotifyBase
from apprise.utils.parse import parse_urls
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationInfo, field_validator

from handlers._text import NOT_SENT
from handlers.apprise_messages import TEMPLATE_FIELDS, BodyFormat, check_template, message
from handlers.base import HandlerCheck, HandlerContext, HandlerError, config_secrets
from receiver.models import Event

__all__ = ["TEMPLATE_FIELDS", "AppriseHandler"]

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]{0,24}")
_URL_PIECES = re.compile(r"[/:@?&=#,;+\s]+")
_REMEMBERED = 1024  # deliveries whose partly-sent URLs we remember between attempts
_WIKI = "see https://github.com/caronc/apprise/wiki"


class AppriseHandler:
    """Sends a title and body rendered from templates to every configured Apprise URL."""

    class Config(BaseModel):
        """Options of one `type = "apprise"` entry in relay.toml."""

        # Inputs are URLs with tokens: never echo them in a validation error.
        model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

        urls: list[SecretStr] = Field(min_length=1)
        """Apprise URLs; one entry may hold several, separated by commas or spaces."""
        title: str = "🎵 {title}"
        body: str | None = None
        """None: a built-in body (duration, tags, audio, stored copies, dashboard link)."""
        failure_title: str = "⚠️ {title} failed"
        failure_body: str | None = None
        """None: a built-in body (reason, prompt, dashboard link)."""
        body_format: BodyFormat = "markdown"

        @field_validator("urls")
        @classmethod
        def _check_urls(cls, entries: list[SecretStr]) -> list[SecretStr]:
            texts = [entry.get_secret_value() for entry in entries]
            # apprise 2.3 leaves these two helpers unannotated.
            urls: list[str] = parse_urls(*texts)  # type: ignore[no-untyped-call]
            if not urls:
                raise ValueError("no Apprise URL given")
            for number, url in enumerate(urls, start=1):
                try:
                    _check_url(url)
                except ValueError as exc:
                    where = f"URL #{number} of {len(urls)}: " if len(urls) > 1 else ""
                    raise ValueError(f"{where}{exc}") from None
            return [SecretStr(url) for url in urls]

        @field_validator("title", "body", "failure_title", "failure_body")
        @classmethod
        def _check_template(cls, template: str | None, info: ValidationInfo) -> str | None:
            if template is not None:
                check_template(info.field_name or "template", template)
            return template

    def __init__(self, name: str, config: AppriseHandler.Config) -> None:
        self.name = name
        self.config = config
        self._targets: list[_Target] | None = None
        self._sent: collections.OrderedDict[str, set[int]] = collections.OrderedDict()

    async def handle(self, event: Event, ctx: HandlerContext) -> dict[str, Any]:
        """Notify every URL not yet told about this delivery; fail retryably if one refuses."""
        told = message(event, self.config, task_url=ctx.task_url, results=ctx.results)
        if told is None:
            return {"skipped": event.kind}
        title, body = told
        fmt = self.config.body_format

        targets = self._built()
        sent = self._sent.setdefault(ctx.delivery_id, set())
        self._sent.move_to_end(ctx.delivery_id)
        while len(self._sent) > _REMEMBERED:
            self._sent.popitem(last=False)
        pending = [index for index in range(len(targets)) if index not in sent]
        outcomes = await asyncio.gather(
            *(targets[i].notify(title, body, fmt) for i in pending), return_exceptions=True
        )
        failed = []
        for index, outcome in zip(pending, outcomes, strict=True):
            if outcome is None:
                sent.add(index)
            else:
                reason = outcome if isinstance(outcome, str) else type(outcome).__name__
                failed.append(f"{targets[index].label} ({reason})")
        if failed:
            raise HandlerError(
                f"apprise could not notify {len(failed)} of {len(targets)} URL(s): "
                + "; ".join(failed),
                retryable=True,
                blame="unavailable",
            )
        self._sent.pop(ctx.delivery_id, None)
        return {"notified": len(targets)}

    async def check(self) -> HandlerCheck:
        """The URLs parsed at start-up; nothing is sent, since every send notifies someone."""
        schemes = sorted({url.get_secret_value().split("://", 1)[0] for url in self.config.urls})
        count = len(self.config.urls)
        return HandlerCheck(
            "ok", f"{count} Apprise URL(s) parse ({', '.join(schemes)}); {NOT_SENT}"
        )

    def secrets(self) -> Iterable[str]:
        """Every URL: each carries its service's token inside it."""
        return config_secrets(self.config)

    def _built(self) -> list[_Target]:
        """One Apprise object per URL, made on first use."""
        if self._targets is None:
            targets = []
            for secret in self.config.urls:
                url = secret.get_secret_value()
                plugin = _instantiate(url)
                if plugin is None:
                    raise HandlerError(
                        f"apprise refused a {_scheme_of(url)}:// URL it accepted at start-up",
                        retryable=False,
                        blame="relay",
                    )
                notifier = apprise.Apprise()
                notifier.add(plugin)
                masked = str(plugin.url(privacy=True))  # type: ignore[no-untyped-call]
                label = _label(masked)
                targets.append(_Target(label, notifier, _pieces(url, label)))
            self._targets = targets
        return self._targets


@dataclasses.dataclass(frozen=True, slots=True)
class _Target:
    """One Apprise URL: a safe name for messages, its notifier, and the parts to scrub."""

    label: str
    notifier: apprise.Apprise
    secrets: tuple[str, ...]

    async def notify(self, title: str, body: str, fmt: BodyFormat) -> str | None:
        """None when sent; otherwise why not, with every part of the URL scrubbed out."""
        with await self.notifier.async_notify(body=body, title=title, body_format=fmt) as result:
            if result:
                return None
            reasons = [r.status.name.lower() for r in result if not r]
            details = [e.message for e in result.logs() if e.level in ("WARNING", "ERROR")]
        reason = ", ".join(reasons) or result.status.name.lower()
        if details:
            reason = f"{reason}: {details[-1]}"
        for secret in self.secrets:
            reason = reason.replace(secret, "***")
        return " ".join(reason.split())[:300]


def _check_url(url: str) -> None:
    """Raise a ValueError that names the scheme (never the URL) unless Apprise accepts `url`."""
    scheme = _scheme_of(url)
    if not scheme:
        raise ValueError(f"an entry is not an Apprise URL (scheme://…); {_WIKI}")
    accepted = _instantiate(url) is not None
    known = scheme.lower() in N_MGR  # loaded by _instantiate
    if not accepted and not known:
        raise ValueError(f"{scheme}:// is not a scheme Apprise knows; {_WIKI}")
    if not accepted:
        raise ValueError(
            f"a {scheme}:// URL is incomplete or malformed (not shown: it may hold a token); "
            f"{_WIKI}"
        )


def _scheme_of(url: str) -> str:
    """The scheme of `url` when it looks like one (a token pasted alone is not shown)."""
    head, sep, _ = url.partition("://")
    return head if sep and _SCHEME.fullmatch(head) else ""


def _label(masked: str) -> str:
    """`scheme://host` from Apprise's masked URL (its host part is masked where it is a token)."""
    scheme, _, rest = masked.partition("://")
    host = rest.split("/", 1)[0].split("?", 1)[0].rpartition("@")[2]
    return f"{scheme}://{host}"


def _pieces(url: str, label: str) -> tuple[str, ...]:
    """Every part of `url` long enough to be a credential and not in its label, longest first."""
    pieces = _URL_PIECES.split(url.partition("://")[2])
    parts = {part for part in pieces if len(part) >= 6 and part not in label}
    return tuple(sorted(parts, key=len, reverse=True))


def _instantiate(url: str) -> NotifyBase | None:
    """Apprise's plugin for `url`, or None if it cannot use it.

    Its first call imports every plugin, and the e-mail one imports `imghdr`, deprecated since
    Python 3.11: not ours to fix, and an error where warnings are errors (the tests).
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "'imghdr' is deprecated", DeprecationWarning)
        return apprise.Apprise.instantiate(url)
