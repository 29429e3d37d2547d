"""A lost lease is an exception: once another worker has re-claimed a delivery, the old
owner's finish, success, failure or renewal raises `LeaseLost` and writes nothing. Both
backends (the `store` fixture)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from receiver.errors import LeaseLost
from receiver.store import Claim, Finish, Inbound, SqlStore

LATE_MOVES: dict[str, Callable[[SqlStore, Claim], Awaitable[object]]] = {
    "succeed": lambda s, c: s.succeed(c, "worker-1", {"late": True}),
    "retry": lambda s, c: s.fail(c, "worker-1", "boom", "destination", 0.0),
    "dead": lambda s, c: s.fail(c, "worker-1", "boom", "destination", None),
    "finish": lambda s, c: s.finish(Finish(c.delivery_id, "worker-1", c.attempt, "succeeded")),
    "extend": lambda s, c: s.extend_lease(c.delivery_id, "worker-1", 30),
    "extend_many": lambda s, c: s.extend_leases([c.delivery_id], "worker-1", 30),
}
"""Everything the first owner might still do with its claim after losing it."""


async def _taken_over(store: SqlStore) -> tuple[Claim, Claim]:
    """worker-1's claim, whose short lease ran out, and worker-2's claim of the same row."""
    inbound = Inbound(
        source="callback",
        body=b"{}",
        platform="producer",
        clips=[("song.completed", "clip-1", {"title": "t"})],
        task_id="up-1",
    )
    await store.record_inbound(inbound, lambda *a: [("a", 0)])
    [old] = await store.claim("worker-1", 10, lease_s=0.3)
    await asyncio.sleep(0.4)
    [new] = await store.claim("worker-2", 10, lease_s=30)
    assert (old.delivery_id, 2) == (new.delivery_id, new.attempt)
    return old, new


@pytest.mark.parametrize("move", sorted(LATE_MOVES))
async def test_the_old_owner_raises_lease_lost_and_changes_nothing(
    store: SqlStore, move: str
) -> None:
    """Each late move by the first owner raises `LeaseLost` naming the delivery, leaves the
    row and its attempts as the new owner left them, and the new owner still finishes."""
    old, new = await _taken_over(store)
    before = await store.reads.task_detail("up-1")
    with pytest.raises(LeaseLost) as lost:
        await LATE_MOVES[move](store, old)
    assert (old.delivery_id,) == lost.value.delivery_ids
    assert before == await store.reads.task_detail("up-1")
    await store.extend_lease(new.delivery_id, "worker-2", 30)
    await store.succeed(new, "worker-2", {"ok": True})


async def test_an_expired_lease_nobody_took_is_still_ours(store: SqlStore) -> None:
    """A lease that ran out but was not re-claimed is renewed and finished without error:
    only another worker's claim loses it."""
    inbound = Inbound(
        source="callback",
        body=b"{}",
        platform="producer",
        clips=[("song.completed", "clip-1", {})],
        task_id="up-1",
    )
    await store.record_inbound(inbound, lambda *a: [("a", 0)])
    [claim] = await store.claim("worker-1", 10, lease_s=0.1)
    await asyncio.sleep(0.2)
    await store.extend_lease(claim.delivery_id, "worker-1", 30)
    await store.succeed(claim, "worker-1", None)
    assert await store.event_settled(claim.event.id)
