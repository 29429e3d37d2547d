"""Processes and databases for one benchmark: the relay, the bare baseline, a throw-away
PostgreSQL schema, and the peak RSS of a process."""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import psycopg

from tests import pg_cluster
from tests.conftest import POSTGRES_URL, REPO, schema_url, signed
from tests.servers import Process, free_port

SECRET = "bench-shared-secret"
"""AIMUSIC_WEBHOOK_SECRET of every relay the bench starts (callbacks use the shared route)."""

LOG_LEVEL = "warning"
"""Both servers log at this level: the bare app has no request log, so the relay's per-request
info lines would be a cost the baseline does not pay (they go to a file here, not a console)."""


def relay_env(workdir: Path, database_url: str, config: str, **extra: str) -> dict[str, str]:
    """The scale-out tests' relay environment, with the bench's secret and log level."""
    return pg_cluster.relay_env(
        workdir,
        database_url,
        config,
        **{"AIMUSIC_WEBHOOK_SECRET": SECRET, "RELAY_LOG_LEVEL": LOG_LEVEL, **extra},
    )


def send_callback(url: str, name: str, audio_url: str | None) -> None:
    """One signed completion callback for task `name` (with a song at `audio_url`)."""
    clip: dict[str, Any] = {"clip_id": f"clip-{name}", "state": "succeeded", "title": name}
    if audio_url is not None:
        clip["audio_url"] = audio_url
    body = {
        "code": 200,
        "task_id": name,
        "platform": "producer",
        "event": "song.completed",
        "data": [clip],
    }
    headers, raw = signed(body, SECRET)
    answer = httpx.post(f"{url}/webhooks/aimusic", content=raw, headers=headers, timeout=30)
    if answer.status_code != 200:
        raise RuntimeError(f"callback refused: {answer.status_code} {answer.text}")


NOOP_HANDLER = (
    '[[handlers]]\nname = "noop"\ntype = "tests.bench.handlers:NoopHandler"\nconcurrency = 64\n'
)
"""One handler that does nothing: every callback enqueues one delivery, which the dispatcher
claims and finishes, so ingest is measured with the outbox doing its real work. Its
concurrency is set high (the default is 4) so the handler is never what limits the dispatch
rate: the dispatcher's own limit (16 per process) and the store are."""


@contextlib.contextmanager
def relay(workdir: Path, env: Mapping[str, str], *, name: str = "web") -> Iterator[tuple[str, int]]:
    """A relay `serve` process; yields (base URL, pid) once /readyz answers 200."""
    port = free_port()
    process = Process(
        ["serve", "--port", str(port)], {**env, "PORT": str(port)}, workdir, workdir / f"{name}.log"
    )
    url = f"http://127.0.0.1:{port}"
    try:
        process.wait_http(f"{url}/readyz", timeout=60)
        yield url, process.popen.pid
    finally:
        process.stop()


@contextlib.contextmanager
def worker(workdir: Path, env: Mapping[str, str], *, name: str = "worker") -> Iterator[int]:
    """A relay `worker` process (dispatcher only), logging to `<name>.log`; yields its pid."""
    process = Process(["worker"], env, workdir, workdir / f"{name}.log")
    try:
        yield process.popen.pid
    finally:
        process.stop()


@contextlib.contextmanager
def bare(workdir: Path) -> Iterator[tuple[str, int]]:
    """The bare Starlette baseline (tests/bench/bare.py) under uvicorn; yields (URL, pid)."""
    port = free_port()
    with (workdir / "bare.log").open("ab") as log:
        popen = subprocess.Popen(
            [sys.executable, "-m", "tests.bench.bare", "--port", str(port)],
            cwd=REPO,
            env={**os.environ, "RELAY_LOG_LEVEL": LOG_LEVEL, "PYTHONPATH": str(REPO)},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline or popen.poll() is not None:
                raise RuntimeError(
                    "the bare app did not start: " + (workdir / "bare.log").read_text()
                )
            time.sleep(0.05)
        yield url, popen.pid
    finally:
        popen.terminate()
        popen.wait(timeout=15)


@contextlib.contextmanager
def pg_schema() -> Iterator[str]:
    """A fresh PostgreSQL schema as a DATABASE_URL (as tests/conftest.py `make_pg_url` makes
    them); its backends are terminated and the schema dropped afterwards."""
    schema = f"bench_{secrets.token_hex(6)}"
    _pg_admin(f"CREATE SCHEMA {schema}")
    try:
        yield schema_url(schema)
    finally:
        _pg_admin(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE application_name = '{schema}'"
        )
        _pg_admin(f"DROP SCHEMA {schema} CASCADE")


def _pg_admin(sql: str) -> None:
    with psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=3) as conn:
        conn.execute(sql)


def postgres_version() -> str | None:
    try:
        with psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=3) as conn:
            row = conn.execute("SHOW server_version").fetchone()
    except psycopg.OperationalError:
        return None
    return str(row[0]) if row else None


def peak_rss_mb(pid: int) -> float:
    """VmHWM (the peak resident set size so far) of `pid`, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time `pid` has used so far (all its threads), in seconds.

    Per request, this is the figure the machine's other load disturbs least: a busy machine
    stretches wall-clock latency and lowers throughput, but hardly the CPU a request costs.
    """
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
