"""What every Discord answer shares: the response types, an ephemeral message, who asked, the
labels a task needs to be answered through the interaction, and a teller that edits the
interaction's original response.

The chat texts shared with Slack are escaped for Slack (`&amp;`, `&lt;`); they are unescaped
here, and every message sets `allowed_mentions` so nothing in them pings anyone.
"""

from __future__ import annotations

import html
import time
from collections.abc import Mapping
from typing import Any

import httpx

from handlers.base import HandlerError
from handlers.discord_api import DISCORD_API, DiscordApi
from handlers.discord_messages import Message
from handlers.discord_seal import seal
from receiver.chat.asking import Asker, Tell
from receiver.chat.config import DiscordChat
from receiver.logging import get_logger
from receiver.services import CHAT_AT_LABEL, CHAT_TOKEN_LABEL, Services

__all__ = [
    "APP",
    "COMMAND",
    "COMPONENT",
    "DEFERRED",
    "EPHEMERAL",
    "MESSAGE",
    "MODAL",
    "MODAL_SUBMIT",
    "PING",
    "PONG",
    "answered_here",
    "asker_of",
    "ephemeral",
    "interaction_teller",
]

log = get_logger("aimusic_relay.chat")

APP = "discord"
PING, COMMAND, COMPONENT, MODAL_SUBMIT = 1, 2, 3, 5
"""Interaction types Discord sends."""
PONG, MESSAGE, DEFERRED, MODAL = 1, 4, 5, 9
"""Response types: PONG, CHANNEL_MESSAGE_WITH_SOURCE, DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE,
MODAL."""
EPHEMERAL = 64
"""Discord's message flag for a reply only the person who asked sees."""
_NO_PINGS: dict[str, Any] = {"parse": []}
_CONTENT_CHARS = 2000
TELL_TIMEOUT_S = 30.0
"""How long a later message to the requester may take (the reply handler's default)."""


def ephemeral(text: str) -> dict[str, Any]:
    """A type 4 answer only the asker sees, pinging nobody."""
    content = html.unescape(text)[:_CONTENT_CHARS]
    return {
        "type": MESSAGE,
        "data": {"content": content, "flags": EPHEMERAL, "allowed_mentions": _NO_PINGS},
    }


def asker_of(interaction: Mapping[str, Any]) -> Asker | None:
    """Who asked (a guild member's user, or the DM's user), in which channel, with which
    roles; None when Discord left one of them out."""
    member = interaction.get("member")
    member = member if isinstance(member, Mapping) else {}
    user = member.get("user") or interaction.get("user")
    user_id = user.get("id") if isinstance(user, Mapping) else None
    channel = interaction.get("channel_id")
    if not channel and isinstance(interaction.get("channel"), Mapping):
        channel = interaction["channel"].get("id")
    if not isinstance(user_id, str) or not user_id or not isinstance(channel, str) or not channel:
        return None
    roles = member.get("roles")
    listed = roles if isinstance(roles, list) else []
    return Asker(
        app=APP,
        user=user_id,
        channel=channel,
        roles=frozenset(r for r in listed if isinstance(r, str)),
    )


def answered_here(services: Services, asker: Asker, interaction: Mapping[str, Any]) -> Asker | None:
    """`asker` with the labels that let the `chat-discord` handler answer through this
    interaction: its token (sealed, `handlers.discord_seal`) and when it came. None without a
    token."""
    token = interaction.get("token")
    if not isinstance(token, str) or not token:
        return None
    labels = {
        CHAT_TOKEN_LABEL: seal(token, services.settings.secret_keys),
        CHAT_AT_LABEL: f"{time.time():.0f}",
    }
    return Asker(
        app=asker.app, user=asker.user, channel=asker.channel, roles=asker.roles, labels=labels
    )


def interaction_teller(
    http: httpx.AsyncClient, discord: DiscordChat, interaction: Mapping[str, Any]
) -> Tell:
    """Tells the requester by editing the interaction's original response (the deferred
    "thinking…" one), through the same `DiscordApi` the reply handler uses: the token's URL
    is built there and never logged."""
    token = interaction.get("token")
    api = DiscordApi(
        discord.api_base_url or DISCORD_API,
        discord.application_id,
        discord.bot_token,
        TELL_TIMEOUT_S,
    )

    async def tell(text: str) -> None:
        if not isinstance(token, str) or not token:
            log.warning("chat reply not sent: the interaction had no token", app=APP)
            return
        message = Message(content=html.unescape(text)[:_CONTENT_CHARS])
        try:
            await api.edit_original(http, token, message, None)
        except HandlerError as exc:
            log.warning("chat reply not sent", app=APP, error=str(exc))

    return tell
