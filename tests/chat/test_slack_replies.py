"""A chat reply is an ordinary outbox delivery: a failed one is retried (honouring Retry-After),
a dead one can be replayed from the admin API, and a whole Slack conversation leaves no secret
in the relay's log. Real servers on loopback: the relay process, the sandbox, the stand-in."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import httpx
import pytest

from receiver.sandbox.slack import WEBHOOK_PATH, Recorded, SlackCatcher
from tests.chat.helpers import (
    SLACK_SECRET,
    SLACK_TABLE,
    SLACK_TOKEN,
    StartRelay,
    ask,
    command,
    slack_post,
    wait_for,
)
from tests.conftest import Relay

CONFIG = SLACK_TABLE + "upload_audio = true\n"


@pytest.fixture
def relay(start_relay: StartRelay) -> Relay:
    """A relay with `[chat.slack]` (uploads on) posting to the stand-in, logging at debug."""
    return start_relay(CONFIG, RELAY_LOG_LEVEL="debug")


def is_song_reply(recorded: Recorded) -> bool:
    """The finished song's post: a `chat.postMessage` into a thread."""
    return recorded.method == "chat.postMessage" and bool(recorded.body.get("thread_ts"))


def reply_delivery(relay: Relay, task_id: str, state: str, timeout: float = 30) -> dict[str, Any]:
    """The chat-slack delivery of the task's song once it is in `state` (with `attempt_log`)."""
    deadline = time.monotonic() + timeout
    while True:
        task = relay.task(task_id)
        found = [
            d
            for e in task["events"]
            if e["kind"] == "song.completed"
            for d in e["deliveries"]
            if d["handler"] == "chat-slack"
        ]
        if found and found[0]["state"] == state:
            return dict(found[0])
        assert time.monotonic() < deadline, f"no {state} reply delivery: {found}"
        time.sleep(0.05)


def replies_in(catcher: SlackCatcher, channel: str) -> list[dict[str, Any]]:
    """The thread replies a person sees in `channel` (refused posts never became messages)."""
    return [
        body
        for (where, _), body in catcher.messages.items()
        if where == channel and body.get("thread_ts")
    ]


@pytest.mark.parametrize(
    ("status", "retry_after"), [(500, None), (429, 2)], ids=["server-error", "rate-limited"]
)
def test_a_failed_song_reply_is_retried_and_arrives_once_in_its_thread(
    relay: Relay,
    slack: tuple[SlackCatcher, str],
    catcher: SlackCatcher,
    status: int,
    retry_after: int | None,
) -> None:
    """Slack answers the song's reply with a 500 (or a 429 asking for 2 s): the outbox tries
    again (not sooner than asked) and the song appears once, in the thread of "generating…"."""
    catcher.fail_next(1, status, retry_after=retry_after, only=is_song_reply)
    channel = f"C0RETRY{status}"
    task_id = ask(relay, slack, f"a song Slack refuses once ({status})", channel)
    delivery = reply_delivery(relay, task_id, "succeeded")
    first, second = delivery["attempt_log"]
    assert ("failed", "succeeded") == (first["outcome"], second["outcome"])
    assert f"HTTP {status}" in (first["error"] or ""), first
    if retry_after is not None:
        waited = _seconds(second["started_at"]) - _seconds(first["finished_at"])
        assert waited >= retry_after - 0.05, (first, second)
    [reply] = replies_in(catcher, channel)
    [generating] = [
        ts
        for (where, ts), body in catcher.messages.items()
        if where == channel and not body.get("thread_ts")
    ]
    assert generating == reply["thread_ts"]
    assert 2 == len([r for r in catcher.sent("chat.postMessage") if is_song_reply(r)])


def test_a_dead_song_reply_can_be_replayed_and_then_arrives(
    relay: Relay, slack: tuple[SlackCatcher, str], catcher: SlackCatcher
) -> None:
    """The bot is not in the channel yet (`not_in_channel`, which no retry can fix): the reply
    is dead-lettered at once. Once that is fixed, a replay through the admin API posts it."""
    catcher.fail_next(1, 200, "not_in_channel", only=is_song_reply)
    channel = "C0REPLAY"
    task_id = ask(relay, slack, "a song for a channel without the bot", channel)
    dead = reply_delivery(relay, task_id, "dead")
    assert "not_in_channel" in (dead["last_error"] or "")
    assert [] == replies_in(catcher, channel)
    replay = httpx.post(
        f"{relay.url}/api/deliveries/{dead['id']}/replay", headers=relay.admin, timeout=10
    )
    assert (202, {"replayed": 1}) == (replay.status_code, replay.json())
    done = reply_delivery(relay, task_id, "succeeded")
    [reply] = replies_in(catcher, channel)
    assert done["result"]["thread_ts"] == reply["thread_ts"]
    assert reply["text"].endswith("is ready — requested by <@U1>")


def test_no_secret_reaches_the_log_after_a_whole_conversation(
    relay: Relay, slack: tuple[SlackCatcher, str], catcher: SlackCatcher
) -> None:
    """Help, credits, status, lyrics and a song with its audio uploaded, at debug level: the
    log holds neither the signing secret, nor the bot token, nor the response_url (a
    capability to post as the app), nor an upload URL."""
    url = slack[1] + WEBHOOK_PATH
    for text in ("help", "credits", "status", "lyrics a quiet secret"):
        assert 200 == slack_post(relay, command(text, "U1", "C0LOG", url)).status_code
    task_id = ask(relay, slack, "a song that keeps secrets", "C0LOG")
    reply_delivery(relay, task_id, "succeeded")
    wait_for(catcher, "webhook", 1)  # the lyrics, told through the response_url
    assert catcher.uploads, "the audio was uploaded"
    log = relay.log()
    assert "chat command" in log  # the log is being written, at debug
    for secret in (SLACK_SECRET, SLACK_TOKEN, url, WEBHOOK_PATH, "/upload/F"):
        assert secret not in log, secret


def _seconds(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()
