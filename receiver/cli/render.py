"""How the operator commands show rows: to scripts as JSON or tab-separated lines (one row per
line, nothing cut), to people as tables fitted to the terminal (ids never cut)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from rich.cells import cell_len
from rich.table import Column, Table
from rich.text import Text

from receiver.states import DeliveryState, TaskState

if TYPE_CHECKING:
    from receiver.cli.doctor_checks import Check
    from receiver.rows import DeliveryRow, EventRow, TaskRow

__all__ = [
    "Field",
    "Sheet",
    "dead_letter",
    "dead_letters_sheet",
    "doctor_json",
    "doctor_table",
    "event_line",
    "events_sheet",
    "plain",
    "tasks_sheet",
]

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_STATE_STYLE: dict[str, str] = {
    TaskState.SUCCEEDED: "green",
    TaskState.FAILED: "red",
    DeliveryState.DEAD: "red",
    TaskState.TIMED_OUT: "red",
    TaskState.UNKNOWN: "yellow",
}
_MARK = {"ok": "[green]✓ ok[/]", "warn": "[yellow]! warn[/]", "fail": "[bold red]✗ fail[/]"}


def plain(value: Any) -> Any:
    """Rows for `--json`: the API's presentation (ISO 8601 times, raw bytes dropped, callback
    tokens hidden), so a script sees what the API would answer."""
    from receiver.http.responses import present

    return present(value)


def _when(value: Any) -> str:
    if not isinstance(value, int | float):
        return ""
    return datetime.fromtimestamp(value, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def _cut(text: Any, width: int = 60) -> str:
    shown = " ".join(str(text or "").split())
    return shown if len(shown) <= width else shown[: width - 1] + "…"


def _table(*headers: str, **options: Any) -> Table:
    """Doctor's advice is read, not copied: fold long cells rather than cut them."""
    return Table(*(Column(header, overflow="fold") for header in headers), **options)


@dataclass(frozen=True, slots=True)
class Field:
    """One column of a listing: its `--json` name (the header off a terminal), its header on
    one, and whether it is shown whole: ids are copied into the next command, so they (and
    times, states, counts) are never cut; other cells are cut with `…` to fit a terminal."""

    key: str
    header: str
    whole: bool = True
    coloured: bool = False


@dataclass(frozen=True, slots=True)
class Sheet:
    """Rows of a listing, shown as tab-separated lines off a terminal (scripts, `grep`, `cut`)
    and as a table fitted to a terminal's width on one."""

    fields: tuple[Field, ...]
    rows: tuple[tuple[str, ...], ...]

    def tsv(self) -> str:
        """A header line of field names, then exactly one line per row."""
        lines = ["\t".join(f.key for f in self.fields)]
        lines += ["\t".join(row) for row in self.rows]
        return "\n".join(lines) + "\n"

    def table(self, width: int) -> Table:
        """Cells cut with `…` until the table fits `width`; cells shown whole are never cut, so
        on a terminal too narrow even for those the lines run past its edge instead."""
        widths = self._widths(width)
        table = Table(
            *(
                Column(
                    field.header,
                    width=size,
                    no_wrap=True,
                    overflow="ellipsis",
                    header_style="bold",
                )
                for field, size in zip(self.fields, widths, strict=True)
            ),
            box=None,
            pad_edge=False,
            padding=(0, 1),
            width=sum(widths) + _GAP * (len(widths) - 1),
        )
        for row in self.rows:
            table.add_row(
                *(
                    Text(cell, style=_STATE_STYLE.get(cell, "") if field.coloured else "")
                    for field, cell in zip(self.fields, row, strict=True)
                )
            )
        return table

    def _widths(self, width: int) -> list[int]:
        """Natural widths, the widest cuttable column narrowed one cell at a time until the
        row fits `width` or every cuttable column is down to `_FLOOR`."""
        widths = [
            max([cell_len(field.header), *(cell_len(row[i]) for row in self.rows)])
            for i, field in enumerate(self.fields)
        ]
        floors = [
            w if f.whole else min(w, _FLOOR) for w, f in zip(widths, self.fields, strict=True)
        ]
        budget = width - _GAP * (len(widths) - 1)
        while sum(widths) > budget:
            cuttable = [i for i, w in enumerate(widths) if w > floors[i]]
            if not cuttable:
                break
            widths[max(cuttable, key=lambda i: widths[i])] -= 1
        return widths


_GAP = 2  # one cell of padding on each side of a column boundary (box=None)
_FLOOR = 8  # a cut cell keeps at least this many cells, `…` included


def _one_line(text: str) -> str:
    """Tabs, line breaks and other control characters (a provider's title could carry terminal
    escape codes) become spaces: a cell never splits a row or a column, nor drives a terminal."""
    return _CONTROL.sub(" ", text)


def _flat(value: Any) -> str:
    return " ".join(str(value or "").split())


def _iso(value: Any) -> str:
    if not isinstance(value, int | float):
        return ""
    return datetime.fromtimestamp(value, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _sheet(fields: Sequence[Field], rows: Sequence[Sequence[Any]], *, terminal: bool) -> Sheet:
    """Times readable on a terminal and ISO 8601 (UTC, `Z`) for scripts; `None` is empty."""
    when = _when if terminal else _iso
    shown = tuple(
        tuple(
            when(cell) if f.key.endswith("_at") else _one_line("" if cell is None else str(cell))
            for f, cell in zip(fields, row, strict=True)
        )
        for row in rows
    )
    return Sheet(tuple(fields), shown)


_TASK_FIELDS = (
    Field("created_at", "created (UTC)"),
    Field("upstream_id", "task"),
    Field("id", "relay id"),
    Field("family", "family"),
    Field("state", "state", coloured=True),
    Field("title", "title", whole=False),
    Field("prompt", "prompt", whole=False),
    Field("labels", "labels", whole=False),
    Field("error", "error", whole=False),
)


def tasks_sheet(rows: Sequence[TaskRow], *, terminal: bool) -> Sheet:
    """Tasks with their title and prompt, so a person can tell them apart."""
    return _sheet(
        _TASK_FIELDS,
        [
            (
                row.created_at,
                row.upstream_id,
                row.id,
                row.family,
                row.state,
                _flat(row.params.get("title")),
                _flat(row.prompt or row.params.get("sound")),
                ",".join(f"{k}={v}" for k, v in row.labels.items()),
                _flat(row.error),
            )
            for row in rows
        ],
        terminal=terminal,
    )


_EVENT_FIELDS = (
    Field("received_at", "received (UTC)"),
    Field("id", "event"),
    Field("kind", "kind"),
    Field("platform", "platform"),
    Field("task_id", "task"),
    Field("clip_id", "clip"),
    Field("source", "source"),
    Field("title", "title", whole=False),
)


def events_sheet(rows: Sequence[EventRow], *, terminal: bool) -> Sheet:
    return _sheet(
        _EVENT_FIELDS,
        [
            (
                row.received_at,
                row.id,
                row.kind,
                row.platform,
                row.task_id,
                row.clip_id,
                row.source,
                _flat(row.clip.get("title")),
            )
            for row in rows
        ],
        terminal=terminal,
    )


def event_line(row: EventRow) -> str:
    title = row.clip.get("title")
    parts = [
        _when(row.received_at),
        str(row.kind),
        f"task={row.task_id}",
        f"clip={row.clip_id}",
        f"event={row.id}",
        f"via={row.source}",
    ]
    if title:
        parts.append(f"title={_cut(title, 40)!r}")
    if row.error:
        parts.append(f"error={_cut(row.error, 80)!r}")
    return "  ".join(parts)


def dead_letter(delivery: DeliveryRow, event: EventRow | None) -> dict[str, Any]:
    """One dead delivery with what a person needs to decide on a replay."""
    return {
        "delivery_id": delivery.id,
        "handler": delivery.handler,
        "event_id": delivery.event_id,
        "event_kind": str(event.kind) if event else None,
        "task_id": event.task_id if event else None,
        "attempts": delivery.attempts,
        "last_error": delivery.last_error,
        "blame": delivery.blame,
        "died_at": delivery.updated_at,
    }


_DEAD_FIELDS = (
    Field("died_at", "died (UTC)"),
    Field("delivery_id", "delivery"),
    Field("handler", "handler"),
    Field("event_id", "event"),
    Field("event_kind", "kind"),
    Field("task_id", "task"),
    Field("attempts", "attempts"),
    Field("blame", "blame"),
    Field("last_error", "last error", whole=False),
)


def dead_letters_sheet(rows: Sequence[Mapping[str, Any]], *, terminal: bool) -> Sheet:
    return _sheet(
        _DEAD_FIELDS,
        [[row[f.key] for f in _DEAD_FIELDS[:-1]] + [_flat(row["last_error"])] for row in rows],
        terminal=terminal,
    )


def doctor_table(checks: Sequence[Check]) -> Table:
    table = _table("check", "status", "detail", "advice", show_lines=True)
    for check in checks:
        # Text, not markup: a detail may quote relay.toml's `[[handlers]]` or user input.
        table.add_row(check.name, _MARK[check.status], Text(check.detail), Text(check.advice))
    return table


def doctor_json(checks: Sequence[Check]) -> dict[str, Any]:
    return {
        "ok": not any(c.status == "fail" for c in checks),
        "checks": [
            {"name": c.name, "status": c.status, "detail": c.detail, "advice": c.advice}
            for c in checks
        ],
    }
