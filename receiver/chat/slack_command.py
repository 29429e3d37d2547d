"""The Slack app's answer to a verified slash command: help, credits, status, lyrics or a song.

A song is checked against the guard rails (a refusal costs nothing: no upstream call), then
acknowledged at once while the submission runs in the background (Slack's 3 s limit). The
task carries the chat labels, so the implicit `chat-slack` handler posts "generating…" in the
channel and threads the finished song under it, as an ordinary outbox delivery. A create the
provider refuses is told to the requester through the command's `response_url`, and so are
lyrics once written (they make no task and no channel post: only the asker sees them).
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

import httpx

from handlers.slack_messages import escape
from receiver.chat.asking import Asker, Tell, credits_text, guard_free, start_submit
from receiver.chat.commands import Credits, Help, Lyrics, Refused, Status, cost, parse, usage
from receiver.chat.config import SlackChat
from receiver.chat.jobs import ChatJobs
from receiver.chat.lyrics import start_lyrics
from receiver.chat.status import status_text
from receiver.logging import get_logger
from receiver.services import Services
from receiver.submit import SubmitRequest

__all__ = ["answer", "response_url_teller"]

log = get_logger("aimusic_relay.chat")

APP = "slack"


async def answer(
    services: Services, slack: SlackChat, jobs: ChatJobs, form: Mapping[str, str], text: str
) -> str:
    """The ephemeral text for `text` (what the person typed, unescaped); a song or lyrics
    are started in the background."""
    parsed = parse(text, slack.command)
    log.info("chat command", app=APP, answer=type(parsed).__name__.lower())
    if isinstance(parsed, Help):
        return usage(slack.command)
    if isinstance(parsed, Refused):
        return parsed.message
    asker = Asker(app=APP, user=form.get("user_id", ""), channel=form.get("channel_id", ""))
    if isinstance(parsed, Credits):
        return guard_free(slack, asker) or await credits_text(services)
    if not asker.user or not asker.channel:
        return "Slack did not say who asked or in which channel; nothing was submitted."
    if isinstance(parsed, Status):
        return guard_free(slack, asker) or await status_text(services, asker)
    price = cost(parsed)
    tell = response_url_teller(services.http, form.get("response_url", ""))
    if isinstance(parsed, Lyrics):
        refusal = await start_lyrics(services, slack, jobs, asker, parsed.idea, tell)
        if refusal is not None:
            return refusal
        return (
            f"Writing lyrics for “{escape(parsed.idea)}” — {_credits(price)}; "
            "they will appear here."
        )
    request = SubmitRequest(family=parsed.family, params={"sound": parsed.prompt})
    refusal = await start_submit(services, slack, jobs, asker, request, price, tell)
    if refusal is not None:
        return refusal
    return (
        f"On it: “{escape(parsed.prompt)}” — {price:g} credits; "
        "the song will appear in this channel."
    )


def _credits(amount: float) -> str:
    """`1 credit`, `10 credits`."""
    return f"{amount:g} credit{'' if amount == 1 else 's'}"


def response_url_teller(http: httpx.AsyncClient, response_url: str) -> Tell:
    """Tells the requester ephemerally through a command's or an action's `response_url`."""

    async def tell(text: str) -> None:
        await _tell(http, response_url, text)

    return tell


async def _tell(http: httpx.AsyncClient, response_url: str, text: str) -> None:
    """POST an ephemeral message to the command's `response_url`. The URL is a capability
    (anyone holding it can post as the app for 30 minutes): it is never logged."""
    if urlsplit(response_url).scheme not in ("http", "https"):
        log.warning("chat reply not sent: the command had no response_url", app=APP)
        return
    try:
        sent = await http.post(response_url, json={"response_type": "ephemeral", "text": text})
    except httpx.HTTPError as exc:
        log.warning("chat reply not sent", app=APP, error=type(exc).__name__)
        return
    if sent.status_code >= 300:
        log.warning("chat reply refused", app=APP, status=sent.status_code)
