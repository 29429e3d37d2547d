"""`aimusic-relay demo --chat`, run as a user runs it: a process that asks a stand-in Slack for
a song and prints the conversation as a transcript."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def _demo_chat(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("RELAY_", "AIMUSIC_"))}
    return subprocess.run(
        [sys.executable, "-m", "receiver", "demo", "--chat", "--dir", str(directory), *args],
        env={**environ, "PYTHONPATH": str(REPO), "COLUMNS": "250"},
        cwd=directory.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _transcript(stdout: str) -> list[str]:
    """The conversation: from the command on, without the demo's own set-up lines."""
    lines = stdout.splitlines()
    return lines[next(i for i, line in enumerate(lines) if line == "you in #demo:") :]


def test_demo_chat_prints_the_command_the_ack_and_the_threaded_song(tmp_path: Path) -> None:
    """Exit 0 with, in order: the `/song` command, the ephemeral ack (and how fast it came),
    "Generating … — requested by @you" in the channel, then the finished song in its thread
    (title, duration, style, cover and listen link); no secret of the demo is printed."""
    done = _demo_chat(tmp_path / "demo", "--prompt", "harbour jazz at dawn")
    assert 0 == done.returncode, done.stdout + done.stderr
    lines = _transcript(done.stdout)
    assert [
        "you in #demo:",
        "    /song harbour jazz at dawn",
        "relay (only you):",
    ] == lines[:3]
    assert re.fullmatch(
        r"    On it: “harbour jazz at dawn” — 10 credits; the song will appear in this "
        r"channel\.   \[acked in [\d,]+ ms\]",
        lines[3],
    )
    assert [
        "relay in #demo:",
        "    🎵 Generating “harbour jazz at dawn” — requested by @you",
        "  ↳ relay in the thread:",
    ] == lines[4:7]
    thread = lines[7:]
    assert thread[0].startswith("    🎵 ")
    assert "    Requested by: @you" in thread
    assert any(re.fullmatch(r"    Duration: \d+:\d\d", line) for line in thread)
    assert "    Style: harbour jazz at dawn" in thread
    assert any(
        re.fullmatch(r"    ▶ listen \(http://127\.0\.0\.1:\d+/media/\S+\)", x) for x in thread
    )
    assert "done: the song was answered in its thread" == thread[-1]
    chat = tomllib.loads((tmp_path / "demo" / "relay.toml").read_text())["chat"]["slack"]
    for secret in (chat["signing_secret"], chat["token"]):
        assert secret not in done.stdout + done.stderr


def test_demo_chat_shows_a_failed_song_in_the_thread_and_exits_1(tmp_path: Path) -> None:
    """A prompt the sandbox fails (`#fail`): the thread tells the reason and the demo exits 1,
    saying the song was not made."""
    done = _demo_chat(tmp_path / "demo", "--prompt", "doomed #fail")
    assert 1 == done.returncode, done.stdout + done.stderr
    lines = _transcript(done.stdout)
    assert "  ↳ relay in the thread:" in lines
    assert "    Reason: generation failed: the prompt carries the #fail marker" in lines
    assert "the song was not made (failed; the reason is above)" == lines[-1]
