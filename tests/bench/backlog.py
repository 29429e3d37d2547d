"""Outbox rows written with bulk SQL behind a running relay's back, and waiting for the relay to
drain them. Shared by the history curve (scale.py), the dispatch-rate step (rate.py) and the
ingest step, which waits for its in-process deliveries before it reads the relay's CPU time.

The rows have the shape the relay itself leaves (task, inbox row, event, delivery, attempt),
so the store's queries see what they would see in production; bulk SQL is used because going
through HTTP would measure ingest, not the thing each step wants."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psycopg

from tests.bench import procs

COLUMNS: dict[str, tuple[str, ...]] = {
    "tasks": (
        "id",
        "upstream_id",
        "family",
        "platform",
        "state",
        "origin",
        "params",
        "labels",
        "created_at",
        "updated_at",
    ),
    "inbox": ("id", "webhook_id", "task_id", "source", "body", "received_at"),
    "events": (
        "id",
        "inbox_id",
        "dedupe_key",
        "task_id",
        "task_ref",
        "clip_id",
        "kind",
        "platform",
        "source",
        "clip",
        "received_at",
    ),
    "deliveries": (
        "id",
        "event_id",
        "handler",
        "state",
        "attempts",
        "next_attempt_at",
        "created_at",
        "updated_at",
        "stage",
    ),
    "attempts": ("delivery_id", "number", "started_at", "finished_at", "outcome"),
}
"""Columns written per table, in insertion order (foreign keys first)."""

JSON_COLUMNS = frozenset({"params", "labels", "clip"})
"""JSON type on PostgreSQL (TEXT on SQLite): the value is a JSON string cast on the way in."""


Rows = dict[str, list[tuple[Any, ...]]]
"""One bulk write: value tuples per table, in COLUMNS order."""


def rows(first: int, count: int, *, done: bool, handler: str = "noop") -> Rows:
    """`count` events numbered from `first`: finished a day ago (`done`, history), or new ones
    whose delivery to `handler` is due now."""
    now = time.time()
    old = now - 86_400
    out: Rows = {table: [] for table in COLUMNS}
    for i in range(first, first + count):
        at = old + i * 0.01 if done else now
        task, inbox, event, delivery = (uuid.uuid4().hex for _ in range(4))
        body = json.dumps({"task_id": f"seed-{i}", "data": [{"clip_id": f"c{i}"}]})
        out["tasks"].append(
            (task, f"seed-{i}", "producer", "producer", "succeeded", "external", "{}", "{}", at, at)
        )
        out["inbox"].append((inbox, f"seed-{i}", f"seed-{i}", "callback", body.encode(), at))
        out["events"].append(
            (
                event,
                inbox,
                f"seed-{i}:c{i}:song.completed",
                f"seed-{i}",
                task,
                f"c{i}",
                "song.completed",
                "producer",
                "callback",
                json.dumps({"clip_id": f"c{i}"}),
                at,
            )
        )
        state = "succeeded" if done else "pending"
        out["deliveries"].append((delivery, event, handler, state, int(done), at, at, at, 0))
        if done:
            out["attempts"].append((delivery, 1, at, at, "succeeded"))
    return out


def _insert(table: str, placeholder: str) -> str:
    columns = COLUMNS[table]
    values = ", ".join(
        f"{placeholder}::json" if placeholder == "%s" and c in JSON_COLUMNS else placeholder
        for c in columns
    )
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({values})"


def seed(database: Path, first: int, count: int, *, done: bool) -> None:
    """Write `rows(first, count)` into the SQLite file in one transaction; after history
    (`done`), ANALYZE, as SQLite's recommended `PRAGMA optimize` would have by then."""
    batch = rows(first, count, done=done)
    with sqlite3.connect(database, timeout=30) as conn:
        for table, values in batch.items():
            conn.executemany(_insert(table, "?"), values)
        if done:
            conn.execute("ANALYZE")
    conn.close()


def seed_postgres(database_url: str, first: int, count: int, *, done: bool) -> None:
    """The same rows into a PostgreSQL schema (the URL's search_path), in one transaction."""
    batch = rows(first, count, done=done)
    with psycopg.connect(database_url) as conn, conn.cursor() as cursor:
        for table, values in batch.items():
            if values:
                cursor.executemany(_insert(table, "%s"), values)
        if done:
            cursor.execute("ANALYZE")


OPEN = "SELECT count(*) FROM deliveries WHERE state <> 'succeeded'"


def open_deliveries(database_url: str) -> int:
    """Deliveries not yet succeeded, on either dialect (`sqlite:///path` or a PostgreSQL URL)."""
    if database_url.startswith("sqlite"):
        conn = sqlite3.connect(database_url.split(":///", 1)[1], timeout=30)
        try:
            [(left,)] = conn.execute(OPEN).fetchall()
        finally:
            conn.close()
        return int(left)
    with psycopg.connect(database_url, autocommit=True) as pg:
        row = pg.execute(OPEN).fetchone()
    return int(row[0]) if row else 0


def drain(database_url: str, timeout: float = 600) -> None:
    """Wait until every delivery has succeeded. Generous by default: today's store drains
    about 100 per second, and a backlog of thousands must finish, not time out."""
    deadline = time.monotonic() + timeout
    while True:
        left = open_deliveries(database_url)
        if not left:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{left} deliveries still open after {timeout} s")
        time.sleep(0.05)


SPAN = "SELECT min(started_at), max(finished_at), count(*) FROM attempts WHERE started_at >= "


def attempt_span(database_url: str, since: float) -> tuple[float, float, int]:
    """First attempt start, last attempt finish and the number of attempts begun at or after
    `since` (unix seconds): the drain as the relay itself recorded it."""
    if database_url.startswith("sqlite"):
        conn = sqlite3.connect(database_url.split(":///", 1)[1], timeout=30)
        try:
            [row] = conn.execute(SPAN + "?", (since,)).fetchall()
        finally:
            conn.close()
    else:
        with psycopg.connect(database_url, autocommit=True) as pg:
            row = pg.execute(SPAN + "%s", (since,)).fetchone() or (None, None, 0)
    first, last, count = row
    if first is None or last is None:
        raise RuntimeError(f"no finished attempts since {since}")
    return float(first), float(last), int(count)


def timed_drain(
    database_url: str,
    seed_backlog: Callable[[], None],
    wake: Callable[[], None],
    pids: Sequence[int],
    timeout: float = 600,
) -> dict[str, Any]:
    """Seed a backlog behind the running relay processes' backs, `wake` them, and time the
    drain: attempts per second from the first attempt's start to the last one's finish (the
    relay's own clock, so neither seeding nor polling is counted), and the CPU per attempt
    summed over `pids`. CPU is read before seeding, so a sweep that happens to catch the
    fresh rows before the wake-up is still counted."""
    since = time.time()
    cpu_before = sum(procs.cpu_seconds(pid) for pid in pids)
    seed_backlog()
    wake()
    drain(database_url, timeout)
    cpu = sum(procs.cpu_seconds(pid) for pid in pids) - cpu_before
    first, last, attempts = attempt_span(database_url, since)
    return {
        "dispatch_per_s": round(attempts / max(last - first, 1e-6), 1),
        "dispatch_cpu_ms": round(cpu * 1000 / attempts, 3),
        "attempts": attempts,
        "drain_s": round(last - first, 2),
    }
