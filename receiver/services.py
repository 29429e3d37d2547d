"""The long-lived parts one relay process shares, built once from `Settings` (no globals)."""

from __future__ import annotations

import dataclasses
from typing import Any

import httpx

from handlers.base import CHAT_EVENTS, secrets_of
from handlers.registry import HandlerRegistry
from receiver import __version__
from receiver.chat.config import ChatSettings, DiscordChat, SlackChat, load_chat_settings
from receiver.config import Settings
from receiver.delivery.handler_set import HandlerSet, add_handlers, load_handler_set
from receiver.delivery.spool import DownloadPolicy
from receiver.logging import hide_also
from receiver.metrics import Metrics
from receiver.signing import CallbackTokens
from receiver.store import Store, open_store
from receiver.upstream.client import UpstreamClient

__all__ = [
    "CHAT_AT_LABEL",
    "CHAT_CHANNEL_LABEL",
    "CHAT_DISCORD_HANDLER",
    "CHAT_LABEL",
    "CHAT_SLACK_HANDLER",
    "CHAT_TOKEN_LABEL",
    "CHAT_USER_LABEL",
    "Services",
    "build_services",
]

CHAT_SLACK_HANDLER = "chat-slack"
"""The handler `[chat.slack]` adds: it answers in the channel (and thread) a song came from."""
CHAT_LABEL, CHAT_CHANNEL_LABEL, CHAT_USER_LABEL = "chat", "chat.channel", "chat.user"
"""The labels a chat task carries: which app, and the channel and user that asked."""
CHAT_DISCORD_HANDLER = "chat-discord"
"""The handler `[chat.discord]` adds: it edits the interaction's response into the song."""
CHAT_TOKEN_LABEL, CHAT_AT_LABEL = "chat.interaction_token", "chat.interaction_at"
"""A Discord task's interaction token, sealed with RELAY_SECRET_KEY (`handlers.discord_seal`:
labels show on the API and the dashboard), and when the interaction came (Unix seconds): the
token answers for 15 minutes."""


@dataclasses.dataclass(slots=True)
class Services:
    """Settings, store, handlers, tokens and HTTP clients for one process."""

    settings: Settings
    store: Store
    handlers: HandlerSet
    tokens: CallbackTokens
    http: httpx.AsyncClient
    upstream: UpstreamClient
    metrics: Metrics = dataclasses.field(default_factory=Metrics.create)
    """This process's counters, on its own registry (two apps in one process stay apart)."""
    chat: ChatSettings = dataclasses.field(default_factory=ChatSettings)
    """The `[chat.*]` apps of relay.toml; both off without their tables."""

    def secret_values(self) -> list[str]:
        """The settings' secrets, the chat apps' and every handler's (these live in
        relay.toml, not the environment): what every redactor of this process hides."""
        return [
            *self.settings.secret_values(),
            *self.chat.secret_values(),
            *_handler_secrets(self.handlers),
        ]

    @property
    def download_policy(self) -> DownloadPolicy:
        return DownloadPolicy(allow_private_networks=self.settings.relay_allow_private_networks)

    async def aclose(self) -> None:
        await self.upstream.aclose()
        await self.http.aclose()
        await self.store.close()


def _handler_secrets(handlers: HandlerSet) -> list[str]:
    return [value for configured in handlers for value in secrets_of(configured.handler)]


def _chat_handlers(chat: ChatSettings) -> list[dict[str, Any]]:
    """The handler entries the chat apps add. A chat reply is an ordinary delivery, so
    retries, dead letters, replay and the dashboard work for it; the labels filter keeps
    every other task out of chat."""
    if chat.slack is None:
        return []
    entry = _reply_entry(CHAT_SLACK_HANDLER, "slack", chat.slack)
    entry |= {"token": chat.slack.token.get_secret_value(), "buttons": True}
    if chat.slack.api_base_url is not None:
        entry["api_base_url"] = chat.slack.api_base_url + "/"
    return [entry]


def _discord_handlers(chat: ChatSettings, keys: list[str]) -> list[dict[str, Any]]:
    """`[chat.discord]`'s reply handler, if the table is there (see `_chat_handlers`). `keys`
    (RELAY_SECRET_KEY's) open the sealed interaction token each task carries."""
    if chat.discord is None:
        return []
    entry = _reply_entry(CHAT_DISCORD_HANDLER, "discord", chat.discord)
    entry |= {
        "application_id": chat.discord.application_id,
        "bot_token": chat.discord.bot_token.get_secret_value(),
        "token_label": CHAT_TOKEN_LABEL,
        "time_label": CHAT_AT_LABEL,
        "seal_keys": keys,
    }
    if chat.discord.api_base_url is not None:
        entry["api_base_url"] = chat.discord.api_base_url
    return [entry]


def _reply_entry(name: str, kind: str, app: SlackChat | DiscordChat) -> dict[str, Any]:
    """What both apps' reply handlers share: they take exactly the tasks their app asked for,
    answer where and to whom the labels say, and upload as `[chat.*]` says."""
    return {
        "name": name,
        "type": kind,
        "channel_label": CHAT_CHANNEL_LABEL,
        "requester_label": CHAT_USER_LABEL,
        "events": list(CHAT_EVENTS),
        "labels": {CHAT_LABEL: kind},
        "upload_audio": app.upload_audio,
        "upload_max_mb": app.upload_max_mb,
    }


def build_services(settings: Settings, *, registry: HandlerRegistry | None = None) -> Services:
    """Build everything; handler config errors surface here, before anything is opened."""
    registry = registry or HandlerRegistry.with_plugins()
    chat = load_chat_settings(settings.config_path)
    handlers = add_handlers(
        load_handler_set(settings.config_path, registry),
        _chat_handlers(chat),
        registry,
        "[chat.slack] (its replies in Slack)",
    )
    handlers = add_handlers(
        handlers,
        _discord_handlers(chat, settings.secret_keys),
        registry,
        "[chat.discord] (its replies in Discord)",
    )
    # logging was set up from the environment alone: add what relay.toml holds
    hide_also([*chat.secret_values(), *_handler_secrets(handlers)])
    headers: dict[str, Any] = {"User-Agent": f"aimusic-relay/{__version__}"}
    http = httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=10.0), headers=headers)
    api_key = settings.aimusic_api_key.get_secret_value() if settings.aimusic_api_key else None
    metrics = Metrics.create(h.name for h in handlers)
    store = open_store(
        settings.database_url,
        pool_size=settings.relay_db_pool_size,
        pool_timeout_s=settings.relay_db_pool_timeout_s,
    )
    store.writer.on_commit = metrics.store_commit
    return Services(
        settings=settings,
        store=store,
        handlers=handlers,
        tokens=CallbackTokens(settings.secret_keys),
        http=http,
        upstream=UpstreamClient(
            settings.aimusic_base_url, api_key, on_error=metrics.upstream_error
        ),
        metrics=metrics,
        chat=chat,
    )
