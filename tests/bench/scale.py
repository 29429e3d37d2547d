"""Cost against stored history: ingest and dispatch throughput with 1k, 10k, 100k events
already stored. History is seeded with bulk SQL in one transaction (not over HTTP): it only
has to be there, shaped as the relay leaves it (task, inbox, event, finished delivery)."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

from receiver.store import migrate
from tests.bench import ingest, procs


def seed(database: Path, first: int, count: int, *, done: bool) -> None:
    """`count` events numbered from `first`: finished a day ago (`done`, history), or new ones
    whose delivery is due now."""
    now = time.time()
    old = now - 86_400
    rows: dict[str, list[tuple[Any, ...]]] = {k: [] for k in ("tasks", "inbox", "events", "d")}
    attempts: list[tuple[Any, ...]] = []
    for i in range(first, first + count):
        at = old + i * 0.01 if done else now
        task, inbox, event, delivery = (uuid.uuid4().hex for _ in range(4))
        body = json.dumps({"task_id": f"seed-{i}", "data": [{"clip_id": f"c{i}"}]})
        rows["tasks"].append(
            (task, f"seed-{i}", "producer", "producer", "succeeded", "external", "{}", "{}", at, at)
        )
        rows["inbox"].append((inbox, f"seed-{i}", f"seed-{i}", "callback", body.encode(), at))
        rows["events"].append(
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
        rows["d"].append((delivery, event, "noop", state, int(done), at, at, at))
        if done:
            attempts.append((delivery, 1, at, at, "succeeded"))
    with sqlite3.connect(database, timeout=30) as conn:
        conn.executemany(
            "INSERT INTO tasks (id, upstream_id, family, platform, state, origin, params, labels,"
            " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows["tasks"],
        )
        conn.executemany(
            "INSERT INTO inbox (id, webhook_id, task_id, source, body, received_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            rows["inbox"],
        )
        conn.executemany(
            "INSERT INTO events (id, inbox_id, dedupe_key, task_id, task_ref, clip_id, kind,"
            " platform, source, clip, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows["events"],
        )
        conn.executemany(
            "INSERT INTO deliveries (id, event_id, handler, state, attempts, next_attempt_at,"
            " created_at, updated_at, stage) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0)",
            rows["d"],
        )
        conn.executemany(
            "INSERT INTO attempts (delivery_id, number, started_at, finished_at, outcome)"
            " VALUES (?, ?, ?, ?, ?)",
            attempts,
        )
        if done:
            conn.execute("ANALYZE")


def _drain(database: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with sqlite3.connect(database) as conn:
        while True:
            [(left,)] = conn.execute("SELECT count(*) FROM deliveries WHERE state <> 'succeeded'")
            if not left:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{left} deliveries still open after {timeout} s")
            time.sleep(0.05)


def _dispatch(database: Path, history: int, pending: int, base: str, pid: int) -> dict[str, Any]:
    """Add `pending` due deliveries behind the running relay's back, wake its dispatcher with
    one callback, and time the drain: deliveries/s (first start to last finish, from the
    attempts table) and the relay's CPU per delivery."""
    seed(database, history, pending, done=False)
    cpu_before = procs.cpu_seconds(pid)
    procs.send_callback(base, "wake-up", audio_url=None)
    _drain(database, timeout=600)
    cpu = procs.cpu_seconds(pid) - cpu_before
    with sqlite3.connect(database) as conn:
        [(first, last)] = conn.execute(
            "SELECT min(started_at), max(finished_at) FROM attempts WHERE started_at > ?",
            (time.time() - 3600,),
        )
    return {
        "dispatch_per_s": round(pending / (last - first), 1),
        "dispatch_cpu_ms": round(cpu * 1000 / pending, 3),
    }


def point(workdir: Path, history: int, pending: int, load: ingest.Load) -> dict[str, Any]:
    """One point of the curve: seed history, drain `pending` deliveries, one ingest run."""
    workdir.mkdir()
    database = workdir / "relay.db"
    url = f"sqlite:///{database}"
    migrate.upgrade(url)
    started = time.monotonic()
    seed(database, 0, history, done=True)
    seeded_s = time.monotonic() - started
    env = procs.relay_env(workdir, url, procs.NOOP_HANDLER)
    with procs.relay(workdir, env) as (base, pid):
        dispatched = _dispatch(database, history, pending, base, pid)
        result = ingest.push(base, pid, workdir, load, "ingest")
    return {
        "stored_events": history,
        "seed_s": round(seeded_s, 1),
        **dispatched,
        "ingest_rps": result["rps"],
        "ingest_p50_ms": result["p50_ms"],
        "ingest_p99_ms": result["p99_ms"],
        "ingest_cpu_ms": result["cpu_ms_per_request"],
    }


def run(
    workdir: Path, points: list[int], pending: int, load: ingest.Load, *, repeat_baseline: bool
) -> dict[str, Any]:
    """The curve, smallest history first. With `repeat_baseline` the smallest is measured
    again at the end and the ratios use the mean of both, so a drift in the machine's load
    during the run cancels out."""
    curve = [point(workdir / f"scale-{n}", n, pending, load) for n in points]
    baselines = [curve[0]]
    if repeat_baseline:
        baselines.append(point(workdir / f"scale-{points[0]}-again", points[0], pending, load))
    last = curve[-1]

    def ratio(key: str) -> float:
        baseline = sum(float(b[key]) for b in baselines) / len(baselines)
        return round(float(last[key]) / baseline, 3)

    return {
        "scale_curve": curve,
        **({"scale_baseline_again": baselines[1]} if repeat_baseline else {}),
        "scale_ingest_ratio": ratio("ingest_rps"),
        "scale_dispatch_ratio": ratio("dispatch_per_s"),
        # CPU per request: what the history costs, least disturbed by the machine's other load
        "scale_ingest_cpu_ratio": ratio("ingest_cpu_ms"),
        "scale_dispatch_cpu_ratio": ratio("dispatch_cpu_ms"),
        "scale_ratio_points": [points[0], last["stored_events"]],
    }
