"""The Store contract. Parametrised by backend so PostgreSQL runs the very same suite."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from receiver.errors import LeaseLost
from receiver.store import Inbound, NewTask, SqlStore


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
    assert len(await store.reads.list_deliveries()) == 2


async def test_concurrent_duplicates_dispatch_once(store: SqlStore) -> None:
    """Twenty copies racing in make exactly one event and two deliveries."""
    results = await asyncio.gather(
        *(store.record_inbound(_inbound(f"w{i}"), _route) for i in range(20))
    )
    assert sum(len(r.event_ids) for r in results) == 1
    assert len(await store.reads.list_deliveries()) == 2


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
    task = await store.reads.get_task("up-1")
    assert task is not None
    assert (task.id, task.state) == ("ref-1", "succeeded")


async def test_expired_lease_is_reclaimed_and_old_owner_cannot_finish(store: SqlStore) -> None:
    """A crashed worker's claim is taken over after the lease; its late result is ignored."""
    await store.record_inbound(_inbound("w1"), _route)
    # 1.5 s: long enough that the lease cannot lapse before the next statement, even on a
    # loaded CI machine; short enough to wait out.
    first = await store.claim("worker-1", 10, lease_s=1.5)
    assert len(first) == 2
    assert await store.claim("worker-2", 10, lease_s=30) == []
    await asyncio.sleep(1.6)
    second = await store.claim("worker-2", 10, lease_s=30)
    assert sorted(c.delivery_id for c in second) == sorted(c.delivery_id for c in first)
    assert all(c.attempt == 2 for c in second)
    with pytest.raises(LeaseLost):
        await store.succeed(first[0], "worker-1", {"late": True})
    await store.succeed(second[0], "worker-2", {"ok": True})
    detail = await store.reads.task_detail("up-1")
    assert detail is not None
    log = detail.events[0].deliveries
    outcomes = sorted(a.outcome for d in log for a in d.attempt_log)
    assert outcomes == ["lost", "lost", "running", "succeeded"]


async def test_retry_waits_until_due(store: SqlStore) -> None:
    """A failed delivery is not claimable before its retry time, then is."""
    await store.record_inbound(
        _inbound("w1", clips=[("song.completed", "c", {})]), lambda *a: [("a", 0)]
    )
    [claim] = await store.claim("w", 10, 30)
    await store.fail(claim, "w", "boom", "destination", time.time() + 1.0)
    assert await store.claim("w", 10, 30) == []
    due = await store.next_due_at()
    assert due is not None and due > time.time()
    await asyncio.sleep(1.1)
    [again] = await store.claim("w", 10, 30)
    assert again.attempt == 2


async def test_dead_delivery_keeps_error_and_blame(store: SqlStore) -> None:
    """Dead-lettering records the last error and whom to blame."""
    await store.record_inbound(
        _inbound("w1", clips=[("song.completed", "c", {})]), lambda *a: [("a", 0)]
    )
    [claim] = await store.claim("w", 10, 30)
    await store.fail(claim, "w", "HTTP 404 from destination", "destination", None)
    [dead] = await store.reads.list_deliveries("dead")
    assert (dead.last_error, dead.blame) == ("HTTP 404 from destination", "destination")
    assert await store.event_settled(claim.event.id)


def _task(ref: str, next_poll_at: float | None) -> NewTask:
    return NewTask(
        id=ref,
        family="producer",
        platform="producer",
        prompt=None,
        params={},
        labels={},
        handlers=None,
        next_poll_at=next_poll_at,
    )


async def test_concurrent_poll_claims_never_share_a_task(store: SqlStore) -> None:
    """Two pollers claiming at once (two connections) never get the same task."""
    for i in range(40):
        await store.create_task(_task(f"ref-{i}", time.time() - 1))
    other = SqlStore(store.database_url, migrate_on_open=False)
    try:
        batches = await asyncio.gather(
            *(s.claim_polls(3, 30) for _ in range(8) for s in (store, other))
        )
    finally:
        await other.close()
    claimed = [task.id for batch in batches for task in batch]
    assert len(claimed) == len(set(claimed))
    assert 40 == len(claimed)
    assert await store.claim_polls(10, 30) == []


async def test_concurrent_delivery_claims_never_share_a_delivery(store: SqlStore) -> None:
    """Two stores claiming deliveries at once never lease the same delivery twice."""
    for i in range(15):
        await store.record_inbound(_inbound(f"w{i}", task_id=f"up-{i}"), _route)
    other = SqlStore(store.database_url, migrate_on_open=False)
    try:
        batches = await asyncio.gather(
            *(s.claim(f"owner-{n}", 2, 30) for n, s in enumerate((store, other) * 8))
        )
    finally:
        await other.close()
    claimed = [c.delivery_id for batch in batches for c in batch]
    assert 30 == len(claimed) == len(set(claimed))


async def test_poll_done_without_next_poll_stops_polling(store: SqlStore) -> None:
    """Scheduling no next poll (None) leaves the task out of every later poll claim."""
    await store.create_task(_task("ref-1", time.time() - 1))
    [task] = await store.claim_polls(5, 0.01)
    await store.poll_done(task.id, None, error="gone")
    await asyncio.sleep(0.05)
    assert await store.claim_polls(5, 30) == []
    assert await store.next_poll_due() is None


async def test_released_delivery_is_claimable_at_once(store: SqlStore) -> None:
    """A lease given up at shutdown lets another worker take the delivery without waiting."""
    await store.record_inbound(_inbound("w1"), _route)
    first = await store.claim("worker-1", 10, lease_s=60)
    assert 2 == await store.release([c.delivery_id for c in first], "worker-1")
    second = await store.claim("worker-2", 10, lease_s=60)
    assert sorted(c.delivery_id for c in first) == sorted(c.delivery_id for c in second)


async def test_commit_wakes_listeners_of_other_processes(
    make_pg_url: Callable[[], str],
) -> None:
    """A committed delivery wakes a second store's listeners (PostgreSQL NOTIFY; SQLite has one
    process and wakes in-process, which the dispatcher tests cover)."""
    store = SqlStore(make_pg_url())
    await store.open()
    woken = asyncio.Event()
    other = SqlStore(store.database_url, migrate_on_open=False)
    other.add_listener(woken.set)
    await other.open()
    try:
        assert other.listener is not None
        await asyncio.wait_for(other.listener.connected.wait(), 5)
        await asyncio.sleep(0.05)
        woken.clear()  # the sweep after connecting
        await store.record_inbound(_inbound("w1"), _route)
        await asyncio.wait_for(woken.wait(), 5)
    finally:
        await other.close()
        await store.close()
