"""The `aimusic-relay` command line: `shell` (the app and its error handling), `commands`
(serve, worker, submit, status, demo, db, version), `ops` (tasks, events, dead-letters, replay,
doctor), `chat` (chat register), and what they render (`render`, `progress`, `doctor_checks`).
"""

from __future__ import annotations

from receiver.cli import chat, commands, ops  # noqa: F401 - each registers its verbs on `shell.app`
from receiver.cli.shell import app

__all__ = ["app", "main"]


def main() -> None:
    app()
