"""The `slack` handler: tell a channel that a song is being made, is ready, or failed.

Two modes: an incoming webhook (one fixed channel; no threads, no edits) or a bot token, which
threads the result under the "generating…" message (or edits it) and turns a replay into an
edit instead of a second post; with `upload_audio` a finished song's file follows in its thread
(`slack_upload`). What is posted is built in `slack_messages`. slack-sdk's own
retries are off: the dispatcher owns retries and backoff, and a 429's Retry-After pauses the
whole handler there.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from handlers._text import NOT_SENT, is_web
from handlers.base import CHAT_EVENTS, HandlerCheck, HandlerContext, HandlerError, config_secrets
from handlers.slack_auth import check_bot_token, sdk_logger, web_client
from handlers.slack_messages import Message, escape, payload, render, without_images
from handlers.slack_upload import upload_audio
from receiver.delivery.alerts import DEAD_KIND
from receiver.models import Event

__all__ = ["SlackHandler", "escape"]

_MENTION = re.compile(r"(?:<[!@#][^<>\s]+>\s*)+")
_HOOK_PATH = re.compile(r"^/services/T[A-Z0-9]+/B[A-Z0-9]+/[A-Za-z0-9]+$")
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

    default_events: ClassVar[tuple[str, ...]] = CHAT_EVENTS

    class Config(BaseModel):
        """Options of one `type = "slack"` entry: `webhook_url`, or `token` and `channel`."""

        model_config = ConfigDict(extra="forbid")

        webhook_url: SecretStr | None = None
        token: SecretStr | None = None
        channel: str | None = None
        api_base_url: str | None = None
        """Web API base instead of https://slack.com/api/: for tests, or a proxy in front of it."""
        channel_label: str | None = None
        """Take the channel from this task label when the event has it (a task asked for from a
        chat channel answers there); `channel` is the fallback."""
        requester_label: str | None = None
        """The task label holding the Slack user id who asked; the messages name them."""
        on_done: Literal["reply", "update"] = "reply"
        lyrics_lines: int = Field(default=4, ge=0, le=50)
        mention: str | None = None
        username: str | None = None
        icon_emoji: str | None = None
        request_timeout_s: int = Field(default=30, ge=1, le=300)
        buttons: bool = False
        """Put Regenerate/Extend/Remix under a finished song; only the `[chat.slack]` app, which
        answers the clicks, turns this on."""
        upload_audio: bool = False
        """Bot mode: also upload a finished song's audio file into its thread (best effort)."""
        upload_max_mb: int = Field(default=20, ge=1, le=1000)
        """With `upload_audio`, a larger audio file is linked only; the result says so."""

        @model_validator(mode="after")
        def _one_mode(self) -> SlackHandler.Config:
            hook = self.webhook_url.get_secret_value() if self.webhook_url else None
            if hook is not None and self.token is not None:
                raise _invalid("token", "set webhook_url or token (with channel), not both")
            for key in ("channel", "channel_label"):
                if hook is not None and getattr(self, key) is not None:
                    raise _invalid(key, "an incoming webhook posts to its own channel")
            if hook is None and self.token is None:
                key = "token" if self.channel else "webhook_url"
                raise _invalid(key, "set webhook_url, or token and channel for a bot")
            if self.token is not None and not self.channel and not self.channel_label:
                raise _invalid("channel", "channel (or channel_label) is required with token")
            for key, url in (("webhook_url", hook), ("api_base_url", self.api_base_url)):
                if url is not None and not is_web(url):
                    raise _invalid(key, "must be an http(s) URL")
            if self.upload_audio and hook is not None:
                raise _invalid("upload_audio", "an incoming webhook cannot upload; use a token")
            if self.mention is not None and not _MENTION.fullmatch(self.mention.strip()):
                raise _invalid("mention", "use Slack syntax such as <!here> or <@U0123ABCD>")
            return self

    def __init__(self, name: str, config: SlackHandler.Config) -> None:
        self.name = name
        self.config = config
        self._client: AsyncWebClient | AsyncWebhookClient | None = None

    async def handle(self, event: Event, ctx: HandlerContext) -> dict[str, Any] | None:
        """Post, reply or edit; on a replay edit the earlier message instead of posting again."""
        message = render(
            event,
            mention=self.config.mention,
            lyrics_lines=self.config.lyrics_lines,
            task_url=ctx.task_url,
            results=ctx.results,
            requester=event.labels.get(self.config.requester_label or "") or None,
            buttons=self.config.buttons,
        )
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

    async def _bot(self, event: Event, message: Message, ctx: HandlerContext) -> dict[str, Any]:
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
                done = _clean({**result, **edited, "permalink": earlier.get("permalink")})
                return await self._with_upload(event, ctx, done)
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
            "channel": channel or self._channel(event),
            "thread_ts": thread,
            "username": self.config.username,
            "icon_emoji": self.config.icon_emoji,
            **_QUIET,
        }
        answer = await self._send(message, ctx, "chat.postMessage", extra)
        posted = {"channel": answer.get("channel"), "ts": answer.get("ts")}
        permalink = await self._permalink(posted["channel"], posted["ts"], ctx)
        result.update(thread_ts=thread, **posted, permalink=permalink)
        return await self._with_upload(event, ctx, _clean(result))

    async def _with_upload(
        self, event: Event, ctx: HandlerContext, result: dict[str, Any]
    ) -> dict[str, Any]:
        """With `upload_audio`, the finished song's file goes under its message, once: a replay
        that finds its earlier upload keeps it. Never raises (see `slack_upload`)."""
        if not self.config.upload_audio or event.kind != "song.completed":
            return result
        earlier = (ctx.previous_result or {}).get("upload")
        if isinstance(earlier, dict) and earlier.get("file_id"):
            return {**result, "upload": earlier}
        client = self._connect()
        channel, thread = result.get("channel"), result.get("thread_ts") or result.get("ts")
        if not isinstance(client, AsyncWebClient) or not channel or not thread:
            return result
        upload = await upload_audio(
            client,
            event,
            ctx,
            channel=str(channel),
            thread_ts=str(thread),
            max_mb=self.config.upload_max_mb,
            handler=self.name,
        )
        return {**result, "upload": upload}

    def _channel(self, event: Event) -> str:
        """The task's own channel (from `channel_label`), else the configured one."""
        label = self.config.channel_label
        found = (event.labels.get(label) if label else None) or self.config.channel
        if not found:
            raise HandlerError(
                f"slack: the task has no {label!r} label and no channel is configured",
                retryable=False,
                blame="destination",
            )
        return found

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
        self, message: Message, ctx: HandlerContext, method: str, extra: dict[str, Any]
    ) -> dict[str, Any]:
        """Send; if Slack rejects the blocks and they hold an image, send once without it.

        Slack fetches image URLs itself and answers `invalid_blocks` when it cannot (an expired
        signed link, a private host); the song is still worth announcing without its cover.
        """
        plain = without_images(message.blocks)
        try:
            return await self._request(method, {**extra, **payload(message.text, message.blocks)})
        except _Refused as exc:
            if exc.code not in _BAD_BLOCKS or plain == message.blocks:
                raise
        ctx.log.warning("slack refused the cover image; sending without it", handler=self.name)
        return await self._request(method, {**extra, **payload(message.text, plain)})

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

    async def check(self) -> HandlerCheck:
        """Bot mode: `auth.test`, which proves the token and posts nothing. Webhook mode: the
        URL's form only, since the one real test (a post) would notify the channel."""
        if self.config.webhook_url is not None:
            return _check_hook(self.config.webhook_url.get_secret_value())
        token = self.config.token.get_secret_value() if self.config.token else ""
        found = await check_bot_token(token, self.config.api_base_url)
        if found.status != "ok":
            return found
        where_to = (
            self.config.channel
            or f"the channel each task's {self.config.channel_label!r} label names"
        )
        return HandlerCheck(
            "ok",
            f"{found.detail}; posts to {where_to}",
            "invite the bot to that channel if it is not there yet",
        )

    def secrets(self) -> Iterable[str]:
        """The webhook URL or the bot token."""
        return config_secrets(self.config)

    def _connect(self) -> AsyncWebClient | AsyncWebhookClient:
        """The client, built on first use; each call opens and closes its own aiohttp session."""
        if self._client is None:
            if self.config.webhook_url is not None:
                url = self.config.webhook_url.get_secret_value()
                self._client = AsyncWebhookClient(
                    url,
                    timeout=self.config.request_timeout_s,
                    logger=sdk_logger(),
                    retry_handlers=[],  # the dispatcher retries, with backoff and Retry-After
                )
            else:
                token = self.config.token.get_secret_value() if self.config.token else None
                timeout = self.config.request_timeout_s
                self._client = web_client(token, self.config.api_base_url, timeout)
        return self._client


def _check_hook(url: str) -> HandlerCheck:
    """Whether an incoming webhook URL has the form Slack hands out (nothing is sent)."""
    parts = urlsplit(url)
    if parts.scheme != "https" or parts.hostname != "hooks.slack.com":
        return HandlerCheck(
            "warn",
            f"webhook URL is not on https://hooks.slack.com ({parts.scheme}://{parts.hostname}); "
            f"fine for a proxy; {NOT_SENT}",
        )
    if _HOOK_PATH.match(parts.path):
        return HandlerCheck("ok", f"incoming webhook URL has Slack's form; {NOT_SENT}")
    return HandlerCheck(
        "fail",
        "incoming webhook URL is not /services/T…/B…/…",
        "copy the whole URL from Slack's Incoming Webhooks page",
    )


def _refused(what: str, status: int, code: Any, headers: Any) -> _Refused:
    """A `_Refused` with Slack's error code (if it is one) and a 429/503's Retry-After."""
    clean = str(code or "").strip()
    clean = clean if re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", clean) else ""  # not an error page
    value = str((headers or {}).get("Retry-After", "")).strip()
    retry_after = float(value) if value.isdigit() and status in (429, 503) else None
    return _Refused(what, status, clean, retry_after)


def _clean(result: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in result.items() if value is not None}
