"""The Store contract. Parametrised by backend so PostgreSQL runs the very same suite."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from receiver.store import Inbound, NewTask, SqlStore, open_store


@pytest.fixture(params=["sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlStore]:
    """An opened, migrated store on a fresh database."""
    opened = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    await opened.open()
    yield opened
    await opened.close()


def _route(kind: str, platform: str, labels: object, only: object) -> list[tuple[str, int]]:
    return [("a", 0), ("b", 0)] if kind == "song.completed" else []


def _inbound(webhook_id: str | None, clip_state: str = "song.completed", **kw: object) -> Inbound:
    fields: dict[str, object] = {
        "source": "callback",
        "body": b"{}",
        "platform": "producer",
        "clips": [(clip_state, "clip-1", {"title": "t"})],
        "task_id": "up-1",
        "webhook_id": webhook_id,
    }
    fields.update(kw)
    return Inbound(**fields)  # type: ignore[arg-type]


async def test_one_event_and_one_delivery_per_handler(store: SqlStore) -> None:
    """A callback makes one event and one delivery per routed handler."""
    result = await store.record_inbound(_inbound("w1"), _route)
    assert (result.duplicate, len(result.event_ids), result.deliveries) == (False, 1, 2)


async def test_same_webhook_id_is_a_duplicate(store: SqlStore) -> None:
    """The same X-Webhook-Id twice stores one inbox row and nothing new."""
    await store.record_inbound(_inbound("w1"), _route)
    again = await store.record_inbound(_inbound("w1"), _route)
    assert again.duplicate and again.deliveries == 0


async def test_same_clip_state_under_new_id_is_deduplicated(store: SqlStore) -> None:
    """A new webhook id for the same (task, clip, state) adds no event or delivery."""
    await store.record_inbound(_inbound("w1"), _route)
    again = await store.record_inbound(_inbound("w2"), _route)
    assert again.duplicate and again.event_ids == ()
    assert len(await store.list_deliveries()) == 2


async def test_concurrent_duplicates_dispatch_once(store: SqlStore) -> None:
    """Twenty copies racing in make exactly one event and two deliveries."""
    results = await asyncio.gather(
        *(store.record_inbound(_inbound(f"w{i}"), _route) for i in range(20))
    )
    assert sum(len(r.event_ids) for r in results) == 1
    assert len(await store.list_deliveries()) == 2


async def test_callback_before_create_answer_fills_upstream_id(store: SqlStore) -> None:
    """A callback that beats the create answer attaches to the task by its token ref."""
    await store.create_task(
        NewTask(
            id="ref-1",
            family="producer",
            platform="producer",
            prompt="p",
            params={},
            labels={"team": "ads"},
            handlers=None,
        )
    )
    await store.record_inbound(_inbound("w1", task_ref="ref-1"), _route)
    await store.task_submitted("ref-1", "up-1")
    task = await store.get_task("up-1")
    assert task is not None
    assert (task["id"], task["state"]) == ("ref-1", "succeeded")


async def test_expired_lease_is_reclaimed_and_old_owner_cannot_finish(store: SqlStore) -> None:
    """A crashed worker's claim is taken over after the lease; its late result is ignored."""
    await store.record_inbound(_inbound("w1"), _route)
    first = await store.claim("worker-1", 10, lease_s=0.05)
    assert len(first) == 2
    assert await store.claim("worker-2", 10, lease_s=30) == []
    await asyncio.sleep(0.1)
    second = await store.claim("worker-2", 10, lease_s=30)
    assert sorted(c.delivery_id for c in second) == sorted(c.delivery_id for c in first)
    assert all(c.attempt == 2 for c in second)
    assert await store.succeed(first[0], "worker-1", {"late": True}) is False
    assert await store.succeed(second[0], "worker-2", {"ok": True}) is True
    detail = await store.task_detail("up-1")
    assert detail is not None
    log = detail["events"][0]["deliveries"]
    outcomes = sorted(a["outcome"] for d in log for a in d["attempt_log"])
    assert outcomes == ["lost", "lost", "running", "succeeded"]


async def test_retry_waits_until_due(store: SqlStore) -> None:
    """A failed delivery is not claimable before its retry time, then is."""
    await store.record_inbound(
        _inbound("w1", clips=[("song.completed", "c", {})]), lambda *a: [("a", 0)]
    )
    [claim] = await store.claim("w", 10, 30)
    await store.fail(claim, "w", "boom", "destination", time.time() + 0.2)
    assert await store.claim("w", 10, 30) == []
    due = await store.next_due_at()
    assert due is not None and due > time.time()
    await asyncio.sleep(0.25)
    [again] = await store.claim("w", 10, 30)
    assert again.attempt == 2


async def test_dead_delivery_keeps_error_and_blame(store: SqlStore) -> None:
    """Dead-lettering records the last error and whom to blame."""
    await store.record_inbound(
        _inbound("w1", clips=[("song.completed", "c", {})]), lambda *a: [("a", 0)]
    )
    [claim] = await store.claim("w", 10, 30)
    await store.fail(claim, "w", "HTTP 404 from destination", "destination", None)
    [dead] = await store.list_deliveries("dead")
    assert (dead["last_error"], dead["blame"]) == ("HTTP 404 from destination", "destination")
    assert await store.event_settled(claim.event.id)
