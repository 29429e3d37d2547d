"""The first page's overview: songs per day, credits spent, deliveries by handler and outcome.

Built from the store's compact overview reads (`Queries.song_times`, `task_costs`,
`delivery_counts`) and drawn by `receiver.dashboard.charts`. Credits are what the provider
charges per task (`receiver.costs`: producer create 10, sonic 15, `concat_music` 2, lyrics 1);
a failed task is refunded, so it costs 0. It is an estimate from the tasks the relay stored,
not the provider's ledger.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta

from markupsafe import Markup

from receiver.costs import task_cost
from receiver.dashboard.charts import Bar, Row, bar_chart, number, stacked_rows
from receiver.states import DeliveryState, TaskState
from receiver.store.queries import Queries, TaskCost

__all__ = [
    "DAYS",
    "OUTCOMES",
    "Overview",
    "credits_for",
    "overview",
    "read_overview",
    "window_start",
]

DAYS = 14
"""How many days the charts cover, today included."""
OUTCOMES: tuple[DeliveryState, ...] = (
    DeliveryState.SUCCEEDED,
    DeliveryState.PENDING,
    DeliveryState.RUNNING,
    DeliveryState.DEAD,
)
"""Delivery states in the order their segments are drawn."""


def credits_for(family: str, task_type: str | None, state: str) -> float:
    """What one task costs upstream; failed tasks are refunded."""
    return 0.0 if state == TaskState.FAILED else task_cost(family, task_type)


def _days(now: float) -> list[date]:
    today = datetime.fromtimestamp(now, tz=UTC).date()
    return [today - timedelta(days=DAYS - 1 - n) for n in range(DAYS)]


def window_start(now: float) -> float:
    """Unix time of midnight (UTC) on the first day the charts show."""
    first = _days(now)[0]
    return datetime(first.year, first.month, first.day, tzinfo=UTC).timestamp()


def _day_of(at: float) -> date:
    return datetime.fromtimestamp(at, tz=UTC).date()


@dataclasses.dataclass(frozen=True, slots=True)
class Overview:
    """The three charts, ready to print, and the totals their captions quote."""

    songs: Markup
    credits: Markup
    deliveries: Markup
    song_total: int
    credit_total: float


def overview(
    now: float,
    song_times: Iterable[float],
    costs: Iterable[TaskCost],
    deliveries: Mapping[tuple[str, str], int],
    handlers: Sequence[str],
) -> Overview:
    """The charts for the `DAYS` days ending today (UTC); `handlers` in file order get a row
    even without deliveries, and a handler no longer configured still shows its rows."""
    days = _days(now)
    songs = dict.fromkeys(days, 0.0)
    for at in song_times:
        if (day := _day_of(at)) in songs:
            songs[day] += 1
    spent = dict.fromkeys(days, 0.0)
    for task in costs:
        if (day := _day_of(task["created_at"])) in spent:
            spent[day] += credits_for(task["family"], task["task_type"], task["state"])
    song_total, credit_total = int(sum(songs.values())), sum(spent.values())
    today = songs[days[-1]]
    return Overview(
        songs=bar_chart(
            "chart-songs",
            f"Songs per day, last {DAYS} days",
            _bars(songs),
            unit=("song", "songs"),
            summary=f"{song_total} songs finished in {DAYS} days; {number(today)} today.",
        ),
        credits=bar_chart(
            "chart-credits",
            f"Credits spent per day, last {DAYS} days",
            _bars(spent),
            unit=("credit", "credits"),
            summary=f"{number(credit_total)} credits spent in {DAYS} days (failed tasks are"
            " refunded).",
        ),
        deliveries=_delivery_chart(deliveries, handlers),
        song_total=song_total,
        credit_total=credit_total,
    )


async def read_overview(reads: Queries, handlers: Sequence[str], now: float) -> Overview:
    """The overview from the store's three small reads for the window ending `now`."""
    since = window_start(now)
    return overview(
        now,
        await reads.song_times(since),
        await reads.task_costs(since),
        await reads.delivery_counts(since),
        handlers,
    )


def _bars(per_day: Mapping[date, float]) -> list[Bar]:
    return [Bar(label=day.isoformat(), tick=str(day.day), value=v) for day, v in per_day.items()]


def _delivery_chart(counts: Mapping[tuple[str, str], int], handlers: Sequence[str]) -> Markup:
    names = [*handlers, *sorted({h for h, _ in counts} - set(handlers))]
    rows = [Row(name, {s: n for (h, s), n in counts.items() if h == name}) for name in names]
    total = sum(counts.values())
    dead = sum(n for (_, state), n in counts.items() if state == DeliveryState.DEAD)
    return stacked_rows(
        "chart-deliveries",
        f"Deliveries by handler and outcome, last {DAYS} days",
        rows,
        series=OUTCOMES,
        summary=f"{total} deliveries to {len(names)} handler(s); {dead} dead-lettered.",
        width=1100,  # a full-width card: the same text size as the half-width charts
    )
