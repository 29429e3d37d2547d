"""The operator commands (`tasks`, `events`, `dead-letters`, `replay`) run as users run them:
as processes, on the SQLite database of a relay that delivered a real song from the sandbox."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import queue
import re
import select
import signal
import struct
import subprocess
import sys
import termios
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
LONG_TITLE = "Ops: a title long enough that an 80-column terminal has to cut it short"
"""The song's title: wider than a narrow terminal leaves for it."""
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def _cli(*args: str, relay: Relay, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "receiver", *args],
        env={**os.environ, **relay.env, "COLUMNS": "250", **env},
        cwd=relay.workdir,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _on_terminal(*args: str, relay: Relay, columns: int = 80) -> str:
    """What the command shows on a terminal `columns` wide (a pseudo-terminal on stdout and
    stderr), escape codes removed."""
    master, child_side = pty.openpty()
    fcntl.ioctl(child_side, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    env = {**os.environ, **relay.env, "COLUMNS": str(columns), "TERM": "xterm-256color"}
    process = subprocess.Popen(
        [sys.executable, "-m", "receiver", *args],
        env=env,
        cwd=relay.workdir,
        stdin=subprocess.DEVNULL,
        stdout=child_side,
        stderr=child_side,
    )
    os.close(child_side)
    chunks: list[bytes] = []
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        assert 0 == process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(master)
    return ANSI.sub("", b"".join(chunks).decode()).replace("\r\n", "\n")


def _tsv(stdout: str) -> list[dict[str, str]]:
    """Rows of tab-separated output under its header line, each row checked to be one line
    with one field per column."""
    header, *lines = stdout.splitlines()
    columns = header.split("\t")
    for line in lines:
        assert len(columns) == len(line.split("\t")), line
    return [dict(zip(columns, line.split("\t"), strict=True)) for line in lines]


def _broken_relay(make: Callable[..., Relay]) -> tuple[Relay, dict[str, Any]]:
    """A relay whose `broken` handler dead-letters the song it just delivered to `disk`."""
    relay = make(config=BROKEN, start=False)
    (relay.workdir / "blocker").write_text("a file where a directory should be")
    relay.start()
    task = relay.wait_settled(relay.submit("cli ops song", title=LONG_TITLE)["id"])
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


def test_lists_on_a_pipe_are_one_row_per_line_under_a_header(populated: Relay) -> None:
    """Off a terminal (here a pipe, 80 columns) `tasks`, `events` and `dead-letters` print
    tab-separated rows under a header line, whole: no id, title or error folded or cut."""
    [task] = json.loads(_cli("tasks", "--json", relay=populated).stdout)
    narrow = {"COLUMNS": "80"}
    [row] = _tsv(_cli("tasks", relay=populated, **narrow).stdout)
    assert (task["upstream_id"], task["id"], LONG_TITLE, "cli ops song", "succeeded") == (
        row["upstream_id"],
        row["id"],
        row["title"],
        row["prompt"],
        row["state"],
    )
    events = json.loads(_cli("events", "--json", relay=populated).stdout)
    shown = _tsv(_cli("events", relay=populated, **narrow).stdout)
    assert [(e["id"], e["task_id"], e["clip_id"], e["kind"]) for e in events] == [
        (r["id"], r["task_id"], r["clip_id"], r["kind"]) for r in shown
    ]
    [dead] = json.loads(_cli("dead-letters", "--json", relay=populated).stdout)
    [letter] = _tsv(_cli("dead-letters", relay=populated, **narrow).stdout)
    assert (dead["delivery_id"], dead["event_id"], dead["task_id"], dead["last_error"]) == (
        letter["delivery_id"],
        letter["event_id"],
        letter["task_id"],
        letter["last_error"],
    )


def test_lists_on_a_narrow_terminal_keep_ids_whole_and_cut_other_cells(populated: Relay) -> None:
    """On an 80-column terminal every id stays whole on one line; a long title is cut with `…`,
    and shown whole where the terminal is wide enough."""
    [task] = json.loads(_cli("tasks", "--json", relay=populated).stdout)
    events = json.loads(_cli("events", "--json", relay=populated).stdout)
    [dead] = json.loads(_cli("dead-letters", "--json", relay=populated).stdout)
    shown = {
        "tasks": (_on_terminal("tasks", relay=populated), [task["upstream_id"], task["id"]]),
        "events": (
            _on_terminal("events", relay=populated),
            [i for e in events for i in (e["id"], e["task_id"], e["clip_id"]) if i != "-"],
        ),
        "dead-letters": (
            _on_terminal("dead-letters", relay=populated),
            [dead["delivery_id"], dead["event_id"], dead["task_id"]],
        ),
    }
    for command, (screen, ids) in shown.items():
        lines = screen.splitlines()
        for identifier in ids:
            assert any(identifier in line for line in lines), (command, identifier, screen)
    tasks_screen = shown["tasks"][0]
    assert "title" in tasks_screen and "…" in tasks_screen and LONG_TITLE not in tasks_screen
    assert LONG_TITLE in _on_terminal("tasks", relay=populated, columns=250)


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
