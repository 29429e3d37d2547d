"""The hot-path records: claims carry what a handler reads, finishes say when an event is
settled, wake-ups go only to the listeners they concern. Both backends (the `store` fixture)."""

from __future__ import annotations

import asyncio
import time

import pytest

from receiver.errors import LeaseLost
from receiver.store import Finish, Inbound, SqlStore
from tests.store.test_store import _task


def _inbound(clip_id: str, webhook_id: str, task_id: str = "up-1") -> Inbound:
    return Inbound(
        source="callback",
        body=b"{}",
        platform="producer",
        clips=[("song.completed", clip_id, {"title": "t"})],
        task_id=task_id,
        webhook_id=webhook_id,
    )


def _staged(kind: str, platform: str, labels: object, only: object) -> list[tuple[str, int]]:
    return [("archive", 0), ("chat", 1)]


async def test_a_claim_carries_earlier_stages_and_the_tasks_other_events(store: SqlStore) -> None:
    """`chat` runs after `archive`: its claim holds archive's result for the same event, and a
    later event of the same task holds both results of the first event."""
    await store.record_inbound(_inbound("clip-1", "w1"), _staged)
    [archive] = await store.claim("me", 10, 30)
    assert (archive.handler, dict(archive.results)) == ("archive", {})
    await store.finish(
        Finish(archive.delivery_id, "me", archive.attempt, "succeeded", result={"path": "/a"})
    )
    [chat] = await store.claim("me", 10, 30)
    assert (chat.handler, dict(chat.results)) == ("chat", {"archive": {"path": "/a"}})
    await store.finish(Finish(chat.delivery_id, "me", chat.attempt, "succeeded", result={"ts": 1}))

    await store.record_inbound(_inbound("clip-2", "w2"), _staged)
    [later] = await store.claim("me", 10, 30)
    assert later.event.clip_id == "clip-2"
    assert dict(later.task_results) == {"archive": {"path": "/a"}, "chat": {"ts": 1}}
    assert dict(later.results) == {}


async def test_a_finish_says_when_its_event_is_settled(store: SqlStore) -> None:
    """The last open delivery of an event reports it settled (its spool may go); a retry does
    not, and a finish by a worker whose lease was taken over is refused."""
    both = lambda *a: [("a", 0), ("b", 0)]  # noqa: E731
    await store.record_inbound(_inbound("clip-1", "w1"), both)
    first, second = await store.claim("me", 10, 30)
    retry = await store.finish(
        Finish(first.delivery_id, "me", first.attempt, "pending", "boom", "destination", 0.0)
    )
    assert not retry.event_settled
    with pytest.raises(LeaseLost):
        await store.finish(Finish(second.delivery_id, "other", second.attempt, "succeeded"))
    done = await store.finish(Finish(second.delivery_id, "me", second.attempt, "succeeded"))
    assert not done.event_settled  # `first` is pending again
    [again] = await store.claim("me", 10, 30)
    last = await store.finish(Finish(again.delivery_id, "me", again.attempt, "dead", "x", "relay"))
    assert last.event_settled


async def test_the_poller_is_woken_by_new_polls_only(store: SqlStore) -> None:
    """A callback wakes the dispatcher, not the poller; a task that will be polled wakes the
    poller, not the dispatcher."""
    woken: list[str] = []
    store.add_listener(lambda: woken.append("deliveries"))
    store.add_listener(lambda: woken.append("polls"), topic="polls")
    if store.listener is not None:  # PostgreSQL: its catch-up sweep on connecting wakes all
        await asyncio.wait_for(store.listener.connected.wait(), 5)
        await asyncio.sleep(0.05)
        woken.clear()
    await store.record_inbound(_inbound("clip-1", "w1"), lambda *a: [("a", 0)])
    await asyncio.sleep(0.05)  # PostgreSQL: our own NOTIFY comes back too; same topic
    assert set(woken) == {"deliveries"}
    woken.clear()
    await store.create_task(_task("ref-9", time.time() + 60))
    await asyncio.sleep(0.05)
    assert set(woken) == {"polls"}


async def test_leases_are_renewed_together_and_only_while_held(store: SqlStore) -> None:
    """`extend_leases` renews every lease this owner still holds, in one batch, and names the
    one it no longer holds in `LeaseLost`."""
    await store.record_inbound(_inbound("clip-1", "w1"), lambda *a: [("a", 0), ("b", 0)])
    first, second = await store.claim("me", 10, 30)
    await store.finish(Finish(second.delivery_id, "me", second.attempt, "succeeded"))
    before = store.writer.commits
    with pytest.raises(LeaseLost) as lost:
        await store.extend_leases([first.delivery_id, second.delivery_id], "me", 30)
    assert (second.delivery_id,) == lost.value.delivery_ids
    assert store.writer.commits - before == 1
