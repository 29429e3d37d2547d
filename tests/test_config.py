"""Settings and relay.toml errors name the key, the problem and where it came from."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from handlers.registry import HandlerRegistry
from receiver.config import load_settings
from receiver.delivery.handler_set import load_handler_set
from receiver.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent


def _load(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> object:
    path = tmp_path / "relay.toml"
    path.write_text(text)
    return load_handler_set(path, HandlerRegistry.with_plugins(), env or {})


def test_bad_env_value_names_variable_and_value(tmp_path: Path) -> None:
    """A non-numeric grace period is reported with its variable name and value."""
    with pytest.raises(ConfigError) as caught:
        load_settings({"RELAY_POLL_GRACE_S": "soon", "DATABASE_URL": f"sqlite:///{tmp_path}/r.db"})
    assert "RELAY_POLL_GRACE_S='soon'" in str(caught.value)


def test_secret_values_are_not_echoed_in_errors(tmp_path: Path) -> None:
    """A wrong secret-bearing setting is named, its value hidden."""
    with pytest.raises(ConfigError) as caught:
        load_settings({"AIMUSIC_BASE_URL": "ftp://x", "DATABASE_URL": f"sqlite:///{tmp_path}/r.db"})
    assert "AIMUSIC_BASE_URL='ftp://x'" in str(caught.value)


def test_wrong_database_url_is_shown_without_its_password() -> None:
    """A DATABASE_URL of the wrong kind is named and shown, but never with its password."""
    with pytest.raises(ConfigError) as caught:
        load_settings({"DATABASE_URL": "mysql://relay:hunter2-password@db.internal/relay"})
    assert "DATABASE_URL='mysql://relay:(hidden)@db.internal/relay'" in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_secret_key_generated_once_beside_sqlite(tmp_path: Path) -> None:
    """Without RELAY_SECRET_KEY a key is generated, stored beside the DB and reused."""
    env = {"DATABASE_URL": f"sqlite:///{tmp_path}/r.db"}
    first = load_settings(env).secret_keys
    assert first == load_settings(env).secret_keys
    assert (tmp_path / "r.db.secret").stat().st_mode & 0o077 == 0


def test_read_only_settings_create_no_key_file(tmp_path: Path) -> None:
    """`read_only` (doctor) reads an existing key file but never writes one."""
    env = {"DATABASE_URL": f"sqlite:///{tmp_path}/sub/r.db"}
    assert load_settings(env, read_only=True).relay_secret_key is None
    assert [] == list(tmp_path.iterdir())
    written = load_settings(env).secret_keys
    assert written == load_settings(env, read_only=True).secret_keys


def test_empty_or_unusable_key_file_is_one_line(tmp_path: Path) -> None:
    """An empty `.secret` file, or a database directory that is a file, names the path and the
    way out instead of a traceback."""
    (tmp_path / "r.db.secret").write_text("\n")
    with pytest.raises(ConfigError, match=r"r\.db\.secret .* is empty: delete it"):
        load_settings({"DATABASE_URL": f"sqlite:///{tmp_path}/r.db"})
    (tmp_path / "blocker").write_text("")
    with pytest.raises(ConfigError, match="cannot keep the generated RELAY_SECRET_KEY in"):
        load_settings({"DATABASE_URL": f"sqlite:///{tmp_path}/blocker/r.db"})


def test_postgres_requires_secret_key() -> None:
    """With PostgreSQL there is no file to keep a key in: the setting is required."""
    with pytest.raises(ConfigError, match="RELAY_SECRET_KEY"):
        load_settings({"DATABASE_URL": "postgresql://localhost/test"})


def test_handler_option_error_names_file_line_handler_and_key(tmp_path: Path) -> None:
    """An unknown disk option points at its line in relay.toml."""
    with pytest.raises(ConfigError) as caught:
        _load(
            tmp_path,
            '[[handlers]]\nname = "a"\ntype = "disk"\n\n[[handlers]]\nname = "b"\n'
            'type = "disk"\npaht = "x"\n',
        )
    message = str(caught.value)
    assert "relay.toml:8" in message
    assert "'b'" in message and "paht" in message


def test_unknown_event_kind_is_refused(tmp_path: Path) -> None:
    """A typo in `events` is a start-up error, not a silent never-matching filter."""
    with pytest.raises(ConfigError, match="events"):
        _load(tmp_path, '[[handlers]]\nname = "a"\ntype = "disk"\nevents = ["song.complete"]\n')


def test_unknown_type_lists_installed_types(tmp_path: Path) -> None:
    """An unknown handler type says which types are installed."""
    with pytest.raises(ConfigError, match=r"installed types: .*disk"):
        _load(tmp_path, '[[handlers]]\nname = "a"\ntype = "dsik"\n')


def test_duplicate_names_are_refused(tmp_path: Path) -> None:
    """Two handlers with one name are an error (names key deliveries and metrics)."""
    with pytest.raises(ConfigError, match="used twice"):
        _load(
            tmp_path,
            '[[handlers]]\nname = "a"\ntype = "disk"\n[[handlers]]\nname = "a"\ntype = "disk"\n',
        )


def test_env_interpolation_and_missing_variable(tmp_path: Path) -> None:
    """`${VAR}` is read from the environment; a missing one is named."""
    handlers = _load(
        tmp_path,
        '[[handlers]]\nname = "a"\ntype = "disk"\npath = "${SONGS}"\n',
        {"SONGS": "/data/songs"},
    )
    assert handlers.handlers[0].handler.config.path == "/data/songs"  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match=r"\$\{SONGS\} is not set"):
        _load(tmp_path, '[[handlers]]\nname = "a"\ntype = "disk"\npath = "${SONGS}"\n', {})


def test_invalid_toml_names_the_line(tmp_path: Path) -> None:
    """A TOML syntax error reports its line."""
    with pytest.raises(ConfigError, match="line 2"):
        _load(tmp_path, '[[handlers]]\nname = "a\n')


def test_no_file_means_one_disk_handler_writing_to_songs() -> None:
    """Without relay.toml the default is one disk handler writing to ./songs."""
    handlers = load_handler_set(None, HandlerRegistry.with_plugins())
    [only] = handlers.handlers
    assert (only.spec.type, only.handler.config.path) == ("disk", "songs")  # type: ignore[attr-defined]


def test_serve_with_bad_config_exits_2_without_traceback(tmp_path: Path) -> None:
    """`serve` with a broken relay.toml prints one line naming the key and exits 2."""
    (tmp_path / "relay.toml").write_text('[[handlers]]\nname = "a"\ntype = "disk"\ntemplate = 3\n')
    done = subprocess.run(
        [sys.executable, "-m", "receiver", "serve", "--port", "1"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": str(REPO),
            "DATABASE_URL": f"sqlite:///{tmp_path}/r.db",
        },
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "relay.toml:4" in done.stderr and "template" in done.stderr


def test_example_config_loads_and_covers_every_builtin_type(tmp_path: Path) -> None:
    """deploy/relay.example.toml builds, with one handler of each built-in type."""
    handlers = load_handler_set(
        REPO / "deploy" / "relay.example.toml", HandlerRegistry.with_plugins(), {}
    )
    types = {h.spec.type for h in handlers}
    assert types == set(HandlerRegistry.with_plugins().types())
    chat = handlers.get("team-chat")
    assert chat is not None and chat.spec.after == ["bucket"] and chat.stage == 1
