"""The chat apps' dry runs for `aimusic-relay doctor`: are the credentials right, and can
Slack and Discord call the relay at all?

Nothing a person sees is posted: Slack's `auth.test` and Discord's `GET /applications/@me`
only prove a token. Both services call HTTPS request URLs only, so a relay whose public URL
is not public HTTPS cannot receive a command even with perfect credentials.
"""

from __future__ import annotations

from handlers.base import HandlerCheck
from handlers.discord_api import DISCORD_API
from handlers.discord_api import check_bot_token as check_discord_bot
from handlers.slack_auth import check_bot_token
from receiver.chat.config import DiscordChat, SlackChat
from receiver.config import is_public_https

__all__ = ["check_discord", "check_slack"]

_SLACK_PATHS = ("/chat/slack/commands", "/chat/slack/interactions")
_DISCORD_PATHS = ("/chat/discord/interactions",)


async def check_slack(app: SlackChat, public_url: str) -> HandlerCheck:
    """`auth.test` with the app's bot token, then whether Slack can reach the request URLs."""
    base = f"{app.api_base_url}/" if app.api_base_url else None  # slack-sdk joins onto a slash
    found = await check_bot_token(app.token.get_secret_value(), base)
    if found.status != "ok":
        return found
    return _reachable("Slack", found.detail, public_url, _SLACK_PATHS)


async def check_discord(app: DiscordChat, public_url: str) -> HandlerCheck:
    """The bot token against `GET /applications/@me` (accepted, and of `application_id`),
    then whether Discord can reach the interactions URL."""
    base = app.api_base_url or DISCORD_API
    found = await check_discord_bot(base, app.bot_token.get_secret_value(), app.application_id)
    if found.status != "ok":
        return found
    return _reachable("Discord", found.detail, public_url, _DISCORD_PATHS)


def _reachable(service: str, detail: str, public_url: str, paths: tuple[str, ...]) -> HandlerCheck:
    """Ok with the request URLs to set, or a warning when `service` cannot call them."""
    public = is_public_https(public_url)
    urls = " and ".join(f"{public_url if public else 'https://<relay>'}{path}" for path in paths)
    if public:
        return HandlerCheck("ok", f"{detail}; request URLs {urls}")
    return HandlerCheck(
        "warn",
        f"{detail}; but RELAY_PUBLIC_URL {public_url} is not a public https:// address, "
        f"and {service} calls only those",
        f"set RELAY_PUBLIC_URL to the relay's public https:// address, then set {service}'s "
        f"request URLs to {urls}",
    )
