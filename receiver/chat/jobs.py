"""The work a chat answer leaves running after it has answered.

Slack wants its answer within 3 s and a create call can take longer, so the submission runs in
the background. Each job is kept referenced here (asyncio holds only weak references to tasks,
so an unreferenced one can vanish mid-call), its spend stays visible to the guard rails until
its task is stored, and the app's lifespan finishes or cancels the rest on shutdown.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from receiver.chat.guard import Spent

__all__ = ["ChatJobs"]

SHUTDOWN_GRACE_S = 10.0
"""How long shutdown waits for submissions in flight before cancelling them."""


class ChatJobs:
    """The chat submissions in flight in this process, by the task id each one creates."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()
        self.pending: dict[str, Spent] = {}
        """What each job in flight will spend: its task may not be stored yet."""

    def start(self, ref: str, spent: Spent, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` (which must handle its own errors) in the background."""
        self.pending[ref] = spent
        task = asyncio.get_running_loop().create_task(work, name=f"chat-submit-{ref}")
        self._tasks.add(task)

        def forget(done: asyncio.Task[None]) -> None:
            self._tasks.discard(done)
            self.pending.pop(ref, None)

        task.add_done_callback(forget)

    async def aclose(self, grace_s: float = SHUTDOWN_GRACE_S) -> None:
        """Let the jobs finish for `grace_s`, then cancel what is left and wait for it."""
        if not self._tasks:
            return
        _, late = await asyncio.wait(set(self._tasks), timeout=grace_s)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
