"""Relay `serve` and `worker` processes sharing one PostgreSQL schema, for the scale-out tests."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import psycopg

from tests.conftest import REPO, signed
from tests.plugins import read_log
from tests.servers import Process, free_port

SECRET = "shared-secret-pg"


def callback(i: int) -> dict[str, Any]:
    """The provider's completion callback for external task `ext-<i>` (one clip, no audio)."""
    return {
        "code": 200,
        "task_id": f"ext-{i}",
        "platform": "producer",
        "event": "song.completed",
        "data": [{"clip_id": f"c{i}", "state": "succeeded", "title": "t"}],
    }


def relay_env(workdir: Path, database_url: str, config: str, **extra: str) -> dict[str, str]:
    """The environment of a relay `serve`/`worker` process with `config` as its relay.toml:
    callbacks signed with SECRET on the shared route, no reachable upstream, JSON logs."""
    (workdir / "relay.toml").write_text(config)
    return {
        "DATABASE_URL": database_url,
        "RELAY_SECRET_KEY": secrets.token_urlsafe(16),
        "AIMUSIC_WEBHOOK_SECRET": SECRET,
        "AIMUSIC_BASE_URL": "http://127.0.0.1:9",
        "RELAY_CALLBACKS": "off",
        "RELAY_CONFIG": str(workdir / "relay.toml"),
        "RELAY_LOG_FORMAT": "json",
        "RELAY_LOG_LEVEL": "warning",
        "RELAY_SPOOL_DIR": str(workdir / "spool"),
        "PYTHONPATH": str(REPO),
        **extra,
    }


class Cluster:
    """Processes of one deployment: same DATABASE_URL, secrets and handler file."""

    def __init__(
        self,
        workdir: Path,
        database_url: str,
        handlers: Sequence[str] = ("rec-a", "rec-b"),
        sleep_s: float = 0.0,
        **env: str,
    ) -> None:
        self.workdir = workdir
        self.database_url = database_url
        self.handlers = list(handlers)
        config = "".join(
            f'[[handlers]]\nname = "{name}"\ntype = "tests.plugins:RecorderHandler"\n'
            f'log_file = "{workdir / name}.jsonl"\nsleep_s = {sleep_s}\nconcurrency = 16\n\n'
            for name in handlers
        )
        self.env = relay_env(workdir, database_url, config, **{"RELAY_LEASE_S": "2", **env})
        self.webs: list[tuple[Process, str]] = []
        self.workers: list[Process] = []

    def start_web(self, **env: str) -> str:
        port = free_port()
        log = self.workdir / f"web{len(self.webs)}.log"
        full_env = {**self.env, "PORT": str(port), **env}
        process = Process(["serve", "--port", str(port)], full_env, self.workdir, log)
        url = f"http://127.0.0.1:{port}"
        self.webs.append((process, url))
        return url

    def start_worker(self, **env: str) -> Process:
        log = self.workdir / f"worker{len(self.workers)}.log"
        process = Process(["worker"], {**self.env, **env}, self.workdir, log)
        self.workers.append(process)
        return process

    def wait_ready(self) -> None:
        for process, url in self.webs:
            process.wait_http(f"{url}/readyz", timeout=60)

    def stop(self) -> None:
        for process in [*self.workers, *(p for p, _ in self.webs)]:
            process.stop()  # also closes the log of one that already exited

    def outputs(self) -> str:
        return "\n".join(p.output()[-2000:] for p in [*self.workers, *(p for p, _ in self.webs)])

    def recorded(self, handler: str) -> list[dict[str, Any]]:
        return read_log(self.workdir / f"{handler}.jsonl")

    def sql(self, query: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            return list(conn.execute(query).fetchall())

    def wait_drained(self, expected_deliveries: int, timeout: float) -> float:
        """Wait until `expected_deliveries` exist and none is pending or running; return when."""
        deadline = time.monotonic() + timeout
        while True:
            [(total, open_count)] = self.sql(
                "SELECT count(*), count(*) FILTER (WHERE state IN ('pending', 'running')) "
                "FROM deliveries"
            )
            if total >= expected_deliveries and open_count == 0:
                return time.time()
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{open_count} of {total} deliveries still open after {timeout} s\n"
                    + self.outputs()
                )
            time.sleep(0.1)


async def send_callbacks(
    urls: Sequence[str],
    payloads: Sequence[tuple[dict[str, str], bytes]],
    *,
    concurrency: int = 20,
    halfway: Any = None,
) -> list[int]:
    """POST every signed payload, alternating between `urls`, at most `concurrency` at once;
    `halfway()` runs once when half have been answered. Returns the status codes in order."""
    limit = asyncio.Semaphore(concurrency)
    statuses = [0] * len(payloads)
    answered = 0

    async def one(client: httpx.AsyncClient, i: int) -> None:
        nonlocal answered
        headers, body = payloads[i]
        async with limit:
            for attempt in range(3):  # the provider retries too; a reset socket is not a loss
                try:
                    answer = await client.post(
                        f"{urls[i % len(urls)]}/webhooks/aimusic", content=body, headers=headers
                    )
                    statuses[i] = answer.status_code
                    break
                except httpx.TransportError:
                    if attempt == 2:
                        raise
        answered += 1
        if halfway is not None and answered == len(payloads) // 2:
            await asyncio.to_thread(halfway)

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        await asyncio.gather(*(one(client, i) for i in range(len(payloads))))
    return statuses


def make_payloads(count: int, duplicate_every: int = 10) -> list[tuple[dict[str, str], bytes]]:
    """`count` signed callbacks; every `duplicate_every`-th repeats an earlier task (half with
    the same X-Webhook-Id, half with a new one), so distinct tasks = count - count/10."""
    payloads: list[tuple[dict[str, str], bytes]] = []
    distinct = 0
    for n in range(count):
        if n % duplicate_every == duplicate_every - 1 and payloads:
            headers, body = payloads[n // 2]
            if n % 2:
                payloads.append((headers, body))
            else:
                payloads.append(signed(json.loads(body), SECRET))
            continue
        payloads.append(signed(callback(distinct), SECRET))
        distinct += 1
    return payloads


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]
