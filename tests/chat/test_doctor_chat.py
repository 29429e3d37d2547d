"""`aimusic-relay doctor` on the chat apps, run as a process against the Slack and Discord
stand-ins: each configured app gets a line that proves its token without posting anything,
and warns when Slack or Discord could not call the relay's public URL."""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from receiver.sandbox.slack import SlackCatcher
from tests.chat.helpers import DISCORD_KEY
from tests.cli.test_doctor import _by_name, _doctor
from tests.conftest import Relay, new_relay
from tests.discord_catcher import DiscordCatcher
from tests.servers import run_asgi

pytestmark = pytest.mark.slow

SLACK_TOKEN = "xoxb-doctorchat-" + secrets.token_hex(8)
SLACK_SECRET = "slacksign-doctorchat-" + secrets.token_hex(8)
DISCORD_TOKEN = "discordbot-doctorchat-" + secrets.token_hex(8)
APPLICATION_ID = "1100000000000000042"
PUBLIC_HTTPS = "https://relay.invalid"
"""Public HTTPS in form; `.invalid` never resolves, so doctor's own /healthz check fails fast."""

HANDLERS = """
[[handlers]]
name = "disk"
type = "disk"
path = "{{workdir}}/songs"
"""

SLACK_TABLE = """
[chat.slack]
signing_secret = "${{CHAT_SLACK_SECRET}}"
token = "${{CHAT_SLACK_TOKEN}}"
api_base_url = "{slack}/api"
"""

DISCORD_TABLE = """
[chat.discord]
public_key = "{key}"
application_id = "${{CHAT_DISCORD_APP}}"
bot_token = "${{CHAT_DISCORD_TOKEN}}"
api_base_url = "{discord}"
"""


@pytest.fixture(scope="module")
def catchers() -> Iterator[tuple[str, str]]:
    """The Slack and Discord stand-ins, taking only the right tokens; their base URLs."""
    slack = SlackCatcher(token=SLACK_TOKEN)
    discord = DiscordCatcher(bot_token=DISCORD_TOKEN, application_id=APPLICATION_ID)
    with run_asgi(slack.app) as slack_url, run_asgi(discord.app) as discord_url:
        yield slack_url, discord_url


@pytest.fixture
def doctor(
    tmp_path: Path, sandbox: str, catchers: tuple[str, str]
) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Factory: `doctor(chat, handlers=HANDLERS, **env)` runs `doctor --json` on a relay (not
    started) whose relay.toml holds `handlers` then `chat` (the tables, `{slack}`/`{discord}`/
    `{key}` filled in); `env` overrides the right tokens and public HTTPS URL."""

    def run(chat: str, *, handlers: str = HANDLERS, **env: str) -> subprocess.CompletedProcess[str]:
        workdir = tmp_path / f"relay{len(list(tmp_path.iterdir()))}"
        workdir.mkdir()
        tables = chat.format(
            slack=catchers[0], discord=catchers[1], key=DISCORD_KEY.verify_key.encode().hex()
        )
        defaults = {
            "CHAT_SLACK_SECRET": SLACK_SECRET,
            "CHAT_SLACK_TOKEN": SLACK_TOKEN,
            "CHAT_DISCORD_APP": APPLICATION_ID,
            "CHAT_DISCORD_TOKEN": DISCORD_TOKEN,
            "RELAY_PUBLIC_URL": PUBLIC_HTTPS,
        }
        relay: Relay = new_relay(workdir, sandbox, handlers + tables, **defaults)
        done = _doctor(relay, "--json", **env)
        tokens = {key: value for key, value in env.items() if key.endswith("_TOKEN")}
        for secret in (SLACK_TOKEN, SLACK_SECRET, DISCORD_TOKEN, *tokens.values()):
            assert secret not in done.stdout + done.stderr
        return done

    return run


def _chat_lines(done: subprocess.CompletedProcess[str]) -> dict[str, dict[str, Any]]:
    return {name: c for name, c in _by_name(done).items() if name.startswith("chat")}


def test_right_credentials_and_public_https_are_ok(
    doctor: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    """Both tokens accepted, the Discord token of the configured application, an https public
    URL: one ok line per app, naming the request URLs to set, and no secret printed."""
    lines = _chat_lines(doctor(SLACK_TABLE + DISCORD_TABLE))
    assert {"chat slack": "ok", "chat discord": "ok"} == {n: c["status"] for n, c in lines.items()}
    assert "auth.test" in lines["chat slack"]["detail"]
    assert f"{PUBLIC_HTTPS}/chat/slack/interactions" in lines["chat slack"]["detail"]
    assert f"application {APPLICATION_ID}" in lines["chat discord"]["detail"]
    assert f"{PUBLIC_HTTPS}/chat/discord/interactions" in lines["chat discord"]["detail"]


def test_a_relay_toml_with_only_a_chat_app_says_so_on_the_handlers_line(
    doctor: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    """No `[[handlers]]`, only `[chat.slack]`: the handlers line is ok and says why there are
    none instead of listing nothing, and the Slack app is checked as usual."""
    checks = _by_name(doctor(SLACK_TABLE, handlers=""))
    assert "ok" == checks["handlers"]["status"]
    assert checks["handlers"]["detail"].startswith("no [[handlers]] of its own")
    assert "ok" == checks["chat slack"]["status"]


def test_a_wrong_slack_token_fails_with_advice(
    doctor: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    """Slack answers `invalid_auth`: a failed line that says so and what token to use; doctor
    exits 1."""
    done = doctor(SLACK_TABLE, CHAT_SLACK_TOKEN="xoxb-doctorchat-wrong-token")
    assert 1 == done.returncode
    line = _chat_lines(done)["chat slack"]
    assert ("fail", True) == (line["status"], "invalid_auth" in line["detail"])
    assert "Bot User OAuth Token" in line["advice"]


def test_a_wrong_discord_token_fails_with_advice(
    doctor: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    """Discord answers 401 to `GET /applications/@me`: a failed line pointing at the Bot page."""
    done = doctor(DISCORD_TABLE, CHAT_DISCORD_TOKEN="discordbot-doctorchat-wrong-token")
    assert 1 == done.returncode
    line = _chat_lines(done)["chat discord"]
    assert ("fail", True) == (line["status"], "HTTP 401" in line["detail"])
    assert "bot_token" in line["advice"]


def test_a_token_of_another_application_fails(
    doctor: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    """The token is accepted but belongs to another application than `application_id`."""
    line = _chat_lines(doctor(DISCORD_TABLE, CHAT_DISCORD_APP="999"))["chat discord"]
    assert "fail" == line["status"]
    assert f"belongs to application {APPLICATION_ID}" in line["detail"]
    assert "not application_id 999" in line["detail"]
    assert "APPLICATION ID" in line["advice"]


def test_an_http_public_url_warns_naming_the_request_urls(
    doctor: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    """Slack and Discord call HTTPS only: with an http public URL both lines warn, and the
    advice names every request URL to set."""
    lines = _chat_lines(
        doctor(SLACK_TABLE + DISCORD_TABLE, RELAY_PUBLIC_URL="http://relay.invalid")
    )
    assert {"chat slack": "warn", "chat discord": "warn"} == {
        n: c["status"] for n, c in lines.items()
    }
    assert "http://relay.invalid is not a public https://" in lines["chat slack"]["detail"]
    slack_advice, discord_advice = lines["chat slack"]["advice"], lines["chat discord"]["advice"]
    assert "https://<relay>/chat/slack/commands" in slack_advice
    assert "https://<relay>/chat/slack/interactions" in slack_advice
    assert "https://<relay>/chat/discord/interactions" in discord_advice


def test_without_chat_tables_there_are_no_chat_lines(
    doctor: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    """A relay.toml with handlers only: the report has no chat line at all."""
    done = doctor("")
    assert "handlers" in _by_name(done)
    assert {} == _chat_lines(done)


def test_a_broken_chat_table_is_a_failed_line_not_a_traceback(
    doctor: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    """A public key of the wrong length: one failed `chat` line naming the key and its line."""
    done = doctor(SLACK_TABLE + DISCORD_TABLE.replace("{key}", "abc123"))
    assert 1 == done.returncode
    line = _chat_lines(done)["chat"]
    assert "fail" == line["status"]
    assert "relay.toml:" in line["detail"] and "'public_key'" in line["detail"]
    assert "Traceback" not in done.stderr
