"""`/song status` and `/song lyrics` in Slack, end to end on loopback: signed commands to a real
relay process, the sandbox upstream, and the Slack stand-in as the command's `response_url`."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx

from receiver.chat.lyrics import lyrics_message
from receiver.chat.status import NOTHING
from receiver.models import LyricsResult
from receiver.sandbox.slack import WEBHOOK_PATH, SlackCatcher
from receiver.sandbox.words import derive_title, generate_lyrics
from tests.chat.helpers import (
    SLACK_TABLE,
    StartRelay,
    chat_tasks,
    command,
    sandbox_tasks,
    slack_post,
    wait_for,
)

CONFIG = SLACK_TABLE + "{extra}\n"


def lyrics_tasks(upstream: str, idea: str) -> list[dict[str, Any]]:
    """The sandbox's lyrics tasks written for `idea`."""
    tasks = httpx.get(f"{upstream}/sandbox/tasks", timeout=5).json()
    return [t for t in tasks if t.get("family") == "lyrics" and t["prompt"]["prompt"] == idea]


def told(catcher: SlackCatcher, count: int = 1) -> list[str]:
    """The texts told through response_url (the stand-in's webhook), waiting for `count`."""
    found = wait_for(catcher, "webhook", count)
    assert all(r.body["response_type"] == "ephemeral" for r in found)
    return [str(r.body["text"]) for r in found]


def test_status_lists_only_the_askers_unfinished_songs(
    start_relay: StartRelay, slack: tuple[SlackCatcher, str], catcher: SlackCatcher
) -> None:
    """U1 has one song that never finishes and one that did; U2 has one of their own. U1's
    status lists exactly the unfinished one, U2's lists theirs, and someone who asked nothing
    hears that nothing is being made."""
    relay = start_relay(CONFIG)
    url = slack[1] + WEBHOOK_PATH
    for text, user, channel in (
        ("a lighthouse waltz #never", "U1", "C0ONE"),
        ("harbour blues finished", "U1", "C0TWO"),
        ("someone else's tune #never", "U2", "C0ONE"),
    ):
        assert (
            slack_post(relay, command(text, user, channel, url)).json()["text"].startswith("On it:")
        )
    deadline = time.monotonic() + 15
    while len(chat_tasks(relay)) < 3:
        assert time.monotonic() < deadline, chat_tasks(relay)
        time.sleep(0.05)
    [done] = [t for t in chat_tasks(relay) if t["prompt"] == "harbour blues finished"]
    relay.wait_settled(done["id"])

    mine = slack_post(relay, command("status", "U1", "C0THREE", url)).json()
    assert "ephemeral" == mine["response_type"]
    assert re.fullmatch(
        r"• “a lighthouse waltz #never” — (being sent|queued|running), asked just now",
        mine["text"],
    ), mine["text"]
    theirs = slack_post(relay, command("status", "U2", "C0ONE", url)).json()["text"]
    assert theirs.startswith("• “someone else's tune #never” — "), theirs
    assert "\n" not in theirs
    assert NOTHING == slack_post(relay, command("status", "U9", "C0ONE", url)).json()["text"]
    assert 3 == len(chat_tasks(relay))  # status submits nothing


def test_status_meets_the_allow_lists(
    start_relay: StartRelay, slack: tuple[SlackCatcher, str]
) -> None:
    """Status is free but not open: outside the allowed channels it is refused like a song."""
    relay = start_relay(CONFIG, extra='allowed_channels = ["C0OK"]')
    url = slack[1] + WEBHOOK_PATH
    refused = slack_post(relay, command("status", "U1", "C0ELSEWHERE", url)).json()["text"]
    assert refused.startswith("Songs can't be made in this channel")
    allowed = slack_post(relay, command("status", "U1", "C0OK", url)).json()["text"]
    assert NOTHING == allowed


def test_lyrics_are_written_once_and_told_through_the_response_url(
    start_relay: StartRelay,
    slack: tuple[SlackCatcher, str],
    catcher: SlackCatcher,
    sandbox: str,
) -> None:
    """`/song lyrics <idea>` is acknowledged with its price, makes one lyrics call upstream
    and no task, and the written lyrics come back ephemerally; nothing is posted in the
    channel."""
    relay = start_relay(CONFIG)
    idea = "a lullaby for a drowsy owl"
    form = command(f"lyrics {idea}", "U1", "C0LYRICS", slack[1] + WEBHOOK_PATH)
    answer = slack_post(relay, form)
    assert 200 == answer.status_code
    assert {
        "response_type": "ephemeral",
        "text": f"Writing lyrics for “{idea}” — 1 credit; they will appear here.",
    } == answer.json()
    [text] = told(catcher)
    written = generate_lyrics(idea, instrumental=False)
    expected = lyrics_message(
        idea, [LyricsResult(title=derive_title(idea, written), lyrics=written)]
    )
    assert expected == text
    assert text.startswith("📝 “A Lullaby For A Drowsy”\n\n[Verse]\n")
    assert 1 == len(lyrics_tasks(sandbox, idea))
    assert [] == chat_tasks(relay)
    assert [] == catcher.sent("chat.postMessage")


def test_a_failed_lyrics_task_is_told_as_one_line(
    start_relay: StartRelay, slack: tuple[SlackCatcher, str], catcher: SlackCatcher
) -> None:
    """The provider's failure comes back as one line with its reason, not a trace."""
    relay = start_relay(CONFIG)
    form = command("lyrics a song that fails #fail", "U1", "C0FAIL", slack[1] + WEBHOOK_PATH)
    assert slack_post(relay, form).json()["text"].startswith("Writing lyrics for")
    [text] = told(catcher)
    assert text.startswith("No lyrics were written: the lyrics task ")
    assert "lyrics generation failed" in text
    assert "\n" not in text
    assert "Traceback" not in relay.log()


def test_a_spent_budget_refuses_lyrics_with_no_upstream_call(
    start_relay: StartRelay,
    slack: tuple[SlackCatcher, str],
    catcher: SlackCatcher,
    sandbox: str,
) -> None:
    """With 10 credits a day, a song spends them all: lyrics (1 credit) are refused saying
    when the budget resets, and the sandbox never sees the lyrics request."""
    relay = start_relay(CONFIG, extra="user_daily_credits = 10")
    url = slack[1] + WEBHOOK_PATH
    song = command("a song that spends the day", "U5", "C0SPEND", url)
    assert slack_post(relay, song).json()["text"].startswith("On it:")
    idea = "lyrics past the budget"
    refused = slack_post(relay, command(f"lyrics {idea}", "U5", "C0SPEND", url)).json()
    assert refused["text"].startswith(
        "You have used 10 of your 10 daily credits; resets at 00:00 UTC (in "
    ), refused
    time.sleep(0.5)  # a lyrics job, were one started, would have called the sandbox by now
    assert [] == lyrics_tasks(sandbox, idea)
    assert [] == catcher.sent("webhook")


def test_lyrics_spend_still_counts_after_the_job_has_ended(
    start_relay: StartRelay,
    slack: tuple[SlackCatcher, str],
    catcher: SlackCatcher,
    sandbox: str,
) -> None:
    """Lyrics make no task, so once their job is over only the relay's memory of them is
    left: with 10 credits a day, lyrics (1) then a song (10) is refused, the refusal counting
    the lyrics, and the song is never sent upstream."""
    relay = start_relay(CONFIG, extra="user_daily_credits = 10")
    url = slack[1] + WEBHOOK_PATH
    lyrics = command("lyrics a song about budgets", "U6", "C0KEEP", url)
    assert slack_post(relay, lyrics).json()["text"].startswith("Writing lyrics for")
    told(catcher)
    time.sleep(0.5)  # the job ends right after it has told the lyrics
    prompt = "the song one credit too many"
    refused = slack_post(relay, command(prompt, "U6", "C0KEEP", url)).json()["text"]
    assert refused.startswith(
        "This costs 10 credits and you have 9 of your 10 daily credits left; resets at "
    ), refused
    assert [] == sandbox_tasks(sandbox, prompt)
    # another person's budget is their own: the same song from U7 goes ahead
    assert (
        slack_post(relay, command(prompt, "U7", "C0KEEP", url)).json()["text"].startswith("On it:")
    )
