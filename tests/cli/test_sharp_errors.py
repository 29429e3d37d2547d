"""The sharp edges a new user hits first (issue #13): each mistake is one line on stderr that
names the input and the fix, with exit status 2 for usage and 1 for a runtime failure, and
`doctor` looks without touching anything."""

# STYLE.md asks for `assert expected == actual`, which ruff's SIM300 calls a Yoda condition.

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.servers import free_port

pytestmark = pytest.mark.slow


def _cli(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The real command in a clean environment (nothing of the caller's leaks in)."""
    return subprocess.run(
        [sys.executable, "-m", "receiver", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": str(REPO),
            "HOME": str(cwd),
            "COLUMNS": "250",
            **env,
        },
    )


def _one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    """The whole of stderr, which must be a single `error: …` line with no traceback."""
    lines = done.stderr.strip().splitlines()
    assert 1 == len(lines), done.stderr
    assert lines[0].startswith("error: "), done.stderr
    return lines[0]


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file and directory under `root` with its mtime and size: what "changed nothing"
    is compared by."""
    found = {".": (root.stat().st_mtime_ns, 0)}
    for path in sorted(root.rglob("*")):
        info = path.stat()
        found[str(path.relative_to(root))] = (info.st_mtime_ns, info.st_size)
    return found


# 1. RELAY_LOG_LEVEL


@pytest.mark.parametrize("command", [["tasks"], ["handlers"], ["doctor", "--json"]])
def test_unknown_log_level_is_one_line_naming_the_variable(
    tmp_path: Path, command: list[str]
) -> None:
    """`RELAY_LOG_LEVEL=verbose` names the variable and the levels there are, exit 2."""
    done = _cli(tmp_path, *command, RELAY_LOG_LEVEL="verbose")
    if command[0] == "doctor":  # doctor reports it as its failed settings check
        assert 1 == done.returncode, done.stderr
        assert "RELAY_LOG_LEVEL='verbose'" in done.stdout and "Traceback" not in done.stderr
        return
    assert 2 == done.returncode, done.stderr
    line = _one_error_line(done)
    assert "RELAY_LOG_LEVEL='verbose'" in line
    assert "debug, info, warning, error, critical" in line


def test_log_level_in_capitals_still_works(tmp_path: Path) -> None:
    """`RELAY_LOG_LEVEL=WARNING` is the same as `warning` (the value is not case-sensitive)."""
    done = _cli(tmp_path, "handlers", "--json", RELAY_LOG_LEVEL="WARNING")
    assert 0 == done.returncode, done.stderr


# 2. DATABASE_URL


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("sqlite://relay.db", "sqlite:///relay.db"),
        ("sqlite:/relay.db", "sqlite:///path/to/relay.db"),
        ("sqlite:///", "sqlite:///path/to/relay.db"),
        ("sqlite:///songs/", "sqlite:///path/to/relay.db"),
        ("sqlite:///:memory:", "sqlite:///path/to/relay.db"),
        ("postgres://", "postgresql://user:password@host:5432/dbname"),
        ("postgresql:///", "postgresql://user:password@host:5432/dbname"),
        ("postgresql:db.internal/relay", "postgresql://user:password@host:5432/dbname"),
        ("mysql://relay@db/relay", "sqlite:///path/to/relay.db or postgresql://"),
        ("relay.db", "sqlite:///path/to/relay.db or postgresql://"),
    ],
)
def test_malformed_database_url_is_one_line_with_the_expected_form(
    tmp_path: Path, url: str, says: str
) -> None:
    """Each malformed DATABASE_URL is named with the form it should take, exit 2, and nothing
    (no key file, no directory) is created for it."""
    done = _cli(tmp_path, "tasks", DATABASE_URL=url)
    assert 2 == done.returncode, done.stderr
    line = _one_error_line(done)
    assert f"DATABASE_URL={url!r}" in line
    assert says in line
    assert [] == list(tmp_path.iterdir())


@pytest.mark.parametrize(
    "url", ["postgresql://db.internal/relay", "postgres://u:p@db:5432/x", "postgresql:///relay"]
)
def test_wellformed_postgres_urls_pass_the_form_check(tmp_path: Path, url: str) -> None:
    """A PostgreSQL URL with a host (or a database on the local socket) is not refused for its
    form: the next complaint is the missing RELAY_SECRET_KEY."""
    done = _cli(tmp_path, "tasks", DATABASE_URL=url)
    assert 2 == done.returncode
    assert "RELAY_SECRET_KEY" in _one_error_line(done)


# 3. relay.toml top-level keys, and Rich markup in messages


def test_singular_handler_table_names_its_line_and_the_right_spelling(tmp_path: Path) -> None:
    """`[[handler]]` is reported at its line with `[[handlers]]` spelled out (not eaten as
    Rich markup)."""
    (tmp_path / "relay.toml").write_text('# mine\n\n[[handler]]\nname = "a"\ntype = "disk"\n')
    done = _cli(tmp_path, "handlers")
    assert 2 == done.returncode
    line = _one_error_line(done)
    assert "relay.toml:3" in line
    assert "'handler'" in line and "[[handlers]]" in line


def test_user_text_with_brackets_is_printed_verbatim(tmp_path: Path) -> None:
    """An error that echoes user input keeps its square brackets (`[bold]` is not markup)."""
    done = _cli(tmp_path, "submit", "x", "--label", "[bold]team", AIMUSIC_API_KEY="k")
    assert 2 == done.returncode
    assert "'[bold]team'" in _one_error_line(done)


# 4. A mistyped handler type


def test_mistyped_type_names_line_handler_and_the_closest_type(tmp_path: Path) -> None:
    """`type = "fowrard"` carries file:line and the handler like every relay.toml error, and
    suggests `forward`."""
    (tmp_path / "relay.toml").write_text(
        '[[handlers]]\nname = "a"\ntype = "disk"\n\n'
        '[[handlers]]\nname = "b"\ntype = "fowrard"\nurl = "https://example.com"\n'
    )
    done = _cli(tmp_path, "handlers")
    assert 2 == done.returncode
    line = _one_error_line(done)
    assert "relay.toml:7: handler #2 ('b') key 'type'" in line
    assert "did you mean 'forward'?" in line
    assert "installed types: apprise, discord, disk, forward, s3, slack" in line


# 5. Library log lines


@pytest.mark.parametrize("url", ["nosuchscheme://foo/bar", "discord://", "discord://1234/"])
def test_bad_apprise_url_prints_only_our_line(tmp_path: Path, url: str) -> None:
    """Apprise's own error and warning lines never reach the terminal: our one line does."""
    (tmp_path / "relay.toml").write_text(
        f'[[handlers]]\nname = "a"\ntype = "apprise"\nurls = ["{url}"]\n'
    )
    for log_format in ("json", "console"):
        done = _cli(tmp_path, "handlers", RELAY_LOG_FORMAT=log_format)
        assert 2 == done.returncode
        line = _one_error_line(done)
        assert "relay.toml:4: handler #1 ('a') key 'urls'" in line


# 6. Exit status: 2 for usage, 1 for a runtime failure


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["submit", "x", "--handler", "nope"], "unknown handler(s) nope; configured: disk"),
        (["submit", "x", "--label", "team"], "--label 'team': write it as key=value"),
        (["submit", "x", "--family", "nope"], "--family 'nope': use producer or sonic"),
        (["lyrics", "x", "--family", "nope"], "--family 'nope': use producer or sonic"),
        (["tasks", "--state", "done"], "--state 'done'"),
        (["replay"], "give one of: DELIVERY_ID"),
    ],
)
def test_usage_errors_exit_2(tmp_path: Path, args: list[str], says: str) -> None:
    """A wrong flag value or a name that does not exist is a usage error: one line, exit 2."""
    assert 0 == _cli(tmp_path, "db", "upgrade").returncode
    unreachable = f"http://127.0.0.1:{free_port()}"
    done = _cli(tmp_path, *args, AIMUSIC_API_KEY="k", AIMUSIC_BASE_URL=unreachable)
    assert 2 == done.returncode, done.stderr
    assert says in _one_error_line(done)


def test_lyrics_file_that_is_not_text_exits_2(tmp_path: Path) -> None:
    """`--lyrics` naming a binary file is one line naming the file, exit 2."""
    (tmp_path / "song.mp3").write_bytes(b"\xff\xfb\x90\x00" * 8)
    done = _cli(tmp_path, "submit", "x", "--lyrics", "song.mp3", AIMUSIC_API_KEY="k")
    assert 2 == done.returncode, done.stderr
    assert "--lyrics song.mp3: cannot read it as UTF-8 text" in _one_error_line(done)


@pytest.mark.parametrize("args", [["submit", "x"], ["credits"], ["lyrics", "x"]])
def test_missing_api_key_is_a_configuration_error(tmp_path: Path, args: list[str]) -> None:
    """Without AIMUSIC_API_KEY the commands that need it stop with exit 2 before anything is
    stored or sent."""
    assert 0 == _cli(tmp_path, "db", "upgrade").returncode
    done = _cli(tmp_path, *args)
    assert 2 == done.returncode, done.stderr
    assert "AIMUSIC_API_KEY is not set" in _one_error_line(done)
    assert "no tasks" in _cli(tmp_path, "tasks").stderr


@pytest.mark.parametrize("args", [["credits"], ["submit", "x"]])
def test_unreachable_api_is_a_runtime_failure(tmp_path: Path, args: list[str]) -> None:
    """The provider cannot be reached: a runtime failure, exit 1, no traceback."""
    assert 0 == _cli(tmp_path, "db", "upgrade").returncode
    unreachable = f"http://127.0.0.1:{free_port()}"
    done = _cli(
        tmp_path, *args, AIMUSIC_API_KEY="k", AIMUSIC_BASE_URL=unreachable, RELAY_CALLBACKS="off"
    )
    assert 1 == done.returncode, done.stderr
    assert "Traceback" not in done.stderr
    assert "ConnectError" in done.stderr


# 10. doctor changes nothing


def _doctor_env(sandbox: str) -> dict[str, str]:
    """Doctor's environment on a fresh machine: a key the sandbox accepts, nothing else."""
    return {"AIMUSIC_API_KEY": "test-key", "AIMUSIC_BASE_URL": sandbox}


def test_doctor_before_the_first_serve_warns_and_writes_nothing(
    tmp_path: Path, sandbox: str
) -> None:
    """In a fresh directory doctor creates no file (no database, no `relay.db.secret`, no
    songs directory); the missing database is a warning naming the next step, so with a
    working key doctor exits 0."""
    before = _snapshot(tmp_path)
    done = _cli(tmp_path, "doctor", "--json", **_doctor_env(sandbox))
    assert before == _snapshot(tmp_path)
    assert 0 == done.returncode, done.stdout + done.stderr
    report = {c["name"]: c for c in json.loads(done.stdout)["checks"]}
    database = report["database"]
    assert "warn" == database["status"]
    assert "aimusic-relay serve" in database["advice"]
    secret = report["RELAY_SECRET_KEY"]
    assert "warn" != secret["status"] and "will be generated" in secret["detail"]


def test_doctor_on_a_working_directory_changes_no_file(tmp_path: Path, sandbox: str) -> None:
    """After `db upgrade`, with a songs directory present, doctor reads the database, the key
    file and the directory without changing any of them (mtimes and sizes equal)."""
    assert 0 == _cli(tmp_path, "db", "upgrade").returncode
    (tmp_path / "songs").mkdir()
    before = _snapshot(tmp_path)
    done = _cli(tmp_path, "doctor", "--json", **_doctor_env(sandbox))
    assert before == _snapshot(tmp_path)
    assert 0 == done.returncode, done.stdout + done.stderr
    report = {c["name"]: c for c in json.loads(done.stdout)["checks"]}
    assert "ok" == report["database"]["status"]
    assert "ok" == report["handler disk"]["status"]


def test_doctor_with_an_uncreatable_database_fails(tmp_path: Path, sandbox: str) -> None:
    """A SQLite path `serve` could not create (its directory is a file) is a failure."""
    (tmp_path / "blocker").write_text("")
    done = _cli(
        tmp_path,
        "doctor",
        "--json",
        DATABASE_URL="sqlite:///blocker/relay.db",
        **_doctor_env(sandbox),
    )
    assert 1 == done.returncode
    report = {c["name"]: c for c in json.loads(done.stdout)["checks"]}
    assert "fail" == report["database"]["status"]


def test_doctor_table_shows_brackets_from_relay_toml(tmp_path: Path, sandbox: str) -> None:
    """Doctor's table prints a relay.toml error with its `[[handlers]]` intact (not markup)."""
    (tmp_path / "relay.toml").write_text('[[handler]]\nname = "a"\ntype = "disk"\n')
    done = _cli(tmp_path, "doctor", **_doctor_env(sandbox))
    assert 1 == done.returncode
    assert "did you mean [[handlers]]?" in done.stdout
