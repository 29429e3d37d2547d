"""What the chat tests share, as plain functions and constants: the apps' secrets, requests
signed as Slack and Discord sign them, and the waits and look-ups on the relay, the sandbox and
the Slack stand-in. The fixtures built on them are in `conftest.py`; each test module keeps its
own relay.toml text and tests."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterable
from typing import Any

import httpx
from nacl.signing import SigningKey

from receiver.sandbox.slack import WEBHOOK_PATH, Recorded, SlackCatcher, signed_request
from tests.conftest import Relay

SLACK_SECRET = "slacksign-LEAKCHECK-" + secrets.token_hex(8)
SLACK_TOKEN = "xoxb-LEAKCHECK-" + secrets.token_hex(8)
DISCORD_TOKEN = "discordbot-LEAKCHECK-" + secrets.token_hex(8)
DISCORD_KEY = SigningKey.generate()
"""The Discord app's key pair: relays get its public half, requests are signed with it."""
CHAT_ENV = {
    "SLACK_SIGNING_SECRET": SLACK_SECRET,
    "SLACK_BOT_TOKEN": SLACK_TOKEN,
    "DISCORD_BOT_TOKEN": DISCORD_TOKEN,
}
"""The environment a chat relay.toml reads its secrets from (`${SLACK_BOT_TOKEN}`...)."""

SLACK_TABLE = """
[chat.slack]
signing_secret = "${{SLACK_SIGNING_SECRET}}"
token = "${{SLACK_BOT_TOKEN}}"
api_base_url = "{slack}/api"
"""
"""The Slack app posting to the stand-in, its secrets from `CHAT_ENV`: the start of a
`start_relay` template (a module adds its own keys below it)."""

StartRelay = Callable[..., Relay]
"""The `start_relay` fixture: `start_relay(config, upstream=None, *, extra="", **env)`."""

ACK_LIMIT_S = 3.0
"""Slack shows the person an error when a command is not answered within 3 s, and Discord says
"the application did not respond" when an interaction waits longer."""


def slack_post(
    relay: Relay,
    form: dict[str, str],
    *,
    path: str = "/chat/slack/commands",
    secret: str = SLACK_SECRET,
    age_s: float = 0,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """POST `form` as Slack does, signed with `secret` at a timestamp `age_s` old."""
    body, sent = signed_request(secret, form, age_s=age_s)
    if headers is not None:
        sent = {"Content-Type": sent["Content-Type"], **headers}
    return httpx.post(f"{relay.url}{path}", content=body, headers=sent, timeout=10)


def discord_post(
    relay: Relay,
    interaction: dict[str, Any],
    *,
    key: SigningKey = DISCORD_KEY,
    age_s: float = 0,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """POST `interaction` as Discord does: Ed25519 with `key` over timestamp + raw body, at a
    timestamp `age_s` old; `headers` replace the signature headers."""
    body = json.dumps(interaction).encode()
    timestamp = str(int(time.time() - age_s))
    signature = key.sign(timestamp.encode() + body).signature.hex()
    sent = {"X-Signature-Ed25519": signature, "X-Signature-Timestamp": timestamp}
    return httpx.post(
        f"{relay.url}/chat/discord/interactions",
        content=body,
        headers={"Content-Type": "application/json", **(sent if headers is None else headers)},
        timeout=10,
    )


def command(text: str, user: str, channel: str, response_url: str) -> dict[str, str]:
    """The form Slack posts for `/song <text>`."""
    return {
        "command": "/song",
        "text": text,
        "user_id": user,
        "channel_id": channel,
        "response_url": response_url,
    }


def wait_for(catcher: SlackCatcher, method: str, count: int, timeout: float = 30) -> list[Recorded]:
    """The first `count` requests of `method` the Slack stand-in got, waiting for them."""
    deadline = time.monotonic() + timeout
    while len(found := catcher.sent(method)) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(found)} {method} of {count} in {timeout} s: {found}")
        time.sleep(0.05)
    return found[:count]


def chat_tasks(relay: Relay, app: str = "slack") -> list[dict[str, Any]]:
    """The relay's tasks asked for from the chat `app` (`slack`, `discord`), through the admin
    API."""
    answer = httpx.get(
        f"{relay.url}/api/tasks", params={"label": f"chat:{app}"}, headers=relay.admin, timeout=10
    )
    assert 200 == answer.status_code, answer.text
    return list(answer.json())


def sandbox_tasks(
    upstream: str, text: str, fields: Iterable[str] | None = ("sound",)
) -> list[dict[str, Any]]:
    """The sandbox's tasks with `text` as one of the prompt's `fields` (producer's `sound`
    unless given; any field with None)."""
    tasks = httpx.get(f"{upstream}/sandbox/tasks", timeout=5).json()
    keys = None if fields is None else tuple(fields)

    def asked(task: dict[str, Any]) -> bool:
        prompt = task.get("prompt") or {}
        values = prompt.values() if keys is None else [prompt.get(key) for key in keys]
        return text in values

    return [t for t in tasks if asked(t)]


def ask(relay: Relay, slack: tuple[SlackCatcher, str], prompt: str, channel: str) -> str:
    """`/song <prompt>` from U1 in `channel`, told later through the `slack` stand-in's
    webhook; the task's relay id once the relay has stored it."""
    form = command(prompt, "U1", channel, slack[1] + WEBHOOK_PATH)
    assert slack_post(relay, form).json()["text"].startswith("On it:")
    deadline = time.monotonic() + 15
    while not (found := [t for t in chat_tasks(relay) if t["prompt"] == prompt]):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return str(found[0]["id"])
