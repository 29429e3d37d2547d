"""The figures as one rich table: what was measured, the value, the target, pass or not."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.table import Table

TARGETS = {
    "ingest_ratio_sqlite": (0.30, ">="),
    "ingest_ratio_postgres": (0.25, ">="),
    "cpu_ms_per_callback_sqlite": (0.4, "<="),
    "dispatch_p50_ms": (10.0, "<"),
    "dispatch_p99_ms": (30.0, "<"),
    "dispatch_rate_sqlite": (5000.0, ">="),
    "dispatch_rate_postgres": (5000.0, ">="),
    "stream_rss_growth_mb": (64.0, "<"),
}

_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">=": lambda value, limit: value >= limit,
    "<=": lambda value, limit: value <= limit,
    "<": lambda value, limit: value < limit,
}


def _verdict(key: str, value: float) -> str:
    if key not in TARGETS:
        return ""
    limit, op = TARGETS[key]
    ok = _OPERATORS[op](value, limit)
    return f"{op} {limit:g}  " + ("[green]met[/]" if ok else "[red]missed[/]")


def _ingest_rows(figures: dict[str, Any], dialect: str, suffix: str) -> list[tuple[str, str, str]]:
    """Bare, relay and their ratio for one dialect and one wrk row (`suffix` "" is c16)."""
    bare = figures.get(f"ingest_bare_{dialect}{suffix}")
    relay = figures.get(f"ingest_relay_{dialect}{suffix}")
    if bare is None or relay is None:
        return []
    ratio_key = f"ingest_ratio_{dialect}{suffix}"
    row = suffix.lstrip("_") or "c16"
    return [
        (f"ingest {dialect} {row}: bare app", _rps(bare), ""),
        (f"ingest {dialect} {row}: relay", _rps(relay), ""),
        (
            f"ingest {dialect} {row}: ratio relay/bare",
            f"{figures[ratio_key]:.3f}",
            _verdict(ratio_key, figures[ratio_key]),
        ),
    ]


def _callback_rows(figures: dict[str, Any]) -> list[tuple[str, str, str]]:
    """The SQLite relay's whole CPU per callback (ingest plus its in-process delivery)."""
    key = "cpu_ms_per_callback_sqlite"
    if key not in figures:
        return []
    added = figures["ingest_relay_sqlite"].get("callbacks_added", 0)
    value = f"{figures[key]:.2f} ms  ({added} callbacks, c16, drained)"
    return [("CPU per callback, SQLite: ingest + delivery", value, _verdict(key, figures[key]))]


def _batch_rows(figures: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Commit batch sizes from the relay's histogram; the figure is None before the store
    exports it, which is shown rather than hidden."""
    rows = []
    for dialect in ("sqlite", "postgres"):
        key = f"commit_batch_{dialect}"
        if key not in figures:
            continue
        batch = figures[key]
        if batch is None:
            value = "not exported by this store"
        else:
            value = (
                f"median {_bound(batch['median'])}  p90 {_bound(batch['p90'])}  "
                f"({batch['commits']} commits)"
            )
        rows.append((f"commit batch size, {dialect} c16", value, ""))
    return rows


def _bound(value: float | None) -> str:
    return "> largest bucket" if value is None else f"{value:g}"


def _rate_rows(figures: dict[str, Any]) -> list[tuple[str, str, str]]:
    rows = []
    for dialect, who in (("sqlite", "1 serve"), ("postgres", "2 workers")):
        key = f"dispatch_rate_{dialect}"
        if key not in figures:
            continue
        run = figures[f"{key}_run"]
        value = (
            f"{figures[key]:.0f} deliveries/s  "
            f"({figures[f'dispatch_cpu_ms_{dialect}']:.2f} ms CPU each, {run['backlog']:,} backlog)"
        )
        rows.append((f"dispatch rate {dialect} ({who})", value, _verdict(key, figures[key])))
    return rows


def _rps(run: dict[str, Any]) -> str:
    return (
        f"{run['rps']:.0f} req/s  p50 {run['p50_ms']:.1f} ms  p99 {run['p99_ms']:.1f} ms  "
        f"CPU {run['cpu_ms_per_request']:.2f} ms/req"
    )


def _latency(run: dict[str, Any]) -> str:
    return (
        f"p50 {run['p50_ms']:.1f} ms  p99 {run['p99_ms']:.1f} ms  ({run['samples']} callbacks; "
        f"from received_at: p50 {run['from_received_p50_ms']:.1f}, "
        f"p99 {run['from_received_p99_ms']:.1f})"
    )


def _latency_verdict(run: dict[str, Any]) -> str:
    """Both latency targets; the PostgreSQL run is held to the same ones as SQLite's."""
    return "\n".join(
        (f"p{q} " + _verdict(f"dispatch_p{q}_ms", run[f"p{q}_ms"])) for q in ("50", "99")
    )


def table(figures: dict[str, Any]) -> Table:
    out = Table(title=f"aimusic-relay benchmarks ({figures['mode']})")
    out.add_column("measure")
    out.add_column("value", justify="right")
    out.add_column("target")
    rows: list[tuple[str, str, str]] = []
    for dialect in ("sqlite", "postgres"):
        for suffix in ("", "_c64"):
            rows += _ingest_rows(figures, dialect, suffix)
    rows += _callback_rows(figures)
    rows += _batch_rows(figures)
    if "dispatch_in_process_sqlite" in figures:
        rows.append(
            (
                "dispatch in-process (SQLite): accepted → start",
                _latency(figures["dispatch_in_process_sqlite"]),
                _latency_verdict(figures["dispatch_in_process_sqlite"]),
            )
        )
    if "dispatch_across_processes_postgres" in figures:
        across = figures["dispatch_across_processes_postgres"]
        rows.append(
            ("dispatch web → worker (PostgreSQL)", _latency(across), _latency_verdict(across))
        )
    rows += _rate_rows(figures)
    if "stream_rss_growth_mb" in figures:
        rows.append(
            (
                f"peak RSS growth, {figures['stream_file_mb']:.0f} MiB song (disk + S3)",
                f"{figures['stream_rss_growth_mb']:.1f} MiB  ({figures['stream_seconds']:.0f} s)",
                _verdict("stream_rss_growth_mb", figures["stream_rss_growth_mb"]),
            )
        )
    curve = [(point, "") for point in figures.get("scale_curve", [])]
    if "scale_baseline_again" in figures:
        curve.append((figures["scale_baseline_again"], " (again, at the end)"))
    for point, note in curve:
        rows.append(
            (
                f"{point['stored_events']:>7,} stored events{note}",
                f"ingest {point['ingest_rps']:.0f} req/s ({point['ingest_cpu_ms']:.2f} ms CPU)  "
                f"dispatch {point['dispatch_per_s']:.0f}/s ({point['dispatch_cpu_ms']:.2f} ms CPU)",
                "",
            )
        )
    if "scale_ingest_ratio" in figures:
        low, high = figures["scale_ratio_points"]
        rows.append(
            (
                f"cost vs history ({high:,} / {low:,})",
                f"throughput: ingest {figures['scale_ingest_ratio']:.2f}  "
                f"dispatch {figures['scale_dispatch_ratio']:.2f}; CPU per item: ingest "
                f"{figures['scale_ingest_cpu_ratio']:.2f}  "
                f"dispatch {figures['scale_dispatch_cpu_ratio']:.2f}",
                "≈ 1 (flat)",
            )
        )
    for row in rows:
        out.add_row(*row)
    machine = figures["machine"]
    out.caption = (
        f"{machine['cpu']}, {machine['cores']} cores, {machine['ram_gb']} GB, {machine['os']}; "
        f"Python {machine['python']}, SQLite {machine['sqlite']}, "
        f"PostgreSQL {machine['postgres']}; {figures.get('elapsed_s', '?')} s"
    )
    return out
