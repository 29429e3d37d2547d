"""Following a task until its song is delivered: shared by `submit --wait` and the demo."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from typing import Any

from rich.console import Console

from receiver.config import Settings
from receiver.routes._http import present
from receiver.services import build_services
from receiver.submit import SubmitRequest, submit

__all__ = ["delivered_paths", "is_settled", "submit_and_wait"]

FINAL_STATES = frozenset({"succeeded", "failed", "timed_out", "unknown"})
_HINT_AFTER_S = 20.0


def is_settled(task: Mapping[str, Any]) -> bool:
    """Final state, and no delivery of any of its events still pending or running."""
    if task["state"] not in FINAL_STATES:
        return False
    return all(
        delivery["state"] in ("succeeded", "dead")
        for event in task.get("events", [])
        for delivery in event.get("deliveries", [])
    )


def delivered_paths(task: Mapping[str, Any]) -> list[str]:
    """Files the handlers reported (the disk handler's `path`, `cover`, `metadata`)."""
    paths: list[str] = []
    for event in task.get("events", []):
        for delivery in event.get("deliveries", []):
            result = delivery.get("result") or {}
            paths.extend(str(result[k]) for k in ("path", "cover", "metadata") if result.get(k))
    return paths


def describe(task: Mapping[str, Any]) -> str:
    parts = [f"task {task['upstream_id'] or task['id']}: {task['state']}"]
    for event in task.get("events", []):
        for delivery in event.get("deliveries", []):
            parts.append(f"{event['kind']}→{delivery['handler']}: {delivery['state']}")
    return " · ".join(parts)


async def submit_and_wait(
    settings: Settings, body: dict[str, Any], *, wait: bool, wait_s: float, as_json: bool
) -> int:
    """Submit, optionally follow to the end; return the process exit code."""
    console = Console(stderr=True)
    services = build_services(settings)
    await services.store.open()
    try:
        task: Mapping[str, Any] = await submit(services, SubmitRequest.model_validate(body))
        if task["state"] == "unknown":
            console.print(
                "[yellow]The create call's outcome is unknown (timeout or server error).[/] "
                "It was not re-sent, to avoid paying twice; the relay will match a callback "
                f"if one comes. Task {task['id']}: {task['error']}"
            )
        elif not as_json:
            console.print(f"submitted: task {task['upstream_id']} (relay id {task['id']})")
        if wait and task["state"] != "unknown":
            task = await _follow(services.store, task["id"], wait_s, console, quiet=as_json)
    finally:
        await services.aclose()
    if as_json:
        print(json.dumps(present(task), indent=2))
    elif wait:
        for path in delivered_paths(task):
            Console().print(path, highlight=False, soft_wrap=True)
    if task["state"] in ("failed", "timed_out", "unknown"):
        return 1
    if wait and any(
        d["state"] == "dead" for e in task.get("events", []) for d in e.get("deliveries", [])
    ):
        return 1
    return 0


async def _follow(
    store: Any, task_id: str, wait_s: float, console: Console, quiet: bool
) -> dict[str, Any]:
    started = time.monotonic()
    hinted = False
    with console.status("waiting…", spinner="dots") as status:
        while True:
            task: dict[str, Any] = await store.reads.task_detail(task_id)
            elapsed = time.monotonic() - started
            if not quiet:
                status.update(f"{describe(task)}  ({elapsed:.0f} s)")
            if is_settled(task):
                break
            if elapsed > wait_s:
                console.print(f"[yellow]gave up waiting after {wait_s:g} s[/]: {describe(task)}")
                break
            if not hinted and elapsed > _HINT_AFTER_S and not task.get("events"):
                hinted = True
                console.print(
                    "no callback yet — is `aimusic-relay serve` running, with the same "
                    "DATABASE_URL, and reachable by the provider at RELAY_PUBLIC_URL?"
                )
            await asyncio.sleep(0.25)
    if not quiet:
        console.print(describe(task))
    return task
