"""Time from a chat `/song` command to the relay's acknowledgement, on loopback only.

`python -m tests.bench.chat_ack [--commands 50] [--app discord|slack|both]` from the
repository root. Not part of the test suite. Slack and Discord both show the person an error
when a command is not answered within 3 s, so the ack must not wait for the upstream create
call: the relay answers, then submits in the background.

Each app gets its own relay process (SQLite), its own sandbox as upstream, no budgets, and its
stand-in on loopback: `[chat.slack]` posting to the Slack stand-in, or `[chat.discord]` (a
fresh Ed25519 key pair) answering through the Discord stand-in. Commands are signed as the
platform signs them and sent one at a time on one kept-alive connection; the same number of
signed help commands (`/song help`, `/song text:help`: verified and answered, nothing
submitted) is the baseline measured in the same run. A Discord song must be answered with the
deferred response (type 5) and help with a message (type 4), or the run stops. Every song
command makes one sandbox task (bounded by `--commands`).
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from nacl.signing import SigningKey

from receiver.sandbox import create_sandbox_app
from receiver.sandbox.slack import SlackCatcher, signed_request
from tests.chat.helpers import SLACK_SECRET, SLACK_TOKEN
from tests.conftest import FAST_SANDBOX, Relay, new_relay
from tests.discord_catcher import DiscordCatcher
from tests.servers import run_asgi

CONFIG = """
[[handlers]]
name = "disk"
type = "disk"
path = "{{workdir}}/songs"

[chat.slack]
signing_secret = "${{SLACK_SIGNING_SECRET}}"
token = "${{SLACK_BOT_TOKEN}}"
api_base_url = "{catcher}/api"
"""

DISCORD_CONFIG = """
[[handlers]]
name = "disk"
type = "disk"
path = "{{workdir}}/songs"

[chat.discord]
public_key = "{key}"
application_id = "{app}"
bot_token = "${{DISCORD_BOT_TOKEN}}"
api_base_url = "{catcher}"
"""
DISCORD_BOT = "discordbot-bench-" + secrets.token_hex(8)
DEFERRED, MESSAGE = 5, 4
"""Discord's response types: "thinking…, the answer follows", and a message now."""

Ack = Callable[[httpx.Client, int, str], httpx.Response]
"""Sends command `number` with `text` on the client and returns the relay's answer."""


def _form(text: str, number: int) -> dict[str, str]:
    return {
        "command": "/song",
        "text": text,
        "user_id": f"U{number % 5}",
        "channel_id": "CBENCH",
        "response_url": "https://x.invalid/hook",
    }


def _slack(client: httpx.Client, number: int, text: str) -> httpx.Response:
    body, headers = signed_request(SLACK_SECRET, _form(text, number))
    return client.post("/chat/slack/commands", content=body, headers=headers)


def _interaction(text: str, number: int, application_id: str) -> dict[str, Any]:
    """The interaction Discord posts for `/song text:<text>` from a guild member."""
    return {
        "type": 2,
        "id": str(1400000000000000000 + secrets.randbelow(10**9)),
        "application_id": application_id,
        "token": "itok-bench-" + secrets.token_urlsafe(96),
        "version": 1,
        "guild_id": "1080000000000000001",
        "channel_id": "1090000000000000001",
        "member": {"user": {"id": f"8035111022467891{number % 5}", "username": "mia"}},
        "data": {
            "id": "1200000000000000000",
            "name": "song",
            "type": 1,
            "options": [{"name": "text", "type": 3, "value": text}],
        },
    }


def _discord(key: SigningKey, application_id: str) -> Ack:
    """Sends interactions signed with `key` (Ed25519 over timestamp + raw body) and stops the
    run when the answer is not the response type the command calls for."""

    def send(client: httpx.Client, number: int, text: str) -> httpx.Response:
        raw = json.dumps(_interaction(text, number, application_id)).encode()
        timestamp = str(int(time.time()))
        signature = key.sign(timestamp.encode() + raw).signature.hex()
        headers = {
            "Content-Type": "application/json",
            "X-Signature-Ed25519": signature,
            "X-Signature-Timestamp": timestamp,
        }
        answer = client.post("/chat/discord/interactions", content=raw, headers=headers)
        wanted = MESSAGE if text == "help" else DEFERRED
        if answer.status_code == 200 and answer.json().get("type") != wanted:
            raise SystemExit(f"interaction {number}: wanted type {wanted}, got {answer.text}")
        return answer

    return send


def _acks(relay: Relay, texts: list[str], send: Ack = _slack) -> list[float]:
    """Milliseconds from sending each command (signed as the platform signs it, on one
    kept-alive connection, so client set-up is not counted) to its 200."""
    taken = []
    with httpx.Client(base_url=relay.url, timeout=10) as client:
        for number, text in enumerate(texts):
            started = time.perf_counter()
            answer = send(client, number, text)
            taken.append((time.perf_counter() - started) * 1000)
            if answer.status_code != 200:
                raise SystemExit(f"command {number}: {answer.status_code} {answer.text}")
    return taken


def _line(name: str, taken: list[float], width: int = 22) -> str:
    cuts = statistics.quantiles(taken, n=100, method="inclusive")
    figures = f"p50 {cuts[49]:6.1f} ms  p99 {cuts[98]:6.1f} ms  max {max(taken):6.1f} ms"
    return f"{name:<{width}} {figures}"


def _run_slack(count: int) -> None:
    catcher = SlackCatcher(SLACK_TOKEN)
    with (
        run_asgi(create_sandbox_app(FAST_SANDBOX)) as upstream,
        run_asgi(catcher.app) as slack,
        tempfile.TemporaryDirectory() as workdir,
    ):
        env = {"SLACK_SIGNING_SECRET": SLACK_SECRET, "SLACK_BOT_TOKEN": SLACK_TOKEN}
        relay = new_relay(Path(workdir), upstream, CONFIG.format(catcher=slack), **env).start()
        try:
            _acks(relay, ["help"] * 5)  # warm the process up
            baseline = _acks(relay, ["help"] * count)
            songs = _acks(relay, [f"bench song number {n}" for n in range(count)])
        finally:
            relay.stop()
    print(_line(f"/song help x{count}", baseline))
    print(_line(f"/song <prompt> x{count}", songs))
    print(f"ratio p50 song/help      {statistics.median(songs) / statistics.median(baseline):.2f}")


def _run_discord(count: int) -> None:
    catcher = DiscordCatcher(DISCORD_BOT)
    key = SigningKey.generate()
    send = _discord(key, catcher.application_id)
    with (
        run_asgi(create_sandbox_app(FAST_SANDBOX)) as upstream,
        run_asgi(catcher.app) as discord,
        tempfile.TemporaryDirectory() as workdir,
    ):
        config = DISCORD_CONFIG.format(
            key=key.verify_key.encode().hex(), app=catcher.application_id, catcher=discord
        )
        env = {"DISCORD_BOT_TOKEN": DISCORD_BOT}
        relay = new_relay(Path(workdir), upstream, config, **env).start()
        try:
            _acks(relay, ["help"] * 5, send)  # warm the process up
            baseline = _acks(relay, ["help"] * count, send)
            songs = _acks(relay, [f"bench song number {n}" for n in range(count)], send)
        finally:
            relay.stop()
    print(_line(f"discord text:help x{count}", baseline, 28))
    print(_line(f"discord text:<prompt> x{count}", songs, 28))
    ratio = statistics.median(songs) / statistics.median(baseline)
    print(f"{'ratio p50 discord song/help':<28} {ratio:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=50)
    parser.add_argument("--app", choices=("discord", "slack", "both"), default="both")
    options = parser.parse_args()
    if options.app in ("slack", "both"):
        _run_slack(options.commands)
    if options.app in ("discord", "both"):
        _run_discord(options.commands)


if __name__ == "__main__":
    main()
