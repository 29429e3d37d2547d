"""Slack `/song` on loopback at its edges: allow-lists and the hourly limit refuse a real song
command with nothing sent upstream, a song that fails upstream says why in its thread, and a
provider too slow for Slack's 3 s still gets `/song credits` an answer in time."""

from __future__ import annotations

import asyncio
import time

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from receiver.chat.asking import CREDITS_WAIT_S
from receiver.sandbox.slack import SlackCatcher
from tests.chat.helpers import (
    ACK_LIMIT_S,
    SLACK_TABLE,
    StartRelay,
    chat_tasks,
    command,
    sandbox_tasks,
    slack_post,
    wait_for,
)
from tests.servers import run_asgi

GUARDED = (
    SLACK_TABLE
    + 'allowed_channels = ["C0OPEN"]\n'
    + 'allowed_users = ["U1", "U2"]\n'
    + "user_songs_per_hour = 1\n"
)


def test_allow_lists_and_the_hourly_limit_refuse_a_song_with_no_upstream_call(
    start_relay: StartRelay, catcher: SlackCatcher, sandbox: str
) -> None:
    """A song from a channel or a person not on the lists, and a second song within the hour,
    are each refused with their own reason; only the one allowed song reaches the sandbox."""
    relay = start_relay(GUARDED)
    prompt = "guarded anthem for the open channel"

    def say(user: str, channel: str) -> str:
        answer = slack_post(relay, command(prompt, user, channel, "https://x.invalid"))
        assert 200 == answer.status_code
        assert "ephemeral" == answer.json()["response_type"]
        return str(answer.json()["text"])

    assert say("U1", "C0SHUT").startswith("Songs can't be made in this channel")
    assert say("U9", "C0OPEN").startswith("You are not on the list of people")
    assert say("U1", "C0OPEN").startswith("On it:")
    again = say("U1", "C0OPEN")
    assert again.startswith("You have made 1 request in the last hour (the limit is 1); try again")
    assert say("U2", "C0OPEN").startswith("On it:")  # the limit is per person
    wait_for(catcher, "chat.postMessage", 2)
    time.sleep(0.5)  # a refused song, were it sent, would have reached the sandbox by now
    assert 2 == len(sandbox_tasks(sandbox, prompt))
    assert {"U1", "U2"} == {task["labels"]["chat.user"] for task in chat_tasks(relay)}


def test_a_song_that_fails_upstream_says_why_in_its_thread(
    start_relay: StartRelay, catcher: SlackCatcher
) -> None:
    """The sandbox's `#fail` ends the task FAILED: the failure, with the provider's reason, is
    threaded under the "generating…" message, not posted as a new one."""
    relay = start_relay(SLACK_TABLE)
    form = command("a song bound to fail #fail", "U3", "C0FAIL", "https://x.invalid")
    assert slack_post(relay, form).json()["text"].startswith("On it:")
    first, reply = wait_for(catcher, "chat.postMessage", 2)
    assert first.body["text"].startswith("🎵 Generating “a song bound to fail #fail”")
    posted = {body["text"]: ts for (_, ts), body in catcher.messages.items()}
    assert posted[first.body["text"]] == reply.body["thread_ts"]
    [task] = chat_tasks(relay)
    detail = relay.wait_settled(task["id"])
    assert "failed" == detail["state"]
    [failed] = [e for e in detail["events"] if e["kind"] == "song.failed"]
    reason = str(failed["error"] or failed["clip"].get("error_message"))
    assert reason and reason in reply.body["text"]
    assert "failed" in reply.body["text"]


def _slow_credits(delay_s: float) -> Starlette:
    """An upstream whose credits endpoint answers only after `delay_s` (a provider having a bad
    minute); nothing else is asked of it here."""

    async def credits(request: Request) -> JSONResponse:
        await asyncio.sleep(delay_s)
        return JSONResponse({"credits": 50, "extra_credits": 0})

    return Starlette(routes=[Route("/api/v1/get-credits", credits)])


def test_credits_from_a_slow_provider_are_answered_within_slacks_limit(
    start_relay: StartRelay,
) -> None:
    """`/song credits` waits at most CREDITS_WAIT_S for the provider, so the person sees "try
    again" instead of Slack's own timeout error."""
    with run_asgi(_slow_credits(CREDITS_WAIT_S + 3)) as slow:
        relay = start_relay(SLACK_TABLE, slow)
        started = time.monotonic()
        answer = slack_post(relay, command("credits", "U4", "C0SLOW", "https://x.invalid"))
        took = time.monotonic() - started
    assert 200 == answer.status_code
    assert took < ACK_LIMIT_S
    assert answer.json()["text"].startswith(
        f"Could not read the credits: the provider did not answer within {CREDITS_WAIT_S:g} s"
    )
