"""Third-party handler plugins: a distribution installed with pip, found by its entry point,
including README's "Writing a handler" example exactly as written there."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from handlers.registry import HandlerRegistry
from receiver.errors import ConfigError
from tests.conftest import REPO, Relay, songs

PLUGIN = """
from pathlib import Path
from pydantic import BaseModel


class Shout:
    class Config(BaseModel):
        out: str

    def __init__(self, name, config):
        self.name, self.config = name, config

    async def handle(self, event, ctx):
        Path(self.config.out).write_text(f"{event.kind} {event.title.upper()}")
        return {"shouted": True}
"""

PYPROJECT = """
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "relay-plugin-shout"
version = "1.0"

[project.entry-points."aimusic_relay.handlers"]
shout = "relay_plugin_shout:Shout"
"""


@dataclasses.dataclass(frozen=True, slots=True)
class ReadmePlugin:
    """README's example plugin, built from its code blocks: where pip put it, its relay.toml."""

    site: Path
    relay_toml: str


def install(root: Path, files: dict[str, str]) -> Path:
    """`files` (path → text) written as a source tree under `root` and pip-installed, without
    build isolation or dependencies, into `root/site` (never into the venv itself, so there is
    nothing to uninstall and parallel test runs do not see it); returns that site directory."""
    source = root / "src"
    for name, text in files.items():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_text(text)
    site = root / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(site),
            str(source),
        ],
        check=True,
        capture_output=True,
        timeout=180,
    )
    return site


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory where pip installed the `relay-plugin-shout` distribution."""
    files = {"relay_plugin_shout/__init__.py": PLUGIN, "pyproject.toml": PYPROJECT}
    return install(tmp_path_factory.mktemp("plugin"), files)


def readme_blocks(readme: str) -> dict[str, str]:
    """The code blocks of README's "### Writing a handler": the module (by the path in its first
    line), `pyproject.toml` (the block with `[build-system]`) and `relay.toml` (`[[handlers]]`)."""
    section = readme.split("\n### Writing a handler\n", 1)[1]
    section = re.split(r"\n#{2,3} ", section, maxsplit=1)[0]
    blocks: dict[str, str] = {}
    for language, code in re.findall(r"^```(\w+)\n(.*?)^```$", section, re.MULTILINE | re.DOTALL):
        if language == "python":
            blocks[code.split("\n", 1)[0].removeprefix("# ").strip()] = code
        elif "[build-system]" in code:
            blocks["pyproject.toml"] = code
        elif "[[handlers]]" in code:
            blocks["relay.toml"] = code
    return blocks


@pytest.fixture(scope="module")
def readme_plugin(tmp_path_factory: pytest.TempPathFactory) -> ReadmePlugin:
    """README's example plugin, pip-installed from the blocks as README shows them."""
    blocks = readme_blocks((REPO / "README.md").read_text())
    assert {"relay_plugin_logline/__init__.py", "pyproject.toml", "relay.toml"} == set(blocks)
    relay_toml = blocks.pop("relay.toml")
    return ReadmePlugin(install(tmp_path_factory.mktemp("readme-plugin"), blocks), relay_toml)


def doctor(relay: Relay) -> dict[str, dict[str, Any]]:
    """`aimusic-relay doctor --json` in the relay's directory and environment, by check name."""
    done = subprocess.run(
        [sys.executable, "-m", "receiver", "doctor", "--json"],
        env={**os.environ, **relay.env},
        cwd=relay.workdir,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return {check["name"]: check for check in json.loads(done.stdout)["checks"]}


def test_installed_plugin_is_listed_by_its_type_name(plugin_site: Path, tmp_path: Path) -> None:
    """`aimusic-relay handlers` lists the plugin's type, found through its entry point."""
    done = subprocess.run(
        [sys.executable, "-m", "receiver", "handlers", "--json"],
        env={
            **os.environ,
            "PYTHONPATH": f"{plugin_site}{os.pathsep}{REPO}",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'r.db'}",
        },
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["types"]["shout"] == "relay_plugin_shout:Shout"


def test_installed_plugin_receives_songs(
    plugin_site: Path, make_relay: Callable[..., Relay]
) -> None:
    """A `type = "shout"` handler from the plugin runs for a finished song."""
    relay = make_relay(
        config='[[handlers]]\nname = "loud"\ntype = "shout"\nout = "{workdir}/shout.txt"\n',
        PYTHONPATH=f"{plugin_site}{os.pathsep}{REPO}",
    )
    task = relay.wait_settled(relay.submit("quiet song", title="Whisper")["id"])
    assert songs(task)[0]["deliveries"][0]["result"] == {"shouted": True}
    assert (relay.workdir / "shout.txt").read_text() == "song.completed WHISPER"


def test_a_plugin_without_check_is_reported_as_loaded_by_doctor(
    plugin_site: Path, make_relay: Callable[..., Relay]
) -> None:
    """doctor has no dry run for a type that defines no `check()`: it says so, and is ok."""
    relay = make_relay(
        config='[[handlers]]\nname = "loud"\ntype = "shout"\nout = "{workdir}/shout.txt"\n',
        PYTHONPATH=f"{plugin_site}{os.pathsep}{REPO}",
        start=False,
    )
    assert {
        "name": "handler loud",
        "status": "ok",
        "detail": "type shout loaded; doctor has no dry run for it",
        "advice": "",
    } == doctor(relay)["handler loud"]


def test_readme_plugin_receives_songs_and_doctor_runs_its_check(
    readme_plugin: ReadmePlugin, make_relay: Callable[..., Relay]
) -> None:
    """README's example, installed as written, gets a finished song through a real relay, and
    `doctor --json` prints its `check()` as the handler's line."""
    relay = make_relay(
        config=readme_plugin.relay_toml,
        PYTHONPATH=f"{readme_plugin.site}{os.pathsep}{REPO}",
    )
    task = relay.wait_settled(relay.submit("quiet song", title="Whisper")["id"])
    assert [{"logged_to": "songs.log"}] == [d["result"] for d in songs(task)[0]["deliveries"]]
    assert re.fullmatch(
        r"song\.completed Whisper \d+ bytes\n", (relay.workdir / "songs.log").read_text()
    )
    assert {
        "name": "handler song-log",
        "status": "ok",
        "detail": "can append to songs.log",
        "advice": "",
    } == doctor(relay)["handler song-log"]


def test_built_in_types_come_from_the_distributions_entry_points() -> None:
    """The built-ins are registered by aimusic-relay's own entry points, like any plugin."""
    types = HandlerRegistry.with_plugins().types()
    assert "handlers.disk:DiskHandler" == types["disk"]
    assert {"apprise", "disk", "forward", "s3", "slack"} <= set(types)


def test_a_missing_distribution_is_named_with_the_fix() -> None:
    """With no entry points (the distribution not installed) a built-in name fails saying
    how to install it, not merely "unknown type"."""
    with pytest.raises(
        ConfigError, match=r"aimusic-relay distribution is not installed.*pip install -e \."
    ) as caught:
        HandlerRegistry.from_entry_points([]).resolve("disk")
    assert "'disk'" in str(caught.value)
