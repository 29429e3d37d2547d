"""The work a chat answer leaves running after it has answered.

Slack wants its answer within 3 s and a create call can take longer, so the submission runs in
the background. Each job is kept referenced here (asyncio holds only weak references to tasks,
so an unreferenced one can vanish mid-call), its spend stays visible to the guard rails until
its task is stored, and the app's lifespan finishes or cancels the rest on shutdown.

A request that makes no task (lyrics) leaves nothing in the store for the guard rails to read,
so its spend is kept here once its job ends, for a day. That memory is per process: a restart
or a second relay process forgets it, so lyrics budgets are best effort across restarts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from receiver.chat.guard import Spent
from receiver.chat.spend import LOOKBACK_S

__all__ = ["ChatJobs"]

SHUTDOWN_GRACE_S = 10.0
"""How long shutdown waits for submissions in flight before cancelling them."""


class ChatJobs:
    """The chat submissions in flight in this process, by the task id each one creates."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()
        self.pending: dict[str, Spent] = {}
        """What each job in flight will spend: its task may not be stored yet."""
        self._kept: dict[str, Spent] = {}
        self._claimed: set[str] = set()

    def claim(self, ref: str) -> bool:
        """Take `ref` for one request; False when a request in this process already holds it
        (a button clicked twice). Synchronous, so two clicks cannot both pass between awaits;
        held until the job `start`ed under it ends, or until `release`."""
        if ref in self._claimed or ref in self.pending:
            return False
        self._claimed.add(ref)
        return True

    def release(self, ref: str) -> None:
        """Give up a claim that started no job (the request was refused)."""
        self._claimed.discard(ref)

    def later(self, name: str, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` (which must handle its own errors) in the background without a spend:
        what an answer says after its HTTP response (Slack's `response_url`)."""
        task = asyncio.get_running_loop().create_task(work, name=f"chat-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def keep(self, ref: str, spent: Spent) -> None:
        """Remember what a finished request that made no task spent (lyrics), so the guard
        rails still count it once its job is gone. Call it from the job, before it ends."""
        self._kept[ref] = spent

    def kept(self, now: float) -> dict[str, Spent]:
        """The spends `keep` remembered in the last day (older ones are dropped here), by ref."""
        since = now - LOOKBACK_S
        for ref in [ref for ref, spent in self._kept.items() if spent.at < since]:
            del self._kept[ref]
        return dict(self._kept)

    def start(self, ref: str, spent: Spent, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` (which must handle its own errors) in the background."""
        self.pending[ref] = spent
        task = asyncio.get_running_loop().create_task(work, name=f"chat-submit-{ref}")
        self._tasks.add(task)

        def forget(done: asyncio.Task[None]) -> None:
            self._tasks.discard(done)
            self.pending.pop(ref, None)
            self._claimed.discard(ref)

        task.add_done_callback(forget)

    async def aclose(self, grace_s: float = SHUTDOWN_GRACE_S) -> None:
        """Let the jobs finish for `grace_s`, then cancel what is left and wait for it."""
        if not self._tasks:
            return
        _, late = await asyncio.wait(set(self._tasks), timeout=grace_s)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
