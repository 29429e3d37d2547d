"""A song asked for with `/song` in Discord, end to end on loopback: an interaction signed with
a real Ed25519 key, the sandbox upstream, the relay's outbox and a Discord stand-in that
records what the channel sees (the interaction webhook and the bot's channel messages)."""

from __future__ import annotations

import dataclasses
import json
import secrets
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
import pytest
from nacl.signing import SigningKey

from receiver.chat.status import NOTHING
from receiver.sandbox import create_sandbox_app
from tests.chat.helpers import (
    ACK_LIMIT_S,
    DISCORD_TOKEN,
    StartRelay,
    chat_tasks,
    discord_post,
    sandbox_tasks,
)
from tests.conftest import FAST_SANDBOX, Relay
from tests.dashboard.test_dashboard import Admin
from tests.discord_catcher import DiscordCatcher, Recorded
from tests.servers import run_asgi

USER, CHANNEL = "80351110224678912", "1090000000000000001"

CONFIG = """
[chat.discord]
public_key = "{key}"
application_id = "{app}"
bot_token = "${{DISCORD_BOT_TOKEN}}"
api_base_url = "{discord}"
{extra}
"""


@pytest.fixture
def relay_env() -> dict[str, str]:
    """Every relay here logs at debug: the leak checks read everything it says."""
    return {"RELAY_LOG_LEVEL": "debug"}


def new_token() -> str:
    """An interaction token as long as Discord's, marked so a leak is easy to find."""
    return "itok-LEAKCHECK-" + secrets.token_urlsafe(96)


def interaction(
    text: str,
    token: str,
    *,
    user: str = USER,
    channel: str = CHANNEL,
    roles: tuple[str, ...] = (),
    application_id: str = "1100000000000000001",
) -> dict[str, Any]:
    """The interaction Discord posts for `/song text:<text>` from a guild member."""
    return {
        "type": 2,
        "id": str(1400000000000000000 + secrets.randbelow(10**9)),
        "application_id": application_id,
        "token": token,
        "version": 1,
        "guild_id": "1080000000000000001",
        "channel_id": channel,
        "member": {"user": {"id": user, "username": "mia"}, "roles": list(roles)},
        "data": {
            "id": "1200000000000000000",
            "name": "song",
            "type": 1,
            "options": [{"name": "text", "type": 3, "value": text}],
        },
    }


def hook_requests(catcher: DiscordCatcher, token: str) -> list[Recorded]:
    """The interaction webhook requests for `token`, in order."""
    return [r for r in catcher.sent() if f"/{token}" in r.path]


def wait_until(check: Callable[[], Any], what: str, timeout: float = 30) -> Any:
    """`check()` once it is truthy, or fail saying `what` did not happen."""
    deadline = time.monotonic() + timeout
    while not (found := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not in {timeout} s")
        time.sleep(0.05)
    return found


def song_shown(catcher: DiscordCatcher, token: str) -> dict[str, Any]:
    """The original response once it shows a finished song."""

    def done() -> dict[str, Any] | None:
        found = catcher.original(token)
        return found if found and "is ready" in str(found.get("content")) else None

    return dict(wait_until(done, "the song in the original response"))


ASKED = ("sound", "gpt_description_prompt")
"""The prompt fields a song is asked with: producer's `sound`, sonic's description."""


def transcript(text: str, ack: dict[str, Any], took: float, catcher: DiscordCatcher) -> str:
    """The conversation as a person (and the stand-in) saw it, for the closing note."""
    lines = [f"> /song text:{text}", f"< {json.dumps(ack)}  ({took * 1000:.0f} ms)"]
    for sent in catcher.sent():
        path = sent.path
        for token in {t for t in catcher.originals}:
            path = path.replace(token, "<interaction token>")
        body = sent.body or {}
        shown = {k: body[k] for k in ("content", "embeds", "components") if body.get(k)}
        files = [f"{f.filename} ({len(f.data)} bytes)" for f in sent.files]
        lines.append(f"{sent.method} {path} {json.dumps(shown, ensure_ascii=False)}")
        lines += [f"    + file {name}" for name in files]
    return "\n".join(lines)


def test_a_song_command_is_deferred_then_the_original_becomes_the_song(
    start_relay: StartRelay, discord_catcher: DiscordCatcher, sandbox: str
) -> None:
    """`/song text:rainy guild hall blues` is answered with a deferred response within 3 s, makes
    one task upstream, and the original response is edited into "Generating… requested by"
    and then into the finished song (embed, buttons, a ping for the requester only)."""
    relay = start_relay(CONFIG)
    token = new_token()
    started = time.monotonic()
    answer = discord_post(relay, interaction("rainy guild hall blues", token))
    took = time.monotonic() - started
    assert (200, {"type": 5}) == (answer.status_code, answer.json())
    assert took < ACK_LIMIT_S
    shown = song_shown(discord_catcher, token)
    generating, *_, last = [r for r in hook_requests(discord_catcher, token) if r.method == "PATCH"]
    assert (
        "🎵 Generating “rainy guild hall blues” — requested by <@80351110224678912>"
        == (generating.body["content"])
    )
    [task] = chat_tasks(relay, "discord")
    assert {
        "chat": "discord",
        "chat.channel": CHANNEL,
        "chat.user": USER,
    }.items() <= task["labels"].items()
    detail = relay.wait_settled(task["id"])
    [song] = [e for e in detail["events"] if e["kind"] == "song.completed"]
    title = song["clip"]["title"]
    assert shown["content"].endswith("is ready — requested by <@80351110224678912>")
    assert {"parse": [], "users": [USER]} == shown["allowed_mentions"]
    [embed] = shown["embeds"]
    assert title.split()[0] in embed["title"]
    assert "Requested by" in [field["name"] for field in embed["fields"]]
    [row] = shown["components"]
    assert ["🔁 Regenerate"] == [b["label"] for b in row["components"]][:1]
    assert all(b["custom_id"].startswith("song:") for b in row["components"])
    assert last.path.endswith("/messages/@original")
    assert 1 == len(sandbox_tasks(sandbox, "rainy guild hall blues", ASKED))
    assert [] == discord_catcher.sent(f"/channels/{CHANNEL}/messages")
    print("\n" + transcript("rainy guild hall blues", answer.json(), took, discord_catcher))


def test_credits_status_and_lyrics_answer_the_asker_alone(
    start_relay: StartRelay, discord_catcher: DiscordCatcher
) -> None:
    """`credits` and `status` are ephemeral messages at once; `lyrics <idea>` is an ephemeral
    deferred answer that the written lyrics replace. No task is made for any of them."""
    relay = start_relay(CONFIG)
    credits = discord_post(relay, interaction("credits", new_token())).json()
    assert (4, 64) == (credits["type"], credits["data"]["flags"])
    assert credits["data"]["content"].startswith("Credits left: ")
    status = discord_post(relay, interaction("status", new_token())).json()
    assert (4, NOTHING) == (status["type"], status["data"]["content"])
    token = new_token()
    lyrics = discord_post(relay, interaction("lyrics a lullaby for a sleepy cat", token)).json()
    assert {"type": 5, "data": {"flags": 64}} == lyrics

    def written() -> dict[str, Any] | None:
        found = discord_catcher.original(token)
        return found if found and found.get("content") else None

    said = wait_until(written, "the lyrics in the original response")["content"]
    assert said.startswith("📝 “")
    assert "&amp;" not in said and "&lt;" not in said  # Slack's escaping is undone for Discord
    assert [] == chat_tasks(relay, "discord")


def test_an_upstream_refusal_edits_the_original_with_the_reason(
    start_relay: StartRelay, discord_catcher: DiscordCatcher
) -> None:
    """An account out of credits: the command is deferred, then the provider's reason replaces
    the original response ("thinking…"); nothing else is posted."""
    broke = dataclasses.replace(FAST_SANDBOX, credits=0)
    with run_asgi(create_sandbox_app(broke)) as upstream:
        relay = start_relay(CONFIG, upstream)
        token = new_token()
        assert {"type": 5} == discord_post(
            relay, interaction("a song we cannot afford", token)
        ).json()

        def told() -> dict[str, Any] | None:
            found = discord_catcher.original(token)
            return found if found and found.get("content") else None

        original = wait_until(told, "the refusal in the original response")
    reason = original["content"]
    assert reason.startswith("The song was not made: ")
    assert "The remaining credits are not enough" in reason
    assert {"parse": []} == original["allowed_mentions"]
    assert [] == discord_catcher.sent(f"/channels/{CHANNEL}/messages")
    assert token not in relay.log()


def test_a_song_that_fails_upstream_shows_the_reason_in_the_original(
    start_relay: StartRelay, discord_catcher: DiscordCatcher
) -> None:
    """The provider takes the song and then fails it (the sandbox's `#fail`): the original
    response, which said "generating…", now says it failed and why, naming the requester."""
    relay = start_relay(CONFIG)
    token = new_token()
    assert {"type": 5} == discord_post(relay, interaction("a doomed ballad #fail", token)).json()
    [task] = wait_until(lambda: chat_tasks(relay, "discord"), "the task")
    detail = relay.wait_settled(task["id"])
    [failed] = [e for e in detail["events"] if e["kind"] == "song.failed"]
    shown = wait_until(
        lambda: (
            "failed" in str((discord_catcher.original(token) or {}).get("content"))
            and discord_catcher
        ),
        "the failure in the original response",
    ).original(token)
    assert shown["content"].startswith("⚠️ “")
    assert "failed — requested by <@80351110224678912>: " in shown["content"]
    assert shown["content"].endswith(": generation failed: the prompt carries the #fail marker")
    assert "#fail" in str(failed)  # the provider's own reason, as the relay stored it
    assert ([], []) == (shown["embeds"], shown["components"])


def test_sonic_sends_the_second_song_as_a_follow_up(
    start_relay: StartRelay, discord_catcher: DiscordCatcher
) -> None:
    """`--sonic` makes two songs: the first takes the original response, the second arrives
    as one follow-up through the interaction webhook."""
    relay = start_relay(CONFIG)
    token = new_token()
    assert {"type": 5} == discord_post(relay, interaction("--sonic two sea shanties", token)).json()
    [task] = wait_until(lambda: chat_tasks(relay, "discord"), "the task")
    detail = relay.wait_settled(task["id"])
    clips = {e["clip_id"] for e in detail["events"] if e["kind"] == "song.completed"}
    assert 2 == len(clips)
    original = song_shown(discord_catcher, token)
    followups = wait_until(
        lambda: [r for r in hook_requests(discord_catcher, token) if r.method == "POST"],
        "a follow-up",
    )
    [followup] = followups
    assert "is ready" in followup.body["content"]
    ids = {
        b["custom_id"].rsplit(":", 1)[-1]
        for message in (original, followup.body)
        for row in message["components"]
        for b in row["components"]
    }
    assert clips == ids  # each song's buttons name its own clip
    assert any(b["label"] == "⏩ Extend" for b in original["components"][0]["components"])


def test_an_expired_token_falls_back_to_a_channel_message_with_the_bot_token(
    start_relay: StartRelay, discord_catcher: DiscordCatcher
) -> None:
    """Discord forgot the interaction token (404 Unknown Webhook): "generating…" and then the
    song go to the channel with the bot token instead, mentioning the requester."""
    relay = start_relay(CONFIG)
    token = new_token()
    discord_catcher.expire(token)
    assert {"type": 5} == discord_post(relay, interaction("a song after the token", token)).json()

    def in_channel() -> dict[str, Any] | None:
        found = [
            m
            for m in discord_catcher.messages.values()
            if m.get("channel_id") == CHANNEL and "is ready" in str(m.get("content"))
        ]
        return found[0] if found else None

    message = wait_until(in_channel, "the song in the channel")
    assert message["content"].endswith("is ready — requested by <@80351110224678912>")
    assert {"parse": [], "users": [USER]} == message["allowed_mentions"]
    channel = [r for r in discord_catcher.sent() if r.path.startswith("/channels/")]
    assert ["POST", "PATCH"] == [r.method for r in channel]  # "generating…", then the song
    assert {f"Bot {DISCORD_TOKEN}"} == {r.headers["authorization"] for r in channel}
    assert hook_requests(discord_catcher, token), "the webhook was tried first"
    assert discord_catcher.original(token) is None


def test_a_429_is_retried_after_its_retry_after(
    start_relay: StartRelay, discord_catcher: DiscordCatcher
) -> None:
    """Discord rate-limits the song's edit (429, retry after 2 s): the outbox tries again not
    sooner than asked, and the song is shown once."""
    relay = start_relay(CONFIG)
    token = new_token()

    def is_song(recorded: Recorded) -> bool:
        return "is ready" in str((recorded.body or {}).get("content"))

    discord_catcher.fail_next(1, 429, retry_after=2, only=is_song)
    assert {"type": 5} == discord_post(
        relay, interaction("a song Discord slows down", token)
    ).json()
    song_shown(discord_catcher, token)
    [task] = chat_tasks(relay, "discord")

    def delivery() -> dict[str, Any] | None:
        found = [
            d
            for e in relay.task(task["id"])["events"]
            if e["kind"] == "song.completed"
            for d in e["deliveries"]
            if d["handler"] == "chat-discord" and d["state"] == "succeeded"
        ]
        return found[0] if found else None

    first, second = wait_until(delivery, "the song's delivery")["attempt_log"]
    assert ("failed", "succeeded") == (first["outcome"], second["outcome"])
    assert "HTTP 429" in first["error"] and "retry after 2 s" in first["error"]
    waited = _seconds(second["started_at"]) - _seconds(first["finished_at"])
    assert waited >= 2 - 0.05
    assert 2 == len([r for r in hook_requests(discord_catcher, token) if is_song(r)])


def test_a_role_allow_list_refuses_with_no_upstream_call(
    start_relay: StartRelay, discord_catcher: DiscordCatcher, sandbox: str
) -> None:
    """With `allowed_roles`, a member without one of them gets an ephemeral refusal saying
    why; nothing reaches the sandbox or the stand-in. A member with the role is deferred."""
    relay = start_relay(CONFIG, extra='allowed_roles = ["1070000000000000001"]')
    refused = discord_post(relay, interaction("a song without the role", new_token(), roles=("9",)))
    assert 200 == refused.status_code
    body = refused.json()
    assert (4, 64) == (body["type"], body["data"]["flags"])
    assert "role" in body["data"]["content"]
    allowed = interaction("a song with the role", new_token(), roles=("1070000000000000001",))
    assert {"type": 5} == discord_post(relay, allowed).json()
    wait_until(lambda: chat_tasks(relay, "discord"), "the allowed song's task")
    time.sleep(0.3)  # a refused submission, were there one, would have reached the sandbox
    assert [] == sandbox_tasks(sandbox, "a song without the role", ASKED)
    assert 1 == len(chat_tasks(relay, "discord"))


@pytest.mark.parametrize(
    ("case", "kwargs"),
    [
        ("another key", {"key": SigningKey.generate()}),
        ("missing headers", {"headers": {}}),
        ("stale, correctly signed", {"age_s": 360}),
    ],
)
def test_an_unsigned_or_stale_command_is_refused_and_submits_nothing(
    start_relay: StartRelay,
    discord_catcher: DiscordCatcher,
    sandbox: str,
    case: str,
    kwargs: dict[str, Any],
) -> None:
    """A command signed with another key, unsigned, or signed six minutes ago (a replay of a
    recorded one) is 401 `bad_signature`: no task in the relay or the sandbox."""
    relay = start_relay(CONFIG)
    prompt = f"forged song of the night ({case})"
    answer = discord_post(relay, interaction(prompt, new_token()), **kwargs)
    assert (401, "bad_signature") == (answer.status_code, answer.json()["error"]), case
    time.sleep(0.2)
    assert [] == chat_tasks(relay, "discord")
    assert [] == sandbox_tasks(sandbox, prompt, ASKED)
    assert [] == discord_catcher.sent()


def test_the_interaction_token_never_shows_in_logs_dashboard_or_api(
    start_relay: StartRelay, discord_catcher: DiscordCatcher
) -> None:
    """After a whole conversation (help, credits, status, a song with its audio attached) at
    debug level, the interaction token is in no log line, no API answer and no dashboard
    page, though the reply handler used it; nor is the bot token."""
    relay = start_relay(CONFIG, extra="upload_audio = true")
    for text in ("help", "credits", "status"):
        assert 4 == discord_post(relay, interaction(text, new_token())).json()["type"]
    token = new_token()
    assert {"type": 5} == discord_post(
        relay, interaction("a song that keeps secrets", token)
    ).json()
    song_shown(discord_catcher, token)
    [task] = chat_tasks(relay, "discord")
    detail = relay.wait_settled(task["id"])
    attached = [r for r in hook_requests(discord_catcher, token) if r.files]
    assert attached and attached[-1].files[0].field == "files[0]", "the audio was attached"
    assert attached[-1].body["attachments"][0]["filename"].endswith(".wav")
    api = httpx.get(f"{relay.url}/api/tasks/{task['id']}", headers=relay.admin, timeout=10)
    listing = httpx.get(f"{relay.url}/api/tasks", headers=relay.admin, timeout=10)
    admin = Admin(relay).login()
    try:
        pages = [admin.http.get(f"/admin/tasks/{task['id']}").text, admin.http.get("/admin").text]
    finally:
        admin.http.close()
    assert "chat.interaction_token" in api.text  # the label is there, its value sealed
    log = relay.log()
    assert "chat command" in log
    for where, text in [
        ("api", api.text),
        ("list", listing.text),
        ("log", log),
        *(("dashboard", page) for page in pages),
    ]:
        assert token not in text, where
        assert DISCORD_TOKEN not in text, where
    assert detail["labels"]["chat.interaction_token"].startswith("sealed:")


def click(custom_id: str, token: str, *, user: str = USER) -> dict[str, Any]:
    """The interaction Discord posts when `user` clicks a button of the song's message."""
    return {
        "type": 3,
        "id": str(1400000000000000000 + secrets.randbelow(10**9)),
        "application_id": "1100000000000000001",
        "token": token,
        "version": 1,
        "guild_id": "1080000000000000001",
        "channel_id": CHANNEL,
        "member": {"user": {"id": user, "username": "mia"}, "roles": []},
        "message": {"id": "1300000000000000001"},
        "data": {"custom_id": custom_id, "component_type": 2},
    }


def buttons_of(message: dict[str, Any]) -> dict[str, str]:
    """A message's buttons: label → custom_id."""
    return {b["label"]: b["custom_id"] for row in message["components"] for b in row["components"]}


def a_finished_song(relay: Relay, catcher: DiscordCatcher, text: str) -> dict[str, Any]:
    """Ask for `text` and wait for the song in the original response; that message."""
    token = new_token()
    assert {"type": 5} == discord_post(relay, interaction(text, token)).json()
    shown = song_shown(catcher, token)
    [task] = [
        t for t in chat_tasks(relay, "discord") if t["prompt"] == text.removeprefix("--sonic ")
    ]
    relay.wait_settled(task["id"])
    return shown


def test_regenerate_makes_one_new_task_however_often_it_is_clicked(
    start_relay: StartRelay, discord_catcher: DiscordCatcher, sandbox: str
) -> None:
    """Regenerate is answered with a new deferred message that becomes the new song; a second
    click of the same button (a double click) is told "already asked for" ephemerally and
    sends nothing upstream."""
    relay = start_relay(CONFIG)
    song = a_finished_song(relay, discord_catcher, "a song worth making twice")
    regenerate = buttons_of(song)["🔁 Regenerate"]
    token = new_token()
    assert {"type": 5} == discord_post(relay, click(regenerate, token)).json()
    again = discord_post(relay, click(regenerate, new_token())).json()
    assert (4, 64) == (again["type"], again["data"]["flags"])
    assert again["data"]["content"].startswith("That was already asked for")
    remade = song_shown(discord_catcher, token)
    assert remade["content"].endswith("is ready — requested by <@80351110224678912>")
    assert 2 == len(chat_tasks(relay, "discord"))
    assert 2 == len(sandbox_tasks(sandbox, "a song worth making twice", ASKED))


def test_extend_continues_the_sonic_clip_as_one_new_task(
    start_relay: StartRelay, discord_catcher: DiscordCatcher, sandbox: str
) -> None:
    """Extend under a sonic song submits `extend_music` from that clip at its end."""
    relay = start_relay(CONFIG)
    song = a_finished_song(relay, discord_catcher, "--sonic a shanty that goes on")
    extend = buttons_of(song)["⏩ Extend"]
    clip_id = extend.rsplit(":", 1)[-1]
    token = new_token()
    assert {"type": 5} == discord_post(relay, click(extend, token)).json()
    extended = song_shown(discord_catcher, token)
    assert "is ready" in extended["content"]
    [extend_task] = [
        t for t in chat_tasks(relay, "discord") if t["params"]["task_type"] == "extend_music"
    ]
    assert "sonic" == extend_task["family"]
    done = relay.wait_settled(extend_task["id"])
    upstream = httpx.get(
        f"{sandbox}/api/v1/sonic/task/{done['upstream_id']}",
        headers={"Authorization": "Bearer test-key"},
        timeout=5,
    ).json()
    for made in upstream["data"]:  # as the provider received it
        assert ("extend_music", clip_id) == (made["task_type"], made["continue_clip_id"])
    assert 2 == len(chat_tasks(relay, "discord"))


def test_remix_asks_for_a_style_in_a_modal_then_makes_one_task(
    start_relay: StartRelay, discord_catcher: DiscordCatcher
) -> None:
    """Remix answers with a modal (type 9) asking for the style; its submission (type 5
    interaction) is deferred and becomes the remixed song; an empty style submits nothing."""
    relay = start_relay(CONFIG)
    song = a_finished_song(relay, discord_catcher, "a song to sing another way")
    remix = buttons_of(song)["🎨 Remix"]
    modal = discord_post(relay, click(remix, new_token())).json()
    assert 9 == modal["type"]
    assert remix == modal["data"]["custom_id"]
    [row] = modal["data"]["components"]
    assert "style" == row["components"][0]["custom_id"]

    def submitted(style: str, token: str) -> dict[str, Any]:
        body = click(remix, token)
        body["type"] = 5
        field = {"type": 4, "custom_id": "style", "value": style}
        body["data"] = {"custom_id": remix, "components": [{"type": 1, "components": [field]}]}
        return discord_post(relay, body).json()

    empty = submitted("   ", new_token())
    assert (4, 64) == (empty["type"], empty["data"]["flags"])
    assert 1 == len(chat_tasks(relay, "discord"))
    token = new_token()
    assert {"type": 5} == submitted("bossa nova, soft vocals", token)
    remixed = song_shown(discord_catcher, token)
    assert "is ready" in remixed["content"]
    [task] = [
        t
        for t in chat_tasks(relay, "discord")
        if t["params"].get("sound") == "bossa nova, soft vocals"
    ]
    assert task["params"]["lyrics"]


def _seconds(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()
