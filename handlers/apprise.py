"""The `apprise` handler: tell any Apprise URL (Discord, Telegram, Teams, e-mail, ntfy, …).

Apprise URLs carry their credentials inside them (`discord://<id>/<token>`), so no message,
log line or config error here ever shows one: a target is named by Apprise's own masked form
cut down to `scheme://host`. Each URL gets its own Apprise object, so a retry after a partial
failure notifies only the URLs that have not been told yet (remembered in memory, per
delivery). Apprise 2.3's `async_notify` runs each blocking send in its own thread pool, so
the event loop never waits on the network.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import html
import re
import string
import warnings
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import quote

import apprise
from apprise.plugins import N_MGR
from apprise.plugins.base import NotifyBase
from apprise.utils.parse import parse_urls
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from handlers.base import HandlerContext, HandlerError
from receiver.delivery.alerts import BLAME_MEANING, DEAD_KIND, DeadNotice
from receiver.models import Event

__all__ = ["TEMPLATE_FIELDS", "AppriseHandler"]

TEMPLATE_FIELDS = frozenset(
    {"title", "kind", "task_id", "clip_id", "platform", "duration", "tags", "lyrics"}
    | {"audio_url", "image_url", "error", "task_url", "stored_urls", "prompt"}
)
"""The names a title or body template may use."""

BodyFormat = Literal["text", "markdown", "html"]
"""How the body is written; Apprise converts it for services that need another format."""

_FAILURE_KINDS = frozenset({"song.failed", "task.timed_out"})
_NOTIFY_KINDS = _FAILURE_KINDS | {"song.completed", "song.streaming"}
_URL_FIELDS = frozenset({"audio_url", "image_url", "task_url"})
_SONG_LINES = (
    ("Duration", "duration"),
    ("Tags", "tags"),
    ("Listen", "audio_url"),
    ("Stored", "stored_urls"),
    ("Dashboard", "task_url"),
)
_FAILURE_LINES = (("Reason", "error"), ("Prompt", "prompt"), ("Dashboard", "task_url"))
_DEAD_LINES = (("Error", "error"), ("Blame", "blame"), ("Event", "event"), ("Replay", "task_url"))
_AT = re.compile(r"@(?!\u200d)")
_OPENER = re.compile(r"<(?=[@#!])")
_URL_UNSAFE = re.compile(r"[\s<>@]")
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>|~#])")
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
        def _check_template(cls, template: str | None) -> str | None:
            if template is not None:
                _check_template(template)
            return template

    def __init__(self, name: str, config: AppriseHandler.Config) -> None:
        self.name = name
        self.config = config
        self._targets: list[_Target] | None = None
        self._sent: collections.OrderedDict[str, set[int]] = collections.OrderedDict()

    async def handle(self, event: Event, ctx: HandlerContext) -> dict[str, Any]:
        """Notify every URL not yet told about this delivery; fail retryably if one refuses."""
        message = self._message(event, ctx)
        if message is None:
            return {"skipped": event.kind}
        title, body = message
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

    def _message(self, event: Event, ctx: HandlerContext) -> tuple[str, str] | None:
        """(title, body) for `event` from the templates, the built-in alert for a dead letter,
        or None for a kind this handler does not tell."""
        config, fmt = self.config, self.config.body_format
        if event.kind == DEAD_KIND:
            return _dead(DeadNotice.of(event), fmt)
        if event.kind not in _NOTIFY_KINDS:
            return None
        failure = event.kind in _FAILURE_KINDS
        lines = _FAILURE_LINES if failure else _SONG_LINES
        body_template = (config.failure_body if failure else config.body) or _default_body(
            fmt, lines
        )
        title = _render(
            config.failure_title if failure else config.title, _values(event, ctx, "title", fmt)
        )
        return title, _render(body_template, _values(event, ctx, "body", fmt)) or title

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


def _check_template(template: str) -> None:
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"not a valid template: {exc}") from exc
    unknown = sorted({f for _, f, _, _ in parsed if f is not None and f not in TEMPLATE_FIELDS})
    if unknown:
        names = ", ".join(f"{{{name}}}" for name in unknown)
        raise ValueError(f"unknown field(s) {names}; use {', '.join(sorted(TEMPLATE_FIELDS))}")
    if any(spec or conversion for _, f, spec, conversion in parsed if f is not None):
        raise ValueError("template fields take no format spec or conversion")


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


def _default_body(fmt: BodyFormat, lines: tuple[tuple[str, str], ...]) -> str:
    """One `Label: {field}` line per field, in `fmt`; empty lines are dropped when rendered."""
    rendered = []
    for label, field in lines:
        value = f"{{{field}}}"
        if field in _URL_FIELDS and fmt == "markdown":
            value = f"<{value}>"
        elif field in _URL_FIELDS and fmt == "html":
            value = f'<a href="{value}">{value}</a>'
        rendered.append(f"<b>{label}:</b> {value}<br>" if fmt == "html" else f"{label}: {value}")
    return "\n".join(rendered)


def _render(template: str, values: Mapping[str, str]) -> str:
    """Fill `template`, dropping each line whose fields are all empty."""
    kept = []
    for line in template.split("\n"):
        fields = [f for _, f, _, _ in string.Formatter().parse(line) if f is not None]
        if fields and not any(values[f] for f in fields):
            continue
        kept.append(line.format_map(values))
    return "\n".join(kept).strip()


def _values(
    event: Event, ctx: HandlerContext, where: Literal["title", "body"], fmt: BodyFormat
) -> dict[str, str]:
    """Every template field as text that is safe inside a `where` written in `fmt`."""
    clip = event.clip
    error = ""
    if event.kind in _FAILURE_KINDS:
        error = str(event.error or clip.get("error_message") or clip.get("error") or "")
        error = error or ("timed out" if event.kind == "task.timed_out" else "unknown")
    raw = {
        "title": event.title,
        "kind": event.kind,
        "task_id": event.task_id,
        "clip_id": event.clip_id,
        "platform": event.platform,
        "duration": _duration(clip.get("duration")),
        "tags": str(clip.get("tags") or ""),
        "lyrics": str(clip.get("lyrics") or ""),
        "error": error,
        "prompt": event.prompt or "",
        "audio_url": event.audio_url or "",
        "image_url": event.image_url or "",
        "task_url": ctx.task_url or "",
    }
    # The title is plain text to most services (Discord shows a backslash literally).
    text_fmt = "text" if where == "title" and fmt == "markdown" else fmt
    values = {key: _escape(value, text_fmt, url=key in _URL_FIELDS) for key, value in raw.items()}
    stored = {name: str(r["url"]) for name, r in ctx.results.items() if r and r.get("url")}
    values["stored_urls"] = _links(stored, text_fmt)
    return values


def _dead(notice: DeadNotice, fmt: BodyFormat) -> tuple[str, str]:
    """The built-in alert for a dead letter: who gave up on which song, why, whom to blame
    and where to replay it (not templated: the song templates' fields do not fit it)."""
    text_fmt = "text" if fmt == "markdown" else fmt  # the title is plain text, as above
    tries = f" {notice.tries}" if notice.tries else ""
    title = _escape(
        f"⚠️ {notice.handler}: the {notice.action} of “{notice.title}” failed{tries}",
        text_fmt,
        url=False,
    )
    meaning = BLAME_MEANING.get(notice.blame)
    raw = {
        "error": notice.error,
        "blame": f"{notice.blame} — {meaning}" if meaning else notice.blame,
        "event": f"{notice.event_kind} of clip {notice.clip_id} (task {notice.task_id})",
        "task_url": notice.dashboard_url or "",
    }
    values = {key: _escape(value, fmt, url=key in _URL_FIELDS) for key, value in raw.items()}
    return title, _render(_default_body(fmt, _DEAD_LINES), values) or title


def _escape(value: str, fmt: BodyFormat, *, url: bool) -> str:
    """`value` inert in `fmt`: no markup from the provider and no mention of anyone."""
    if url:
        value = _URL_UNSAFE.sub(lambda found: quote(found[0], safe=""), value)
        return html.escape(value) if fmt == "html" else value
    value = _defuse(value)
    if fmt == "html":
        return html.escape(value)
    if fmt == "markdown":
        return _MARKDOWN_SPECIAL.sub(r"\\\1", value)
    return value


def _defuse(text: str) -> str:
    """Provider text with every mention broken by an invisible zero-width joiner (U+200D).

    Done before any format escaping, which Apprise undoes when it converts HTML or markdown
    for a service. Every `@` is defused, not just `@everyone`: Apprise's Discord plugin turns
    any `@word`, `<@id>` or `<@&role>` in a markdown body into a ping (even mid-word or after a
    markdown backslash), Slack reads `<@U1>`, Matrix `@room`, Mattermost `@all`, Telegram
    `@user`; and `<@…>`, `<!here>` (Slack), `<#id>` (channels) lose their opening `<`. Text the
    operator wrote in a template is not touched, so a configured mention still pings.
    """
    return _OPENER.sub("<\u200d", _AT.sub("@\u200d", text))


def _links(stored: Mapping[str, str], fmt: BodyFormat) -> str:
    """The stored copies (handler name → URL) as links in `fmt`."""

    def link(name: str, url: str) -> str:
        shown, href = _escape(name, fmt, url=False), _escape(url, fmt, url=True)
        if fmt == "html":
            return f'<a href="{href}">{shown}</a>'
        if fmt == "markdown":
            return f"[{shown}](<{href}>)"
        return f"{shown}: {href}"

    return ", ".join(link(name, url) for name, url in stored.items())


def _duration(value: Any) -> str:
    """Seconds as `m:ss`, or "" when unknown."""
    try:
        seconds = round(float(value))
    except (TypeError, ValueError, OverflowError):
        return ""
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds >= 0 else ""
