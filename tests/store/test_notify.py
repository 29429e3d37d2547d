"""PostgreSQL wake-ups stay within their schema: two relays sharing one database in two
schemas do not wake each other (before, every write woke every listener on the database)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from receiver.store import open_store
from tests.store.test_store_hot_path import _inbound


async def test_a_write_wakes_its_own_schema_only(make_pg_url: Callable[[], str]) -> None:
    ours, theirs = open_store(make_pg_url()), open_store(make_pg_url())
    await ours.open()
    await theirs.open()
    try:
        woken: dict[str, list[str]] = {"ours": [], "theirs": []}
        ours.add_listener(lambda: woken["ours"].append("deliveries"))
        theirs.add_listener(lambda: woken["theirs"].append("deliveries"))
        for store in (ours, theirs):
            assert store.listener is not None
            await asyncio.wait_for(store.listener.connected.wait(), 5)
        await asyncio.sleep(0.1)  # each listener's catch-up sweep on connecting wakes it once
        woken["ours"].clear()
        woken["theirs"].clear()
        await ours.record_inbound(_inbound("clip-1", "w1"), lambda *a: [("a", 0)])
        for _ in range(50):  # our own NOTIFY comes back to our listener
            if woken["ours"]:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)  # and would have reached theirs by now
        assert ["deliveries"] == woken["ours"][:1]
        assert [] == woken["theirs"]
    finally:
        await ours.close()
        await theirs.close()
