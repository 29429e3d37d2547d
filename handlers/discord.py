"""The `discord` handler: answer a `/song` interaction with "generating…", then the song.

A song asked for in Discord carries the interaction's token as a task label. For 15 minutes
that token edits the interaction's original response (`PATCH …/messages/@original`, no bot
token needed) and posts follow-ups (sonic's second song). After that, or when Discord says
the webhook is gone (401, or 404 Unknown Webhook), the handler falls back to a channel message
with the bot token, mentioning the requester. A replay edits the message it made before
instead of posting twice. What is sent is built in `discord_messages`, the calls are made in
`discord_api` (which also turns Discord's refusals into retry decisions), and the dispatcher
owns retries (a 429's `retry_after` pauses the handler there).

The audio file (`upload_audio`) is best effort, as Slack's upload is: a failed download, a file
over `upload_max_mb` (Discord's 10 MiB by default) or Discord refusing it as too large (413,
code 40005) sends the same message without it (the song is linked) and the result's `upload`
says why; only the message itself can fail a delivery.

The interaction token is a capability (anyone holding it can post as the app): it is never
put in a result, an error or a log line, and every URL holding it is built in `discord_api`.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from handlers._files import audio_extension, content_type, slugify
from handlers._text import is_web
from handlers.base import CHAT_EVENTS, HandlerCheck, HandlerContext, HandlerError, config_secrets
from handlers.discord_api import DISCORD_API, DiscordApi, DiscordRefused, Upload
from handlers.discord_messages import Message, render
from handlers.discord_seal import unseal
from receiver.models import Event
from receiver.states import EventKind

__all__ = ["DISCORD_API", "TOKEN_LIFETIME_S", "UPLOAD_MAX_MB", "DiscordHandler"]

MB = 1024 * 1024
"""upload_max_mb counts mebibytes, as Discord's attachment limit does."""
UPLOAD_MAX_MB = 10
"""Discord's attachment limit for a bot in a server without boosts; a larger file is
answered 413 (code 40005)."""
TOKEN_LIFETIME_S = 14 * 60
"""How long an interaction token is used: Discord honours it for 15 minutes, and a minute of
margin keeps a slow delivery from starting an edit the token no longer allows."""
_FINAL = frozenset({EventKind.COMPLETED, EventKind.FAILED, EventKind.TIMED_OUT})
_REMEMBERED = 4096
"""Interactions whose original response this process knows holds a song (bounded)."""


class DiscordHandler:
    """Edits the interaction's response into "generating…", then into the finished song."""

    default_events: ClassVar[tuple[str, ...]] = CHAT_EVENTS

    class Config(BaseModel):
        """Options of one `type = "discord"` entry (the relay adds one for `[chat.discord]`)."""

        model_config = ConfigDict(extra="forbid")

        application_id: str = Field(min_length=1)
        bot_token: SecretStr
        api_base_url: str = DISCORD_API
        """Discord's API, or a stand-in's for tests."""
        channel_label: str = "chat.channel"
        """The task label holding the channel id: where the fallback message goes."""
        requester_label: str = "chat.user"
        """The task label holding the Discord user id who asked; messages mention only them."""
        token_label: str = "chat.interaction_token"  # noqa: S105 - a label name
        time_label: str = "chat.interaction_at"
        """The task label holding when the interaction arrived (Unix seconds)."""
        seal_keys: list[SecretStr] = Field(default_factory=list)
        """Keys that open a sealed token label (`discord_seal`; the relay passes
        RELAY_SECRET_KEY's). Without any, the label holds the token itself."""
        token_lifetime_s: int = Field(default=TOKEN_LIFETIME_S, ge=1, le=15 * 60)
        upload_audio: bool = False
        upload_max_mb: int = Field(default=UPLOAD_MAX_MB, ge=1, le=1000)
        """A larger audio file is linked, not attached (a boosted server allows more)."""
        lyrics_lines: int = Field(default=4, ge=0, le=50)
        buttons: bool = True
        """Regenerate / Extend / Remix under a finished song."""
        request_timeout_s: int = Field(default=30, ge=1, le=300)

        @field_validator("api_base_url")
        @classmethod
        def _web(cls, value: str) -> str:
            if not is_web(value):
                raise ValueError("must be an http(s) URL")
            return value.rstrip("/")

    def __init__(self, name: str, config: DiscordHandler.Config) -> None:
        self.name = name
        self.config = config
        self._api = DiscordApi(
            config.api_base_url, config.application_id, config.bot_token, config.request_timeout_s
        )
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._shown: OrderedDict[str, str] = OrderedDict()
        """Per interaction (task ref), the clip whose final message the original shows. With
        the lock, it decides which of sonic's two songs takes the original in this process;
        across processes only the stored `task_results` do, so two relay processes finishing
        sonic's two songs at the same moment can both edit the original (one song unseen)."""

    async def handle(self, event: Event, ctx: HandlerContext) -> dict[str, Any] | None:
        """Edit the original response (or post a follow-up, or a channel message)."""
        if event.kind not in (*_FINAL, EventKind.SUBMITTED, EventKind.STREAMING):
            return None
        key = event.task_ref or event.task_id
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        # one interaction's deliveries one at a time in this process: which of sonic's two
        # songs takes the original response must be decided by one of them, not both
        async with lock:
            return await self._handle(event, ctx, key)

    async def _handle(self, event: Event, ctx: HandlerContext, key: str) -> dict[str, Any] | None:
        earlier = dict(ctx.task_results.get(self.name) or {})
        owner = self._shown.get(key) or (earlier.get("clip") if earlier.get("final") else None)
        final = event.kind in _FINAL
        previous = ctx.previous_result
        if previous is None and owner is not None and not final:
            return {"event": event.kind, "skipped": "the song is already shown"}
        followup = previous is None and owner is not None and owner != event.clip_id
        upload, note = await self._upload(event, ctx)
        message = self._render(event, ctx, upload)
        if message is None:
            return None
        reuse = None if followup or earlier.get("final") else earlier

        async def deliver(message: Message, upload: Upload | None) -> dict[str, Any]:
            if previous is not None:
                return await self._replay(event, message, upload, dict(previous), ctx)
            return await self._send(event, message, upload, followup, reuse, ctx)

        try:
            result = await deliver(message, upload)
        except DiscordRefused as exc:
            plain = self._render(event, ctx, None)
            if upload is None or not exc.too_large or plain is None:
                raise
            # The refused call made nothing, so taking the same steps again without the file
            # still posts or edits one message; the song stays linked in it.
            said = f"HTTP {exc.status}" + (f", code {exc.code}" if exc.code else "")
            why = f"Discord refused the {_size(len(upload[1]))} file as too large ({said})"
            note = _not_attached(ctx, self.name, f"{why}; linked only")
            result = await deliver(plain, None)
        if note is not None:
            result["upload"] = note
        result.update(event=str(event.kind), clip=event.clip_id, final=final)
        if final and not result.get("followup"):
            self._remember(key, event.clip_id)
        return result

    async def _send(
        self,
        event: Event,
        message: Message,
        upload: Upload | None,
        followup: bool,
        earlier: Mapping[str, Any] | None,
        ctx: HandlerContext,
    ) -> dict[str, Any]:
        """Through the interaction webhook while its token lives, else in the channel."""
        token = self._token(event)
        if token is not None:
            try:
                if followup:
                    sent = await self._api.follow_up(ctx.http, token, message, upload)
                else:
                    sent = await self._api.edit_original(ctx.http, token, message, upload)
                return {"via": "webhook", "message_id": sent.get("id"), "followup": followup}
            except DiscordRefused as exc:
                if not exc.webhook_gone:
                    raise
                ctx.log.info(
                    "discord interaction token gone; posting in the channel", handler=self.name
                )
        channel = self._channel(event)
        if earlier and earlier.get("via") == "channel" and earlier.get("message_id"):
            try:
                sent = await self._api.edit_channel_message(
                    ctx.http, channel, str(earlier["message_id"]), message, upload
                )
                return {"via": "channel", "channel_id": channel, "message_id": sent.get("id")}
            except DiscordRefused as exc:
                if exc.status != 404:
                    raise
        sent = await self._api.post_channel_message(ctx.http, channel, message, upload)
        return {
            "via": "channel",
            "channel_id": channel,
            "message_id": sent.get("id"),
            "followup": followup,
        }

    async def _replay(
        self,
        event: Event,
        message: Message,
        upload: Upload | None,
        previous: dict[str, Any],
        ctx: HandlerContext,
    ) -> dict[str, Any]:
        """Edit the message this delivery made before; post anew only if it is gone."""
        made = str(previous.get("message_id") or "")
        token = self._token(event)
        try:
            if previous.get("via") == "webhook" and token is not None and made:
                await self._api.edit_webhook_message(ctx.http, token, made, message, upload)
                return {**_kept(previous), "edited": True}
            if previous.get("via") == "channel" and made and previous.get("channel_id"):
                channel = str(previous["channel_id"])
                await self._api.edit_channel_message(ctx.http, channel, made, message, upload)
                return {**_kept(previous), "edited": True}
        except DiscordRefused as exc:
            if exc.status not in (401, 404):
                raise
        ctx.log.info("discord message to edit is gone; posting anew", handler=self.name)
        channel = self._channel(event)
        sent = await self._api.post_channel_message(ctx.http, channel, message, upload)
        return {"via": "channel", "channel_id": channel, "message_id": sent.get("id")}

    def _render(self, event: Event, ctx: HandlerContext, upload: Upload | None) -> Message | None:
        """The message for `event`; its embed names the file when `upload` goes with it."""
        return render(
            event,
            requester=self._label(event, self.config.requester_label),
            lyrics_lines=self.config.lyrics_lines,
            task_url=ctx.task_url,
            results=ctx.results,
            buttons=self.config.buttons,
            attached=upload[0] if upload else None,
        )

    async def _upload(
        self, event: Event, ctx: HandlerContext
    ) -> tuple[Upload | None, dict[str, Any] | None]:
        """The audio to attach (name, bytes, type) when `upload_audio` and it fits, and what
        happened for the result (None when nothing was to be attached).

        Best effort, as Slack's upload is: a failed download, even a retryable one, sends the
        song without its file (it is linked) rather than delaying or dead-lettering it."""
        if not self.config.upload_audio or event.kind != EventKind.COMPLETED:
            return None, None
        if not event.audio_url:
            return None, {"skipped": "the song has no audio URL"}
        try:
            audio = await ctx.spool.fetch(event.audio_url)
            extension = audio_extension(audio)
        except HandlerError as exc:
            return None, _not_attached(ctx, self.name, f"download: {exc.message}")
        cap = self.config.upload_max_mb
        if audio.size > cap * MB:
            size = _size(audio.size)
            ctx.log.info(
                "discord audio over upload_max_mb; linked only", handler=self.name, size=size
            )
            return None, {
                "skipped": f"the audio is {size}, over upload_max_mb = {cap}; linked only"
            }
        name = f"{slugify(event.title)}.{extension}"
        data = await asyncio.to_thread(audio.path.read_bytes)
        return (name, data, content_type(audio, name)), {"file": name, "bytes": audio.size}

    async def check(self) -> HandlerCheck:
        """`GET /applications/@me` with the bot token (posts nothing)."""
        return await self._api.check()

    def secrets(self) -> Iterable[str]:
        """The bot token (interaction tokens come with each task and never leave here)."""
        return config_secrets(self.config)

    def _token(self, event: Event) -> str | None:
        """The interaction token while it may still be used, else None (use the channel)."""
        token = self._label(event, self.config.token_label)
        if token is not None and self.config.seal_keys:
            token = unseal(token, [key.get_secret_value() for key in self.config.seal_keys])
        if token is None:
            return None
        try:
            asked = float(event.labels.get(self.config.time_label, ""))
        except ValueError:
            return token  # no time recorded: try it, and Discord's 404 says if it is gone
        return token if time.time() - asked < self.config.token_lifetime_s else None

    def _channel(self, event: Event) -> str:
        channel = self._label(event, self.config.channel_label)
        if channel is None or not channel.isdigit():
            raise HandlerError(
                f"discord: the task has no channel id in its {self.config.channel_label!r} "
                "label, and its interaction token has expired",
                retryable=False,
                blame="destination",
            )
        return channel

    @staticmethod
    def _label(event: Event, name: str) -> str | None:
        value = event.labels.get(name)
        return (value.strip() or None) if isinstance(value, str) else None

    def _remember(self, key: str, clip_id: str) -> None:
        self._shown[key] = clip_id
        self._shown.move_to_end(key)
        while len(self._shown) > _REMEMBERED:
            self._shown.popitem(last=False)


def _size(count: int) -> str:
    """A file's size as a person reads it: MB with one decimal, or KB below a tenth of one."""
    return f"{count / MB:.1f} MB" if count >= MB / 10 else f"{count / 1024:.0f} KB"


def _not_attached(ctx: HandlerContext, handler: str, why: str) -> dict[str, Any]:
    """Log why the audio was not attached; the result's `upload` entry saying so."""
    ctx.log.warning("discord audio not attached", handler=handler, error=why)
    return {"failed": why}


def _kept(previous: Mapping[str, Any]) -> dict[str, Any]:
    return {
        k: previous[k] for k in ("via", "channel_id", "message_id", "followup") if k in previous
    }
