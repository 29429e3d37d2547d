"""The command line, run as users run it: as a process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import wave
from pathlib import Path

import pytest

from receiver.store.migrate import head_revision
from tests.conftest import REPO, Relay

pytestmark = pytest.mark.slow


def _cli(
    *args: str, env: dict[str, str], cwd: Path, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "receiver", *args],
        env={**os.environ, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_submit_wait_prints_where_the_song_landed(relay: Relay) -> None:
    """`submit --wait` follows the task until the disk handler wrote the file, then prints it."""
    done = _cli(
        "submit",
        "dreamy ambient pads",
        "--title",
        "Clouds",
        "--wait",
        "--timeout",
        "30",
        env=relay.env,
        cwd=relay.workdir,
    )
    assert done.returncode == 0, done.stderr
    [audio] = [line for line in done.stdout.splitlines() if line.endswith(".wav")]
    with wave.open(audio) as song:
        assert song.getnframes() > 0
    assert "succeeded" in done.stderr


def test_submit_json_reports_failure_with_exit_1(relay: Relay) -> None:
    """A failed song makes `submit --wait --json` exit 1 with the failed task as JSON."""
    done = _cli(
        "submit",
        "doomed #fail",
        "--wait",
        "--json",
        "--timeout",
        "30",
        env=relay.env,
        cwd=relay.workdir,
    )
    assert done.returncode == 1, done.stderr
    task = json.loads(done.stdout)
    assert task["state"] == "failed"
    assert "test-key" not in done.stdout + done.stderr


def test_submit_refused_upstream_is_one_clear_line(relay: Relay) -> None:
    """A title over 80 characters is refused by the provider; the CLI says why, no traceback."""
    done = _cli("submit", "x", "--title", "t" * 81, env=relay.env, cwd=relay.workdir)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "title" in done.stderr.lower()


def test_bad_label_names_the_fix(relay: Relay) -> None:
    """A label without `=` is refused with the expected form."""
    done = _cli("submit", "x", "--label", "team", env=relay.env, cwd=relay.workdir)
    assert done.returncode == 2
    assert "key=value" in done.stderr


def test_demo_delivers_a_playable_song(tmp_path: Path) -> None:
    """`aimusic-relay demo --dir D` exits 0 leaving a WAV, its cover and metadata under D/songs."""
    done = _cli(
        "demo", "--dir", str(tmp_path / "demo"), env={"PYTHONPATH": str(REPO)}, cwd=tmp_path
    )
    assert done.returncode == 0, done.stdout + done.stderr
    [audio] = list((tmp_path / "demo" / "songs").rglob("*.wav"))
    with wave.open(str(audio)) as song:
        assert song.getframerate() > 0 and song.getnframes() > 0
    assert list((tmp_path / "demo" / "songs").rglob("*.json"))
    assert "callback → file on disk" in done.stdout


def test_handlers_lists_configured_and_installed(relay: Relay) -> None:
    """`handlers --json` shows the configured disk handler and the installed types."""
    done = _cli("handlers", "--json", env=relay.env, cwd=relay.workdir)
    assert done.returncode == 0, done.stderr
    listing = json.loads(done.stdout)
    assert [h["name"] for h in listing["configured"]] == ["disk"]
    assert "disk" in listing["types"]


def test_db_upgrade_is_idempotent(tmp_path: Path) -> None:
    """`db upgrade` creates the schema and can run again."""
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'r.db'}", "PYTHONPATH": str(REPO)}
    for _ in range(2):
        done = _cli("db", "upgrade", env=env, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert f"schema at {head_revision()}" in done.stderr


def test_sonic_submit_wait_delivers_both_songs(relay: Relay) -> None:
    """`--family sonic` makes two songs from one prompt; both land on disk."""
    done = _cli(
        "submit",
        "dream pop about the sea",
        "--family",
        "sonic",
        "--wait",
        "--timeout",
        "30",
        env=relay.env,
        cwd=relay.workdir,
    )
    assert done.returncode == 0, done.stderr
    audio = [line for line in done.stdout.splitlines() if line.endswith(".wav")]
    assert len(audio) == 2
    assert len(relay.audio_files()) == 2


def test_nuro_is_explained_not_obscure(relay: Relay) -> None:
    """Nuro is retired upstream: the CLI says so and names the replacements."""
    done = _cli("submit", "x", "--family", "nuro", env=relay.env, cwd=relay.workdir)
    assert done.returncode == 1
    message = done.stderr.lower()
    assert "retired" in message and "sonic" in message and "producer" in message
    assert "Traceback" not in done.stderr


def test_credits_and_lyrics_commands(relay: Relay) -> None:
    """`credits --json` reads the balance; `lyrics` prints what the provider wrote."""
    before = json.loads(_cli("credits", "--json", env=relay.env, cwd=relay.workdir).stdout)
    written = _cli("lyrics", "a song about trains", "--json", env=relay.env, cwd=relay.workdir)
    assert written.returncode == 0, written.stderr
    [song] = json.loads(written.stdout)
    assert song["lyrics"].strip()
    after = json.loads(_cli("credits", "--json", env=relay.env, cwd=relay.workdir).stdout)
    assert before["credits"] - after["credits"] == 1
    two = _cli("lyrics", "trains", "--family", "sonic", "--json", env=relay.env, cwd=relay.workdir)
    assert len(json.loads(two.stdout)) == 2


def test_demo_without_callbacks_completes_by_polling(tmp_path: Path) -> None:
    """`demo --no-callbacks` gets the song through polling alone."""
    done = _cli(
        "demo",
        "--dir",
        str(tmp_path / "d"),
        "--no-callbacks",
        env={"PYTHONPATH": str(REPO)},
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "poll → file on disk" in done.stdout
    assert list((tmp_path / "d" / "songs").rglob("*.wav"))
