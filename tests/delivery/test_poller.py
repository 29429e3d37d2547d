"""The polling fallback against the sandbox: dropped, late and racing callbacks, timeouts,
restarts and poll-only mode."""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from receiver.config import Settings
from receiver.delivery.poller import Poller, poll_interval
from receiver.services import build_services
from receiver.store import NewTask
from tests.conftest import Relay, sandbox_task, songs
from tests.plugins import read_log
from tests.servers import run_asgi

pytestmark = pytest.mark.slow

FAST_POLLING = {
    "RELAY_POLL_GRACE_S": "0.5",
    "RELAY_POLL_MAX_INTERVAL_S": "0.5",
    "RELAY_POLL_RATE_PER_S": "50",
}


def _recorder(log: Path) -> str:
    return (
        f'[[handlers]]\nname = "rec"\ntype = "tests.plugins:RecorderHandler"\nlog_file = "{log}"\n'
    )


def test_poll_intervals_grow_to_the_cap_with_jitter() -> None:
    """Steps double from the base to the cap; jitter keeps each in [step/2, step]."""
    for polls, step in ((1, 15), (2, 30), (3, 60), (8, 60)):
        values = [poll_interval(polls, 15, 60) for _ in range(200)]
        assert step / 2 <= min(values) and max(values) <= step
        assert max(values) - min(values) > step / 10


def test_dropped_callback_is_completed_by_polling(make_relay: Callable[..., Relay]) -> None:
    """#nocallback: the poller finds the finished song and the disk handler gets it."""
    relay = make_relay(**FAST_POLLING)
    done = relay.wait_settled(relay.submit("lost in the mail #nocallback")["id"])
    [event] = songs(done)
    assert (event["kind"], event["source"]) == ("song.completed", "poll")
    assert len(relay.audio_files()) == 1


def test_late_callback_after_poll_dispatches_nothing_new(
    make_relay: Callable[..., Relay], sandbox: str
) -> None:
    """#slowcallback: polling wins; the late callback is acknowledged as a duplicate."""
    relay = make_relay(**FAST_POLLING)
    done = relay.wait_settled(relay.submit("fashionably late #slowcallback")["id"])
    assert [e["source"] for e in songs(done)] == ["poll"]
    deadline = time.monotonic() + 10
    while not [
        a
        for a in sandbox_task(sandbox, done["upstream_id"])["callback_attempts"]
        if a["status"] == 200
    ]:
        assert time.monotonic() < deadline, "the late callback never arrived"
        time.sleep(0.1)
    after = relay.task(done["id"])
    assert len(songs(after)) == 1
    assert relay.count("deliveries", "handler = 'disk'") == 1
    assert len(relay.audio_files()) == 1


def test_callback_racing_poll_dispatches_once(
    make_relay: Callable[..., Relay], tmp_path: Path
) -> None:
    """Callbacks and polls arriving together, over many tasks, run each handler once."""
    log = tmp_path / "calls.jsonl"
    relay = make_relay(
        config=_recorder(log),
        RELAY_POLL_GRACE_S="0.4",  # the sandbox finishes and calls back at 0.4 s
        RELAY_POLL_MAX_INTERVAL_S="0.05",
        RELAY_POLL_RATE_PER_S="200",
    )
    tasks = [relay.submit(f"race {i}") for i in range(20)]
    for task in tasks:
        relay.wait_settled(task["id"])
    sources = collections.Counter(e["source"] for t in tasks for e in songs(relay.task(t["id"])))
    calls = collections.Counter((c["task_ref"], c["kind"]) for c in read_log(log))
    assert set(calls.values()) == {1}
    assert len(calls) == 20
    assert sum(sources.values()) == 20


def test_task_that_never_finishes_times_out(make_relay: Callable[..., Relay]) -> None:
    """#never: nothing final before the deadline → task.timed_out, dispatched to disk."""
    relay = make_relay(RELAY_TASK_DEADLINE_S="2", **FAST_POLLING)
    done = relay.wait_settled(relay.submit("endless loop #never")["id"], timeout=30)
    assert done["state"] == "timed_out"
    [event] = songs(done)
    assert event["kind"] == "task.timed_out"
    assert event["deliveries"][0]["state"] == "succeeded"
    assert list(relay.songs.rglob("*.failed.json"))


def test_kill_9_while_polling_then_restart_finishes(make_relay: Callable[..., Relay]) -> None:
    """A relay killed before its first poll resumes polling after a restart."""
    relay = make_relay(
        RELAY_POLL_GRACE_S="1.5", RELAY_POLL_MAX_INTERVAL_S="0.5", RELAY_POLL_RATE_PER_S="50"
    )
    task = relay.submit("interrupted #nocallback")
    relay.kill9()
    time.sleep(0.5)
    relay.start()
    done = relay.wait_settled(task["id"])
    assert [e["source"] for e in songs(done)] == ["poll"]
    assert len(relay.audio_files()) == 1


def test_poll_only_mode_completes_without_any_callback(
    make_relay: Callable[..., Relay], sandbox: str
) -> None:
    """RELAY_CALLBACKS=off sends no webhook_url; polling alone delivers the song."""
    relay = make_relay(RELAY_CALLBACKS="off", **FAST_POLLING)
    done = relay.wait_settled(relay.submit("offline laptop")["id"])
    assert sandbox_task(sandbox, done["upstream_id"])["webhook_url"] is None
    assert [e["source"] for e in songs(done)] == ["poll"]
    assert "callbacks are off" in relay.log()


@pytest.fixture
def rate_limited_upstream() -> Iterator[tuple[str, list[float]]]:
    """A producer task endpoint that answers 429 (Retry-After: 2) once, then SUCCESS."""
    seen: list[float] = []

    async def task(request: Request) -> Response:
        seen.append(time.monotonic())
        if len(seen) == 1:
            return JSONResponse({"code": 429, "message": "slow down"}, 429, {"Retry-After": "2"})
        clip = {"clip_id": "c1", "state": "succeeded", "title": "t", "audio_url": "http://x/a.wav"}
        return JSONResponse({"code": 200, "status": "SUCCESS", "data": [clip]})

    app = Starlette(routes=[Route("/api/v1/producer/task/{task_id}", task)])
    with run_asgi(app) as url:
        yield url, seen


async def test_poller_honours_retry_after(
    rate_limited_upstream: tuple[str, list[float]], tmp_path: Path
) -> None:
    """After a 429 with Retry-After: 2 the next poll waits at least two seconds."""
    url, seen = rate_limited_upstream
    settings = Settings(
        aimusic_api_key="k",  # type: ignore[arg-type]
        aimusic_base_url=url,
        relay_secret_key="s",  # type: ignore[arg-type]
        database_url=f"sqlite:///{tmp_path / 'r.db'}",
        relay_config=None,
        relay_poll_max_interval_s=0.2,
    )
    services = build_services(settings)
    await services.store.open()
    try:
        await services.store.create_task(
            NewTask(
                id="ref1",
                family="producer",
                platform="producer",
                prompt="p",
                params={},
                labels={},
                handlers=[],
                deadline_at=time.time() + 60,
                next_poll_at=0.0,
            )
        )
        await services.store.task_submitted("ref1", "up1")
        poller = Poller(services, rate_per_s=100, sweep_s=0.05)
        for _ in range(2):
            [task] = await _claim_when_due(services.store)
            await poller._poll(task)
        done = await services.store.reads.get_task("ref1")
    finally:
        await services.aclose()
    assert done is not None and done.state == "succeeded"
    assert len(seen) == 2
    assert seen[1] - seen[0] >= 2.0


async def _claim_when_due(store: Any) -> list[dict[str, Any]]:
    import asyncio

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        due = await store.claim_polls(1, 30)
        if due:
            return list(due)
        await asyncio.sleep(0.05)
    raise AssertionError("no poll became due")


def test_200_tasks_with_dropped_and_duplicate_callbacks_each_dispatch_once(
    make_relay: Callable[..., Relay], tmp_path: Path
) -> None:
    """30% of callbacks dropped, 20% duplicated: every task ends final, each final clip
    event reaches the handler exactly once."""
    log = tmp_path / "calls.jsonl"
    relay = make_relay(config=_recorder(log), **FAST_POLLING)
    markers = ["#nocallback"] * 3 + ["#dup"] * 2 + [""] * 5
    tasks = [relay.submit(f"song {i} {markers[i % 10]}") for i in range(200)]
    finals = [relay.wait_settled(task["id"], timeout=120) for task in tasks]
    assert {t["state"] for t in finals} == {"succeeded"}
    calls = collections.Counter((c["task_ref"], c["kind"]) for c in read_log(log))
    expected = {(t["id"], "song.completed") for t in finals}
    assert set(calls) == expected
    assert set(calls.values()) == {1}
    assert relay.count("deliveries") == 200
    sources = collections.Counter(e["source"] for t in finals for e in songs(t))
    assert sources["poll"] >= 60  # at least every dropped callback was found by polling


def test_unknown_create_is_marked_failed_at_its_deadline_never_resent(
    make_relay: Callable[..., Relay],
) -> None:
    """A create that got a 500 stays `unknown` (no id to poll), then fails at the deadline
    with a task.timed_out event; the provider saw exactly one create call."""
    from receiver.sandbox import SandboxOptions, create_sandbox_app

    with run_asgi(create_sandbox_app(SandboxOptions(error_rate=1.0))) as broken:
        relay = make_relay(AIMUSIC_BASE_URL=broken, RELAY_TASK_DEADLINE_S="2", **FAST_POLLING)
        task = relay.submit("did it or didn't it")
        assert task["state"] == "unknown"
        done = relay.wait_settled(task["id"], timeout=30)
        creates = [
            r
            for r in httpx.get(f"{broken}/sandbox/requests").json()
            if r["path"].endswith("/create")
        ]
    assert done["state"] == "failed"
    assert "not re-sent" in done["error"]
    assert [e["kind"] for e in songs(done)] == ["task.timed_out"]
    assert len(creates) == 1
