"""The overview's inline SVG charts and the numbers behind them, as pure functions."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime

import pytest

from receiver.dashboard.charts import Bar, Row, bar_chart, stacked_rows
from receiver.dashboard.overview import DAYS, credits_for, overview, window_start
from receiver.store.queries import TaskCost

SVG = "{http://www.w3.org/2000/svg}"
NOON = datetime(2026, 3, 14, 12, 0, tzinfo=UTC).timestamp()
DAY = 86400.0


def parse(markup: str) -> ET.Element:
    """The chart as XML: it must be well-formed to render inline at all."""
    return ET.fromstring(str(markup))


def test_bar_chart_scales_labels_and_names_each_bar() -> None:
    """Bars are as tall as their share of the largest; each has its exact value, a <title>
    with the unit (singular for 1), and the chart an accessible name and description."""
    bars = [Bar("2026-03-12", "12", 0), Bar("2026-03-13", "13", 1), Bar("2026-03-14", "14", 4)]
    svg = parse(bar_chart("c", "Songs per day", bars, unit=("song", "songs"), summary="5 songs"))
    assert svg.get("role") == "img"
    assert svg.get("aria-labelledby") == "c-title c-desc"
    assert svg.find(f"{SVG}title").text == "Songs per day"
    assert svg.find(f"{SVG}desc").text == "5 songs"
    groups = svg.findall(f"{SVG}g")
    assert [(g.get("data-label"), g.get("data-value")) for g in groups] == [
        ("2026-03-12", "0"),
        ("2026-03-13", "1"),
        ("2026-03-14", "4"),
    ]
    assert [g.find(f"{SVG}title").text for g in groups] == [
        "2026-03-12: 0 songs",
        "2026-03-13: 1 song",
        "2026-03-14: 4 songs",
    ]
    heights = [float(g.find(f"{SVG}rect").get("height")) for g in groups]
    assert heights[0] == 0 and heights[2] == pytest.approx(4 * heights[1])
    values = [
        [t.text for t in g.findall(f"{SVG}text") if t.get("class") == "value"] for g in groups
    ]
    assert values == [[], ["1"], ["4"]]  # no "0" printed over an empty day


def test_empty_and_hostile_input_renders_safely() -> None:
    """All zeros or no rows at all still draw (no division by zero); a handler name or label
    full of markup is escaped, never markup."""
    zeros = [Bar(f"d{n}", str(n), 0) for n in range(DAYS)]
    assert len(parse(bar_chart("z", "t", zeros, unit=("x", "xs"), summary="")).findall(f"{SVG}g"))
    assert parse(stacked_rows("e", "t", [], series=("succeeded",), summary="none")) is not None
    evil = '<script>alert("x")</script>'
    markup = stacked_rows("d", evil, [Row(evil, {"dead": 2})], series=("dead",), summary=evil)
    assert "<script>" not in markup
    svg = parse(markup)
    [segment] = [g for g in svg.findall(f"{SVG}g") if g.get("class") == "segment"]
    assert segment.get("data-handler") == evil  # escaped in the attribute, intact when read
    assert segment.find(f"{SVG}title").text == f"{evil}: 2 dead"


def test_stacked_rows_order_segments_and_scale_to_the_longest_row() -> None:
    """Segments follow the series order (unknown outcomes last), only non-zero ones are drawn,
    and a row half as long as the longest is half as wide."""
    rows = [Row("archive", {"dead": 1, "succeeded": 3}), Row("chat", {"odd": 1, "pending": 1})]
    svg = parse(stacked_rows("d", "t", rows, series=("succeeded", "pending", "dead"), summary=""))
    segments = [g for g in svg.findall(f"{SVG}g") if g.get("class") == "segment"]
    assert [
        (g.get("data-handler"), g.get("data-outcome"), g.get("data-value")) for g in segments
    ] == [
        ("archive", "succeeded", "3"),
        ("archive", "dead", "1"),
        ("chat", "pending", "1"),
        ("chat", "odd", "1"),
    ]
    width = {
        (g.get("data-handler"), g.get("data-outcome")): float(g.find(f"{SVG}rect").get("width"))
        for g in segments
    }
    assert width[("archive", "succeeded")] == pytest.approx(3 * width[("archive", "dead")])
    archive = width[("archive", "succeeded")] + width[("archive", "dead")]
    chat = width[("chat", "pending")] + width[("chat", "odd")]
    assert chat == pytest.approx(archive / 2, abs=0.2)


@pytest.mark.parametrize(
    ("family", "task_type", "state", "credits"),
    [
        ("producer", "create_music", "succeeded", 10),
        ("producer", None, "submitted", 10),
        ("sonic", "create_music", "succeeded", 15),
        ("sonic", "concat_music", "succeeded", 2),
        ("producer", "lyrics", "succeeded", 1),
        ("sonic", "create_music", "failed", 0),
        ("producer", "create_music", "failed", 0),
        ("nuro", None, "succeeded", 0),
    ],
)
def test_credits_follow_the_upstream_price_list(
    family: str, task_type: str | None, state: str, credits: float
) -> None:
    """Producer create 10, sonic 15 (concat 2), lyrics 1; a failed task is refunded."""
    assert credits == credits_for(family, task_type, state)


def test_overview_buckets_the_last_fourteen_utc_days() -> None:
    """Songs and credits land on their UTC day; the window starts at midnight 13 days back,
    so anything older is left out; every configured handler gets a row."""
    start = window_start(NOON)
    assert datetime.fromtimestamp(start, UTC) == datetime(2026, 3, 1, tzinfo=UTC)
    costs: list[TaskCost] = [
        {
            "created_at": NOON,
            "family": "producer",
            "task_type": "create_music",
            "state": "succeeded",
        },
        {
            "created_at": NOON - DAY,
            "family": "sonic",
            "task_type": "create_music",
            "state": "failed",
        },
        {
            "created_at": NOON - DAY,
            "family": "sonic",
            "task_type": "concat_music",
            "state": "succeeded",
        },
        {"created_at": start - 1, "family": "producer", "task_type": None, "state": "succeeded"},
    ]
    shown = overview(
        NOON,
        [NOON, NOON - 60, NOON - DAY, start, start - 1],
        costs,
        {("archive", "succeeded"): 2},
        ["archive", "idle"],
    )
    assert (shown.song_total, shown.credit_total) == (4, 12)
    songs = {g.get("data-label"): g.get("data-value") for g in parse(shown.songs).iter(f"{SVG}g")}
    assert len(songs) == DAYS
    assert (songs["2026-03-14"], songs["2026-03-13"], songs["2026-03-01"]) == ("2", "1", "1")
    spent = {g.get("data-label"): g.get("data-value") for g in parse(shown.credits).iter(f"{SVG}g")}
    assert (spent["2026-03-14"], spent["2026-03-13"], spent["2026-03-01"]) == ("10", "2", "0")
    labels = [
        t.text for t in parse(shown.deliveries).iter(f"{SVG}text") if t.get("class") == "row-label"
    ]
    assert labels == ["archive", "idle"]
