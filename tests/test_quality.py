"""Tooling is part of the code: ruff and `mypy --strict` hold on every commit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=300
    )


def test_ruff_is_clean() -> None:
    """`ruff check` finds nothing in the shipped packages or the tests."""
    done = _run("ruff", "check", "receiver", "handlers", "tests")
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_strict_is_clean() -> None:
    """`mypy --strict` (configured in pyproject.toml) passes on receiver/ and handlers/."""
    done = _run("mypy")
    assert done.returncode == 0, done.stdout + done.stderr
