"""`aimusic-relay demo`: the sandbox and the relay on loopback, one song, end to end.

Everything is real: two uvicorn servers, a signed callback over HTTP, SQLite, the disk handler.
It prints where the files landed and how long each step took.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import shlex
import socket
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from rich.console import Console
from rich.table import Table
from starlette.types import ASGIApp

from receiver.app import create_app
from receiver.cli.progress import delivered_paths, describe, is_settled
from receiver.config import Settings
from receiver.rows import TaskDetail
from receiver.sandbox import SandboxOptions, create_sandbox_app
from receiver.states import Source, TaskState

__all__ = ["demo_settings", "free_port", "run_demo", "serving"]

DEMO_TIMEOUT_S = 60.0


def demo_settings(
    root: Path, config: Path, sandbox_port: int, relay_port: int, admin_token: str, callbacks: bool
) -> Settings:
    """A relay on loopback with everything under `root`, polling fast so a demo is short."""
    return Settings(
        aimusic_api_key="demo-key",
        aimusic_base_url=f"http://127.0.0.1:{sandbox_port}",
        relay_public_url=f"http://127.0.0.1:{relay_port}",
        relay_secret_key=secrets.token_urlsafe(32),
        relay_admin_token=admin_token,
        database_url=f"sqlite:///{root / 'relay.db'}",
        relay_config=config,
        relay_allow_private_networks=True,
        relay_spool_dir=root / "spool",
        relay_callbacks="on" if callbacks else "off",
        relay_poll_grace_s=2.0,
        relay_poll_max_interval_s=1.0,
        port=relay_port,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def serving(app: ASGIApp, port: int) -> AsyncIterator[str]:
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False)
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError(f"server on port {port} did not start")
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def run_demo(directory: Path | None, prompt: str, *, callbacks: bool = True) -> int:
    """Deliver one song; return 0 when it is on disk."""
    console = Console()
    root = (directory or Path(tempfile.mkdtemp(prefix="aimusic-demo-"))).resolve()
    root.mkdir(parents=True, exist_ok=True)
    config = root / "relay.toml"
    songs = json.dumps(str(root / "songs"), ensure_ascii=False)  # a TOML string, escaped
    config.write_text(f'[[handlers]]\nname = "disk"\ntype = "disk"\npath = {songs}\n')
    sandbox_port, relay_port = free_port(), free_port()
    admin_token = secrets.token_urlsafe(24)
    settings = demo_settings(root, config, sandbox_port, relay_port, admin_token, callbacks)
    console.print(f"demo directory: {shlex.quote(str(root))}", markup=False, soft_wrap=True)
    sandbox = create_sandbox_app(SandboxOptions(delay_s=1.5))
    async with (
        serving(sandbox, sandbox_port) as sandbox_url,
        serving(create_app(settings), relay_port) as relay_url,
        httpx.AsyncClient(
            base_url=relay_url, headers={"Authorization": f"Bearer {admin_token}"}
        ) as api,
    ):
        console.print(f"sandbox: {sandbox_url}   relay: {relay_url}")
        t0 = time.time()
        answer = await api.post(
            "/api/tasks", json={"params": {"sound": prompt, "title": "Demo song"}}
        )
        if answer.status_code != 202:
            console.print(f"[red]submit failed[/]: {answer.status_code} {answer.text}")
            return 1
        task: dict[str, Any] = answer.json()
        t_created = time.time()
        with console.status("waiting for the callback and the disk handler…"):
            while time.time() - t0 < DEMO_TIMEOUT_S:
                task = (await api.get(f"/api/tasks/{task['id']}")).json()
                if is_settled(task):
                    break
                await asyncio.sleep(0.05)
        succeeded = task["state"] == TaskState.SUCCEEDED
        if not is_settled(task) or not succeeded or not delivered_paths(task):
            console.print(f"[red]the song did not arrive[/]: {describe(task)}")
            return 1
        detail = await _raw_detail(settings, task["id"])
    _print_report(console, detail, t0, t_created)
    for path in delivered_paths(task):  # every file written, ready to paste into a shell
        console.print(f"  {shlex.quote(path)}", markup=False, highlight=False, soft_wrap=True)
    return 0


async def _raw_detail(settings: Settings, task_id: str) -> TaskDetail:
    from receiver.store import open_store

    store = open_store(settings.database_url)
    try:
        detail = await store.reads.task_detail(task_id)
    finally:
        await store.close()
    if detail is None:
        raise RuntimeError("task vanished")
    return detail


def _print_report(console: Console, task: TaskDetail, t0: float, t_created: float) -> None:
    inbound = [i for i in task.inbox if i.source != Source.RELAY]
    callback_at = min(i.received_at for i in inbound)
    how = "callback" if inbound[0].source == Source.CALLBACK else "poll"
    attempt = next(a for e in task.events for d in e.deliveries for a in d.attempt_log)
    finished_at = attempt.finished_at or attempt.started_at
    steps = [
        ("create call answered", t_created),
        (f"{how} received and committed", callback_at),
        ("disk handler started", attempt.started_at),
        ("file on disk", finished_at),
    ]
    table = Table(title="timings (from submit)")
    table.add_column("step")
    table.add_column("at", justify="right")
    for name, at in steps:
        table.add_row(name, f"{(at - t0) * 1000:,.0f} ms")
    table.add_row(
        f"[bold]{how} → file on disk[/]",
        f"[bold]{(finished_at - callback_at) * 1000:,.1f} ms[/]",
    )
    console.print(table)
    console.print("[green]done[/]: the song is on disk")
