"""The chat apps' dry runs for `aimusic-relay doctor`: are the credentials right, and can
Slack and Discord call the relay at all?

Nothing a person sees is posted: Slack's `auth.test` and Discord's `GET /applications/@me`
only prove a token. Both services call HTTPS request URLs only, so a relay whose public URL
is not public HTTPS cannot receive a command even with perfect credentials.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx

from handlers.base import HandlerCheck
from handlers.discord_api import DISCORD_API
from handlers.slack_auth import check_bot_token
from receiver.chat.config import DiscordChat, SlackChat
from receiver.config import is_public_https

__all__ = ["check_discord", "check_slack"]

"""Discord's API, unless `[chat.discord] api_base_url` says otherwise."""

CHECK_TIMEOUT_S = 10.0
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
    """`GET /applications/@me` with the bot token: it must be accepted and belong to
    `application_id` (else commands register under one app and interactions arrive for
    another), then whether Discord can reach the interactions URL."""
    base = app.api_base_url or DISCORD_API
    where = urlsplit(base).hostname
    headers = {"Authorization": f"Bot {app.bot_token.get_secret_value()}"}
    try:
        async with httpx.AsyncClient(timeout=CHECK_TIMEOUT_S, trust_env=False) as client:
            answer = await client.get(f"{base}/applications/@me", headers=headers)
    except httpx.HTTPError as exc:
        return HandlerCheck(
            "fail",
            f"cannot reach Discord at {where}: {type(exc).__name__}",
            "check the network (and api_base_url, if set)",
        )
    if answer.status_code == 401:
        return HandlerCheck(
            "fail",
            f"Discord ({where}) refused the bot token: HTTP 401",
            "copy the token from the application's Bot page in the Discord developer portal "
            "as [chat.discord] bot_token",
        )
    body = _json_object(answer)
    if answer.status_code != 200 or body is None:
        return HandlerCheck(
            "fail",
            f"Discord ({where}) answered HTTP {answer.status_code} to GET /applications/@me",
            "check api_base_url, if set, and try again later",
        )
    owner, name = str(body.get("id", "")), str(body.get("name", "?"))
    if owner != app.application_id:
        return HandlerCheck(
            "fail",
            f"the bot token belongs to application {owner} ({name}), "
            f"not application_id {app.application_id}",
            "use the APPLICATION ID and the bot token of one application (General Information "
            "and Bot pages in the Discord developer portal)",
        )
    return _reachable(
        "Discord", f"bot token accepted (application {owner}, {name})", public_url, _DISCORD_PATHS
    )


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


def _json_object(answer: httpx.Response) -> dict[str, object] | None:
    """The body as a JSON object, or None for anything else (an error page from a proxy)."""
    try:
        body = answer.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None
