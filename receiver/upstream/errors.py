"""Helpers of `receiver.upstream.client`: turning a provider answer into one readable, typed error.

Every message is written for a one-line CLI error: what was refused, the provider's own words
(scrubbed of the API key, shortened), and what to do next.
"""

from __future__ import annotations

import dataclasses
import json
import re

import httpx

from receiver.errors import (
    InsufficientCredits,
    RateLimited,
    TaskGone,
    TaskNotFound,
    Unauthorized,
    UpstreamError,
    UpstreamForbidden,
    UpstreamRejected,
    UpstreamUnavailable,
)

__all__ = ["Call", "error_for", "message_of", "shorten", "transport", "unknown"]

_MESSAGE_KEYS = ("message", "error", "detail", "description")
_MAX_MESSAGE = 300
_REDACTED = "***"
_TASK_NOT_FOUND = re.compile(r"\btask\b.*\bnot found", re.IGNORECASE)


@dataclasses.dataclass(frozen=True, slots=True)
class Call:
    """What a request was, for the error messages: `what` reads as "the <what>"."""

    what: str
    creates: bool = False
    """True when the call makes (and charges) something: a 429 then means nothing was made."""
    cost: float | None = None
    task_id: str | None = None


def shorten(text: str) -> str:
    """One line, at most 300 characters."""
    text = " ".join(text.split())
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"


def transport(exc: httpx.HTTPError) -> str:
    """A transport failure in a few words (`timed out`, `ConnectError: ...`)."""
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    detail = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {shorten(detail)}"


def unknown(what: str, reason: str) -> str:
    """The message of an `OutcomeUnknown`: it may exist, it was not re-sent, what to check."""
    return (
        f"the outcome of the {what} is unknown ({reason}); the task may exist upstream and "
        "was NOT sent again, because a create costs credits — check `aimusic-relay tasks` "
        "before retrying"
    )


def message_of(response: httpx.Response, api_key: str | None) -> str:
    """The provider's explanation, from whichever field carries it; the key scrubbed out."""
    text = ""
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if isinstance(payload, dict):
        for key in _MESSAGE_KEYS:
            value = payload.get(key)
            if isinstance(value, str) and value.strip():
                text = value
                break
            if isinstance(value, dict | list):
                text = json.dumps(value)
                break
    if not text:
        text = response.text.strip() or response.reason_phrase or f"HTTP {response.status_code}"
    if api_key:
        text = text.replace(api_key, _REDACTED)
    return shorten(text)


def error_for(
    status: int, message: str, call: Call, *, retry_after_s: float | None, account: str
) -> UpstreamError:
    """The typed error for an answer `status` with the provider's `message`.

    `account` says where to top up or subscribe (e.g. "at https://aimusicapi.ai").
    """
    lowered = message.lower()
    if status == 400:
        if _TASK_NOT_FOUND.search(message):
            name = f"task {call.task_id}" if call.task_id else "the task"
            return TaskNotFound(f"{name} was not found upstream: {message}", status=400)
        return UpstreamRejected(f"the AI Music API rejected the {call.what}: {message}", status=400)
    if status == 401:
        return Unauthorized(
            f"the AI Music API refused the API key (401): {message} — check AIMUSIC_API_KEY",
            status=401,
        )
    if status == 402 or (status == 403 and "credit" in lowered):
        price = f"the {call.what} costs {call.cost:g} credits; " if call.cost else ""
        return InsufficientCredits(
            f"out of credits: {message} — {price}top up {account} "
            "(see the balance with `aimusic-relay credits`)",
            status=status,
        )
    if status == 403 and "subscription" in lowered:
        return UpstreamForbidden(
            f"the AI Music API refused the {call.what} (403): {message} — the account needs "
            f"an active subscription: subscribe {account}, then try again",
            status=403,
        )
    if status == 403 and "lyric" in lowered:
        return UpstreamForbidden(
            f"the AI Music API rejected the lyrics of the {call.what} (403): {message} — "
            "change the lyrics (format, copyrighted text, moderation) and submit again",
            status=403,
        )
    if status == 403:
        return UpstreamForbidden(
            f"the AI Music API refused the {call.what} (403): {message} — e.g. no active "
            "subscription, or the lyrics were rejected",
            status=403,
        )
    if status == 410:
        return TaskGone(f"retired by the AI Music API (410 Gone): {message}", status=410)
    if status == 429:
        wait = f" (Retry-After: {retry_after_s:g} s)" if retry_after_s is not None else ""
        after = " — nothing was created, so it is safe to send again" if call.creates else ""
        return RateLimited(
            f"rate limited by the AI Music API on the {call.what}: {message}{wait}{after}",
            retry_after=retry_after_s,
        )
    if status >= 500:
        return UpstreamUnavailable(
            f"the AI Music API is unavailable ({status}) for the {call.what}: {message}",
            status=status,
        )
    return UpstreamError(
        f"unexpected answer {status} from the AI Music API for the {call.what}: {message} "
        "— is AIMUSIC_BASE_URL right?",
        status=status,
    )
