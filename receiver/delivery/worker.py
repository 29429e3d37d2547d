"""`aimusic-relay worker`: the dispatcher and poller, for when web processes do not run them."""

from __future__ import annotations

import asyncio
import signal

from receiver.app import freeze_startup_heap, start_background
from receiver.config import Settings
from receiver.logging import get_logger
from receiver.services import build_services

__all__ = ["run_worker"]

log = get_logger("aimusic_relay.worker")


async def run_worker(settings: Settings) -> None:
    """Dispatch until SIGTERM/SIGINT, then finish in-flight deliveries and return."""
    services = build_services(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await services.store.open()
    freeze_startup_heap()
    try:
        async with start_background(services):
            await stop.wait()
            log.info("stopping: finishing in-flight deliveries")
    finally:
        await services.aclose()
