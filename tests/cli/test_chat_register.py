"""`aimusic-relay chat register`, run as a process against the Discord stand-in: it
bulk-overwrites the `/song` command, prints the Slack manifest for this relay, and every
mistake ends in one line naming the fix, with no token printed."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from receiver.chat.commands import PROMPT_LIMIT
from receiver.chat.manifest import (
    PLACEHOLDER_URL,
    REGENERATE,
    deploy_manifest_text,
    discord_commands,
    slack_manifest,
)
from tests.chat.helpers import DISCORD_KEY
from tests.conftest import REPO
from tests.discord_catcher import DiscordCatcher
from tests.servers import free_port, run_asgi

pytestmark = pytest.mark.slow

BOT_TOKEN = "discordbot-register-" + secrets.token_hex(8)
SLACK_TOKEN = "xoxb-register-" + secrets.token_hex(8)
SLACK_SECRET = "slacksign-register-" + secrets.token_hex(8)
APPLICATION_ID = "1100000000000000077"
PUBLIC = "https://music.example.org"

SLACK_TABLE = """
[chat.slack]
signing_secret = "${CHAT_SLACK_SECRET}"
token = "${CHAT_SLACK_TOKEN}"
command = "/tune"
"""

DISCORD_TABLE = """
[chat.discord]
public_key = "{key}"
application_id = "${CHAT_DISCORD_APP}"
bot_token = "${CHAT_DISCORD_TOKEN}"
api_base_url = "{discord}"
"""


@pytest.fixture(scope="module")
def discord_server() -> Iterator[tuple[DiscordCatcher, str]]:
    """The Discord stand-in for the module, taking only BOT_TOKEN for APPLICATION_ID."""
    catcher = DiscordCatcher(bot_token=BOT_TOKEN, application_id=APPLICATION_ID)
    with run_asgi(catcher.app) as url:
        yield catcher, url


@pytest.fixture
def discord(discord_server: tuple[DiscordCatcher, str]) -> DiscordCatcher:
    """The stand-in with no commands and nothing recorded."""
    discord_server[0].reset()
    return discord_server[0]


@pytest.fixture
def register(
    tmp_path: Path, discord_server: tuple[DiscordCatcher, str]
) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Factory: `register(tables, **env)` writes relay.toml holding `tables` (`{discord}`
    and `{key}` filled in) and runs `chat register` on it; `env` overrides the right
    credentials. Checks no secret is printed either way."""

    def run(
        tables: str | None, *, discord_url: str | None = None, **env: str
    ) -> subprocess.CompletedProcess[str]:
        workdir = tmp_path / f"run{len(list(tmp_path.iterdir()))}"
        workdir.mkdir()
        full_env = {
            "PYTHONPATH": str(REPO),
            "DATABASE_URL": f"sqlite:///{workdir / 'relay.db'}",
            "RELAY_SECRET_KEY": secrets.token_urlsafe(16),
            "RELAY_PUBLIC_URL": PUBLIC,
            "CHAT_SLACK_SECRET": SLACK_SECRET,
            "CHAT_SLACK_TOKEN": SLACK_TOKEN,
            "CHAT_DISCORD_APP": APPLICATION_ID,
            "CHAT_DISCORD_TOKEN": BOT_TOKEN,
            **env,
        }
        if tables is not None:
            config = workdir / "relay.toml"
            base = discord_url or discord_server[1]
            text = tables.replace("{key}", DISCORD_KEY.verify_key.encode().hex())
            config.write_text(text.replace("{discord}", base))
            full_env["RELAY_CONFIG"] = str(config)
        environ = {k: v for k, v in os.environ.items() if not k.startswith(("RELAY_", "CHAT_"))}
        done = subprocess.run(
            [sys.executable, "-m", "receiver", "chat", "register"],
            env={**environ, "COLUMNS": "250", **full_env},
            cwd=workdir,
            capture_output=True,
            text=True,
            timeout=60,
        )
        for secret in (BOT_TOKEN, SLACK_TOKEN, SLACK_SECRET, *env.values()):
            if "token" in secret or "sign" in secret:
                assert secret not in done.stdout + done.stderr
        return done

    return run


def test_register_overwrites_the_discord_command_and_prints_the_slack_manifest(
    register: Callable[..., subprocess.CompletedProcess[str]], discord: DiscordCatcher
) -> None:
    """Both tables: Discord is sent the one `/song` command with the bot token and answers it
    back with an id, which is printed; stdout is the manifest alone, for this relay's public
    URL and the configured `/tune`."""
    done = register(SLACK_TABLE + DISCORD_TABLE)
    assert 0 == done.returncode, done.stderr
    [sent] = discord.sent(f"/applications/{APPLICATION_ID}/commands")
    assert ("PUT", f"Bot {BOT_TOKEN}") == (sent.method, sent.headers["authorization"])
    assert discord_commands() == sent.body
    [stored] = discord.commands
    assert f"/song (id {stored['id']})" in done.stderr
    assert f"{PUBLIC}/chat/discord/interactions" in done.stderr
    manifest = yaml.safe_load(done.stdout)
    assert slack_manifest(PUBLIC, "/tune") == manifest
    [slash] = manifest["features"]["slash_commands"]
    assert (f"{PUBLIC}/chat/slack/commands", "/tune") == (slash["url"], slash["command"])
    assert (
        f"{PUBLIC}/chat/slack/interactions" == manifest["settings"]["interactivity"]["request_url"]
    )


def test_registering_again_overwrites_rather_than_adds(
    register: Callable[..., subprocess.CompletedProcess[str]], discord: DiscordCatcher
) -> None:
    """A second run (after an upgrade, say) leaves the application with one command."""
    assert 0 == register(DISCORD_TABLE).returncode
    assert 0 == register(DISCORD_TABLE).returncode
    assert 2 == len(discord.sent())
    assert ["song"] == [c["name"] for c in discord.commands]


def test_the_discord_command_has_one_optional_text_option() -> None:
    """`/song` takes one optional free-text `text` (what the parser reads, like Slack's
    command text), long enough for a prompt at the limit plus its options."""
    [command] = discord_commands()
    assert ("song", 1) == (command["name"], command["type"])
    [option] = command["options"]
    assert ("text", 3, False) == (option["name"], option["type"], option["required"])
    assert option["max_length"] >= PROMPT_LIMIT + len(" family:producer")
    assert len(option["description"]) <= 100  # Discord refuses longer descriptions


def test_a_discord_table_alone_prints_the_default_slack_manifest(
    register: Callable[..., subprocess.CompletedProcess[str]], discord: DiscordCatcher
) -> None:
    """No `[chat.slack]`: the manifest is still printed, with `/song`, for when Slack comes."""
    done = register(DISCORD_TABLE)
    assert 0 == done.returncode, done.stderr
    assert slack_manifest(PUBLIC) == yaml.safe_load(done.stdout)


def test_a_slack_table_alone_sends_nothing_to_discord(
    register: Callable[..., subprocess.CompletedProcess[str]], discord: DiscordCatcher
) -> None:
    """Only `[chat.slack]`: no Discord call, and the manifest names `/tune`."""
    done = register(SLACK_TABLE)
    assert 0 == done.returncode, done.stderr
    assert [] == discord.sent()
    assert "no [chat.discord] table" in done.stderr
    assert slack_manifest(PUBLIC, "/tune") == yaml.safe_load(done.stdout)


def test_a_plain_http_public_url_is_warned_about(
    register: Callable[..., subprocess.CompletedProcess[str]], discord: DiscordCatcher
) -> None:
    """Slack and Discord call HTTPS only: the manifest is printed, with a warning."""
    done = register(SLACK_TABLE, RELAY_PUBLIC_URL="http://127.0.0.1:8000")
    assert 0 == done.returncode, done.stderr
    assert "is not public HTTPS" in done.stderr
    assert "http://127.0.0.1:8000/chat/slack/commands" in done.stdout


def test_a_wrong_bot_token_exits_2_naming_bot_token(
    register: Callable[..., subprocess.CompletedProcess[str]], discord: DiscordCatcher
) -> None:
    """Discord's 401: exit 2, one line pointing at bot_token, no manifest, no token shown."""
    done = register(DISCORD_TABLE, CHAT_DISCORD_TOKEN="discordbot-register-wrong-token")
    assert 2 == done.returncode
    assert "HTTP 401" in done.stderr
    assert "check [chat.discord] bot_token" in done.stderr
    assert ("", []) == (done.stdout, discord.commands)


def test_a_wrong_application_id_exits_2_naming_application_id(
    register: Callable[..., subprocess.CompletedProcess[str]], discord: DiscordCatcher
) -> None:
    """Discord's 404 for an application the token is not for: exit 2, application_id named."""
    done = register(DISCORD_TABLE, CHAT_DISCORD_APP="1100000000000000099")
    assert 2 == done.returncode
    assert "no application 1100000000000000099 (HTTP 404)" in done.stderr
    assert "check [chat.discord] application_id" in done.stderr
    assert "" == done.stdout


def test_an_unreachable_discord_exits_1(
    register: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    """Nothing listens at api_base_url: exit 1 naming the host and what to check."""
    done = register(DISCORD_TABLE, discord_url=f"http://127.0.0.1:{free_port()}")
    assert 1 == done.returncode
    assert "cannot reach Discord at 127.0.0.1" in done.stderr
    assert "" == done.stdout


def test_no_relay_toml_exits_2_naming_relay_config(
    register: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    """No RELAY_CONFIG and no ./relay.toml: exit 2 saying to set RELAY_CONFIG."""
    done = register(None)
    assert 2 == done.returncode
    assert "error: no relay.toml: set RELAY_CONFIG" in done.stderr
    assert 1 == len(done.stderr.strip().splitlines())


def test_no_chat_table_exits_2_saying_to_add_one(
    register: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    """A relay.toml with handlers only: exit 2, nothing sent, one line saying what to add."""
    done = register('[[handlers]]\nname = "disk"\ntype = "disk"\npath = "songs"\n')
    assert 2 == done.returncode
    assert "has no [chat.slack] or [chat.discord] table" in done.stderr


def test_a_broken_chat_table_exits_2_with_its_line(
    register: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    """A typo in `[chat.discord]` is the config error with its file and line."""
    done = register(DISCORD_TABLE.replace("bot_token", "bot_tokn"))
    assert 2 == done.returncode
    assert "relay.toml:" in done.stderr
    assert "did you mean 'bot_token'?" in done.stderr


def test_the_checked_in_slack_manifest_is_the_generated_one() -> None:
    """deploy/slack-manifest.yaml is `receiver.chat.manifest`'s output for the placeholder
    URL; when the code changes, regenerate the file rather than edit it."""
    checked_in = (REPO / "deploy" / "slack-manifest.yaml").read_text()
    assert deploy_manifest_text() == checked_in, f"regenerate it: {REGENERATE}"
    assert slack_manifest(PLACEHOLDER_URL) == yaml.safe_load(checked_in)
