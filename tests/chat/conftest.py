"""The chat tests' fixtures: the Slack and Discord stand-ins on loopback (one of each a module,
reset before each test) and a factory starting relays from a module's relay.toml text."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from receiver.sandbox.slack import WEBHOOK_PATH, SlackCatcher
from tests.chat.helpers import CHAT_ENV, DISCORD_KEY, DISCORD_TOKEN, SLACK_TOKEN, StartRelay
from tests.conftest import Relay, new_relay
from tests.discord_catcher import DiscordCatcher
from tests.servers import run_asgi

Catcher = TypeVar("Catcher", SlackCatcher, DiscordCatcher)


def _serving(catcher: Catcher) -> Iterator[tuple[Catcher, str]]:
    """`catcher` served on loopback while the generator runs, with its base URL."""
    with run_asgi(catcher.app) as url:
        yield catcher, url


@pytest.fixture(scope="module")
def slack() -> Iterator[tuple[SlackCatcher, str]]:
    """The Slack stand-in for the module, taking the app's bot token, and its base URL."""
    yield from _serving(SlackCatcher(SLACK_TOKEN))


@pytest.fixture
def catcher(slack: tuple[SlackCatcher, str]) -> SlackCatcher:
    """The Slack stand-in with nothing recorded."""
    slack[0].reset()
    return slack[0]


@pytest.fixture
def response_url(slack: tuple[SlackCatcher, str]) -> str:
    """Where a person is answered later: the stand-in's webhook path, recorded as `webhook`."""
    return slack[1] + WEBHOOK_PATH


@pytest.fixture(scope="module")
def discord() -> Iterator[tuple[DiscordCatcher, str]]:
    """The Discord stand-in for the module, taking the app's bot token, and its base URL."""
    yield from _serving(DiscordCatcher(DISCORD_TOKEN))


@pytest.fixture
def discord_catcher(discord: tuple[DiscordCatcher, str]) -> DiscordCatcher:
    """The Discord stand-in with nothing recorded."""
    discord[0].reset()
    return discord[0]


@pytest.fixture
def relay_env() -> dict[str, str]:
    """Environment every relay of `start_relay` gets on top of the chat secrets; a module
    overrides this fixture to, say, log at debug for its leak checks."""
    return {}


@pytest.fixture
def start_relay(
    request: pytest.FixtureRequest, tmp_path: Path, sandbox: str, relay_env: dict[str, str]
) -> Iterator[StartRelay]:
    """Factory: `start_relay(config, upstream=None, *, extra="", **env)` starts a relay (each
    in its own workdir) against `upstream` (the shared sandbox unless given) and stops them all
    at the end.

    `config` is relay.toml as a `str.format` template: `{slack}` and `{discord}` are the
    stand-ins' base URLs (a stand-in is started only when its placeholder is used), `{key}` the
    Discord public key, `{app}` the Discord stand-in's application id, `{extra}` the `extra`
    lines; `{{workdir}}` the relay's directory. The environment holds `CHAT_ENV`, then
    `relay_env`, then `env`."""
    started: list[Relay] = []

    def start(config: str, upstream: str | None = None, *, extra: str = "", **env: str) -> Relay:
        fields = {"extra": extra, "key": DISCORD_KEY.verify_key.encode().hex()}
        if "{slack}" in config:
            fields["slack"] = request.getfixturevalue("slack")[1]
        if "{discord}" in config or "{app}" in config:
            stand_in, url = request.getfixturevalue("discord")
            fields |= {"discord": url, "app": stand_in.application_id}
        workdir = tmp_path / f"relay{len(started)}"
        workdir.mkdir()
        text = config.format(**fields)
        relay = new_relay(workdir, upstream or sandbox, text, **(CHAT_ENV | relay_env | env))
        started.append(relay)
        return relay.start()

    yield start
    for relay in started:
        relay.stop()
