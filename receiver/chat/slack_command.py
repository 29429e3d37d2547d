"""The Slack app's answer to a verified slash command: help, credits, or a song.

A song is checked against the guard rails (a refusal costs nothing: no upstream call), then
acknowledged at once while the submission runs in the background (Slack's 3 s limit). The
task carries the chat labels, so the implicit `chat-slack` handler posts "generating…" in the
channel and threads the finished song under it, as an ordinary outbox delivery. A create the
provider refuses is told to the requester through the command's `response_url`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from urllib.parse import urlsplit

import httpx

from handlers.slack_messages import escape
from receiver.chat.commands import Credits, Help, Refused, Song, cost, not_yet_text, parse, usage
from receiver.chat.config import SlackChat
from receiver.chat.guard import Requester, Spent, check
from receiver.chat.jobs import ChatJobs
from receiver.chat.spend import limits_of, read_spent
from receiver.errors import RelayError
from receiver.logging import get_logger
from receiver.services import CHAT_CHANNEL_LABEL, CHAT_LABEL, CHAT_USER_LABEL, Services
from receiver.submit import SubmitRequest, submit

__all__ = ["answer"]

log = get_logger("aimusic_relay.chat")

APP = "slack"
_REASON_CHARS = 300


async def answer(
    services: Services, slack: SlackChat, jobs: ChatJobs, form: Mapping[str, str], text: str
) -> str:
    """The ephemeral text for `text` (what the person typed, unescaped); a song is started."""
    parsed = parse(text, slack.command)
    log.info("chat command", app=APP, answer=type(parsed).__name__.lower())
    if isinstance(parsed, Help):
        return usage(slack.command)
    if isinstance(parsed, Refused):
        return parsed.message
    user, channel = form.get("user_id", ""), form.get("channel_id", "")
    requester = Requester(user=user, channel=channel)
    if isinstance(parsed, Credits):
        refusal = check(limits_of(slack), requester, 0, (), time.time())
        return refusal.message if refusal else await _credits(services)
    if not isinstance(parsed, Song):
        return not_yet_text(slack.command)
    if not user or not channel:
        return "Slack did not say who asked or in which channel; nothing was submitted."
    price, now = cost(parsed), time.time()
    spent = {**jobs.pending, **await read_spent(services.store, APP, now)}
    refusal = check(limits_of(slack), requester, price, spent.values(), now)
    if refusal is not None:
        log.info("chat request refused", app=APP, reason=refusal.reason.value)
        return refusal.message
    ref = uuid.uuid4().hex
    labels = {CHAT_LABEL: APP, CHAT_CHANNEL_LABEL: channel, CHAT_USER_LABEL: user}
    request = SubmitRequest(family=parsed.family, params={"sound": parsed.prompt}, labels=labels)
    work = _submit(services, request, ref, form.get("response_url", ""))
    jobs.start(ref, Spent(user=user, channel=channel, credits=price, at=now), work)
    log.info("chat song asked", app=APP, task_ref=ref, family=parsed.family)
    return (
        f"On it: “{escape(parsed.prompt)}” — {price:g} credits; "
        "the song will appear in this channel."
    )


async def _credits(services: Services) -> str:
    try:
        balance = await services.upstream.credits()
    except RelayError as exc:
        return f"Could not read the credits: {_one_line(exc)}"
    return f"Credits left: {balance.credits:g} (extra credits: {balance.extra_credits:g})."


async def _submit(services: Services, request: SubmitRequest, ref: str, response_url: str) -> None:
    """Submit in the background; a refusal goes back to the requester, never as a trace."""
    try:
        await submit(services, request, ref=ref)
    except RelayError as exc:
        log.warning("chat song refused upstream", app=APP, task_ref=ref, error=str(exc))
        reason = f"The song was not made: {_one_line(exc)}"
        await _tell(services.http, response_url, reason)
    except Exception:
        log.exception("chat song not submitted", app=APP, task_ref=ref)
        await _tell(services.http, response_url, "The song was not made: the relay failed.")


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


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return escape(text if len(text) <= _REASON_CHARS else text[: _REASON_CHARS - 1] + "…")
