"""What the `apprise` handler sends: a title and a body rendered from templates.

Pure functions of the event and the templates, so what a service shows can be tested without
sending. Every value the provider wrote is escaped for the body format and has its mentions
defused; text the operator wrote in a template is left alone, so a configured mention pings.
"""

from __future__ import annotations

import html
import re
import string
from collections.abc import Mapping
from typing import Literal, Protocol
from urllib.parse import quote

from handlers._text import check_fields, duration
from handlers.base import HandlerResult
from receiver.delivery.alerts import BLAME_MEANING, DEAD_KIND, DeadNotice
from receiver.models import Event

__all__ = [
    "TEMPLATE_FIELDS",
    "BodyFormat",
    "Templates",
    "check_template",
    "dead",
    "defuse",
    "escape",
    "message",
]

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


class Templates(Protocol):
    """The template options of one `apprise` entry (its Config is one)."""

    @property
    def title(self) -> str: ...
    @property
    def body(self) -> str | None: ...
    @property
    def failure_title(self) -> str: ...
    @property
    def failure_body(self) -> str | None: ...
    @property
    def body_format(self) -> BodyFormat: ...


def check_template(key: str, template: str) -> None:
    """Refuse a template that does not parse, names an unknown field, or formats one."""
    check_fields(key, template, TEMPLATE_FIELDS)


def message(
    event: Event,
    templates: Templates,
    *,
    task_url: str | None = None,
    results: Mapping[str, HandlerResult] | None = None,
) -> tuple[str, str] | None:
    """(title, body) for `event` from the templates, the built-in alert for a dead letter,
    or None for a kind this handler does not tell. `results` are the event's other handlers'
    results, whose `url`s become `{stored_urls}`."""
    fmt = templates.body_format
    if event.kind == DEAD_KIND:
        return dead(DeadNotice.of(event), fmt)
    if event.kind not in _NOTIFY_KINDS:
        return None
    failure = event.kind in _FAILURE_KINDS
    lines = _FAILURE_LINES if failure else _SONG_LINES
    body = (templates.failure_body if failure else templates.body) or _default_body(fmt, lines)
    stored = results or {}
    title = _render(
        templates.failure_title if failure else templates.title,
        _values(event, task_url, stored, "title", fmt),
    )
    return title, _render(body, _values(event, task_url, stored, "body", fmt)) or title


def dead(notice: DeadNotice, fmt: BodyFormat) -> tuple[str, str]:
    """The built-in alert for a dead letter: who gave up on which song, why, whom to blame
    and where to replay it (not templated: the song templates' fields do not fit it)."""
    text_fmt = "text" if fmt == "markdown" else fmt  # the title is plain text, as below
    tries = f" {notice.tries}" if notice.tries else ""
    title = escape(
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
    values = {key: escape(value, fmt, url=key in _URL_FIELDS) for key, value in raw.items()}
    return title, _render(_default_body(fmt, _DEAD_LINES), values) or title


def escape(value: str, fmt: BodyFormat, *, url: bool) -> str:
    """`value` inert in `fmt`: no markup from the provider and no mention of anyone."""
    if url:
        value = _URL_UNSAFE.sub(lambda found: quote(found[0], safe=""), value)
        return html.escape(value) if fmt == "html" else value
    value = defuse(value)
    if fmt == "html":
        return html.escape(value)
    if fmt == "markdown":
        return _MARKDOWN_SPECIAL.sub(r"\\\1", value)
    return value


def defuse(text: str) -> str:
    """Provider text with every mention broken by an invisible zero-width joiner (U+200D).

    Done before any format escaping, which Apprise undoes when it converts HTML or markdown
    for a service. Every `@` is defused, not just `@everyone`: Apprise's Discord plugin turns
    any `@word`, `<@id>` or `<@&role>` in a markdown body into a ping (even mid-word or after a
    markdown backslash), Slack reads `<@U1>`, Matrix `@room`, Mattermost `@all`, Telegram
    `@user`; and `<@…>`, `<!here>` (Slack), `<#id>` (channels) lose their opening `<`. Text the
    operator wrote in a template is not touched, so a configured mention still pings.
    """
    return _OPENER.sub("<\u200d", _AT.sub("@\u200d", text))


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
    event: Event,
    task_url: str | None,
    results: Mapping[str, HandlerResult],
    where: Literal["title", "body"],
    fmt: BodyFormat,
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
        "duration": duration(clip.get("duration"), zero=True) or "",
        "tags": str(clip.get("tags") or ""),
        "lyrics": str(clip.get("lyrics") or ""),
        "error": error,
        "prompt": event.prompt or "",
        "audio_url": event.audio_url or "",
        "image_url": event.image_url or "",
        "task_url": task_url or "",
    }
    # The title is plain text to most services (Discord shows a backslash literally).
    text_fmt = "text" if where == "title" and fmt == "markdown" else fmt
    values = {key: escape(value, text_fmt, url=key in _URL_FIELDS) for key, value in raw.items()}
    stored = {name: str(r["url"]) for name, r in results.items() if r and r.get("url")}
    values["stored_urls"] = _links(stored, text_fmt)
    return values


def _links(stored: Mapping[str, str], fmt: BodyFormat) -> str:
    """The stored copies (handler name → URL) as links in `fmt`."""

    def link(name: str, url: str) -> str:
        shown, href = escape(name, fmt, url=False), escape(url, fmt, url=True)
        if fmt == "html":
            return f'<a href="{href}">{shown}</a>'
        if fmt == "markdown":
            return f"[{shown}](<{href}>)"
        return f"{shown}: {href}"

    return ", ".join(link(name, url) for name, url in stored.items())
