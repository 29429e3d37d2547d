"""Third-party handler plugins: a distribution installed with pip, found by its entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

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


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory where pip installed the `relay-plugin-shout` distribution."""
    root = tmp_path_factory.mktemp("plugin")
    source = root / "src"
    (source / "relay_plugin_shout").mkdir(parents=True)
    (source / "relay_plugin_shout" / "__init__.py").write_text(PLUGIN)
    (source / "pyproject.toml").write_text(PYPROJECT)
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
