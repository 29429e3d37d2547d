"""The chat endpoints on a real relay: only a request its platform signed gets an answer (help,
a PONG, an acknowledgement); the song flow itself is in test_slack_flow."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from nacl.signing import SigningKey

from receiver.chat import usage
from tests.chat.helpers import (
    CHAT_ENV,
    DISCORD_KEY,
    DISCORD_TOKEN,
    SLACK_SECRET,
    SLACK_TOKEN,
    discord_post,
    slack_post,
)
from tests.conftest import Relay, new_relay

ROUTES = ("/chat/slack/commands", "/chat/slack/interactions", "/chat/discord/interactions")

CHAT_CONFIG = f"""
[[handlers]]
name = "disk"
type = "disk"
path = "{{workdir}}/songs"

[chat.slack]
signing_secret = "${{SLACK_SIGNING_SECRET}}"
token = "${{SLACK_BOT_TOKEN}}"

[chat.discord]
public_key = "{DISCORD_KEY.verify_key.encode().hex()}"
application_id = "1234567890"
bot_token = "${{DISCORD_BOT_TOKEN}}"
"""


@pytest.fixture(scope="module")
def chat_relay(tmp_path_factory: pytest.TempPathFactory, sandbox: str) -> Iterator[Relay]:
    """One relay with both chat apps on, their secrets from the environment."""
    workdir = tmp_path_factory.mktemp("chat")
    relay = new_relay(workdir, sandbox, CHAT_CONFIG, **CHAT_ENV, RELAY_LOG_LEVEL="debug").start()
    yield relay
    relay.stop()


def slash(text: str) -> dict[str, str]:
    return {
        "command": "/song",
        "text": text,
        "user_id": "U1",
        "channel_id": "C1",
        "response_url": "https://hooks.slack.invalid/commands/1",
    }


def song(*options: dict[str, object]) -> dict[str, object]:
    return {"type": 2, "id": "1", "token": "t", "data": {"name": "song", "options": list(options)}}


def test_without_chat_tables_every_route_says_how_to_enable_it(
    make_relay: Callable[..., Relay],
) -> None:
    """No `[chat.*]` table: all three routes answer 404 JSON naming the table to add."""
    relay = make_relay()
    answers = {path: httpx.post(f"{relay.url}{path}", content=b"x", timeout=10) for path in ROUTES}
    assert {path: 404 for path in ROUTES} == {p: a.status_code for p, a in answers.items()}
    assert {
        "error": "chat_disabled",
        "detail": "add a [chat.slack] table to relay.toml (signing_secret, token) to enable the "
        "Slack app",
    } == answers["/chat/slack/commands"].json()
    assert "chat_disabled" == answers["/chat/slack/interactions"].json()["error"]
    discord = answers["/chat/discord/interactions"].json()
    assert ("chat_disabled", True) == (discord["error"], "[chat.discord]" in discord["detail"])


@pytest.mark.parametrize("text", ["help", "", "  HELP "])
def test_slack_help_answers_the_usage_ephemerally(chat_relay: Relay, text: str) -> None:
    """A signed `/song help` (or a bare `/song`) gets the usage only its sender sees."""
    answer = slack_post(chat_relay, slash(text))
    assert 200 == answer.status_code, answer.text
    assert {"response_type": "ephemeral", "text": usage("/song")} == answer.json()
    for part in (
        "/song <what the song is about>",
        "--sonic",
        "family:sonic",
        "help",
        "credits",
        "status",
    ):
        assert part in answer.json()["text"]
    assert "lyrics <idea>" in answer.json()["text"]


@pytest.mark.parametrize(
    ("case", "kwargs"),
    [
        ("wrong secret", {"secret": "not-the-signing-secret"}),
        ("stale, correctly signed", {"age_s": 360}),
        ("missing headers", {"headers": {}}),
        (
            "garbage timestamp",
            {"headers": {"X-Slack-Request-Timestamp": "soon", "X-Slack-Signature": "v0=00"}},
        ),
    ],
)
def test_slack_refuses_unsigned_requests(
    chat_relay: Relay, case: str, kwargs: dict[str, object]
) -> None:
    """A bad, stale or missing signature is 401 `bad_signature` on both Slack routes."""
    for path in ROUTES[:2]:
        form = slash("help") if path.endswith("commands") else {"payload": "{}"}
        answer = slack_post(chat_relay, form, path=path, **kwargs)  # type: ignore[arg-type]
        assert (401, "bad_signature") == (answer.status_code, answer.json()["error"]), case
    assert 0 == chat_relay.count("tasks")


def test_a_signed_action_that_is_not_ours_is_acknowledged_empty(chat_relay: Relay) -> None:
    """A signed block action the relay did not make (no `song:…` id) still gets the empty 200
    Slack waits for, and nothing else happens; real buttons: tests/chat/test_slack_buttons.py."""
    payload = json.dumps({"type": "block_actions", "actions": [{"action_id": "regenerate"}]})
    answer = slack_post(chat_relay, {"payload": payload}, path="/chat/slack/interactions")
    assert (200, b"") == (answer.status_code, answer.content)
    assert 0 == chat_relay.count("tasks")


def test_discord_ping_is_answered_with_pong(chat_relay: Relay) -> None:
    """Discord's endpoint check: a signed PING gets `{"type": 1}`."""
    answer = discord_post(chat_relay, {"type": 1})
    assert (200, {"type": 1}) == (answer.status_code, answer.json())


@pytest.mark.parametrize(
    "options",
    [
        [{"name": "text", "type": 3, "value": "help"}],
        [{"name": "text", "type": 3, "value": "  HELP "}],
        [],
    ],
)
def test_discord_song_help_is_an_ephemeral_message(
    chat_relay: Relay, options: list[dict[str, object]]
) -> None:
    """`/song text:help` or a bare `/song`: type 4 with the usage, flag 64, pinging nobody."""
    answer = discord_post(chat_relay, song(*options))
    assert 200 == answer.status_code, answer.text
    data = {"content": usage(), "flags": 64, "allowed_mentions": {"parse": []}}
    assert {"type": 4, "data": data} == answer.json()


def test_discord_another_command_is_refused_and_submits_nothing(chat_relay: Relay) -> None:
    """An interaction for a command this relay did not register gets an ephemeral "only
    /song", and no task (songs are: see test_discord_flow)."""
    interaction = {"type": 2, "id": "1", "token": "t", "data": {"name": "dance", "options": []}}
    answer = discord_post(chat_relay, interaction)
    assert 200 == answer.status_code
    assert {
        "type": 4,
        "data": {
            "content": "This relay answers only `/song`.",
            "flags": 64,
            "allowed_mentions": {"parse": []},
        },
    } == answer.json()
    assert 0 == chat_relay.count("tasks")


@pytest.mark.parametrize(
    ("case", "kwargs"),
    [
        ("another key", {"key": SigningKey.generate()}),
        ("missing headers", {"headers": {}}),
        ("not hex", {"headers": {"X-Signature-Ed25519": "zz", "X-Signature-Timestamp": "1"}}),
        ("too short", {"headers": {"X-Signature-Ed25519": "abcd", "X-Signature-Timestamp": "1"}}),
    ],
)
def test_discord_refuses_unsigned_interactions(
    chat_relay: Relay, case: str, kwargs: dict[str, object]
) -> None:
    """What Discord's own probes send: a wrong, malformed or missing signature is 401."""
    answer = discord_post(chat_relay, {"type": 1}, **kwargs)  # type: ignore[arg-type]
    assert (401, "bad_signature") == (answer.status_code, answer.json()["error"]), case


def test_discord_refuses_a_tampered_body(chat_relay: Relay) -> None:
    """A signature of another body does not carry over to this one."""
    timestamp = str(int(time.time()))
    signature = DISCORD_KEY.sign(timestamp.encode() + b'{"type": 1}').signature.hex()
    answer = httpx.post(
        f"{chat_relay.url}/chat/discord/interactions",
        content=b'{"type": 2}',
        headers={"X-Signature-Ed25519": signature, "X-Signature-Timestamp": timestamp},
        timeout=10,
    )
    assert 401 == answer.status_code


def test_no_chat_secret_reaches_the_log(chat_relay: Relay) -> None:
    """After answered and refused requests of every kind, the debug log holds none of the
    signing secret, the Slack token or the Discord bot token."""
    slack_post(chat_relay, slash("help"))
    slack_post(chat_relay, slash("help"), secret="wrong")
    discord_post(chat_relay, {"type": 1})
    discord_post(chat_relay, {"type": 1}, headers={})
    log = chat_relay.log()
    assert "chat request refused" in log  # the log is really the one being written
    assert [] == [s for s in (SLACK_SECRET, SLACK_TOKEN, DISCORD_TOKEN) if s in log]


def test_body_over_the_limit_is_refused_before_verification(tmp_path: Path, sandbox: str) -> None:
    """A body over `RELAY_MAX_BODY_BYTES` is 413, as on the webhook route."""
    relay = new_relay(tmp_path, sandbox, CHAT_CONFIG, **CHAT_ENV, RELAY_MAX_BODY_BYTES="512")
    relay.start()
    try:
        answer = slack_post(relay, slash("x" * 1000))
        assert (413, "too_large") == (answer.status_code, answer.json()["error"])
    finally:
        relay.stop()
