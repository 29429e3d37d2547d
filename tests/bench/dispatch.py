"""Dispatch latency: a callback accepted (committed, answered 200) → its handler starting.

In-process on SQLite (`serve` runs the dispatcher, woken by the commit itself) and across
processes on PostgreSQL (`serve` commits, a separate `worker` is woken by LISTEN/NOTIFY).
The relay processes, the recording handler and the signed callbacks are the ones the
scale-out tests use (tests/pg_cluster.py, tests/plugins.py `RecorderHandler`), which measure
the same thing on 50 callbacks; this takes more samples and adds the sender's clock.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx

from tests.bench import procs
from tests.pg_cluster import Cluster, make_payloads, percentile, send_callbacks

GAP_S = 0.03
"""Pause between callbacks: each one finds the dispatcher idle, as a real provider's would."""


def measure(cluster: Cluster, url: str, count: int, database: Path | None) -> dict[str, Any]:
    """Send one warm-up, then `count` callbacks one at a time, and time each handler start.

    Two clocks bracket the moment of commit. `accepted → start` counts from when the sender
    had its 200 (sent just after the commit, so this is the figure from "accepted"; it is
    slightly low by the answer's trip back). `received → start` counts from the event's
    `received_at`, stamped when the ingest transaction begins, so it also includes the rest
    of that transaction and its commit (an upper bound).
    """
    asyncio.run(send_callbacks([url], make_payloads(1, duplicate_every=10**9)))
    time.sleep(1.0)
    accepted: dict[str, float] = {}
    with httpx.Client(timeout=30) as client:
        for headers, body in make_payloads(count + 1, duplicate_every=10**9)[1:]:
            answer = client.post(f"{url}/webhooks/aimusic", content=body, headers=headers)
            accepted[json.loads(body)["task_id"]] = time.time()
            if answer.status_code != 200:
                raise RuntimeError(f"callback refused: {answer.status_code} {answer.text}")
            time.sleep(GAP_S)
    deadline = time.monotonic() + 60
    while len(cluster.recorded("rec")) < count + 1:
        if time.monotonic() > deadline:
            raise RuntimeError("not every callback reached its handler:\n" + cluster.outputs())
        time.sleep(0.05)
    query = "SELECT task_ref, task_id, received_at FROM events WHERE task_id <> 'ext-0'"
    if database is None:
        rows = cluster.sql(query)
    else:
        with sqlite3.connect(database) as conn:
            rows = conn.execute(query).fetchall()
    events = {ref: (task_id, received_at) for ref, task_id, received_at in rows}
    from_accepted, from_received = [], []
    for line in cluster.recorded("rec"):
        if line["task_ref"] in events:
            task_id, received_at = events[line["task_ref"]]
            from_accepted.append((line["started"] - accepted[task_id]) * 1000)
            from_received.append((line["started"] - received_at) * 1000)
    return {
        "p50_ms": round(percentile(from_accepted, 0.5), 2),
        "p99_ms": round(percentile(from_accepted, 0.99), 2),
        "max_ms": round(max(from_accepted), 2),
        "from_received_p50_ms": round(percentile(from_received, 0.5), 2),
        "from_received_p99_ms": round(percentile(from_received, 0.99), 2),
        "samples": len(from_accepted),
    }


def in_process(workdir: Path, count: int) -> dict[str, Any]:
    workdir.mkdir()
    database = workdir / "relay.db"
    cluster = Cluster(workdir, f"sqlite:///{database}", handlers=["rec"])
    try:
        url = cluster.start_web()
        cluster.wait_ready()
        return measure(cluster, url, count, database)
    finally:
        cluster.stop()


def across_processes(workdir: Path, count: int) -> dict[str, Any]:
    workdir.mkdir()
    with procs.pg_schema() as database_url:
        cluster = Cluster(workdir, database_url, handlers=["rec"])
        try:
            url = cluster.start_web()
            cluster.wait_ready()
            cluster.start_worker()
            time.sleep(1.0)  # the worker's LISTEN is up before the first callback
            return measure(cluster, url, count, None)
        finally:
            cluster.stop()


def run(workdir: Path, count: int, *, postgres: bool) -> dict[str, Any]:
    sqlite_figures = in_process(workdir / "dispatch-sqlite", count)
    out: dict[str, Any] = {
        "dispatch_p50_ms": sqlite_figures["p50_ms"],
        "dispatch_p99_ms": sqlite_figures["p99_ms"],
        "dispatch_in_process_sqlite": sqlite_figures,
    }
    if postgres:
        out["dispatch_across_processes_postgres"] = across_processes(
            workdir / "dispatch-postgres", count
        )
    return out
