"""Following a task until its song is delivered: shared by `submit --wait` and the demo.

These functions read a task detail as a mapping, the shape both the API's JSON (the demo and
the tests read it over HTTP) and a row's `model_dump()` (`submit --wait` reads the store) have.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shlex
import time
from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.text import Text

from receiver.config import Settings
from receiver.http.responses import present
from receiver.logging import configure_logging
from receiver.services import build_services
from receiver.states import (
    FINISHED_DELIVERY_STATES,
    SETTLED_TASK_STATES,
    DeliveryState,
    EventKind,
    TaskState,
)
from receiver.submit import SubmitRequest, submit

__all__ = ["WAIT_TIMED_OUT", "delivered_paths", "is_settled", "submit_and_wait"]

WAIT_TIMED_OUT = 3
"""`submit --wait`'s exit status when it gave up waiting: the task goes on (it may still be
delivered, so a script should not submit it again), unlike 1, which means it failed."""
_HINT_AFTER_S = 20.0
_FILE_KEYS = ("path", "cover", "metadata", "lyrics")


def is_settled(task: Mapping[str, Any]) -> bool:
    """Final state, and no delivery of any of its events still pending or running."""
    if task["state"] not in SETTLED_TASK_STATES:
        return False
    return all(
        delivery["state"] in FINISHED_DELIVERY_STATES
        for event in task.get("events", [])
        for delivery in event.get("deliveries", [])
    )


def delivered_paths(task: Mapping[str, Any]) -> list[str]:
    """Files the handlers reported (the disk handler's `path`, `cover`, `metadata`, `lyrics`)."""
    paths: list[str] = []
    for event in task.get("events", []):
        for delivery in event.get("deliveries", []):
            result = delivery.get("result") or {}
            paths.extend(str(result[k]) for k in _FILE_KEYS if result.get(k))
    return paths


def describe(task: Mapping[str, Any]) -> str:
    parts = [f"task {task['upstream_id'] or task['id']}: {task['state']}"]
    for event in task.get("events", []):
        for delivery in event.get("deliveries", []):
            parts.append(f"{event['kind']}→{delivery['handler']}: {delivery['state']}")
    return " · ".join(parts)


def gave_up(task: Mapping[str, Any], wait_s: float) -> str:
    """Why `--wait` stopped, in one line: the task's state, that it goes on, what to check."""
    name = f"task {task['upstream_id'] or task['id']}"
    open_deliveries = [
        f"{event['kind']}→{delivery['handler']}: {delivery['state']}"
        for event in task.get("events", [])
        for delivery in event.get("deliveries", [])
        if delivery["state"] not in FINISHED_DELIVERY_STATES
    ]
    if task["state"] in SETTLED_TASK_STATES:
        where = f"{name} is {task['state']}, deliveries still open ({', '.join(open_deliveries)})"
    else:
        where = f"{name} is still {task['state']}"
    line = (
        f"gave up waiting after {wait_s:g} s: {where}; it goes on without this command "
        f"(see `aimusic-relay tasks`, relay id {task['id']})"
    )
    if not _song_events(task) or open_deliveries:
        line += f"; {_NO_SERVE_HINT}"
    return line


_NO_SERVE_HINT = (
    "is `aimusic-relay serve` running, with the same DATABASE_URL, and reachable by the "
    "provider at RELAY_PUBLIC_URL?"
)


def _song_events(task: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The provider's events: everything but the relay's own `task.submitted`."""
    return [e for e in task.get("events", []) if e["kind"] != EventKind.SUBMITTED]


async def submit_and_wait(
    settings: Settings, body: dict[str, Any], *, wait: bool, wait_s: float, as_json: bool
) -> int:
    """Submit, optionally follow to the end; return the process exit code (WAIT_TIMED_OUT when
    `--wait` gave up while the task was still going)."""
    console = Console(stderr=True, soft_wrap=True, highlight=False)
    _logs_through(console, settings)
    services = build_services(settings)
    await services.store.open()
    timed_out = False
    try:
        submitted = await submit(services, SubmitRequest.model_validate(body))
        task: Mapping[str, Any] = submitted.model_dump()
        if task["state"] == TaskState.UNKNOWN:
            console.print(
                "[yellow]The create call's outcome is unknown (timeout or server error).[/] "
                "It was not re-sent, to avoid paying twice; the relay will match a callback "
                f"if one comes. Task {task['id']}: {task['error']}"
            )
        elif not as_json:
            console.print(f"submitted: task {task['upstream_id']} (relay id {task['id']})")
        if wait and task["state"] != TaskState.UNKNOWN:
            task, timed_out = await _follow(
                services.store, task["id"], wait_s, console, quiet=as_json
            )
    finally:
        await services.aclose()
    if as_json:
        print(json.dumps(present(task), indent=2))
    elif wait:
        paths = Console(soft_wrap=True, highlight=False)
        for path in delivered_paths(task):
            # quoted on a terminal, to paste into a shell; one raw path a line for a script
            paths.print(shlex.quote(path) if paths.is_terminal else path, markup=False)
    if task["state"] in SETTLED_TASK_STATES - {TaskState.SUCCEEDED}:
        return 1
    if wait and any(
        d["state"] == DeliveryState.DEAD
        for e in task.get("events", [])
        for d in e.get("deliveries", [])
    ):
        return 1
    return WAIT_TIMED_OUT if timed_out else 0


def _logs_through(console: Console, settings: Settings) -> None:
    """While the CLI shows progress on stderr, its own logs are warnings and errors only, each
    printed whole on its own line through the progress console (above a live spinner, never
    inside a progress line), and readable rather than JSON unless RELAY_LOG_FORMAT=json."""
    level = max(logging.WARNING, logging.getLevelNamesMapping()[settings.relay_log_level.upper()])
    fmt = "json" if settings.relay_log_format == "json" else "console"
    configure_logging(logging.getLevelName(level), fmt, settings.secret_values())
    root = logging.getLogger()
    root.handlers[:] = [_ConsoleHandler(console, root.handlers[0].formatter)]


class _ConsoleHandler(logging.Handler):
    """A log handler that prints through a rich Console, so log lines and its live status line
    take turns instead of writing over each other."""

    def __init__(self, console: Console, formatter: logging.Formatter | None) -> None:
        super().__init__()
        self.console = console
        self.setFormatter(formatter)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.console.print(Text.from_ansi(self.format(record)), soft_wrap=True)
        except Exception:  # a broken log line must not end the command
            self.handleError(record)


async def _follow(
    store: Any, task_id: str, wait_s: float, console: Console, quiet: bool
) -> tuple[dict[str, Any], bool]:
    """The task once settled, or as it stands after `wait_s` (then True: gave up)."""
    started = time.monotonic()
    hinted = timed_out = False
    with console.status("waiting…", spinner="dots") as status:
        while True:
            task: dict[str, Any] = (await store.reads.task_detail(task_id)).model_dump()
            elapsed = time.monotonic() - started
            if not quiet:
                status.update(f"{describe(task)}  ({elapsed:.0f} s)")
            if is_settled(task):
                break
            if elapsed > wait_s:
                timed_out = True
                console.print(f"[yellow]{escape(gave_up(task, wait_s))}[/]")
                break
            if not hinted and elapsed > _HINT_AFTER_S and not _song_events(task):
                hinted = True
                console.print(f"no callback yet — {_NO_SERVE_HINT}")
            await asyncio.sleep(0.25)
    if not quiet and not timed_out:
        console.print(describe(task))
    return task, timed_out
