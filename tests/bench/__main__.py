"""`python -m tests.bench [--quick] [--json FILE] [--only NAME ...]` from the repository root.

Full mode takes a few minutes (under 10), `--quick` under one. Every figure that depends on
the machine's speed is a ratio against a baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from tests.bench import dispatch, ingest, loadgen, machine, memory, procs, rate, report, scale

STEPS = ("ingest", "dispatch", "rate", "memory", "scale")


DESCRIPTIONS = {
    "ingest": "bare app vs relay under wrk",
    "dispatch": "callback accepted → handler start",
    "rate": "deliveries drained per second from a backlog",
    "memory": "one large song through disk + S3",
    "scale": "cost against stored history",
}


def _run_step(step: str, workdir: Path, *, quick: bool, postgres: bool) -> dict[str, Any]:
    """One benchmark with the sizes of the mode: quick trades precision for time."""
    if step == "ingest":
        # quick: the c64 row runs 1 s, so eight wrk runs stay well inside the minute
        narrow = ingest.Load(duration_s=2 if quick else 10)
        wide = ingest.Load(duration_s=1 if quick else 10, connections=ingest.WIDE)
        return ingest.run(workdir, [narrow, wide], postgres=postgres)
    if step == "dispatch":
        return dispatch.run(workdir, 20 if quick else 200, postgres=postgres)
    if step == "rate":
        # a count, not a time: quick must still finish on today's store (~100/s)
        return rate.run(workdir, 2_000 if quick else 5_000, postgres_too=postgres)
    if step == "memory":
        return memory.run(workdir / "memory", (50 if quick else 500) * 2**20)
    points = [1_000, 10_000] if quick else [1_000, 10_000, 100_000]
    load = ingest.Load(duration_s=2) if quick else ingest.Load(duration_s=5)
    return scale.run(workdir, points, 100 if quick else 1000, load, repeat_baseline=not quick)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller and shorter (under 1 min)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--only", nargs="+", choices=STEPS, help="run only these benchmarks")
    parser.add_argument("--no-postgres", action="store_true", help="skip the PostgreSQL runs")
    args = parser.parse_args()
    loadgen.require_wrk()
    console = Console(width=120)
    quick = args.quick
    steps = args.only or STEPS
    postgres = not args.no_postgres
    if postgres and procs.postgres_version() is None:
        console.print("[yellow]PostgreSQL not reachable: PostgreSQL figures skipped[/]")
        postgres = False
    figures: dict[str, Any] = {"mode": "quick" if quick else "full", "machine": machine.describe()}
    started = time.monotonic()
    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="relay-bench-") as tmp:
        workdir = Path(tmp)
        for step in steps:
            console.print(f"{step}: {DESCRIPTIONS[step]}…")
            step_started = time.monotonic()
            figures.update(_run_step(step, workdir, quick=quick, postgres=postgres))
            timings[step] = round(time.monotonic() - step_started, 1)
    figures["step_seconds"] = timings
    figures["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    figures["elapsed_s"] = round(time.monotonic() - started, 1)
    console.print(report.table(figures))
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
        console.print(f"figures written to {args.json}")


if __name__ == "__main__":
    main()
