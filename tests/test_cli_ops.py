"""The operator commands (`tasks`, `events`, `dead-letters`, `replay`) run as users run them:
as processes, on the SQLite database of a relay that delivered a real song from the sandbox."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Relay, new_relay
from tests.servers import free_port

pytestmark = pytest.mark.slow

BROKEN = """
[[handlers]]
name = "disk"
type = "disk"
path = "{workdir}/songs"

[[handlers]]
name = "broken"
type = "disk"
path = "{workdir}/blocker/songs"
max_attempts = 1
"""
"""Two handlers: one that works, one whose directory is under a plain file (dead at once)."""


def _cli(*args: str, relay: Relay, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "receiver", *args],
        env={**os.environ, **relay.env, "COLUMNS": "250", **env},
        cwd=relay.workdir,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _broken_relay(make: Callable[..., Relay]) -> tuple[Relay, dict[str, Any]]:
    """A relay whose `broken` handler dead-letters the song it just delivered to `disk`."""
    relay = make(config=BROKEN, start=False)
    (relay.workdir / "blocker").write_text("a file where a directory should be")
    relay.start()
    task = relay.wait_settled(relay.submit("cli ops song", title="Ops")["id"])
    return relay, task


@pytest.fixture(scope="module")
def populated(tmp_path_factory: pytest.TempPathFactory, sandbox: str) -> Iterator[Relay]:
    """One relay, one delivered song, one dead letter; shared by the read-only tests."""
    workdir = tmp_path_factory.mktemp("ops")

    def make(config: str, start: bool = True) -> Relay:
        made = new_relay(workdir, sandbox, config)
        return made.start() if start else made

    relay, _task = _broken_relay(make)
    yield relay
    relay.stop()


def _secrets_of(relay: Relay) -> list[str]:
    return [relay.env["RELAY_ADMIN_TOKEN"], relay.env["RELAY_SECRET_KEY"], "test-key"]


def test_tasks_lists_and_filters_by_state(populated: Relay) -> None:
    """`tasks` shows the song's task (JSON without its callback token, or a table); `--state`
    filters."""
    [task] = json.loads(_cli("tasks", "--json", relay=populated).stdout)
    assert "succeeded" == task["state"]
    assert task["params"]["webhook_url"].endswith("/webhooks/aimusic/(hidden)")
    human = _cli("tasks", relay=populated)
    assert human.returncode == 0, human.stderr
    assert task["upstream_id"] in human.stdout
    assert [] == json.loads(_cli("tasks", "--state", "failed", "--json", relay=populated).stdout)


def test_events_json_is_plain_and_chronological(populated: Relay) -> None:
    """`events --json` is parseable JSON, oldest first, with no colour codes and no secrets."""
    done = _cli("events", "--json", relay=populated)
    assert done.returncode == 0, done.stderr
    assert "\x1b[" not in done.stdout
    rows = json.loads(done.stdout)
    assert ["task.submitted", "song.completed"] == [row["kind"] for row in rows]
    assert rows[0]["received_at"] <= rows[1]["received_at"]
    for secret in _secrets_of(populated):
        assert secret not in done.stdout + done.stderr


def test_dead_letters_show_handler_error_and_blame(populated: Relay) -> None:
    """`dead-letters` shows the broken handler's delivery with its attempts, error and blame."""
    done = _cli("dead-letters", "--json", relay=populated)
    assert done.returncode == 0, done.stderr
    [dead] = json.loads(done.stdout)
    assert ("broken", 1, "song.completed") == (
        dead["handler"],
        dead["attempts"],
        dead["event_kind"],
    )
    assert "Not a directory" in dead["last_error"]
    assert dead["blame"]
    human = _cli("dead-letters", "--handler", "broken", relay=populated)
    assert dead["delivery_id"] in human.stdout
    assert "aimusic-relay replay" in human.stderr


class _Lines:
    """Lines of a child's stdout, read by a thread so the test can wait with a timeout."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.queue: queue.Queue[str] = queue.Queue()
        assert process.stdout is not None
        stream = process.stdout

        def pump() -> None:
            for line in stream:
                self.queue.put(line)

        threading.Thread(target=pump, daemon=True).start()

    def until(self, predicate: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            line = self.queue.get(timeout=max(0.01, deadline - time.monotonic()))
            row = json.loads(line)
            if predicate(row):
                return dict(row)


def test_events_follow_prints_new_events_until_sigint(populated: Relay) -> None:
    """`events --follow --json` prints the backlog, then a new song's events as they arrive
    (one JSON object per line), and Ctrl-C ends it cleanly with exit 0."""
    follow = subprocess.Popen(
        [sys.executable, "-m", "receiver", "events", "--follow", "--json", "--limit", "1"],
        env={**os.environ, **populated.env},
        cwd=populated.workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = _Lines(follow)
        backlog = lines.until(lambda row: True, timeout=30)
        assert "song.completed" == backlog["kind"]
        task = populated.submit("followed song")
        arrived = lines.until(
            lambda row: row["kind"] == "song.completed" and row["task_ref"] == task["id"],
            timeout=30,
        )
        assert arrived["id"] != backlog["id"]
        follow.send_signal(signal.SIGINT)
        _, stderr = follow.communicate(timeout=15)
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.communicate()  # reap it and close its pipes, whatever failed above
    assert 0 == follow.returncode, stderr
    assert "Traceback" not in stderr


def test_replay_turns_a_dead_letter_into_a_delivered_song(
    make_relay: Callable[..., Relay],
) -> None:
    """Fix the cause, `replay DELIVERY_ID`: the dead letter is pending again, then the running
    relay delivers it; `replay --event` runs every finished delivery of the event again."""
    relay, task = _broken_relay(make_relay)
    [dead] = json.loads(_cli("dead-letters", "--json", relay=relay).stdout)
    (relay.workdir / "blocker").unlink()

    done = _cli("replay", dead["delivery_id"], "--json", relay=relay)
    assert done.returncode == 0, done.stderr
    assert {"replayed": 1} == json.loads(done.stdout)
    state = _delivery_state(relay, task["id"], "broken")
    assert state in ("pending", "running", "succeeded")
    deadline = time.monotonic() + 30
    while state != "succeeded" and time.monotonic() < deadline:
        time.sleep(0.2)
        state = _delivery_state(relay, task["id"], "broken")
    assert "succeeded" == state
    assert list((relay.workdir / "blocker" / "songs").rglob("*.wav"))
    assert [] == json.loads(_cli("dead-letters", "--json", relay=relay).stdout)

    nothing = _cli("replay", "--dead", "--since", "2026-01-01T00:00:00Z", relay=relay)
    assert 0 == nothing.returncode and "nothing replayed" in nothing.stderr
    both = _cli("replay", "--event", dead["event_id"], "--json", relay=relay)
    assert {"replayed": 2} == json.loads(both.stdout)


def _delivery_state(relay: Relay, task_id: str, handler: str) -> str:
    detail = httpx.get(f"{relay.url}/api/tasks/{task_id}", headers=relay.admin, timeout=10).json()
    return next(
        str(d["state"])
        for e in detail["events"]
        for d in e["deliveries"]
        if d["handler"] == handler and e["kind"] == "song.completed"
    )


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["replay"], 2, "DELIVERY_ID, --event EVENT_ID, or --dead"),
        (["replay", "--dead", "--since", "yesterday"], 2, "ISO 8601"),
        (["replay", "--event", "abc", "--since", "1"], 2, "--since works with --dead only"),
        (["replay", "no-such-delivery"], 1, "no delivery no-such-delivery"),
        (["replay", "--event", "no-such-event"], 1, "no finished delivery for event"),
        (["tasks", "--state", "done"], 2, "use one of submitting, submitted"),
        (["dead-letters", "--limit", "0"], 2, "--limit"),
    ],
)
def test_bad_input_is_one_line_with_the_fix(
    populated: Relay, args: list[str], code: int, says: str
) -> None:
    """Wrong arguments or ids: one line that says what to do, the documented exit status."""
    done = _cli(*args, relay=populated)
    assert code == done.returncode, done.stderr
    assert says in done.stderr
    assert "Traceback" not in done.stderr


def test_wrong_database_is_explained_not_created(tmp_path: Path, populated: Relay) -> None:
    """A DATABASE_URL that names no database is refused (nothing created); an unreachable
    PostgreSQL says to check DATABASE_URL. Both exit 1 with one line."""
    missing = tmp_path / "typo.db"
    done = _cli("tasks", relay=populated, DATABASE_URL=f"sqlite:///{missing}")
    assert 1 == done.returncode
    assert f"no database at {missing}" in done.stderr
    assert not missing.exists()
    down = f"postgresql://root@127.0.0.1:{free_port()}/test"
    done = _cli("events", relay=populated, DATABASE_URL=down)
    assert 1 == done.returncode
    assert "check DATABASE_URL" in done.stderr and "Traceback" not in done.stderr
    assert 1 == len(done.stderr.strip().splitlines())
