"""The `slack` handler: tell a channel that a song is being made, is ready, or failed.

Two modes: an incoming webhook (one fixed channel; no threads, no edits) or a bot token, which
threads the result under the "generating…" message (or edits it) and turns a replay into an
edit instead of a second post. Everything the provider wrote is escaped, so a title can neither
ping the channel nor break the message. slack-sdk's own retries are off: the dispatcher owns
retries and backoff, and a 429's Retry-After pauses the whole handler there.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from handlers.base import HandlerContext, HandlerError
from receiver.delivery.alerts import BLAME_MEANING, DEAD_KIND, DeadNotice
from receiver.models import Event

__all__ = ["SlackHandler", "escape"]

_BROADCAST = re.compile(r"@(?=(?:channel|here|everyone)\b)", re.IGNORECASE)
_MENTION = re.compile(r"(?:<[!@#][^<>\s]+>\s*)+")
_SECTION_MARKER = re.compile(r"\[[^\]]*\]")
_RETRYABLE_CODES = frozenset(
    {"internal_error", "fatal_error", "service_unavailable", "request_timeout", "ratelimited"}
)
_MESSAGE_GONE = frozenset({"message_not_found", "cant_update_message", "edit_window_closed"})
_BAD_BLOCKS = frozenset({"invalid_blocks", "invalid_blocks_format"})
_TRANSPORT_ERRORS = (aiohttp.ClientError, TimeoutError, OSError)
_WEBHOOK = "incoming webhook"
_QUIET = {"unfurl_links": False, "unfurl_media": False}  # the blocks already show the song
_PLACEHOLDERS = frozenset({"task.submitted", "song.streaming"})
_OWN_MESSAGE = frozenset({"task.submitted", DEAD_KIND})


def escape(text: str) -> str:
    """Slack's control characters as entities, and `@channel`/`@here`/`@everyone` defused."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _BROADCAST.sub("@\u200d", text)  # a zero-width joiner: shown as "@here", inert


@dataclasses.dataclass(frozen=True, slots=True)
class _Message:
    text: str
    blocks: list[dict[str, Any]]


class _Refused(HandlerError):
    """Slack answered with an error; `code` is its error code, so callers can react to it."""

    def __init__(self, what: str, status: int, code: str, retry_after: float | None) -> None:
        retryable = status == 429 or status >= 500 or code in _RETRYABLE_CODES
        wait = f", retry after {retry_after:g} s" if retry_after is not None else ""
        said = f"{code} (HTTP {status})" if code else f"HTTP {status}"
        super().__init__(
            f"slack {what}: {said}{wait}",
            retryable=retryable,
            retry_after=retry_after,
            blame="unavailable" if retryable else "destination",
        )
        self.code = code


def _invalid(key: str, message: str) -> ValidationError:
    """A validation error located at `key`, so the config error names the key and its line."""
    detail = InitErrorDetails(type=PydanticCustomError("slack", message), loc=(key,), input=None)
    return ValidationError.from_exception_data("SlackHandler.Config", [detail])


class SlackHandler:
    """Posts "generating…", then the finished song (or the failure) to one Slack channel."""

    default_events: ClassVar[tuple[str, ...]] = (
        "task.submitted",
        "song.completed",
        "song.failed",
        "task.timed_out",
    )

    class Config(BaseModel):
        """Options of one `type = "slack"` entry: `webhook_url`, or `token` and `channel`."""

        model_config = ConfigDict(extra="forbid")

        webhook_url: SecretStr | None = None
        token: SecretStr | None = None
        channel: str | None = None
        api_base_url: str | None = None
        """Web API base instead of https://slack.com/api/: for tests, or a proxy in front of it."""
        on_done: Literal["reply", "update"] = "reply"
        lyrics_lines: int = Field(default=4, ge=0, le=50)
        mention: str | None = None
        username: str | None = None
        icon_emoji: str | None = None
        request_timeout_s: int = Field(default=30, ge=1, le=300)

        @model_validator(mode="after")
        def _one_mode(self) -> SlackHandler.Config:
            hook = self.webhook_url.get_secret_value() if self.webhook_url else None
            if hook is not None and self.token is not None:
                raise _invalid("token", "set webhook_url or token (with channel), not both")
            if hook is not None and self.channel is not None:
                raise _invalid("channel", "an incoming webhook posts to its own channel")
            if hook is None and self.token is None:
                key = "token" if self.channel else "webhook_url"
                raise _invalid(key, "set webhook_url, or token and channel for a bot")
            if self.token is not None and not self.channel:
                raise _invalid("channel", "channel is required with token")
            for key, url in (("webhook_url", hook), ("api_base_url", self.api_base_url)):
                if url is not None and not _is_web(url):
                    raise _invalid(key, "must be an http(s) URL")
            if self.mention is not None and not _MENTION.fullmatch(self.mention.strip()):
                raise _invalid("mention", "use Slack syntax such as <!here> or <@U0123ABCD>")
            return self

    def __init__(self, name: str, config: SlackHandler.Config) -> None:
        self.name = name
        self.config = config
        self._client: AsyncWebClient | AsyncWebhookClient | None = None

    async def handle(self, event: Event, ctx: HandlerContext) -> dict[str, Any] | None:
        """Post, reply or edit; on a replay edit the earlier message instead of posting again."""
        message = self._render(event, ctx)
        if message is None:
            return None
        if self.config.token is not None:
            return await self._bot(event, message, ctx)
        if ctx.previous_result is not None:
            return dict(ctx.previous_result)
        if event.kind == "task.submitted":
            return {"skipped": "webhook mode cannot thread"}
        extra = {"username": self.config.username, "icon_emoji": self.config.icon_emoji, **_QUIET}
        await self._send(message, ctx, _WEBHOOK, extra)
        return {"posted": True}

    async def _bot(self, event: Event, message: _Message, ctx: HandlerContext) -> dict[str, Any]:
        """Edit the replayed or "generating…" message (per `on_done`), else reply or post."""
        # An alert goes to the channel itself, never into (or over) a song's thread.
        earlier = ctx.previous_result or (
            {} if event.kind in _OWN_MESSAGE else ctx.task_results.get(self.name) or {}
        )
        channel, ts, thread = earlier.get("channel"), earlier.get("ts"), earlier.get("thread_ts")
        edit = ctx.previous_result is not None or (
            self.config.on_done == "update" and earlier.get("event") in _PLACEHOLDERS
        )
        result = {"event": event.kind, "thread_ts": thread}
        if channel and ts and edit:
            try:
                answer = await self._send(
                    message, ctx, "chat.update", {"channel": channel, "ts": ts}
                )
                edited = {"channel": answer.get("channel", channel), "ts": ts}
                return _clean({**result, **edited, "permalink": earlier.get("permalink")})
            except _Refused as exc:
                if exc.code not in _MESSAGE_GONE:
                    raise
                ctx.log.warning("slack message to edit is gone; posting anew", handler=self.name)
                channel = thread = None
        elif channel and ts:
            thread = thread or ts
        else:
            channel = thread = None
        extra = {
            "channel": channel or self.config.channel,
            "thread_ts": thread,
            "username": self.config.username,
            "icon_emoji": self.config.icon_emoji,
            **_QUIET,
        }
        answer = await self._send(message, ctx, "chat.postMessage", extra)
        posted = {"channel": answer.get("channel"), "ts": answer.get("ts")}
        permalink = await self._permalink(posted["channel"], posted["ts"], ctx)
        result.update(thread_ts=thread, **posted, permalink=permalink)
        return _clean(result)

    async def _permalink(self, channel: Any, ts: Any, ctx: HandlerContext) -> str | None:
        """The posted message's link, for the dashboard's "where each copy landed". Best effort:
        the message is out, so a failure here must not fail (and so repost) the delivery."""
        client = self._connect()
        if not isinstance(client, AsyncWebClient) or not channel or not ts:
            return None
        try:
            answer = await client.chat_getPermalink(channel=str(channel), message_ts=str(ts))
        except (SlackApiError, SlackClientError, *_TRANSPORT_ERRORS) as exc:
            ctx.log.warning(
                "slack permalink not fetched", handler=self.name, error=type(exc).__name__
            )
            return None
        link = answer.get("permalink")
        return link if isinstance(link, str) and link.startswith("https://") else None

    async def _send(
        self, message: _Message, ctx: HandlerContext, method: str, extra: dict[str, Any]
    ) -> dict[str, Any]:
        """Send; if Slack rejects the blocks and they hold an image, send once without it.

        Slack fetches image URLs itself and answers `invalid_blocks` when it cannot (an expired
        signed link, a private host); the song is still worth announcing without its cover.
        """
        plain = _without_images(message.blocks)
        try:
            return await self._request(method, {**extra, **_payload(message.text, message.blocks)})
        except _Refused as exc:
            if exc.code not in _BAD_BLOCKS or plain == message.blocks:
                raise
        ctx.log.warning("slack refused the cover image; sending without it", handler=self.name)
        return await self._request(method, {**extra, **_payload(message.text, plain)})

    async def _request(self, method: str, body: dict[str, Any]) -> dict[str, Any]:
        """One call to Slack, with every failure turned into a `HandlerError`."""
        body = {key: value for key, value in body.items() if value is not None}
        client = self._connect()
        try:
            if isinstance(client, AsyncWebhookClient):
                response = await client.send_dict(body)
                if 200 <= response.status_code < 300:
                    return {}
                raise _refused(method, response.status_code, response.body, response.headers)
            answer = await client.api_call(method, json=body)
        except SlackApiError as exc:
            sent = exc.response  # a parsed Slack answer, or aiohttp's response for a non-JSON one
            status = getattr(sent, "status_code", None) or getattr(sent, "status", None) or 0
            data = getattr(sent, "data", None)
            code = data.get("error") if isinstance(data, dict) else None
            raise _refused(method, int(status), code, getattr(sent, "headers", None)) from exc
        except _TRANSPORT_ERRORS as exc:
            # `from None`: aiohttp's text can quote the URL, and a webhook URL is a secret.
            raise HandlerError(
                f"slack {method} unreachable: {type(exc).__name__}", blame="unavailable"
            ) from None
        except SlackClientError as exc:
            raise HandlerError(
                f"slack {method} not sent: {type(exc).__name__}", retryable=False
            ) from exc
        return answer.data if isinstance(answer.data, dict) else {}

    def _connect(self) -> AsyncWebClient | AsyncWebhookClient:
        """The client, built on first use; each call opens and closes its own aiohttp session."""
        if self._client is None:
            # Held at WARNING: slack-sdk's debug lines quote the webhook URL.
            logger = logging.getLogger("handlers.slack.sdk")
            logger.setLevel(logging.WARNING)
            # No retry handlers: the dispatcher retries, with backoff and Retry-After.
            common: dict[str, Any] = {"timeout": self.config.request_timeout_s, "logger": logger}
            if self.config.webhook_url is not None:
                url = self.config.webhook_url.get_secret_value()
                self._client = AsyncWebhookClient(url, retry_handlers=[], **common)
            else:
                token = self.config.token.get_secret_value() if self.config.token else None
                base = self.config.api_base_url or AsyncWebClient.BASE_URL
                self._client = AsyncWebClient(token, base, retry_handlers=[], **common)
        return self._client

    def _render(self, event: Event, ctx: HandlerContext) -> _Message | None:
        """The message for `event`, with every provider-written value escaped."""
        raw = str(event.clip.get("title") or event.prompt or "untitled")
        name = _fit(escape(" ".join(raw.split())), 140)
        mention = f"{self.config.mention.strip()} " if self.config.mention else ""
        dashboard = _link(ctx.task_url, "dashboard")
        if event.kind == "task.submitted":
            return _Message(f"🎵 Generating “{name}”…", [])
        if event.kind == "song.streaming":
            listen = _link(event.audio_url, "listen while it finishes")
            return _Message(" ".join(filter(None, [f"▶ “{name}” is streaming", listen])), [])
        if event.kind in ("song.failed", "task.timed_out"):
            timed_out = event.kind == "task.timed_out"
            reason = event.error or event.clip.get("error_message") or event.clip.get("error")
            reason = escape(str(reason or ("no result in time" if timed_out else "unknown")))
            headline = f"⏱ {name} timed out" if timed_out else f"⚠️ {name} failed"
            blocks = [_header(headline), _section(f"{mention}*Reason:* {_fit(reason, 2000)}")]
            blocks += [_section(dashboard)] if dashboard else []
            return _Message(_fit(f"{mention}{headline}: {reason}", 3000), blocks)
        if event.kind == DEAD_KIND:
            return _dead(DeadNotice.of(event), mention)
        if event.kind != "song.completed":
            return None
        clip = event.clip
        facts = [mention.strip()] if mention else []
        if (duration := _duration(clip.get("duration"))) is not None:
            facts.append(f"*Duration:* {duration}")
        if style := " ".join(str(clip.get("tags") or clip.get("sound") or "").split()):
            facts.append(f"*Style:* {_fit(escape(style), 1000)}")
        details = _section("\n".join(facts) or "Your song is ready.")
        if event.image_url and _is_web(event.image_url):
            alt = _fit(f"cover of {name}", 2000)
            details["accessory"] = {"type": "image", "image_url": event.image_url, "alt_text": alt}
        blocks = [_header(f"🎵 {name}"), details]
        if lyrics := self._lyrics(str(clip.get("lyrics") or "")):
            blocks.append(_section(lyrics))
        stored = [(n, r["url"]) for n, r in ctx.results.items() if isinstance(r.get("url"), str)]
        links = [_link(event.audio_url, "▶ listen")]
        for handler, url in stored:
            links.append(
                _link(url, f"stored copy ({escape(handler)})" if stored[1:] else "stored copy")
            )
        if shown := " · ".join(link for link in [*links, dashboard] if link):
            blocks.append(_section(shown))
        return _Message(_fit(f"{mention}🎵 “{name}” is ready", 3000), blocks)

    def _lyrics(self, lyrics: str) -> str:
        """The first `lyrics_lines` sung lines as a quote; section markers like [Verse] skipped."""
        lines = [" ".join(line.split()) for line in lyrics.splitlines()]
        sung = [line for line in lines if line and not _SECTION_MARKER.fullmatch(line)]
        shown = sung[: self.config.lyrics_lines]
        if not shown:
            return ""
        more = "\n>…" if len(sung) > len(shown) else ""
        return _fit("\n".join(f">{escape(line)}" for line in shown), 2900) + more


def _dead(notice: DeadNotice, mention: str) -> _Message:
    """The alert for a dead letter: who gave up on which song, why, and where to replay it."""
    name = _fit(escape(" ".join(notice.title.split())), 140)
    handler = escape(notice.handler)
    error = _fit(escape(" ".join(notice.error.split())), 1500)
    blame = escape(notice.blame)
    tries = f" {notice.tries}" if notice.tries else ""
    headline = f"⚠️ {handler}: the {notice.action} of “{name}” failed{tries}"
    replay = _link(notice.dashboard_url, "dashboard")
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
    return _Message(_fit(text, 3000), blocks)


def _refused(what: str, status: int, code: Any, headers: Any) -> _Refused:
    """A `_Refused` with Slack's error code (if it is one) and a 429/503's Retry-After."""
    clean = str(code or "").strip()
    clean = clean if re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", clean) else ""  # not an error page
    value = str((headers or {}).get("Retry-After", "")).strip()
    retry_after = float(value) if value.isdigit() and status in (429, 503) else None
    return _Refused(what, status, clean, retry_after)


def _payload(text: str, blocks: list[dict[str, Any]]) -> dict[str, Any]:
    return {"text": text, "blocks": blocks or None}


def _clean(result: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in result.items() if value is not None}


def _header(text: str) -> dict[str, Any]:
    return {"type": "header", "text": {"type": "plain_text", "text": _fit(text, 150)}}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": _fit(text, 3000)}}


def _without_images(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The blocks less image blocks and accessories (our only accessories are covers)."""
    kept = [block for block in blocks if block.get("type") != "image"]
    return [{k: v for k, v in b.items() if k != "accessory"} for b in kept]


def _fit(text: str, limit: int) -> str:
    """`text` cut to `limit` characters with an ellipsis, never in the middle of an entity."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    amp = cut.rfind("&", max(0, len(cut) - 5))
    if amp >= 0 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut + "…"


def _is_web(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _link(url: str | None, label: str) -> str | None:
    """A mrkdwn link, or None for a missing or non-http URL; `|`, `<`, `>` cannot break it."""
    if not url or not _is_web(url):
        return None
    safe = url.replace("&", "&amp;").replace("<", "%3C").replace(">", "%3E")
    return f"<{safe.replace('|', '%7C').replace(' ', '%20')}|{label}>"


def _duration(value: Any) -> str | None:
    """Seconds as m:ss, or None when missing or not a positive number."""
    try:
        seconds = round(float(value))
    except (TypeError, ValueError, OverflowError):
        return None
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds > 0 else None
