"""The long-lived parts one relay process shares, built once from `Settings` (no globals)."""

from __future__ import annotations

import dataclasses
from typing import Any

import httpx

from handlers.base import secrets_of
from handlers.registry import HandlerRegistry
from receiver import __version__
from receiver.chat.config import ChatSettings, load_chat_settings
from receiver.config import Settings
from receiver.delivery.handler_set import HandlerSet, load_handler_set
from receiver.delivery.spool import DownloadPolicy
from receiver.logging import hide_also
from receiver.metrics import Metrics
from receiver.signing import CallbackTokens
from receiver.store import Store, open_store
from receiver.upstream.client import UpstreamClient

__all__ = ["Services", "build_services"]


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


def build_services(settings: Settings, *, registry: HandlerRegistry | None = None) -> Services:
    """Build everything; handler config errors surface here, before anything is opened."""
    handlers = load_handler_set(settings.config_path, registry or HandlerRegistry.with_plugins())
    chat = load_chat_settings(settings.config_path)
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
