"""A Slack Web API client built the relay's way, and `auth.test`, the dry run of a bot token.

Shared by the `slack` handler's doctor line and the `[chat.slack]` app's: both hold a bot
token, and `auth.test` proves one without posting anything a person sees.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from handlers.base import HandlerCheck

__all__ = ["CHECK_TIMEOUT_S", "check_bot_token", "sdk_logger", "web_client"]

CHECK_TIMEOUT_S = 10
"""How long doctor's `auth.test` may take."""


def web_client(token: str | None, base_url: str | None, timeout: int) -> AsyncWebClient:
    """A Web API client without retry handlers: the dispatcher retries, with backoff."""
    base = base_url or AsyncWebClient.BASE_URL
    return AsyncWebClient(token, base, timeout=timeout, logger=sdk_logger(), retry_handlers=[])


def sdk_logger() -> logging.Logger:
    """slack-sdk's logger, held at WARNING: its debug lines quote the webhook URL and token."""
    logger = logging.getLogger("handlers.slack.sdk")
    logger.setLevel(logging.WARNING)
    return logger


async def check_bot_token(token: str, base_url: str | None) -> HandlerCheck:
    """`auth.test` at `base_url` (Slack's own without it): ok naming the team and the bot, or
    a failure saying whether Slack refused the token or could not be reached."""
    where = urlsplit(base_url or AsyncWebClient.BASE_URL).hostname
    try:
        answer = await web_client(token, base_url, CHECK_TIMEOUT_S).auth_test()
    except SlackApiError as exc:
        code = exc.response.get("error", "error") if exc.response is not None else "error"
        return HandlerCheck(
            "fail",
            f"Slack ({where}) refused the bot token: {code}",
            "use the Bot User OAuth Token (xoxb-…) of an installed app",
        )
    except Exception as exc:  # doctor reports whatever went wrong instead of a traceback
        return HandlerCheck(
            "fail",
            f"cannot reach Slack at {where}: {type(exc).__name__}",
            "check the network (and api_base_url, if set)",
        )
    team, user = answer.get("team", "?"), answer.get("user", "?")
    return HandlerCheck("ok", f"bot token accepted (auth.test: team {team}, bot {user})")
