"""Cost against stored history: ingest and dispatch throughput with 1k, 10k, 100k events
already stored. History is seeded with bulk SQL in one transaction (not over HTTP): it only
has to be there, shaped as the relay leaves it (task, inbox, event, finished delivery)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from receiver.store import migrate
from tests.bench import backlog, ingest, procs


def _dispatch(database: Path, history: int, pending: int, base: str, pid: int) -> dict[str, Any]:
    """Add `pending` due deliveries behind the running relay's back, wake its dispatcher with
    one callback, and time the drain (backlog.timed_drain)."""
    return backlog.timed_drain(
        f"sqlite:///{database}",
        lambda: backlog.seed(database, history, pending, done=False),
        lambda: procs.send_callback(base, "wake-up", audio_url=None),
        [pid],
    )


def point(workdir: Path, history: int, pending: int, load: ingest.Load) -> dict[str, Any]:
    """One point of the curve: seed history, drain `pending` deliveries, one ingest run."""
    workdir.mkdir()
    database = workdir / "relay.db"
    url = f"sqlite:///{database}"
    migrate.upgrade(url)
    started = time.monotonic()
    backlog.seed(database, 0, history, done=True)
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
