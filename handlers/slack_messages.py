"""What the `slack` handler posts: the text and Block Kit blocks for each event.

Pure functions of the event and a few options, so what a channel sees can be tested without
Slack. Everything the provider wrote is escaped, so a title can neither ping the channel nor
break the message; every text is cut to the length Slack accepts for its place.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from handlers._text import duration, is_web, sung_lines
from handlers.base import HandlerResult
from handlers.chat_buttons import LABELS, buttons_for, encode
from receiver.delivery.alerts import BLAME_MEANING, DEAD_KIND, DeadNotice
from receiver.models import Event
from receiver.states import EventKind

__all__ = [
    "Message",
    "dead",
    "escape",
    "fit",
    "link",
    "lyrics_quote",
    "payload",
    "render",
    "without_images",
]

_BROADCAST = re.compile(r"@(?=(?:channel|here|everyone)\b)", re.IGNORECASE)
_USER_ID = re.compile(r"[UW][A-Z0-9]{1,30}")
"""A Slack user id (`U…`, or `W…` on Enterprise Grid): the only thing we turn into a mention."""


@dataclasses.dataclass(frozen=True, slots=True)
class Message:
    """One Slack message: the notification `text` and the `blocks` a client shows."""

    text: str
    blocks: list[dict[str, Any]]


def escape(text: str) -> str:
    """Slack's control characters as entities, and `@channel`/`@here`/`@everyone` defused."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _BROADCAST.sub("@\u200d", text)  # a zero-width joiner: shown as "@here", inert


def render(
    event: Event,
    *,
    mention: str | None = None,
    lyrics_lines: int = 4,
    task_url: str | None = None,
    results: Mapping[str, HandlerResult] | None = None,
    requester: str | None = None,
    buttons: bool = False,
) -> Message | None:
    """The message for `event`, or None for a kind Slack is not told about.

    `mention` (Slack syntax, written by the operator) leads alerts and songs; `results` are
    the event's other handlers' results, whose `url`s are linked as stored copies;
    `requester` is the Slack user id who asked for the song (from chat), named in each message;
    `buttons` puts Regenerate/Extend/Remix under a finished song (the chat app answers them).
    """
    raw = str(event.clip.get("title") or event.prompt or "untitled")
    name = fit(escape(" ".join(raw.split())), 140)
    mention = f"{mention.strip()} " if mention else ""
    dashboard = link(task_url, "dashboard")
    who = f"<@{requester}>" if requester and _USER_ID.fullmatch(requester) else None
    by = f" — requested by {who}" if who else ""
    if event.kind == EventKind.SUBMITTED:
        return Message(f"🎵 Generating “{name}”{by}" if by else f"🎵 Generating “{name}”…", [])
    if event.kind == EventKind.STREAMING:
        listen = link(event.audio_url, "listen while it finishes")
        return Message(" ".join(filter(None, [f"▶ “{name}” is streaming", listen])), [])
    if event.kind in (EventKind.FAILED, EventKind.TIMED_OUT):
        timed_out = event.kind == EventKind.TIMED_OUT
        reason = event.error or event.clip.get("error_message") or event.clip.get("error")
        reason = escape(str(reason or ("no result in time" if timed_out else "unknown")))
        headline = f"⏱ {name} timed out" if timed_out else f"⚠️ {name} failed"
        asked = f"\n*Requested by:* {who}" if who else ""
        details = f"{mention}*Reason:* {fit(reason, 2000)}{asked}"
        blocks = [_header(headline), _section(details)]
        blocks += [_section(dashboard)] if dashboard else []
        return Message(fit(f"{mention}{headline}{by}: {reason}", 3000), blocks)
    if event.kind == DEAD_KIND:
        return dead(DeadNotice.of(event), mention)
    if event.kind != EventKind.COMPLETED:
        return None
    message = _song(event, name, mention, lyrics_lines, dashboard, results or {}, who)
    if buttons and (actions := _actions(event)):
        message.blocks.append(actions)
    return message


def _song(
    event: Event,
    name: str,
    mention: str,
    lyrics_lines: int,
    dashboard: str | None,
    results: Mapping[str, HandlerResult],
    who: str | None,
) -> Message:
    """A finished song: title, duration and style beside the cover, lyrics, then links."""
    clip = event.clip
    facts = [mention.strip()] if mention else []
    if who:
        facts.append(f"*Requested by:* {who}")
    if (length := duration(clip.get("duration"))) is not None:
        facts.append(f"*Duration:* {length}")
    if style := " ".join(str(clip.get("tags") or clip.get("sound") or "").split()):
        facts.append(f"*Style:* {fit(escape(style), 1000)}")
    details = _section("\n".join(facts) or "Your song is ready.")
    if event.image_url and is_web(event.image_url):
        alt = fit(f"cover of {name}", 2000)
        details["accessory"] = {"type": "image", "image_url": event.image_url, "alt_text": alt}
    blocks = [_header(f"🎵 {name}"), details]
    if quote := lyrics_quote(str(clip.get("lyrics") or ""), lyrics_lines):
        blocks.append(_section(quote))
    stored = [(n, r["url"]) for n, r in results.items() if isinstance(r.get("url"), str)]
    links = [link(event.audio_url, "▶ listen")]
    for handler, url in stored:
        links.append(link(url, f"stored copy ({escape(handler)})" if stored[1:] else "stored copy"))
    if shown := " · ".join(item for item in [*links, dashboard] if item):
        blocks.append(_section(shown))
    by = f" — requested by {who}" if who else ""
    return Message(fit(f"{mention}🎵 “{name}” is ready{by}", 3000), blocks)


def _actions(event: Event) -> dict[str, Any] | None:
    """The song's buttons as one actions block (each button's `action_id` and `value` say
    what it does to which clip), or None when the song gets none."""
    offered = buttons_for(event.platform, event.task_ref, event.clip_id, event.clip)
    if not offered:
        return None
    elements = [
        {
            "type": "button",
            "text": {"type": "plain_text", "text": LABELS[button.kind], "emoji": True},
            "action_id": encode(button),
            "value": encode(button),
        }
        for button in offered
    ]
    return {"type": "actions", "block_id": "song.buttons", "elements": elements}


def lyrics_quote(lyrics: str, lines: int) -> str:
    """The first `lines` sung lines as a quote; section markers like [Verse] skipped."""
    sung = sung_lines(lyrics)
    shown = sung[:lines]
    if not shown:
        return ""
    more = "\n>…" if len(sung) > len(shown) else ""
    return fit("\n".join(f">{escape(line)}" for line in shown), 2900) + more


def dead(notice: DeadNotice, mention: str) -> Message:
    """The alert for a dead letter: who gave up on which song, why, and where to replay it."""
    name = fit(escape(" ".join(notice.title.split())), 140)
    handler = escape(notice.handler)
    error = fit(escape(" ".join(notice.error.split())), 1500)
    blame = escape(notice.blame)
    tries = f" {notice.tries}" if notice.tries else ""
    headline = f"⚠️ {handler}: the {notice.action} of “{name}” failed{tries}"
    replay = link(notice.dashboard_url, "dashboard")
    facts = [
        f"*Handler:* {handler}"
        + (f" ({escape(notice.handler_type)})" if notice.handler_type else ""),
        f"*Event:* {escape(notice.event_kind)} of clip {escape(notice.clip_id)}"
        f" (task {escape(notice.task_id)})",
        f"*Error:* {error}",
        f"*Blame:* {blame}"
        + (f" — {BLAME_MEANING[notice.blame]}" if notice.blame in BLAME_MEANING else ""),
    ]
    blocks = [_header(f"⚠️ {notice.action} failed: {name}"), _section(mention + "\n".join(facts))]
    blocks += [_section(f"Replay it from the {replay}")] if replay else []
    text = f"{mention}{headline}: {error} (blame: {blame})" + (
        f" — replay: {replay}" if replay else ""
    )
    return Message(fit(text, 3000), blocks)


def payload(text: str, blocks: list[dict[str, Any]]) -> dict[str, Any]:
    """The body fields of a post or an edit (no `blocks` key for a text-only message)."""
    return {"text": text, "blocks": blocks or None}


def without_images(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The blocks less image blocks and accessories (our only accessories are covers)."""
    kept = [block for block in blocks if block.get("type") != "image"]
    return [{k: v for k, v in b.items() if k != "accessory"} for b in kept]


def fit(text: str, limit: int) -> str:
    """`text` cut to `limit` characters with an ellipsis, never in the middle of an entity."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    amp = cut.rfind("&", max(0, len(cut) - 5))
    if amp >= 0 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut + "…"


def link(url: str | None, label: str) -> str | None:
    """A mrkdwn link, or None for a missing or non-http URL; `|`, `<`, `>` cannot break it."""
    if not url or not is_web(url):
        return None
    safe = url.replace("&", "&amp;").replace("<", "%3C").replace(">", "%3E")
    return f"<{safe.replace('|', '%7C').replace(' ', '%20')}|{label}>"


def _header(text: str) -> dict[str, Any]:
    return {"type": "header", "text": {"type": "plain_text", "text": fit(text, 150)}}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": fit(text, 3000)}}
