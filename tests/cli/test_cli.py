"""The command line, run as users run it: as a process."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import wave
from collections.abc import Callable
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


def test_submit_wait_timeout_exits_3_and_says_the_task_state(
    make_relay: Callable[..., Relay],
) -> None:
    """With no `serve` running nothing can deliver the song: `--wait --timeout 3` gives up with
    exit status 3 (not 0), one line saying the task is still submitted and what to check; with
    `--json` the task is printed too."""
    relay = make_relay(start=False)
    args = ("submit", "nobody listens", "--wait", "--timeout", "3")
    done = _cli(*args, env=relay.env, cwd=relay.workdir)
    assert 3 == done.returncode, done.stderr
    [gave_up] = [line for line in done.stderr.splitlines() if "gave up waiting" in line]
    assert "after 3 s" in gave_up and "still submitted" in gave_up
    assert "aimusic-relay serve" in gave_up and "aimusic-relay tasks" in gave_up
    as_json = _cli(*args, "--json", env=relay.env, cwd=relay.workdir)
    assert 3 == as_json.returncode, as_json.stderr
    assert "submitted" == json.loads(as_json.stdout)["state"]
    assert "still submitted" in as_json.stderr


def test_submit_progress_on_a_pipe_has_no_log_lines_in_it(relay: Relay) -> None:
    """With stderr a pipe (and logging at info, JSON or auto) `submit --wait` writes its progress
    as whole human lines: the CLI's own logs are warnings only, each a line of its own."""
    for log_format in ("auto", "json"):
        env = {**relay.env, "RELAY_LOG_LEVEL": "info", "RELAY_LOG_FORMAT": log_format}
        done = _cli(
            "submit", "piped progress", "--wait", "--timeout", "30", env=env, cwd=relay.workdir
        )
        assert 0 == done.returncode, done.stderr
        lines = done.stderr.splitlines()
        assert [] == [line for line in lines if line.lstrip().startswith("{")], done.stderr
        assert "task submitted" not in done.stderr
        assert re.fullmatch(r"submitted: task \S+ \(relay id \w+\)", lines[0]), done.stderr
        assert lines[-1].startswith("task ") and "succeeded" in lines[-1], done.stderr
    env["RELAY_LOG_FORMAT"] = "auto"
    refused = _cli("submit", "x", "--title", "t" * 81, env=env, cwd=relay.workdir)
    assert 0 != refused.returncode
    *logs, last = refused.stderr.splitlines()
    assert last.startswith("error: ") and "title" in last
    assert all("[warning" in line and not line.startswith("{") for line in logs), logs


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


def test_demo_lists_every_file_it_wrote_quoted_for_the_shell(tmp_path: Path) -> None:
    """The demo lists all four files (audio, cover, metadata, lyrics), each quoted so a path
    with a space can be pasted into a shell, under shell-friendly default names."""
    root = tmp_path / "my demo"
    done = _cli("demo", "--dir", str(root), env={"PYTHONPATH": str(REPO)}, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    written = sorted(str(p) for p in (root / "songs").rglob("*") if p.is_file())
    assert 4 == len(written)
    listed = [line.strip() for line in done.stdout.splitlines() if str(root) in line]
    assert [f"demo directory: {shlex.quote(str(root))}"] == listed[:1]
    assert written == sorted(path for line in listed[1:] for path in shlex.split(line))
    assert {shlex.quote(path) for path in written} == set(listed[1:])
    assert all(re.fullmatch(r"demo-song-[\w-]+\.\w+", Path(p).name) for p in written)


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
