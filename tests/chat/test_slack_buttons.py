"""The buttons under a finished song in Slack, end to end on loopback: a signed `/song`, the
sandbox upstream, the relay's outbox and the Slack stand-in; then signed `block_actions` and
`view_submission` payloads built from the buttons the stand-in recorded on the song."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from handlers.chat_buttons import decode
from receiver.sandbox.slack import WEBHOOK_PATH, SlackCatcher, signed_request
from tests.chat.helpers import (
    ACK_LIMIT_S,
    SLACK_SECRET,
    SLACK_TABLE,
    SLACK_TOKEN,
    StartRelay,
    chat_tasks,
    command,
    sandbox_tasks,
    slack_post,
    wait_for,
)
from tests.conftest import Relay

CONFIG = SLACK_TABLE + "user_daily_credits = 20\n"
INTERACTIONS = "/chat/slack/interactions"


@pytest.fixture
def relay(start_relay: StartRelay) -> Relay:
    """A relay with `[chat.slack]` (20 credits a person a day) posting to the stand-in."""
    return start_relay(CONFIG)


def song_buttons(catcher: SlackCatcher, channel: str, count: int) -> list[dict[str, str]]:
    """The buttons (kind → action id) of the first `count` finished songs posted in `channel`,
    waiting for them."""
    deadline = time.monotonic() + 30
    while True:
        found = []
        for sent in catcher.sent("chat.postMessage"):
            if sent.body.get("channel") != channel:
                continue
            for block in sent.body.get("blocks") or []:
                if block.get("type") == "actions":
                    ids = [e["action_id"] for e in block["elements"]]
                    found.append({decode(i).kind: i for i in ids if decode(i)})  # type: ignore[union-attr]
        if len(found) >= count:
            return found[:count]
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(found)} songs with buttons of {count}")
        time.sleep(0.05)


def click_payload(action_id: str, user: str, channel: str, response_url: str) -> dict[str, Any]:
    """What Slack posts when `user` clicks the button `action_id` on a message in `channel`."""
    return {
        "type": "block_actions",
        "user": {"id": user, "username": user.lower()},
        "channel": {"id": channel},
        "container": {"type": "message", "channel_id": channel},
        "trigger_id": f"trigger-{user}-{time.monotonic_ns()}",
        "response_url": response_url,
        "actions": [
            {"type": "button", "action_id": action_id, "value": action_id, "block_id": "b"}
        ],
    }


def interact(
    relay: Relay,
    payload: dict[str, Any],
    *,
    secret: str = SLACK_SECRET,
    retry: int | None = None,
) -> httpx.Response:
    """POST `payload` to the interactions URL as Slack does (signed form field `payload`);
    `retry` adds Slack's `X-Slack-Retry-Num`."""
    body, headers = signed_request(secret, {"payload": json.dumps(payload)})
    if retry is not None:
        headers |= {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"}
    return httpx.post(f"{relay.url}{INTERACTIONS}", content=body, headers=headers, timeout=10)


def told(catcher: SlackCatcher, count: int) -> list[str]:
    """The first `count` ephemeral answers sent through `response_url`."""
    return [r.body["text"] for r in wait_for(catcher, "webhook", count)]


def ask_song(
    relay: Relay, catcher: SlackCatcher, text: str, user: str, channel: str, songs: int = 1
) -> list[dict[str, str]]:
    """`/song <text>` by `user`; the buttons of its finished songs once they are posted."""
    acked = slack_post(relay, command(text, user, channel, "https://x.invalid"))
    assert acked.json()["text"].startswith("On it:"), acked.text
    return song_buttons(catcher, channel, songs)


def acked_fast(answer: httpx.Response, took: float) -> None:
    assert (200, b"") == (answer.status_code, answer.content)
    assert took < ACK_LIMIT_S


def transcript(catcher: SlackCatcher) -> str:
    """What the people in the channel and the clicker saw, one line each (for the report)."""
    lines = []
    for sent in catcher.sent():
        where = sent.body.get("channel", "")
        if sent.method == "webhook":
            lines.append(f"[ephemeral] {sent.body['text']}")
        elif sent.method == "views.open":
            lines.append(f"[modal] {sent.body['view']['title']['text']}")
        elif sent.method == "chat.postMessage":
            thread = " (thread)" if sent.body.get("thread_ts") else ""
            kinds = [
                decode(e["action_id"]).kind  # type: ignore[union-attr]
                for b in sent.body.get("blocks") or []
                if b.get("type") == "actions"
                for e in b["elements"]
            ]
            shown = f"  [{' | '.join(kinds)}]" if kinds else ""
            lines.append(f"[#{where}{thread}] {sent.body['text']}{shown}")
    return "\n".join(lines)


def test_regenerate_makes_one_new_task_and_a_second_click_or_retry_makes_none(
    relay: Relay, catcher: SlackCatcher, sandbox: str, response_url: str
) -> None:
    """Regenerate: acknowledged empty within 3 s, one new task upstream with the same prompt,
    posted in the channel for the clicker; the same click again, and Slack's retry of it,
    are told it was already asked for and reach nothing upstream."""
    prompt = "regenerate me office rain"
    [buttons] = ask_song(relay, catcher, prompt, "U1", "C0REGEN")
    assert ["regenerate", "remix"] == list(buttons)  # a producer song: no Extend
    started = time.monotonic()
    answer = interact(relay, click_payload(buttons["regenerate"], "U2", "C0REGEN", response_url))
    acked_fast(answer, time.monotonic() - started)
    [on_it] = told(catcher, 1)
    assert on_it.startswith("On it: making “")
    assert on_it.endswith("” again — 10 credits; the song will appear in this channel.")
    song_buttons(catcher, "C0REGEN", 2)  # the new song, with its own buttons
    again = interact(relay, click_payload(buttons["regenerate"], "U2", "C0REGEN", response_url))
    retried = interact(
        relay, click_payload(buttons["regenerate"], "U2", "C0REGEN", response_url), retry=1
    )
    assert (200, 200) == (again.status_code, retried.status_code)
    _, first, second = told(catcher, 3)
    for text in (first, second):
        assert text.startswith("That was already asked for (it is ")
        assert text.endswith("); nothing new was submitted.")
    time.sleep(0.5)  # a second submission, were there one, would have reached the sandbox
    assert 2 == len(sandbox_tasks(sandbox, prompt, fields=None))
    tasks = chat_tasks(relay)
    assert 2 == len(tasks)
    assert {"U1", "U2"} == {t["labels"]["chat.user"] for t in tasks}
    print("\n" + transcript(catcher))


def test_two_concurrent_clicks_submit_once(
    relay: Relay, catcher: SlackCatcher, sandbox: str, response_url: str
) -> None:
    """Five clicks of one Regenerate at the same moment: one task upstream, one "On it"."""
    prompt = "concurrent clicks lullaby"
    [buttons] = ask_song(relay, catcher, prompt, "U1", "C0RACE")
    payload = click_payload(buttons["regenerate"], "U3", "C0RACE", response_url)
    with ThreadPoolExecutor(5) as pool:
        answers = list(pool.map(lambda _: interact(relay, payload), range(5)))
    assert [200] * 5 == [a.status_code for a in answers]
    texts = told(catcher, 5)
    assert 1 == sum(t.startswith("On it:") for t in texts), texts
    assert 4 == sum(t.startswith("That was already asked for") for t in texts), texts
    time.sleep(0.5)
    assert 2 == len(sandbox_tasks(sandbox, prompt, fields=None))
    assert 2 == len(chat_tasks(relay))


def test_clicks_on_two_relay_processes_sharing_a_database_submit_once(
    relay: Relay,
    catcher: SlackCatcher,
    sandbox: str,
    response_url: str,
    start_relay: StartRelay,
) -> None:
    """The same click reaching two relay processes at once (one database): one task upstream,
    whichever guard stops the rest (the stored task, or the store's key before any create
    call; `test_actions` forces the latter), and no "not made" for the song being made."""
    second = start_relay(CONFIG, DATABASE_URL=relay.env["DATABASE_URL"])
    prompt = "two processes one click"
    [buttons] = ask_song(relay, catcher, prompt, "U1", "C0TWO")
    payload = click_payload(buttons["regenerate"], "U3", "C0TWO", response_url)
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda i: interact((relay, second)[i % 2], payload), range(6)))
    assert [200] * 6 == [a.status_code for a in answers]
    texts = told(catcher, 6)
    time.sleep(1.0)  # any late "was not made" would be told by now
    assert [] == [t for t in catcher.sent("webhook")[6:]]
    assert not any("not made" in t for t in texts), texts
    assert 2 == len(sandbox_tasks(sandbox, prompt, fields=None))
    assert 2 == len(chat_tasks(relay))
    assert "chat song not submitted" not in relay.log() + second.log()


def test_extend_on_a_sonic_song_makes_one_extend_music_task_from_that_clip(
    relay: Relay, catcher: SlackCatcher, sandbox: str, response_url: str
) -> None:
    """Extend on the first of a sonic task's two songs: one sonic `extend_music` task whose
    `continue_clip_id` is that song and `continue_at` its length, as the provider received it."""
    prompt = "sonic sea shanty about coffee"
    first, _ = ask_song(relay, catcher, f"--sonic {prompt}", "U1", "C0EXTEND", songs=2)
    assert ["regenerate", "extend", "remix"] == list(first)
    clip_id = decode(first["extend"]).clip_id  # type: ignore[union-attr]
    interact(relay, click_payload(first["extend"], "U4", "C0EXTEND", response_url))
    [on_it] = told(catcher, 1)
    assert on_it.startswith("On it: extending “") and "— 15 credits;" in on_it
    interact(relay, click_payload(first["extend"], "U4", "C0EXTEND", response_url))
    assert told(catcher, 2)[1].startswith("That was already asked for")
    [original] = [t for t in chat_tasks(relay) if t["params"]["task_type"] == "create_music"]
    [song] = [
        e
        for e in relay.wait_settled(original["id"])["events"]
        if e["kind"] == "song.completed" and e["clip_id"] == clip_id
    ]
    [extend] = [t for t in chat_tasks(relay) if t["params"]["task_type"] == "extend_music"]
    assert "sonic" == extend["family"]
    assert clip_id == extend["params"]["continue_clip_id"]
    # (the API shows every `*_at` number as a time, params too: the provider's view below)
    done = relay.wait_settled(extend["id"])
    upstream = httpx.get(
        f"{sandbox}/api/v1/sonic/task/{done['upstream_id']}",
        headers={"Authorization": "Bearer test-key"},
        timeout=5,
    ).json()
    for clip in upstream["data"]:
        assert ("extend_music", clip_id) == (clip["task_type"], clip["continue_clip_id"])
        assert float(song["clip"]["duration"]) == clip["continue_at"]
    time.sleep(0.3)
    assert 2 == len(sandbox_tasks(sandbox, prompt, fields=None))  # the song and its one extension
    assert 2 == len(chat_tasks(relay))


def test_remix_opens_a_modal_then_sings_the_same_lyrics_in_the_new_style(
    relay: Relay, catcher: SlackCatcher, sandbox: str, response_url: str
) -> None:
    """Remix: `views.open` with the click's trigger_id; an empty style keeps the modal open with
    the field's error (nothing submitted); a style makes one task with the same lyrics."""
    prompt = "remix this tram ride song"
    [buttons] = ask_song(relay, catcher, prompt, "U1", "C0REMIX")
    clicked = click_payload(buttons["remix"], "U5", "C0REMIX", response_url)
    acked_fast(interact(relay, clicked), 0)
    [opened] = wait_for(catcher, "views.open", 1)
    assert clicked["trigger_id"] == opened.body["trigger_id"]
    view = opened.body["view"]
    assert ("modal", "song.remix") == (view["type"], view["callback_id"])
    [field] = view["blocks"]
    assert ("style", "style") == (field["block_id"], field["element"]["action_id"])

    def submit(style: str) -> httpx.Response:
        return interact(
            relay,
            {
                "type": "view_submission",
                "user": {"id": "U5"},
                "view": {
                    "id": "V1",
                    "callback_id": view["callback_id"],
                    "private_metadata": view["private_metadata"],
                    "state": {"values": {"style": {"style": {"value": style}}}},
                },
            },
        )

    empty = submit("   ")
    assert 200 == empty.status_code
    assert "errors" == empty.json()["response_action"]
    assert "Say which style" in empty.json()["errors"]["style"]
    assert 1 == len(chat_tasks(relay))
    chosen = submit("Bossa nova, soft vocals")
    assert (200, b"") == (chosen.status_code, chosen.content)
    [on_it] = told(catcher, 1)
    assert on_it.startswith("On it: remixing “") and "— 10 credits;" in on_it
    [original] = sandbox_tasks(sandbox, prompt, fields=None)
    deadline = time.monotonic() + 10
    while not (remixed := sandbox_tasks(sandbox, "Bossa nova, soft vocals", fields=None)):
        assert time.monotonic() < deadline, "the remix never reached the sandbox"
        time.sleep(0.05)
    [remix] = remixed
    assert original["prompt"]["lyrics"] == remix["prompt"]["lyrics"]
    assert original["prompt"]["title"] == remix["prompt"]["title"]
    assert 2 == len(chat_tasks(relay))


def test_a_spent_budget_refuses_a_button_with_no_upstream_call(
    relay: Relay, catcher: SlackCatcher, sandbox: str, response_url: str
) -> None:
    """20 credits a day: after a sonic song (15) the asker's own Regenerate (15 more) is
    refused, saying when the budget resets, and the sandbox never hears of it."""
    prompt = "budget bound sonic waltz"
    first, _ = ask_song(relay, catcher, f"--sonic {prompt}", "U6", "C0BUDGET", songs=2)
    interact(relay, click_payload(first["regenerate"], "U6", "C0BUDGET", response_url))
    [refused] = told(catcher, 1)
    assert refused.startswith(
        "This costs 15 credits and you have 5 of your 20 daily credits left; resets at 00:00 UTC"
    )
    time.sleep(0.5)
    assert 1 == len(sandbox_tasks(sandbox, prompt, fields=None))
    assert 1 == len(chat_tasks(relay))


def test_a_badly_signed_click_is_401_and_submits_nothing(
    relay: Relay, catcher: SlackCatcher, sandbox: str, response_url: str
) -> None:
    """A real button's click signed with another secret, or not signed: 401, no task."""
    prompt = "forged click nocturne"
    [buttons] = ask_song(relay, catcher, prompt, "U1", "C0FORGE")
    payload = click_payload(buttons["regenerate"], "U7", "C0FORGE", response_url)
    forged = interact(relay, payload, secret="not-the-signing-secret")
    unsigned = httpx.post(
        f"{relay.url}{INTERACTIONS}", data={"payload": json.dumps(payload)}, timeout=5
    )
    for answer in (forged, unsigned):
        assert (401, "bad_signature") == (answer.status_code, answer.json()["error"])
    time.sleep(0.5)
    assert [] == catcher.sent("webhook")
    assert 1 == len(sandbox_tasks(sandbox, prompt, fields=None))
    assert 1 == len(chat_tasks(relay))


def test_a_payload_that_is_not_json_is_400(relay: Relay) -> None:
    body, headers = signed_request(SLACK_SECRET, {"payload": "{not json"})
    answer = httpx.post(f"{relay.url}{INTERACTIONS}", content=body, headers=headers, timeout=5)
    assert (400, "bad_payload") == (answer.status_code, answer.json()["error"])


def test_no_secret_reaches_the_log(relay: Relay, catcher: SlackCatcher, response_url: str) -> None:
    """A click, a modal and its submission: the token, the signing secret and the
    response_url appear nowhere in the relay's log."""
    [buttons] = ask_song(relay, catcher, "quiet log ballad", "U1", "C0LOG")
    interact(relay, click_payload(buttons["remix"], "U8", "C0LOG", response_url))
    wait_for(catcher, "views.open", 1)
    interact(relay, click_payload(buttons["regenerate"], "U8", "C0LOG", response_url))
    told(catcher, 1)
    log = relay.log()
    for secret in (SLACK_TOKEN, SLACK_SECRET, WEBHOOK_PATH):
        assert secret not in log
    assert "chat button" in log
