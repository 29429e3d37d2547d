"""Time from a Slack `/song` command to the relay's acknowledgement, on loopback only.

`python -m tests.bench.chat_ack [--commands 50]` from the repository root. Not part of the test
suite. Slack shows the person an error when a command is not answered within 3 s, so the ack
must not wait for the upstream create call: the relay answers, then submits in the background.
One relay process (SQLite) with `[chat.slack]` posting to the Slack stand-in, the sandbox as
upstream, no budgets. Each command is signed as Slack signs it and sent one at a time; the same
number of signed `/song help` commands (verified and answered, nothing submitted) is the
baseline measured in the same run. Every song command makes one sandbox task (bounded by
`--commands`).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from receiver.sandbox import create_sandbox_app
from receiver.sandbox.slack import SlackCatcher, signed_request
from tests.chat.test_routes import SLACK_SECRET, SLACK_TOKEN
from tests.conftest import FAST_SANDBOX, Relay, new_relay
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


def _form(text: str, number: int) -> dict[str, str]:
    return {
        "command": "/song",
        "text": text,
        "user_id": f"U{number % 5}",
        "channel_id": "CBENCH",
        "response_url": "https://x.invalid/hook",
    }


def _acks(relay: Relay, texts: list[str]) -> list[float]:
    """Milliseconds from sending each command (signed as Slack signs it, on one kept-alive
    connection, so client set-up is not counted) to its 200."""
    taken = []
    with httpx.Client(base_url=relay.url, timeout=10) as client:
        for number, text in enumerate(texts):
            body, headers = signed_request(SLACK_SECRET, _form(text, number))
            started = time.perf_counter()
            answer = client.post("/chat/slack/commands", content=body, headers=headers)
            taken.append((time.perf_counter() - started) * 1000)
            if answer.status_code != 200:
                raise SystemExit(f"command {number}: {answer.status_code} {answer.text}")
    return taken


def _line(name: str, taken: list[float]) -> str:
    cuts = statistics.quantiles(taken, n=100, method="inclusive")
    return f"{name:<22} p50 {cuts[49]:6.1f} ms  p99 {cuts[98]:6.1f} ms  max {max(taken):6.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=50)
    count = parser.parse_args().commands
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


if __name__ == "__main__":
    main()
