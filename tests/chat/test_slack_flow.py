"""A song asked for with `/song` in Slack, end to end on loopback: a signed command, the
sandbox upstream, the relay's outbox and a Slack stand-in that records what the channel sees."""

from __future__ import annotations

import dataclasses
import time

from receiver.sandbox import create_sandbox_app
from receiver.sandbox.slack import WEBHOOK_PATH, SlackCatcher
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
from tests.conftest import FAST_SANDBOX
from tests.servers import run_asgi

CONFIG = (
    """
[[handlers]]
name = "disk"
type = "disk"
path = "{{workdir}}/songs"
"""
    + SLACK_TABLE
    + "user_daily_credits = 10\n"
)


def test_a_song_command_is_acked_then_posted_and_answered_in_its_thread(
    start_relay: StartRelay, catcher: SlackCatcher, sandbox: str
) -> None:
    """`/song rainy office blues` is acknowledged within 3 s, makes one task upstream, posts
    "generating… requested by" in the channel and threads the finished song under it."""
    relay = start_relay(CONFIG)
    started = time.monotonic()
    answer = slack_post(relay, command("rainy office blues", "U1", "C0FLOW", "https://x.invalid"))
    took = time.monotonic() - started
    assert 200 == answer.status_code, answer.text
    assert took < ACK_LIMIT_S
    assert {
        "response_type": "ephemeral",
        "text": "On it: “rainy office blues” — 10 credits; the song will appear in this channel.",
    } == answer.json()
    first, reply = wait_for(catcher, "chat.postMessage", 2)
    assert "C0FLOW" == first.body["channel"]
    assert "🎵 Generating “rainy office blues” — requested by <@U1>" == first.body["text"]
    assert "thread_ts" not in first.body
    posted = {body["text"]: ts for (_, ts), body in catcher.messages.items()}
    assert ("C0FLOW", posted[first.body["text"]]) == (
        reply.body["channel"],
        reply.body["thread_ts"],
    )
    [task] = chat_tasks(relay)
    assert {"chat": "slack", "chat.channel": "C0FLOW", "chat.user": "U1"} == task["labels"]
    detail = relay.wait_settled(task["id"])
    [song] = [e for e in detail["events"] if e["kind"] == "song.completed"]
    title = song["clip"]["title"]
    assert f"🎵 “{title}” is ready — requested by <@U1>" == reply.body["text"]
    assert 1 == len(sandbox_tasks(sandbox, "rainy office blues"))


def test_a_spent_budget_refuses_with_its_reset_and_sends_nothing_upstream(
    start_relay: StartRelay, catcher: SlackCatcher, sandbox: str
) -> None:
    """With 10 credits a day, a person's second song is refused, saying when the budget
    resets, and the sandbox never sees it."""
    relay = start_relay(CONFIG)
    form = command("budget song for the ledger", "U2", "C0BUDGET", "https://x.invalid")
    assert slack_post(relay, form).json()["text"].startswith("On it:")
    refused = slack_post(relay, form)
    assert 200 == refused.status_code
    text = refused.json()["text"]
    assert "ephemeral" == refused.json()["response_type"]
    assert text.startswith("You have used 10 of your 10 daily credits; resets at 00:00 UTC (in ")
    wait_for(catcher, "chat.postMessage", 1)
    time.sleep(0.5)  # a second submission, were there one, would have reached the sandbox
    assert 1 == len(sandbox_tasks(sandbox, "budget song for the ledger"))
    assert 1 == len(chat_tasks(relay))


def test_an_upstream_refusal_is_told_through_the_response_url(
    start_relay: StartRelay, slack: tuple[SlackCatcher, str], catcher: SlackCatcher
) -> None:
    """An account out of credits: the command is acknowledged, then the provider's reason
    comes back ephemerally through `response_url`, and nothing is posted in the channel."""
    broke = dataclasses.replace(FAST_SANDBOX, credits=0)
    with run_asgi(create_sandbox_app(broke)) as upstream:
        relay = start_relay(CONFIG, upstream)
        form = command("a song we cannot afford", "U3", "C0BROKE", slack[1] + WEBHOOK_PATH)
        assert slack_post(relay, form).json()["text"].startswith("On it:")
        [told] = wait_for(catcher, "webhook", 1)
    assert "ephemeral" == told.body["response_type"]
    reason = told.body["text"]
    assert reason.startswith("The song was not made: ")
    assert "The remaining credits are not enough" in reason
    assert "\n" not in reason
    assert [] == catcher.sent("chat.postMessage")
    assert WEBHOOK_PATH not in relay.log()


def test_a_bad_signature_is_refused_and_submits_nothing(
    start_relay: StartRelay, sandbox: str
) -> None:
    """A command signed with another secret is 401 and makes no task anywhere."""
    relay = start_relay(CONFIG)
    form = command("forged song of the night", "U4", "C0FORGE", "https://x.invalid")
    answer = slack_post(relay, form, secret="not-the-signing-secret")
    assert (401, "bad_signature") == (answer.status_code, answer.json()["error"])
    assert [] == chat_tasks(relay)
    assert [] == sandbox_tasks(sandbox, "forged song of the night")


def test_a_task_not_asked_for_from_slack_never_reaches_the_slack_app(
    start_relay: StartRelay, catcher: SlackCatcher
) -> None:
    """The app's reply handler takes only tasks labelled `chat = "slack"`: a song submitted
    through the API is made and stored, and Slack hears nothing of it."""
    relay = start_relay(CONFIG)
    task = relay.submit("an ordinary api song")
    relay.wait_settled(task["id"])
    assert [] == catcher.sent()
