"""The dashboard in a real browser: headless Chromium (the system's, driven by Playwright)
against a relay process and the sandbox. Screenshots land in tests/artifacts/; with
`RELAY_UPDATE_SCREENSHOT=1` the task list also replaces deploy/dashboard.png (the README's)."""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, Relay

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "tests" / "artifacts"
README_SCREENSHOT = REPO / "deploy" / "dashboard.png"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-quic",
    "--disable-component-update",
    "--disable-sync",
]
CONFIG = (
    '[[handlers]]\nname = "archive"\ntype = "disk"\npath = "{workdir}/songs"\n'
    '[[handlers]]\nname = "team-chat"\ntype = "tests.plugins:FlakyHandler"\n'
    'fail_times = 1\npermanent = true\ncounter_file = "{workdir}/calls"\n'
)
"""`team-chat` dead-letters its very first delivery and succeeds from then on (a replay)."""

SONGS = [
    ("warm synthwave, night highway, analog pads", "Night Drive", "producer"),
    ("dreamy bossa nova with soft brushes", "Golden Hour", "sonic"),
    ("sunlit indie pop with handclaps", "Paper Planes", "producer"),
    ("slow ambient tide, felt piano", "Low Tide", "producer"),
    ("distorted hardcore #fail", "Static Bloom", "producer"),
]
LYRICS = "[Verse]\nGolden light across the water\n[Chorus]\nStay a little longer"


@pytest.fixture
def browser() -> Iterator[Any]:
    """Chromium via Playwright; skipped where the system has no Chromium, except in CI."""
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: .ci/run installs it with apt-get")
        pytest.skip(f"{CHROMIUM} not installed (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def _seed(relay: Relay) -> dict[str, str]:
    """Submit the songs (the first one alone, so it takes team-chat's one failure); title → id."""
    ids: dict[str, str] = {}
    for index, (sound, title, family) in enumerate(SONGS):
        labels = {"team": "ads"} if index % 2 else {"team": "radio"}
        extra = {"lyrics": LYRICS} if family == "sonic" else {}  # sonic keeps titles in custom mode
        task = relay.submit(sound, title=title, family=family, labels=labels, **extra)
        ids[title] = task["id"]
        if index == 0:
            relay.wait_settled(ids[title])
    for task_id in ids.values():
        relay.wait_settled(task_id)
    return ids


def _until(check: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_operator_walks_through_the_dashboard(
    make_relay: Callable[..., Relay], browser: Any
) -> None:
    """Sign in; the task list plays a finished song with its cover; its timeline shows the
    dead-lettered delivery; Replay makes it succeed; the form submits a new song."""
    relay = make_relay(config=CONFIG)
    ids = _seed(relay)
    ARTIFACTS.mkdir(exist_ok=True)
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.on(
        "response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None
    )

    page.goto(f"{relay.url}/admin")
    assert page.url.startswith(f"{relay.url}/admin/login")
    page.screenshot(path=str(ARTIFACTS / "dashboard-login.png"))
    page.fill("input[name=token]", relay.env["RELAY_ADMIN_TOKEN"])
    page.click("button:has-text('Sign in')")
    page.wait_for_url(f"{relay.url}/admin")
    for _, title, _ in SONGS:
        assert page.get_by_role("link", name=title).first.is_visible()
    row = page.locator("li.task", has_text="Night Drive")
    assert row.locator(".badge").inner_text() == "succeeded"
    failed = page.locator("li.task", has_text="Static Bloom")
    assert failed.locator(".badge").inner_text() == "failed"
    assert row.locator("img").evaluate("img => img.complete && img.naturalWidth") == 256
    player = row.locator("audio")
    assert player.get_attribute("src", timeout=1000) is not None
    player.evaluate("audio => audio.load()")
    _until(lambda: player.evaluate("audio => audio.readyState") >= 1, "the audio's metadata")
    assert player.evaluate("audio => audio.duration") == pytest.approx(3.0, abs=0.1)
    players = page.locator("li.task audio")
    assert players.count() >= 5  # sonic's two clips each have a player
    players.evaluate_all("all => all.forEach(audio => audio.load())")  # show each length
    _until(
        lambda: players.evaluate_all("all => all.every(audio => audio.readyState >= 1)"),
        "every player's metadata",
    )
    page.screenshot(path=str(ARTIFACTS / "dashboard-tasks.png"))
    if os.environ.get("RELAY_UPDATE_SCREENSHOT"):
        shutil.copyfile(ARTIFACTS / "dashboard-tasks.png", README_SCREENSHOT)
    page.set_viewport_size({"width": 390, "height": 844})  # a phone: the layout reflows
    page.screenshot(path=str(ARTIFACTS / "dashboard-tasks-phone.png"))
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.set_viewport_size({"width": 1280, "height": 800})

    page.click("a.task-title:has-text('Night Drive')")
    page.wait_for_url(f"{relay.url}/admin/tasks/{ids['Night Drive']}")
    timeline = page.locator("ol.timeline")
    for step in ("Submitted to producer", "Callback received", "Event song.completed"):
        assert timeline.get_by_text(step).first.is_visible()
    assert timeline.get_by_text("Attempt 1 → team-chat").is_visible()
    assert timeline.get_by_text("planned failure 1 of 1").is_visible()
    assert page.locator(".song audio").count() == 1
    page.screenshot(path=str(ARTIFACTS / "dashboard-task.png"), full_page=True)

    page.click("nav >> text=Deliveries")
    dead = page.locator("tr.dead")
    assert dead.count() == 1
    assert "planned failure 1 of 1" in dead.inner_text()
    page.screenshot(path=str(ARTIFACTS / "dashboard-deliveries.png"), full_page=True)
    dead.get_by_role("button", name="Replay").click()
    page.wait_for_load_state()
    assert "Delivery queued again" in page.locator(".flash").inner_text()

    def replayed() -> bool:
        page.goto(f"{relay.url}/admin/tasks/{ids['Night Drive']}")
        chat = page.locator("table tr", has_text="team-chat")
        return chat.locator(".badge").inner_text() == "succeeded"

    _until(replayed, "the replayed delivery to succeed")
    assert page.locator("ol.timeline").get_by_text("Replay, attempt 1 → team-chat").is_visible()
    page.screenshot(path=str(ARTIFACTS / "dashboard-replayed.png"), full_page=True)

    page.click("nav >> text=New song")
    page.fill("textarea[name=prompt]", "lo-fi hip hop for a rainy afternoon")
    page.fill("input[name=title]", "Rainy Window")
    page.fill("input[name=labels]", "team=radio")
    page.click("button:has-text('Create song')")
    page.wait_for_url(f"{relay.url}/admin/tasks/*")
    assert page.locator("h1").inner_text().startswith("Rainy Window")
    assert "Submitted; the task is submitted." in page.locator(".flash").inner_text()
    new_id = page.url.rsplit("/", 1)[1]
    relay.wait_settled(new_id)
    page.reload()
    assert page.locator(".song audio").count() == 1
    page.screenshot(path=str(ARTIFACTS / "dashboard-submitted.png"), full_page=True)
    context.close()
    assert problems == [], problems  # no CSP violation, no broken resource, no script error


def _expected_overview(relay: Relay) -> dict[str, Any]:
    """What the overview should draw, computed from the relay's database directly."""
    with sqlite3.connect(relay.db_path) as conn:
        per_day = dict(
            conn.execute(
                "SELECT date(received_at, 'unixepoch'), count(*) FROM events"
                " WHERE kind = 'song.completed' GROUP BY 1"
            ).fetchall()
        )
        tasks = conn.execute(
            "SELECT family, state, json_extract(params, '$.task_type') FROM tasks"
        ).fetchall()
        deliveries = {
            (handler, state): count
            for handler, state, count in conn.execute(
                "SELECT handler, state, count(*) FROM deliveries GROUP BY 1, 2"
            )
        }
    cost = {"producer": 10, "sonic": 15}
    credits = sum(
        0 if state == "failed" else (2 if kind == "concat_music" else cost[family])
        for family, state, kind in tasks
    )
    return {"per_day": per_day, "credits": credits, "deliveries": deliveries}


def test_overview_charts_show_the_data(make_relay: Callable[..., Relay], browser: Any) -> None:
    """The first page's inline SVG charts draw what the database holds: today's bar is the
    five finished songs, the credits are 3 producer songs and a sonic one (the failed task is
    refunded), and each handler's deliveries by outcome; each chart has an accessible name,
    and nothing trips the CSP."""
    relay = make_relay(config=CONFIG)
    _seed(relay)
    expected = _expected_overview(relay)
    today = datetime.now(UTC).date().isoformat()
    assert expected["per_day"] == {today: 5}  # 3 producer songs and sonic's two clips
    assert expected["credits"] == 3 * 10 + 15
    ARTIFACTS.mkdir(exist_ok=True)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.goto(f"{relay.url}/admin/login")
    page.fill("input[name=token]", relay.env["RELAY_ADMIN_TOKEN"])
    page.click("button:has-text('Sign in')")
    page.wait_for_url(f"{relay.url}/admin")

    songs_chart = page.locator("svg#chart-songs")
    assert songs_chart.is_visible()
    assert songs_chart.get_attribute("role") == "img"
    assert "Songs per day" in songs_chart.locator("title").first.text_content()
    bars = songs_chart.locator("g.bar")
    assert bars.count() == 14
    drawn = {
        bars.nth(i).get_attribute("data-label"): int(bars.nth(i).get_attribute("data-value"))
        for i in range(14)
    }
    assert list(drawn)[-1] == today
    assert {day: n for day, n in drawn.items() if n} == expected["per_day"]
    today_bar = songs_chart.locator(f"g.bar[data-label='{today}']")
    assert today_bar.locator("title").text_content() == f"{today}: 5 songs"
    assert today_bar.locator("text.value").text_content() == "5"
    assert today_bar.locator("rect").bounding_box()["height"] > 0

    credits = page.locator("svg#chart-credits")
    assert credits.is_visible()
    assert f"{expected['credits']} credits" in credits.locator("desc").text_content()
    today_credits = credits.locator(f"g.bar[data-label='{today}']")
    assert int(today_credits.get_attribute("data-value")) == expected["credits"]

    chart = page.locator("svg#chart-deliveries")
    assert chart.is_visible()
    segments = chart.locator("g.segment")
    drawn_deliveries = {
        (
            segments.nth(i).get_attribute("data-handler"),
            segments.nth(i).get_attribute("data-outcome"),
        ): int(segments.nth(i).get_attribute("data-value"))
        for i in range(segments.count())
    }
    assert drawn_deliveries == expected["deliveries"]
    assert expected["deliveries"][("team-chat", "dead")] == 1
    dead = chart.locator("g.segment[data-handler='team-chat'][data-outcome='dead'] title")
    assert dead.text_content() == "team-chat: 1 dead"
    for name in ("archive", "team-chat"):
        assert chart.locator("text.row-label", has_text=name).is_visible()
    page.screenshot(path=str(ARTIFACTS / "dashboard-overview.png"), full_page=True)
    context.close()
    assert problems == [], problems
