"""Ingest: signed callbacks accepted per second (verified, committed, 200) by the relay,
as a ratio of what a bare Starlette app on the same uvicorn settings answers."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from tests.bench import loadgen, procs

CONNECTIONS = 16
"""Concurrent connections wrk keeps open: a busy provider retrying in parallel."""


@dataclass(frozen=True, slots=True)
class Load:
    """How hard and how long to push."""

    duration_s: float
    warmup_s: float = 1.0
    connections: int = CONNECTIONS

    @property
    def pool(self) -> int:
        """Distinct pre-signed callbacks: more than the relay can take in the run."""
        return int(4000 * (self.duration_s + self.warmup_s))


def push(url: str, pid: int, workdir: Path, load: Load, tag: str) -> dict[str, Any]:
    """Warm up, then one measured wrk run of fresh, distinct signed callbacks; the figures
    include the server's CPU time per answered request over the measured run."""
    target = f"{url}/webhooks/aimusic"
    warm = loadgen.write_requests(workdir / f"{tag}-warm.tsv", 2000, procs.SECRET)
    loadgen.run_wrk(target, warm, duration_s=load.warmup_s, connections=load.connections)
    requests = loadgen.write_requests(workdir / f"{tag}.tsv", load.pool, procs.SECRET)
    cpu_before = procs.cpu_seconds(pid)
    result = loadgen.run_wrk(
        target, requests, duration_s=load.duration_s, connections=load.connections
    )
    cpu = procs.cpu_seconds(pid) - cpu_before
    figures = result.as_dict()
    figures["cpu_ms_per_request"] = round(cpu * 1000 / max(result.accepted, 1), 3)
    figures["wrapped"] = result.wrapped
    if result.errors:
        figures["warning"] = f"{result.errors} requests failed or were refused"
    return figures


def bare_run(workdir: Path, load: Load, tag: str) -> dict[str, Any]:
    with procs.bare(workdir) as (url, pid):
        return push(url, pid, workdir, load, tag)


def relay_run(workdir: Path, database_url: str, load: Load, tag: str) -> dict[str, Any]:
    """One relay run; also counts what was committed, which must cover every 200."""
    env = procs.relay_env(workdir, database_url, procs.NOOP_HANDLER)
    with procs.relay(workdir, env, name=tag) as (url, pid):
        figures = push(url, pid, workdir, load, tag)
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


def run(workdir: Path, load: Load, *, postgres: bool) -> dict[str, Any]:
    """bare → relay on SQLite → bare → relay on PostgreSQL; each ratio against the bare run
    just before it, so load from elsewhere on the machine hits both sides alike."""
    out: dict[str, Any] = {}
    sqlite_dir = workdir / "ingest-sqlite"
    sqlite_dir.mkdir()
    bare = bare_run(sqlite_dir, load, "bare")
    relay = relay_run(sqlite_dir, f"sqlite:///{sqlite_dir / 'relay.db'}", load, "relay")
    out.update(_ratios("sqlite", bare, relay))
    if postgres:
        pg_dir = workdir / "ingest-postgres"
        pg_dir.mkdir()
        bare = bare_run(pg_dir, load, "bare")
        with procs.pg_schema() as url:
            relay = relay_run(pg_dir, url, load, "relay")
        out.update(_ratios("postgres", bare, relay))
    return out


def _ratios(dialect: str, bare: dict[str, Any], relay: dict[str, Any]) -> dict[str, Any]:
    return {
        f"ingest_bare_{dialect}": bare,
        f"ingest_relay_{dialect}": relay,
        f"ingest_ratio_{dialect}": round(relay["rps"] / bare["rps"], 4),
        f"ingest_cpu_ratio_{dialect}": round(
            bare["cpu_ms_per_request"] / relay["cpu_ms_per_request"], 4
        ),
    }
