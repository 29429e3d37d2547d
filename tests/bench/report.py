"""The figures as one rich table: what was measured, the value, the target, pass or not."""

from __future__ import annotations

from typing import Any

from rich.table import Table

TARGETS = {
    "ingest_ratio_sqlite": (0.5, ">="),
    "dispatch_p50_ms": (20.0, "<"),
    "stream_rss_growth_mb": (64.0, "<"),
}


def _verdict(key: str, value: float) -> str:
    if key not in TARGETS:
        return ""
    limit, op = TARGETS[key]
    ok = value >= limit if op == ">=" else value < limit
    return f"{op} {limit:g}  " + ("[green]met[/]" if ok else "[red]missed[/]")


def _ingest_rows(figures: dict[str, Any], dialect: str) -> list[tuple[str, str, str]]:
    bare, relay = figures.get(f"ingest_bare_{dialect}"), figures.get(f"ingest_relay_{dialect}")
    if bare is None or relay is None:
        return []
    ratio_key = f"ingest_ratio_{dialect}"
    return [
        (f"ingest {dialect}: bare app", _rps(bare), ""),
        (f"ingest {dialect}: relay", _rps(relay), ""),
        (
            f"ingest {dialect}: ratio relay/bare",
            f"{figures[ratio_key]:.3f}",
            _verdict(ratio_key, figures[ratio_key]),
        ),
    ]


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


def table(figures: dict[str, Any]) -> Table:
    out = Table(title=f"aimusic-relay benchmarks ({figures['mode']})")
    out.add_column("measure")
    out.add_column("value", justify="right")
    out.add_column("target")
    rows: list[tuple[str, str, str]] = [*_ingest_rows(figures, "sqlite")]
    rows += _ingest_rows(figures, "postgres")
    if "dispatch_in_process_sqlite" in figures:
        rows.append(
            (
                "dispatch in-process (SQLite): accepted → start",
                _latency(figures["dispatch_in_process_sqlite"]),
                _verdict("dispatch_p50_ms", figures["dispatch_p50_ms"]),
            )
        )
    if "dispatch_across_processes_postgres" in figures:
        across = figures["dispatch_across_processes_postgres"]
        verdict = _verdict("dispatch_p50_ms", across["p50_ms"])
        rows.append(("dispatch web → worker (PostgreSQL)", _latency(across), verdict))
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
