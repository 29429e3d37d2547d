"""Ingest: signed callbacks accepted per second (verified, committed, 200) by the relay,
as a ratio of what a bare Starlette app on the same uvicorn settings answers."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from tests.bench import backlog, batches, loadgen, procs

CONNECTIONS = 16
"""Concurrent connections wrk keeps open: a busy provider retrying in parallel."""


WIDE = 64
"""The second, wider row: many providers' retries at once, where batching should pay most."""

POOL_PER_S = 10_000
"""Distinct pre-signed callbacks per second of run: above what a relay at the target ratio
takes at c64 here (0.3 of the bare app's ~26 000 req/s), so it never sends a duplicate,
which the relay would answer cheaply and flatter the figure (writing them costs ~6 µs each)."""


@dataclass(frozen=True, slots=True)
class Load:
    """How hard and how long to push."""

    duration_s: float
    warmup_s: float = 1.0
    connections: int = CONNECTIONS

    @property
    def pool(self) -> int:
        """Distinct pre-signed callbacks: more than the relay can take in the run."""
        return int(POOL_PER_S * (self.duration_s + self.warmup_s))

    @property
    def suffix(self) -> str:
        """Key suffix of this row: none at the original c16 (those keys are a contract),
        `_c<connections>` otherwise."""
        return "" if self.connections == CONNECTIONS else f"_c{self.connections}"


def warm_up(url: str, workdir: Path, load: Load, tag: str) -> None:
    """A short wrk run first: connections, caches and lazy imports are not measured."""
    warm = loadgen.write_requests(workdir / f"{tag}-warm.tsv", 2000, procs.SECRET)
    loadgen.run_wrk(
        f"{url}/webhooks/aimusic", warm, duration_s=load.warmup_s, connections=load.connections
    )


def measure(url: str, pid: int, workdir: Path, load: Load, tag: str) -> dict[str, Any]:
    """One measured wrk run of fresh, distinct signed callbacks; the figures include the
    server's CPU time per answered request over the run (CPU of the wrk window only)."""
    requests = loadgen.write_requests(workdir / f"{tag}.tsv", load.pool, procs.SECRET)
    cpu_before = procs.cpu_seconds(pid)
    result = loadgen.run_wrk(
        f"{url}/webhooks/aimusic",
        requests,
        duration_s=load.duration_s,
        connections=load.connections,
    )
    cpu = procs.cpu_seconds(pid) - cpu_before
    figures = result.as_dict()
    figures["cpu_ms_per_request"] = round(cpu * 1000 / max(result.accepted, 1), 3)
    figures["wrapped"] = result.wrapped
    if result.errors:
        figures["warning"] = f"{result.errors} requests failed or were refused"
    return figures


def push(url: str, pid: int, workdir: Path, load: Load, tag: str) -> dict[str, Any]:
    """Warm up, then one measured wrk run (see `measure`)."""
    warm_up(url, workdir, load, tag)
    return measure(url, pid, workdir, load, tag)


def bare_run(workdir: Path, load: Load, tag: str) -> dict[str, Any]:
    with procs.bare(workdir) as (url, pid):
        return push(url, pid, workdir, load, tag)


def relay_run(workdir: Path, database_url: str, load: Load, tag: str) -> dict[str, Any]:
    """One relay run; also counts what was committed, which must cover every 200, and the
    commit batch sizes of the measured run (`batches`).

    On SQLite the noop deliveries run in the same process, so the run also gives the whole
    cost of a callback, `cpu_ms_per_callback`: the relay's CPU from just before wrk until
    every delivery has succeeded, per inbox row added. For that the warm-up's deliveries are
    drained first (they would be counted, but not their callbacks), and the relay stays up
    after wrk until its backlog is gone. On PostgreSQL `serve` alone runs no deliveries."""
    in_process = database_url.startswith("sqlite")
    env = procs.relay_env(workdir, database_url, procs.NOOP_HANDLER)
    with procs.relay(workdir, env, name=tag) as (url, pid):
        warm_up(url, workdir, load, tag)
        if in_process:
            backlog.drain(database_url)
        inbox_before = count_inbox(database_url)
        batches_before = batches.scrape(url)
        cpu_before = procs.cpu_seconds(pid)
        figures = measure(url, pid, workdir, load, tag)
        figures["commit_batch"] = batches.summary(batches_before, batches.scrape(url))
        if in_process:
            wrk_done = time.monotonic()
            backlog.drain(database_url)
            figures["drain_after_s"] = round(time.monotonic() - wrk_done, 2)
            cpu = procs.cpu_seconds(pid) - cpu_before
            added = count_inbox(database_url) - inbox_before
            figures["callbacks_added"] = added
            figures["cpu_ms_per_callback"] = round(cpu * 1000 / max(added, 1), 3)
    if figures["wrapped"]:  # the bare app wraps round and does not care; the relay would dedupe
        figures["warning"] = "ran out of distinct callbacks: some were duplicates"
    figures["committed_total"] = count_inbox(database_url)
    return figures


def count_inbox(database_url: str) -> int:
    if database_url.startswith("sqlite"):
        with sqlite3.connect(database_url.split(":///", 1)[1]) as conn:
            return int(conn.execute("SELECT count(*) FROM inbox").fetchone()[0])
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM inbox").fetchone()
        return int(row[0]) if row else 0


def run(workdir: Path, loads: Sequence[Load], *, postgres: bool) -> dict[str, Any]:
    """For each dialect and each load (c16, then c64): bare → relay, each ratio against the
    bare run just before it, so load from elsewhere on the machine hits both sides alike.
    Every relay run has a fresh database, so no row starts with another run's history."""
    out: dict[str, Any] = {}
    sqlite_dir = workdir / "ingest-sqlite"
    sqlite_dir.mkdir()
    for load in loads:
        bare = bare_run(sqlite_dir, load, f"bare{load.suffix}")
        database = sqlite_dir / f"relay{load.suffix}.db"
        relay = relay_run(sqlite_dir, f"sqlite:///{database}", load, f"relay{load.suffix}")
        out.update(_ratios("sqlite", load.suffix, bare, relay))
    if postgres:
        pg_dir = workdir / "ingest-postgres"
        pg_dir.mkdir()
        for load in loads:
            bare = bare_run(pg_dir, load, f"bare{load.suffix}")
            with procs.pg_schema() as url:
                relay = relay_run(pg_dir, url, load, f"relay{load.suffix}")
            out.update(_ratios("postgres", load.suffix, bare, relay))
    return out


def _ratios(
    dialect: str, suffix: str, bare: dict[str, Any], relay: dict[str, Any]
) -> dict[str, Any]:
    out = {
        f"ingest_bare_{dialect}{suffix}": bare,
        f"ingest_relay_{dialect}{suffix}": relay,
        f"ingest_ratio_{dialect}{suffix}": round(relay["rps"] / bare["rps"], 4),
        f"ingest_cpu_ratio_{dialect}{suffix}": round(
            bare["cpu_ms_per_request"] / relay["cpu_ms_per_request"], 4
        ),
    }
    if not suffix:  # the headline figures come from the c16 row
        out[f"commit_batch_{dialect}"] = relay["commit_batch"]
        if "cpu_ms_per_callback" in relay:
            out[f"cpu_ms_per_callback_{dialect}"] = relay["cpu_ms_per_callback"]
    return out
