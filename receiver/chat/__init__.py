"""The relay's own Slack and Discord apps: `[chat.*]` settings, request verification, usage.

The routes live in `receiver.chat.routes` and are not re-exported here: they need
`receiver.services`, which itself loads these settings.
"""

from __future__ import annotations

from receiver.chat.commands import usage
from receiver.chat.config import ChatSettings, DiscordChat, SlackChat, load_chat_settings
from receiver.chat.verify import verify_discord, verify_slack

__all__ = [
    "ChatSettings",
    "DiscordChat",
    "SlackChat",
    "load_chat_settings",
    "usage",
    "verify_discord",
    "verify_slack",
]
