"""`aimusic-relay demo --chat`: a song asked for from a stand-in Slack, shown as a transcript.

The sandbox, the Slack stand-in (`receiver.sandbox.slack`) and the relay run on loopback; the
relay's relay.toml holds only a `[chat.slack]` table (a fresh signing secret, the stand-in's
token and address). The demo signs `/song <prompt>` exactly as Slack does, posts it, and
prints what a person in the channel would see: the ephemeral acknowledgement, the
"generating…" post and the finished song in its thread. A newcomer sees the whole flow
without a Slack workspace.
"""

from __future__ import annotations

import asyncio
import html
import json
import re
import secrets
import shlex
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from receiver.app import create_app
from receiver.cli.demo import demo_settings, free_port, serving
from receiver.sandbox import SandboxOptions, create_sandbox_app
from receiver.sandbox.slack import WEBHOOK_PATH, Recorded, SlackCatcher, signed_request

__all__ = ["run_chat_demo", "transcript_lines"]

DEMO_TIMEOUT_S = 60.0
USER, CHANNEL, CHANNEL_NAME = "U0DEMOYOU", "C0DEMO", "demo"
"""Who asks, and where: shown as "@you" in "#demo"."""
_LINK = re.compile(r"<([^|<>]+)\|([^<>]+)>")
_MENTION = re.compile(r"<@([UW][A-Z0-9]+)>")
_BARE_LINK = re.compile(r"<(https?://[^<>]+)>")
_BOLD = re.compile(r"\*([^*\n]+)\*")
_QUOTE = re.compile(r"^>", re.MULTILINE)


async def run_chat_demo(directory: Path | None, prompt: str, *, callbacks: bool = True) -> int:
    """Ask for one song with `/song <prompt>`; return 0 once it is answered in its thread."""
    console = Console(highlight=False)
    root = (directory or Path(tempfile.mkdtemp(prefix="aimusic-chat-demo-"))).resolve()
    root.mkdir(parents=True, exist_ok=True)
    signing_secret, admin_token = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    catcher = SlackCatcher(token="xoxb-demo-" + secrets.token_hex(12))
    sandbox_port, slack_port, relay_port = free_port(), free_port(), free_port()
    config = root / "relay.toml"
    config.write_text(
        "[chat.slack]\n"
        f"signing_secret = {json.dumps(signing_secret)}\n"
        f"token = {json.dumps(catcher.token)}\n"
        f'api_base_url = "http://127.0.0.1:{slack_port}/api"\n'
    )
    config.chmod(0o600)  # it holds the (throwaway) signing secret and token
    settings = demo_settings(root, config, sandbox_port, relay_port, admin_token, callbacks)
    console.print(f"demo directory: {shlex.quote(str(root))}", markup=False, soft_wrap=True)
    async with (
        serving(create_sandbox_app(SandboxOptions(delay_s=1.5)), sandbox_port) as sandbox_url,
        serving(catcher.app, slack_port) as slack_url,
        serving(create_app(settings), relay_port) as relay_url,
        httpx.AsyncClient(base_url=relay_url, timeout=10, trust_env=False) as http,
    ):
        console.print(
            f"sandbox: {sandbox_url}   slack stand-in: {slack_url}   relay: {relay_url}",
            soft_wrap=True,
        )
        form = {
            "command": "/song",
            "text": prompt,
            "user_id": USER,
            "user_name": "you",
            "channel_id": CHANNEL,
            "channel_name": CHANNEL_NAME,
            "response_url": slack_url + WEBHOOK_PATH,  # where a later refusal is told
        }
        console.print()
        _say(console, f"you in #{CHANNEL_NAME}", f"/song {prompt}")
        started = time.monotonic()
        answer = await http.post("/chat/slack/commands", **_signed(signing_secret, form))
        took_ms = (time.monotonic() - started) * 1000
        if answer.status_code != 200:
            console.print(f"[red]the relay refused the command[/]: HTTP {answer.status_code}")
            return 1
        ack = str(answer.json().get("text", ""))
        _say(console, "relay (only you)", f"{_plain(ack)}   [acked in {took_ms:,.0f} ms]")
        if not ack.startswith("On it"):
            console.print("[red]the song was not started[/] (see the answer above)")
            return 1
        outcome = await _wait_for_thread(catcher)
        for who, text in transcript_lines(catcher.sent()):
            _say(console, who, text)
        if outcome == "thread":
            outcome = await _task_state(http, admin_token)
    if outcome == "timeout":
        console.print(f"[red]no reply in the thread within {DEMO_TIMEOUT_S:g} s[/]")
        return 1
    if outcome != "succeeded":
        console.print(f"[red]the song was not made[/] ({outcome}; the reason is above)")
        return 1
    console.print()
    console.print("[green]done[/]: the song was answered in its thread")
    return 0


def _signed(secret: str, form: dict[str, str]) -> dict[str, Any]:
    """The request Slack would send: the form body and its v0 signature over it."""
    body, headers = signed_request(secret, form)
    return {"content": body, "headers": headers}


async def _wait_for_thread(catcher: SlackCatcher) -> str:
    """`thread` once a reply is threaded, `told` if the refusal came to the response URL,
    `timeout` after DEMO_TIMEOUT_S."""
    deadline = time.monotonic() + DEMO_TIMEOUT_S
    while time.monotonic() < deadline:
        if any(r.body.get("thread_ts") for r in catcher.sent("chat.postMessage")):
            return "thread"
        if catcher.sent("webhook"):
            return "told"
        await asyncio.sleep(0.05)
    return "timeout"


async def _task_state(http: httpx.AsyncClient, admin_token: str) -> str:
    """The state of the task the command made (a thread reply may tell a failure)."""
    answer = await http.get(
        "/api/tasks",
        params={"label": "chat:slack"},
        headers={"Authorization": f"Bearer {admin_token}"},
    )
    tasks = answer.json() if answer.status_code == 200 else []
    return str(tasks[0]["state"]) if tasks else f"no task (HTTP {answer.status_code})"


def transcript_lines(recorded: list[Recorded]) -> list[tuple[str, str]]:
    """What the channel and the requester saw, in order: (who and where, what) per message."""
    lines: list[tuple[str, str]] = []
    for request in recorded:
        body = request.body
        if request.method == "webhook":
            lines.append(("relay (only you)", _plain(str(body.get("text", "")))))
            continue
        if request.method not in ("chat.postMessage", "chat.update"):
            continue
        where = f"relay in #{CHANNEL_NAME}"
        if body.get("thread_ts"):
            where = "  ↳ relay in the thread"
        elif request.method == "chat.update":
            where += " (edited)"
        blocks = body.get("blocks") or []
        shown = _blocks_text(blocks) if blocks else _plain(str(body.get("text", "")))
        lines.append((where, shown))
    return lines


def _blocks_text(blocks: list[dict[str, Any]]) -> str:
    """Block Kit as plain lines: headers, sections (and their cover), buttons."""
    out: list[str] = []
    for block in blocks:
        text = (block.get("text") or {}).get("text")
        if text:
            out.append(_plain(str(text)))
        for field in block.get("fields") or []:
            out.append(_plain(str(field.get("text", ""))))
        accessory = block.get("accessory") or {}
        if accessory.get("type") == "image":
            out.append(f"[cover: {accessory.get('image_url')}]")
        if block.get("type") == "image":
            out.append(f"[image: {block.get('image_url')}]")
        for element in block.get("elements") or []:
            label = (element.get("text") or {}).get("text") if isinstance(element, dict) else None
            if label and element.get("type") == "button":
                out.append(f"[{_plain(str(label))}]")
            elif label:
                out.append(_plain(str(label)))
    return "\n".join(out)


def _plain(mrkdwn: str) -> str:
    """Slack mrkdwn as a terminal shows it: links as `label (url)`, the demo user as @you."""
    text = _LINK.sub(lambda m: f"{m.group(2)} ({m.group(1)})", mrkdwn)
    text = _MENTION.sub(lambda m: "@you" if m.group(1) == USER else f"@{m.group(1)}", text)
    text = _BARE_LINK.sub(r"\1", text)
    text = _QUOTE.sub("│ ", _BOLD.sub(r"\1", text))
    return html.unescape(text)


def _say(console: Console, who: str, text: str) -> None:
    """One message of the transcript: who, then the text indented under them."""
    console.print(f"{who}:", markup=False, style="bold", soft_wrap=True)
    for line in text.splitlines() or [""]:
        console.print(f"    {line}", markup=False, soft_wrap=True)
