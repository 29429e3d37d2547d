"""Dispatch rate: no-op deliveries per second drained from a backlog, and the CPU each costs.

Latency (dispatch.py) says how soon one callback's handler starts on an idle relay; this says
how fast a relay catches up after a burst or an outage, which is bounded by the store's claim
and finish transactions, not by the handler (the no-op handler does nothing). The backlog is
seeded with bulk SQL behind the running processes' backs (backlog.py, as the history curve
does), then they are woken once and the drain is timed from the relay's own attempts table.

- SQLite: one `aimusic-relay serve` process, whose in-process dispatcher does the work (how
  SQLite is deployed), woken by one signed callback.
- PostgreSQL: two `aimusic-relay worker` processes on a fresh schema, woken by one NOTIFY on
  the channel the store uses; the CPU is that of both workers.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import psycopg

from receiver.store import migrate
from receiver.store.notify import CHANNEL
from tests.bench import backlog, procs

WARMUP = 20
"""Deliveries run before the timed backlog: first-use costs (imports, statement caches,
connections) are not counted against the rate."""

WORKERS = 2


def sqlite(workdir: Path, pending: int) -> dict[str, Any]:
    """`pending` deliveries drained by one `serve` process on SQLite."""
    workdir.mkdir()
    database = workdir / "relay.db"
    url = f"sqlite:///{database}"
    migrate.upgrade(url)
    env = procs.relay_env(workdir, url, procs.NOOP_HANDLER)
    with procs.relay(workdir, env) as (base, pid):
        procs.send_callback(base, "warm-up", audio_url=None)
        backlog.drain(url)
        return {
            "backlog": pending,
            **backlog.timed_drain(
                url,
                lambda: backlog.seed(database, 0, pending, done=False),
                lambda: procs.send_callback(base, "wake-up", audio_url=None),
                [pid],
            ),
        }


def postgres(workdir: Path, pending: int, workers: int = WORKERS) -> dict[str, Any]:
    """`pending` deliveries drained by `workers` worker processes on PostgreSQL."""
    workdir.mkdir()
    with procs.pg_schema() as url, contextlib.ExitStack() as stack:
        migrate.upgrade(url)
        env = procs.relay_env(workdir, url, procs.NOOP_HANDLER)
        pids = [
            stack.enter_context(procs.worker(workdir, env, name=f"worker{i}"))
            for i in range(workers)
        ]
        _wait_listening(url, workers, workdir)
        backlog.seed_postgres(url, 0, WARMUP, done=False)
        _notify(url)
        backlog.drain(url)
        return {
            "backlog": pending,
            "workers": workers,
            **backlog.timed_drain(
                url,
                lambda: backlog.seed_postgres(url, WARMUP, pending, done=False),
                lambda: _notify(url),
                pids,
            ),
        }


def _notify(database_url: str) -> None:
    """The wake-up the store itself sends when it commits new deliveries."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT pg_notify(%s, '')", (CHANNEL,))


def _wait_listening(database_url: str, workers: int, workdir: Path, timeout: float = 60) -> None:
    """Until every worker has its LISTEN connection up (workers have no /readyz): a NOTIFY
    sent before that would only be caught by the 5 s sweep. Connections of this schema carry
    its name as application_name, so this connection's own name picks out the workers'."""
    deadline = time.monotonic() + timeout
    query = (
        "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'LISTEN %'"
        " AND application_name = current_setting('application_name')"
    )
    with psycopg.connect(database_url, autocommit=True) as conn:
        while True:
            row = conn.execute(query).fetchone()
            if row is not None and row[0] >= workers:
                return
            if time.monotonic() > deadline:
                logs = "\n".join(p.read_text()[-2000:] for p in workdir.glob("worker*.log"))
                raise RuntimeError(f"workers not listening after {timeout} s:\n{logs}")
            time.sleep(0.1)


def run(workdir: Path, pending: int, *, postgres_too: bool) -> dict[str, Any]:
    on_sqlite = sqlite(workdir / "rate-sqlite", pending)
    out: dict[str, Any] = {
        "dispatch_rate_sqlite": on_sqlite["dispatch_per_s"],
        "dispatch_cpu_ms_sqlite": on_sqlite["dispatch_cpu_ms"],
        "dispatch_rate_sqlite_run": on_sqlite,
    }
    if postgres_too:
        on_postgres = postgres(workdir / "rate-postgres", pending)
        out["dispatch_rate_postgres"] = on_postgres["dispatch_per_s"]
        out["dispatch_cpu_ms_postgres"] = on_postgres["dispatch_cpu_ms"]
        out["dispatch_rate_postgres_run"] = on_postgres
    return out
