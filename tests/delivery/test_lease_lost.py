"""A dispatcher whose lease another worker took over stops working on that delivery: it
counts the run as `lost` and records nothing, whether it learns so on finishing or while the
handler still runs (the lease renewal). A real dispatcher on both backends (`store`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

from handlers.base import HandlerContext
from receiver.delivery.dispatch import Dispatcher
from receiver.delivery.handler_set import ConfiguredHandler, HandlerSet, HandlerSpec
from receiver.delivery.spool import DownloadPolicy
from receiver.metrics import Metrics
from receiver.models import Event
from receiver.store import Claim, Inbound, SqlStore


class HeldHandler:
    """Starts, then waits until the test lets it return; notes its delivery and whether it
    was cancelled."""

    Config = BaseModel
    name = "held"

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.cancelled = asyncio.Event()
        self.delivery_id = ""

    async def handle(self, event: Event, ctx: HandlerContext) -> dict[str, Any]:
        self.delivery_id = ctx.delivery_id
        self.started.set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        return {"ok": True}


Start = Callable[[float], Awaitable[tuple[Dispatcher, HeldHandler]]]


@pytest.fixture
async def running(store: SqlStore, tmp_path: Path) -> AsyncIterator[Start]:
    """`await start(lease_s)`: a dispatcher with one held handler, running one delivery."""
    stops: list[tuple[asyncio.Event, asyncio.Task[None]]] = []
    http = httpx.AsyncClient()

    async def start(lease_s: float) -> tuple[Dispatcher, HeldHandler]:
        handler = HeldHandler()
        spec = HandlerSpec(name="held", type="held")
        handlers = HandlerSet((ConfiguredHandler(spec, handler, ("song.completed",)),), "test")
        dispatcher = Dispatcher(
            store,
            handlers,
            http,
            spool_root=tmp_path / "spool",
            download_policy=DownloadPolicy(),
            public_url="http://127.0.0.1",
            concurrency=1,  # its one slot is busy: it claims nothing while the test steals
            lease_s=lease_s,
            metrics=Metrics.create(["held"]),
        )
        stop = asyncio.Event()
        stops.append((stop, asyncio.create_task(dispatcher.run(stop))))
        inbound = Inbound(
            source="callback",
            body=b"{}",
            platform="producer",
            clips=[("song.completed", "clip-1", {})],
            task_id="up-1",
        )
        await store.record_inbound(inbound, handlers.route)
        await asyncio.wait_for(handler.started.wait(), 10)
        return dispatcher, handler

    yield start
    for stop, task in stops:
        stop.set()
        await asyncio.wait_for(task, 30)
    await http.aclose()


async def _steal(store: SqlStore, dispatcher: Dispatcher, handler: HeldHandler) -> Claim:
    """Another worker's claim of the running delivery, as after the dispatcher's lease ran out."""
    assert 1 == await store.release([handler.delivery_id], dispatcher.owner)
    [stolen] = await store.claim("thief", 10, 30)
    return stolen


def _count(dispatcher: Dispatcher, outcome: str) -> float | None:
    return dispatcher.metrics.registry.get_sample_value(
        "aimusic_relay_deliveries_total", {"handler": "held", "outcome": outcome}
    )


async def _counted_lost(dispatcher: Dispatcher) -> None:
    while _count(dispatcher, "lost") != 1.0:
        await asyncio.sleep(0.02)


async def test_a_finish_after_a_takeover_is_counted_lost_and_not_recorded(
    store: SqlStore, running: Start
) -> None:
    """The handler returns after another worker took the delivery: its outcome is not
    written (the thief's lease still holds) and the run counts as lost, not succeeded."""
    dispatcher, handler = await running(30.0)  # renewal every 10 s: it never runs here
    stolen = await _steal(store, dispatcher, handler)
    handler.release.set()
    await asyncio.wait_for(_counted_lost(dispatcher), 10)
    assert 0.0 == _count(dispatcher, "succeeded")
    assert not handler.cancelled.is_set()
    await store.succeed(stolen, "thief", None)  # the new owner's lease was left alone


async def test_a_renewal_that_finds_the_lease_taken_stops_the_handler(
    store: SqlStore, running: Start
) -> None:
    """The lease keeper learns of the takeover while the handler still runs: it cancels
    that run and counts it lost; the delivery stays the thief's."""
    dispatcher, handler = await running(0.6)  # renewal every 0.2 s
    stolen = await _steal(store, dispatcher, handler)
    await asyncio.wait_for(handler.cancelled.wait(), 10)
    await asyncio.wait_for(_counted_lost(dispatcher), 10)
    assert 0.0 == _count(dispatcher, "succeeded")
    await store.succeed(stolen, "thief", None)
