"""What the `discord` handler sends: the content, embed and buttons for each event.

Pure functions of the event and a few options, so what a channel sees can be tested without
Discord. Everything the provider wrote is escaped for Discord's markdown and `@everyone` /
`@here` are defused in the text; `allowed_mentions` lets the message ping the requester and
nobody else, so even a mention that got past the escaping stays silent. Every text is cut to
the length Discord accepts for its place (a longer one fails the whole message with a 400).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from handlers._text import duration, is_web, sung_lines
from handlers.base import HandlerResult
from handlers.chat_buttons import LABELS, buttons_for, encode
from receiver.models import Event
from receiver.states import EventKind

__all__ = [
    "CONTENT_CHARS",
    "Message",
    "escape",
    "fit",
    "link",
    "lyrics_quote",
    "mention",
    "render",
]

CONTENT_CHARS = 2000
"""Discord's limit for a message's `content`."""
_TITLE_CHARS, _DESCRIPTION_CHARS, _FIELD_CHARS = 256, 4096, 1024
_NAME_CHARS = 140
"""A song's name in a sentence: long enough for any real title, short enough to read."""
_COLOR_DONE, _COLOR_FAILED = 0x1DB954, 0xE01E5A
_ACTION_ROW, _BUTTON = 1, 2
_PRIMARY, _SECONDARY = 1, 2
_MARKDOWN = re.compile(r"([\\*_~`|<>\[\]])")
"""Characters Discord's markdown reads anywhere (`<…>` is a mention or a timestamp, `[…]` a
masked link): escaped with a backslash, shown as typed."""
_LINE_START = re.compile(r"^(\s*)([#-])", re.MULTILINE)
"""`#` (a heading) and `-` (a list) mean something only at the start of a line."""
_BROADCAST = re.compile(r"@(?=(?:everyone|here)\b)", re.IGNORECASE)
_SNOWFLAKE = re.compile(r"[0-9]{15,21}")
"""A Discord user id: the only thing we turn into a mention."""


@dataclasses.dataclass(frozen=True, slots=True)
class Message:
    """One Discord message: `content`, `embeds`, `components` and whom it may ping."""

    content: str
    embeds: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    components: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    users: list[str] = dataclasses.field(default_factory=list)
    """The user ids the message may ping (the requester): `allowed_mentions.users`."""

    def body(self) -> dict[str, Any]:
        """The JSON of a post or an edit. `embeds` and `components` are always sent (empty
        lists too), so an edit of a song back into text clears them instead of keeping them."""
        return {
            "content": self.content,
            "embeds": self.embeds,
            "components": self.components,
            "allowed_mentions": {"parse": [], **({"users": self.users} if self.users else {})},
        }


def escape(text: str) -> str:
    """`text` shown as typed: markdown characters backslashed, `@everyone`/`@here` defused."""
    escaped = _LINE_START.sub(r"\1\\\2", _MARKDOWN.sub(r"\\\1", text))
    return _BROADCAST.sub("@\u200d", escaped)


def mention(user: str | None) -> str | None:
    """`<@id>` for a Discord user id, None for anything else (never a role or `@everyone`)."""
    return f"<@{user}>" if user and _SNOWFLAKE.fullmatch(user) else None


def render(
    event: Event,
    *,
    requester: str | None = None,
    lyrics_lines: int = 4,
    task_url: str | None = None,
    results: Mapping[str, HandlerResult] | None = None,
    buttons: bool = True,
    attached: str | None = None,
) -> Message | None:
    """The message for `event`, or None for a kind Discord is not told about.

    `requester` is the Discord user id who asked (from chat), named and pinged; `results` are
    the event's other handlers' results, whose `url`s are linked as stored copies; `attached`
    is the file name of the audio sent with the message (then the embed says so).
    """
    raw = str(event.clip.get("title") or event.prompt or "untitled")
    name = fit(escape(" ".join(raw.split())), _NAME_CHARS)
    who = mention(requester)
    users = [requester] if who and requester else []
    by = f" — requested by {who}" if who else ""
    if event.kind == EventKind.SUBMITTED:
        return Message(f"🎵 Generating “{name}”{by}", users=users)
    if event.kind == EventKind.STREAMING:
        listen = link(event.audio_url, "listen while it finishes")
        return Message(
            " ".join(filter(None, [f"▶ “{name}” is streaming{by}", listen])), users=users
        )
    if event.kind in (EventKind.FAILED, EventKind.TIMED_OUT):
        return _failure(event, name, by, task_url, users)
    if event.kind != EventKind.COMPLETED:
        return None
    embed = _song(event, name, who, lyrics_lines, task_url, results or {}, attached)
    shown = _buttons(event) if buttons else []
    return Message(fit(f"🎵 “{name}” is ready{by}", CONTENT_CHARS), [embed], shown, users)


def _failure(event: Event, name: str, by: str, task_url: str | None, users: list[str]) -> Message:
    """A failed or timed-out song: the headline and the provider's reason."""
    timed_out = event.kind == EventKind.TIMED_OUT
    reason = event.error or event.clip.get("error_message") or event.clip.get("error")
    reason = " ".join(str(reason or ("no result in time" if timed_out else "unknown")).split())
    headline = f"⏱ “{name}” timed out" if timed_out else f"⚠️ “{name}” failed"
    dashboard = link(task_url, "dashboard")
    text = f"{headline}{by}: {escape(reason)}" + (f" · {dashboard}" if dashboard else "")
    return Message(fit(text, CONTENT_CHARS), users=users)


def _song(
    event: Event,
    name: str,
    who: str | None,
    lyrics_lines: int,
    task_url: str | None,
    results: Mapping[str, HandlerResult],
    attached: str | None,
) -> dict[str, Any]:
    """A finished song's embed: title, cover, duration, style, requester, lyrics, links."""
    clip = event.clip
    embed: dict[str, Any] = {"title": fit(f"🎵 {name}", _TITLE_CHARS), "color": _COLOR_DONE}
    if event.audio_url and is_web(event.audio_url):
        embed["url"] = event.audio_url
    if event.image_url and is_web(event.image_url):
        embed["thumbnail"] = {"url": event.image_url}
    fields = []
    if (length := duration(clip.get("duration"))) is not None:
        fields.append(_field("Duration", length))
    if style := " ".join(str(clip.get("tags") or clip.get("sound") or "").split()):
        fields.append(_field("Style", escape(style)))
    if who:
        fields.append(_field("Requested by", who))
    if attached:
        fields.append(_field("Audio", f"attached ({escape(attached)})", inline=False))
    stored = [(n, r["url"]) for n, r in results.items() if isinstance(r.get("url"), str)]
    links = [link(event.audio_url, "▶ listen")]
    for handler, url in stored:
        links.append(link(url, f"stored copy ({escape(handler)})" if stored[1:] else "stored copy"))
    links.append(link(task_url, "dashboard"))
    if shown := " · ".join(item for item in links if item):
        fields.append(_field("Links", shown, inline=False))
    if fields:
        embed["fields"] = fields
    if quote := lyrics_quote(str(clip.get("lyrics") or ""), lyrics_lines):
        embed["description"] = quote
    return embed


def lyrics_quote(lyrics: str, lines: int) -> str:
    """The first `lines` sung lines as a block quote; section markers like [Verse] skipped."""
    sung = sung_lines(lyrics)
    shown = [f"> {escape(line)}" for line in sung[:lines]]
    if not shown:
        return ""
    more = "\n> …" if len(sung) > len(shown) else ""
    return fit("\n".join(shown), _DESCRIPTION_CHARS - len(more)) + more


def _buttons(event: Event) -> list[dict[str, Any]]:
    """One action row of the song's buttons (Regenerate, Extend for sonic, Remix)."""
    found = buttons_for(event.platform, event.task_ref, event.clip_id, event.clip)
    if not found:
        return []
    row = [
        {
            "type": _BUTTON,
            "style": _PRIMARY if button.kind == "regenerate" else _SECONDARY,
            "label": LABELS[button.kind],
            "custom_id": encode(button),
        }
        for button in found
    ]
    return [{"type": _ACTION_ROW, "components": row}]


def _field(name: str, value: str, *, inline: bool = True) -> dict[str, Any]:
    return {"name": name, "value": fit(value, _FIELD_CHARS), "inline": inline}


def fit(text: str, limit: int) -> str:
    """`text` cut to `limit` characters with an ellipsis, never after a lone backslash (which
    would escape the ellipsis and show the backslash)."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    trailing = len(cut) - len(cut.rstrip("\\"))
    if trailing % 2:
        cut = cut[:-1]
    return cut + "…"


def link(url: str | None, label: str) -> str | None:
    """A markdown link `[label](<url>)`, or None for a missing or non-http URL. The angle
    brackets stop Discord's preview of it; `)`, `<`, `>` and spaces cannot end it early."""
    if not url or not is_web(url):
        return None
    safe = url.replace(" ", "%20").replace("<", "%3C").replace(">", "%3E").replace(")", "%29")
    return f"[{label}](<{safe}>)"
