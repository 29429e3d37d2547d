"""Small charts as inline SVG, rendered on the server: the dashboard runs no script at all.

The CSP (`receiver.dashboard.session.security_headers`) forbids script and inline `style`
attributes, so the charts use SVG presentation attributes and classes styled by app.css; inline
SVG in the HTML needs no `img-src`. Each chart is an `<svg role="img">` named by its `<title>`
and `<desc>`, each bar or segment carries its own `<title>` (a tooltip, and what a screen reader
reads) and `data-*` attributes with the exact numbers, so a test can compare them with the data.

Pure functions: numbers in, escaped `Markup` out. Every text is escaped here; handler names
come from relay.toml and dates from the clock, but nothing is trusted to be markup.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from markupsafe import Markup, escape

from receiver.states import DeliveryState

__all__ = ["Bar", "Row", "bar_chart", "number", "stacked_rows"]

_SERIES_CLASSES: dict[str, str] = {
    DeliveryState.SUCCEEDED: "ok",
    DeliveryState.DEAD: "bad",
    DeliveryState.PENDING: "info",
    DeliveryState.RUNNING: "busy",
}
"""Outcome → colour class (app.css); an unknown outcome is drawn neutral."""
_FALLBACK_FILL = {"ok": "#12b76a", "bad": "#f04438", "info": "#2e90fa", "busy": "#7a5af8"}
"""Presentation-attribute colours, for a chart seen without the stylesheet."""


@dataclasses.dataclass(frozen=True, slots=True)
class Bar:
    """One column: `label` names it in full (a date), `tick` is the short axis text."""

    label: str
    tick: str
    value: float


@dataclasses.dataclass(frozen=True, slots=True)
class Row:
    """One horizontal bar split into segments, e.g. a handler's deliveries by outcome."""

    label: str
    parts: Mapping[str, int]


def number(value: float) -> str:
    """3 → "3", 2.5 → "2.5": counts and credits without a trailing ".0"."""
    return f"{value:g}"


def _open(chart_id: str, title: str, summary: str, width: int, height: int) -> list[str]:
    ident = escape(chart_id)
    return [
        f'<svg id="{ident}" class="chart-svg" role="img" viewBox="0 0 {width} {height}"'
        f' width="{width}" height="{height}" aria-labelledby="{ident}-title {ident}-desc"'
        ' xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{ident}-title">{escape(title)}</title>',
        f'<desc id="{ident}-desc">{escape(summary)}</desc>',
    ]


def bar_chart(
    chart_id: str,
    title: str,
    bars: Sequence[Bar],
    *,
    unit: tuple[str, str],
    summary: str,
    width: int = 560,
    height: int = 170,
) -> Markup:
    """Vertical bars, one per entry, scaled to the largest; `unit` is (singular, plural)."""
    top, bottom, side = 22, 22, 4
    plot = height - top - bottom
    slot = (width - 2 * side) / max(1, len(bars))
    tallest = max((b.value for b in bars), default=0) or 1
    parts = _open(chart_id, title, summary, width, height)
    base = top + plot
    parts.append(
        f'<line class="axis-line" x1="{side}" y1="{base}" x2="{width - side}" y2="{base}"'
        ' stroke="#d0d5dd"/>'
    )
    for index, bar in enumerate(bars):
        x = side + index * slot
        tall = round(plot * bar.value / tallest, 1)
        word = unit[0] if bar.value == 1 else unit[1]
        shown = number(bar.value)
        parts.append(
            f'<g class="bar" data-label="{escape(bar.label)}" data-value="{shown}">'
            f"<title>{escape(bar.label)}: {shown} {escape(word)}</title>"
            f'<rect x="{x + slot * 0.15:.1f}" y="{base - tall:.1f}" width="{slot * 0.7:.1f}"'
            f' height="{tall}" rx="3" fill="#6366f1"/>'
        )
        if bar.value:
            parts.append(
                f'<text class="value" x="{x + slot / 2:.1f}" y="{base - tall - 5:.1f}"'
                f' text-anchor="middle">{shown}</text>'
            )
        parts.append(
            f'<text class="tick" x="{x + slot / 2:.1f}" y="{height - 6}"'
            f' text-anchor="middle">{escape(bar.tick)}</text></g>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every interpolated text is escaped above


def stacked_rows(
    chart_id: str,
    title: str,
    rows: Sequence[Row],
    *,
    series: Sequence[str],
    summary: str,
    width: int = 560,
) -> Markup:
    """One horizontal bar per row, split by `series` (in that order, unknown ones after),
    scaled to the longest row, with the row's total at its end and a legend below."""
    label_w, total_w, row_h, gap = 130, 48, 22, 10
    order = [*series, *sorted({k for r in rows for k in r.parts} - set(series))]
    legend_y = len(rows) * (row_h + gap) + 14
    height = legend_y + 22
    longest = max((sum(r.parts.values()) for r in rows), default=0) or 1
    room = width - label_w - total_w
    parts = _open(chart_id, title, summary, width, height)
    for index, row in enumerate(rows):
        y = index * (row_h + gap) + 4
        parts.append(
            f'<text class="row-label" x="{label_w - 8}" y="{y + row_h / 2 + 4:.1f}"'
            f' text-anchor="end">{escape(_clip(row.label))}</text>'
        )
        x = float(label_w)
        for outcome in order:
            count = row.parts.get(outcome, 0)
            if not count:
                continue
            wide = room * count / longest
            colour = _SERIES_CLASSES.get(outcome, "other")
            parts.append(
                f'<g class="segment" data-handler="{escape(row.label)}"'
                f' data-outcome="{escape(outcome)}" data-value="{count}">'
                f"<title>{escape(row.label)}: {count} {escape(outcome)}</title>"
                f'<rect class="fill-{colour}" x="{x:.1f}" y="{y}" width="{wide:.1f}"'
                f' height="{row_h}" fill="{_FALLBACK_FILL.get(colour, "#98a2b3")}"/></g>'
            )
            x += wide
        total = sum(row.parts.values())
        parts.append(
            f'<text class="value" x="{x + 6:.1f}" y="{y + row_h / 2 + 4:.1f}">{total}</text>'
        )
    x = float(label_w)
    for outcome in order:
        colour = _SERIES_CLASSES.get(outcome, "other")
        parts.append(
            f'<g class="legend"><rect class="fill-{colour}" x="{x:.1f}" y="{legend_y}"'
            f' width="10" height="10" rx="2" fill="{_FALLBACK_FILL.get(colour, "#98a2b3")}"/>'
            f'<text class="tick" x="{x + 14:.1f}" y="{legend_y + 9}">{escape(outcome)}</text></g>'
        )
        x += 24 + 7 * len(outcome)
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every interpolated text is escaped above


def _clip(text: str, limit: int = 18) -> str:
    """A row label that fits its column; the full name is in each segment's title."""
    return text if len(text) <= limit else text[: limit - 1] + "…"
