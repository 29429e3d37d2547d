"""What both chat apps do once they know who asked for what: check the guard rails, then start
the submission in the background, and say any later refusal back through the app's own way.

The apps differ only in how they hear a command and how they answer; the money side is one
code path, so a budget, an allow-list or a provider refusal behaves the same in Slack and in
Discord. A refusal here costs nothing: it is decided before anything is sent upstream.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping

from handlers.slack_messages import escape
from receiver.chat.config import DiscordChat, SlackChat
from receiver.chat.guard import Requester, Spent, check
from receiver.chat.jobs import ChatJobs
from receiver.chat.spend import limits_of, read_spent
from receiver.errors import RelayError
from receiver.logging import get_logger
from receiver.services import CHAT_CHANNEL_LABEL, CHAT_LABEL, CHAT_USER_LABEL, Services
from receiver.store import is_conflict
from receiver.submit import SubmitRequest, submit

__all__ = [
    "Asker",
    "Tell",
    "credits_text",
    "guard_free",
    "guard_priced",
    "one_line",
    "start_submit",
]

log = get_logger("aimusic_relay.chat")

Tell = Callable[[str], Awaitable[None]]
"""Says a text to the person who asked, after the first answer (Slack: the command's
`response_url`; Discord: the interaction webhook). Must not raise."""

_REASON_CHARS = 300


@dataclasses.dataclass(frozen=True, slots=True)
class Asker:
    """Who asked, from which app and channel; `labels` are the app's extra task labels (where
    its reply goes: a Discord interaction token, a Slack thread)."""

    app: str
    user: str
    channel: str
    roles: frozenset[str] = frozenset()
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @property
    def requester(self) -> Requester:
        return Requester(user=self.user, channel=self.channel, roles=self.roles)

    def task_labels(self) -> dict[str, str]:
        """The labels every chat task carries: the app's reply handler takes exactly these."""
        base = {CHAT_LABEL: self.app, CHAT_CHANNEL_LABEL: self.channel, CHAT_USER_LABEL: self.user}
        return {**self.labels, **base}


def guard_free(app: SlackChat | DiscordChat, asker: Asker) -> str | None:
    """The allow-list refusal for a free request (credits, status), or None."""
    refusal = check(limits_of(app), asker.requester, 0, (), time.time())
    return refusal.message if refusal else None


async def guard_priced(
    services: Services,
    app: SlackChat | DiscordChat,
    jobs: ChatJobs,
    asker: Asker,
    price: float,
    now: float,
) -> str | None:
    """The guard rails' refusal of a request costing `price` credits, or None to go ahead.

    What was spent is read from three places, by task id or job ref so nothing counts twice:
    the stored chat tasks, the jobs still in flight (their task may not be stored yet) and the
    finished requests that made no task (lyrics, kept by `ChatJobs`).
    """
    stored = await read_spent(services.store, asker.app, now)
    spent = {**jobs.pending, **jobs.kept(now), **stored}
    refusal = check(limits_of(app), asker.requester, price, spent.values(), now)
    if refusal is None:
        return None
    log.info("chat request refused", app=asker.app, reason=refusal.reason.value)
    return refusal.message


async def start_submit(
    services: Services,
    app: SlackChat | DiscordChat,
    jobs: ChatJobs,
    asker: Asker,
    request: SubmitRequest,
    price: float,
    tell: Tell,
    *,
    ref: str | None = None,
) -> str | None:
    """Start `request` for `asker` in the background, or say why not (the guard's message).

    `price` is what the budgets charge; `ref` the task id when the caller needs it fixed (a
    button's retry must find the task its first click made). The task carries the asker's
    labels whatever `request.labels` held.
    """
    now = time.time()
    refusal = await guard_priced(services, app, jobs, asker, price, now)
    if refusal is not None:
        return refusal
    ref = ref or uuid.uuid4().hex
    labelled = request.model_copy(update={"labels": {**request.labels, **asker.task_labels()}})
    work = _submit(services, labelled, ref, asker.app, tell)
    jobs.start(ref, Spent(user=asker.user, channel=asker.channel, credits=price, at=now), work)
    log.info("chat song asked", app=asker.app, task_ref=ref, family=request.family)
    return None


CREDITS_WAIT_S = 2.0
"""How long `/song credits` waits for the provider: its answer is the command's, and Slack and
Discord show the person an error after 3 s."""


async def credits_text(services: Services) -> str:
    """The account's balance as one line, or why it could not be read (in time)."""
    try:
        balance = await asyncio.wait_for(services.upstream.credits(), CREDITS_WAIT_S)
    except TimeoutError:
        return (
            f"Could not read the credits: the provider did not answer within "
            f"{CREDITS_WAIT_S:g} s; try again in a moment."
        )
    except RelayError as exc:
        return f"Could not read the credits: {one_line(exc)}"
    return f"Credits left: {balance.credits:g} (extra credits: {balance.extra_credits:g})."


async def _submit(
    services: Services, request: SubmitRequest, ref: str, app: str, tell: Tell
) -> None:
    """Submit in the background; a refusal goes back to the requester, never as a trace."""
    try:
        await submit(services, request, ref=ref)
    except RelayError as exc:
        log.warning("chat song refused upstream", app=app, task_ref=ref, error=str(exc))
        await tell(f"The song was not made: {one_line(exc)}")
    except Exception as exc:
        if is_conflict(exc):  # a fixed ref (a button) another process stored first: nothing sent
            log.info("chat song already asked", app=app, task_ref=ref)
            return
        log.exception("chat song not submitted", app=app, task_ref=ref)
        await tell("The song was not made: the relay failed.")


def one_line(exc: BaseException) -> str:
    """An error as one escaped line of at most 300 characters, for a chat message."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return escape(text if len(text) <= _REASON_CHARS else text[: _REASON_CHARS - 1] + "…")
