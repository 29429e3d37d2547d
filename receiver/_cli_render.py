"""How the operator commands show rows to people (rich tables) and to scripts (plain dicts)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from rich.table import Column, Table

if TYPE_CHECKING:
    from receiver._doctor_checks import Check

__all__ = [
    "dead_letter",
    "dead_letters_table",
    "doctor_json",
    "doctor_table",
    "event_line",
    "events_table",
    "hide_callback_token",
    "plain",
    "tasks_table",
]

_TOKEN_PATH = re.compile(r"(/webhooks/aimusic/)[^/?#]+")
_STATE_STYLE = {
    "succeeded": "green",
    "failed": "red",
    "dead": "red",
    "timed_out": "red",
    "unknown": "yellow",
}
_MARK = {"ok": "[green]✓ ok[/]", "warn": "[yellow]! warn[/]", "fail": "[bold red]✗ fail[/]"}


def plain(value: Any) -> Any:
    """Rows for `--json`: the API's presentation (ISO 8601 times, raw bytes dropped)."""
    from receiver.routes._http import present

    return present(value)


def hide_callback_token(task: Mapping[str, Any]) -> dict[str, Any]:
    """The task with its per-task callback token cut out of `params.webhook_url`."""
    params = task.get("params")
    if isinstance(params, dict) and isinstance(params.get("webhook_url"), str):
        hidden = _TOKEN_PATH.sub(r"\1(hidden)", params["webhook_url"])
        return {**task, "params": {**params, "webhook_url": hidden}}
    return dict(task)


def _when(value: Any) -> str:
    if not isinstance(value, int | float):
        return ""
    return datetime.fromtimestamp(value, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def _state(state: str) -> str:
    style = _STATE_STYLE.get(state)
    return f"[{style}]{state}[/]" if style else state


def _cut(text: Any, width: int = 60) -> str:
    shown = " ".join(str(text or "").split())
    return shown if len(shown) <= width else shown[: width - 1] + "…"


def _table(*headers: str, **options: Any) -> Table:
    """Ids are copied into the next command: fold long cells, never cut them with `…`."""
    return Table(*(Column(header, overflow="fold") for header in headers), **options)


def tasks_table(rows: Sequence[Mapping[str, Any]]) -> Table:
    table = _table("created (UTC)", "task", "relay id", "family", "state", "labels", "error")
    for row in rows:
        labels = ",".join(f"{k}={v}" for k, v in (row.get("labels") or {}).items())
        table.add_row(
            _when(row["created_at"]),
            row.get("upstream_id") or "—",
            row["id"],
            row["family"],
            _state(row["state"]),
            labels,
            _cut(row.get("error"), 50),
        )
    return table


def events_table(rows: Sequence[Mapping[str, Any]]) -> Table:
    table = _table("received (UTC)", "event", "kind", "platform", "task", "clip", "source")
    for row in rows:
        table.add_row(
            _when(row["received_at"]),
            row["id"],
            row["kind"],
            row["platform"],
            row["task_id"],
            row["clip_id"],
            row["source"],
        )
    return table


def event_line(row: Mapping[str, Any]) -> str:
    title = (row.get("clip") or {}).get("title")
    parts = [
        _when(row["received_at"]),
        row["kind"],
        f"task={row['task_id']}",
        f"clip={row['clip_id']}",
        f"event={row['id']}",
        f"via={row['source']}",
    ]
    if title:
        parts.append(f"title={_cut(title, 40)!r}")
    if row.get("error"):
        parts.append(f"error={_cut(row['error'], 80)!r}")
    return "  ".join(parts)


def dead_letter(delivery: Mapping[str, Any], event: Mapping[str, Any] | None) -> dict[str, Any]:
    """One dead delivery with what a person needs to decide on a replay."""
    return {
        "delivery_id": delivery["id"],
        "handler": delivery["handler"],
        "event_id": delivery["event_id"],
        "event_kind": event["kind"] if event else None,
        "task_id": event["task_id"] if event else None,
        "attempts": delivery["attempts"],
        "last_error": delivery["last_error"],
        "blame": delivery["blame"],
        "died_at": delivery["updated_at"],
    }


def dead_letters_table(rows: Sequence[Mapping[str, Any]]) -> Table:
    table = _table("died (UTC)", "delivery", "handler", "event", "attempts", "blame", "last error")
    for row in rows:
        event = f"{row['event_id']}\n{row['event_kind'] or ''} {row['task_id'] or ''}".strip()
        table.add_row(
            _when(row["died_at"]),
            row["delivery_id"],
            row["handler"],
            event,
            str(row["attempts"]),
            row["blame"] or "",
            _cut(row["last_error"], 80),
        )
    return table


def doctor_table(checks: Sequence[Check]) -> Table:
    table = _table("check", "status", "detail", "advice", show_lines=True)
    for check in checks:
        table.add_row(check.name, _MARK[check.status], check.detail, check.advice)
    return table


def doctor_json(checks: Sequence[Check]) -> dict[str, Any]:
    return {
        "ok": not any(c.status == "fail" for c in checks),
        "checks": [
            {"name": c.name, "status": c.status, "detail": c.detail, "advice": c.advice}
            for c in checks
        ],
    }
