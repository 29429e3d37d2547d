"""`[chat.*]` in relay.toml: errors name the table, the key and the line; `${ENV}` values work;
the chat secrets are hidden wherever the relay's own are."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from handlers.registry import HandlerRegistry
from receiver.chat import ChatSettings, load_chat_settings
from receiver.config import Settings
from receiver.delivery.handler_set import load_handler_set
from receiver.errors import ConfigError
from receiver.services import build_services
from tests.conftest import REPO

HANDLER = '[[handlers]]\nname = "disk"\ntype = "disk"\n\n'
KEY = "ab" * 32
SLACK = '[chat.slack]\nsigning_secret = "s3cret-sign"\ntoken = "xoxb-1"\n'
DISCORD = f'[chat.discord]\npublic_key = "{KEY}"\napplication_id = "42"\nbot_token = "bot-1"\n'


def _load(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> ChatSettings:
    path = tmp_path / "relay.toml"
    path.write_text(HANDLER + text)
    return load_chat_settings(path, env or {})


def test_both_tables_load_with_their_defaults(tmp_path: Path) -> None:
    """The required keys alone give working apps with the defaults the issue names."""
    chat = _load(tmp_path, SLACK + DISCORD)
    assert chat.slack is not None and chat.discord is not None
    assert ("/song", False, None, []) == (
        chat.slack.command,
        chat.slack.upload_audio,
        chat.slack.user_daily_credits,
        chat.slack.allowed_channels,
    )
    assert (KEY, "42", []) == (
        chat.discord.public_key,
        chat.discord.application_id,
        chat.discord.allowed_roles,
    )
    assert ["s3cret-sign", "xoxb-1", "bot-1"] == chat.secret_values()


def test_no_file_or_no_table_means_chat_is_off(tmp_path: Path) -> None:
    """Without relay.toml, or without `[chat.*]` in it, both apps are off."""
    assert ChatSettings() == load_chat_settings(None)
    assert ChatSettings() == _load(tmp_path, "")


def test_handlers_accept_the_chat_table(tmp_path: Path) -> None:
    """relay.toml with `[chat.slack]` still loads its handlers (the key is no longer unknown)."""
    path = tmp_path / "relay.toml"
    path.write_text(HANDLER + SLACK)
    assert ["disk"] == [h.name for h in load_handler_set(path, HandlerRegistry.with_plugins())]


def test_a_file_with_only_a_chat_app_needs_no_handlers(tmp_path: Path) -> None:
    """A team that only wants the Slack app writes `[chat.slack]` and nothing else: the file
    loads with no handlers of its own, while a file with neither is still refused."""
    path = tmp_path / "relay.toml"
    path.write_text(SLACK)
    assert [] == list(load_handler_set(path, HandlerRegistry.with_plugins()))
    path.write_text("# nothing here\n")
    with pytest.raises(ConfigError, match=r"no \[\[handlers\]\] entries; add at least one"):
        load_handler_set(path, HandlerRegistry.with_plugins())


def test_unknown_top_level_key_names_both_known_ones(tmp_path: Path) -> None:
    """A misspelt top-level table is named with its line and what the file may hold."""
    path = tmp_path / "relay.toml"
    path.write_text(HANDLER + '[chats.slack]\ntoken = "x"\n')
    with pytest.raises(ConfigError) as caught:
        load_handler_set(path, HandlerRegistry.with_plugins())
    assert (
        f"{path}:5: unknown top-level key 'chats' (did you mean [chat.*]?); relay.toml holds "
        "only [[handlers]] and [chat.slack] / [chat.discord]"
    ) == str(caught.value)


def test_unknown_chat_table_is_named(tmp_path: Path) -> None:
    """`[chat.slak]` is refused with its line and a suggestion."""
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, '[chat.slak]\ntoken = "x"\n')
    assert (
        f"{tmp_path / 'relay.toml'}:5: unknown table [chat.slak] (did you mean [chat.slack]?); "
        "chat holds only [chat.slack] and [chat.discord]"
    ) == str(caught.value)


def test_unknown_key_is_named_with_its_line(tmp_path: Path) -> None:
    """A key the table does not take is named, on its own line, with the closest real one."""
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, SLACK + "upload_audo = true\n")
    message = str(caught.value)
    assert message.startswith(
        f"{tmp_path / 'relay.toml'}:8: [chat.slack] key 'upload_audo': unknown key "
        "(did you mean 'upload_audio'?)"
    ), message


def test_missing_required_key_points_at_the_table(tmp_path: Path) -> None:
    """A table without its token is named at its header line."""
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, '[chat.slack]\nsigning_secret = "x1234"\n')
    assert f"{tmp_path / 'relay.toml'}:5: [chat.slack] key 'token': Field required" == str(
        caught.value
    )


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("abc", "got 3 characters"),
        ("zz" * 32, "got 64 characters that are not all hex"),
    ],
)
def test_bad_public_key_says_why(tmp_path: Path, value: str, why: str) -> None:
    """The public key must be the portal's 64 hex characters; the error says what it got."""
    text = DISCORD.replace(KEY, value)
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, text)
    message = str(caught.value)
    assert f"{tmp_path / 'relay.toml'}:6: [chat.discord] key 'public_key': must be 64 hex" in (
        message
    )
    assert message.endswith(why), message


def test_env_values_are_interpolated(tmp_path: Path) -> None:
    """`${VAR}` and `${VAR:-default}` fill chat keys as they do handler options; an unset
    one is an error naming the table."""
    text = (
        '[chat.slack]\nsigning_secret = "${SIGN}"\ntoken = "${TOKEN}"\ncommand = "${CMD:-/tune}"\n'
    )
    chat = _load(tmp_path, text, {"SIGN": "from-env-sign", "TOKEN": "xoxb-from-env"})
    assert chat.slack is not None
    assert ("from-env-sign", "xoxb-from-env", "/tune") == (
        chat.slack.signing_secret.get_secret_value(),
        chat.slack.token.get_secret_value(),
        chat.slack.command,
    )
    with pytest.raises(ConfigError, match=r"\[chat\.slack\]: \$\{TOKEN\} is not set"):
        _load(tmp_path, text, {"SIGN": "x"})


def test_bad_values_are_explained(tmp_path: Path) -> None:
    """A command without its slash, a non-URL api_base_url and a zero budget are each named."""
    text = SLACK + 'command = "song"\napi_base_url = "slack.local"\nuser_daily_credits = 0\n'
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, text)
    message = str(caught.value)
    for key in ("command", "api_base_url", "user_daily_credits"):
        assert f"[chat.slack] key {key!r}" in message


SLACK_HANDLER = (
    '[[handlers]]\nname = "team"\ntype = "slack"\ntoken = "xoxb-handler-9"\nchannel = "#m"\n\n'
)


def test_logs_hide_chat_and_handler_secrets_once_services_are_built(tmp_path: Path) -> None:
    """In a fresh process set up as `serve` is (logging from the environment, then the
    services), a chat secret or a handler's secret (its `secrets()`) quoted in any log line is
    shown as `***`."""
    (tmp_path / "relay.toml").write_text(HANDLER + SLACK_HANDLER + SLACK + DISCORD)
    script = textwrap.dedent(
        f"""
        import logging
        from receiver.config import Settings
        from receiver.logging import configure_logging, get_logger
        from receiver.services import build_services
        configure_logging("info", "json", [])
        build_services(Settings(
            relay_secret_key="k" * 16,
            database_url="sqlite:///{tmp_path / "relay.db"}",
            relay_config="{tmp_path / "relay.toml"}",
        ))
        get_logger().info("structlog", note="s3cret-sign and bot-1 and xoxb-1 and xoxb-handler-9")
        logging.getLogger("uvicorn.error").warning("stdlib quoted s3cret-sign")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert 0 == done.returncode, done.stderr
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    assert ["*** and *** and *** and ***", "stdlib quoted ***"] == [
        line.get("note", line["event"]) for line in lines
    ]


def test_a_handler_may_not_take_the_name_the_slack_app_reserves(tmp_path: Path) -> None:
    """`[chat.slack]` adds its own `chat-slack` handler; a file entry of that name is refused
    with an error saying what reserves it."""
    path = tmp_path / "relay.toml"
    path.write_text('[[handlers]]\nname = "chat-slack"\ntype = "disk"\n\n' + SLACK)
    settings = Settings(
        relay_secret_key="k" * 16,
        database_url=f"sqlite:///{tmp_path / 'relay.db'}",
        relay_config=str(path),
    )
    with pytest.raises(ConfigError) as caught:
        build_services(settings)
    assert (
        f"{path}: handler name 'chat-slack' is reserved for [chat.slack] (its replies in "
        "Slack); give that [[handlers]] entry another name"
    ) == str(caught.value)
