"""A small async pacer: at most `rate` starts per second, shared by whoever awaits it."""

from __future__ import annotations

import asyncio
import time

__all__ = ["Pacer"]


class Pacer:
    """Spaces starts to at most `rate` per second; `hold(s)` pushes the next start back."""

    def __init__(self, rate: float) -> None:
        self._interval = 1.0 / rate
        self._next = 0.0
        self._lock = asyncio.Lock()

    def hold(self, seconds: float) -> None:
        """Nobody starts for `seconds` (a 429's Retry-After applies to every caller)."""
        self._next = max(self._next, time.monotonic() + seconds)

    async def wait(self) -> None:
        async with self._lock:
            now = time.monotonic()
            if self._next > now:
                await asyncio.sleep(self._next - now)
            self._next = max(now, self._next) + self._interval
