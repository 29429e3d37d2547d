"""Group commit for SQLite: callbacks that arrive together share one transaction.

SQLite has one writer connection, so concurrent callbacks queue for it anyway; each one then
pays for its own BEGIN IMMEDIATE, COMMIT (an fsync with `synchronous=FULL`) and pool checkout,
which under load is a large share of the ingest cost. Here the first caller becomes the
leader: it takes every item queued so far, runs them all in one transaction, commits once,
and only then answers each caller — so a 200 still means "committed", and deduplication
still happens inside the transaction (a later item in the batch sees an earlier one's rows).

No waiting is added: a batch is whatever queued while the previous transaction ran, so at low
load each callback commits alone, as before. One failing item must not fail its neighbours:
when a batch raises, each of its items is retried in a transaction of its own, and only the
item that fails again gets the error. An unreachable database (`StoreUnavailable`) fails the
whole batch at once (retrying each would fail the same way, only slower).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection

from receiver.errors import StoreUnavailable

__all__ = ["GroupCommit"]

Item = TypeVar("Item")
Result = TypeVar("Result")

MAX_BATCH = 64
"""At most this many callbacks per transaction, so one commit never holds the lock for long."""


class GroupCommit(Generic[Item, Result]):
    """Runs `apply(conn, item)` for queued items in shared `write()` transactions."""

    def __init__(
        self,
        write: Callable[[], contextlib.AbstractAsyncContextManager[AsyncConnection]],
        apply: Callable[[AsyncConnection, Item], Awaitable[Result]],
    ) -> None:
        self._write = write
        self._apply = apply
        self._queue: list[tuple[Item, asyncio.Future[Result]]] = []
        self._leader: asyncio.Task[None] | None = None

    async def submit(self, item: Item) -> Result:
        """The item's result once the transaction that holds it has committed."""
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if self._leader is None or self._leader.done():
            self._leader = asyncio.create_task(self._drain())
        # shield: a caller that goes away (client disconnect) leaves its future uncancelled,
        # so the leader can still resolve it; its item commits all the same, as it would in a
        # transaction of its own that was already under way.
        return await asyncio.shield(future)

    async def _drain(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
            try:
                await self._commit(batch)
            except BaseException as exc:
                # Cancelled (shutdown) or a bug here: nobody may wait for ever.
                for _, future in [*batch, *self._queue]:
                    if not future.done():
                        future.set_exception(exc)
                self._queue.clear()
                raise

    async def _commit(self, batch: list[tuple[Item, asyncio.Future[Result]]]) -> None:
        try:
            async with self._write() as conn:
                results = [await self._apply(conn, item) for item, _ in batch]
        except StoreUnavailable as exc:
            for _, future in batch:
                future.set_exception(exc)
            return
        except Exception as exc:
            if len(batch) == 1:
                batch[0][1].set_exception(exc)
                return
            for one in batch:  # the batch rolled back: find the item that fails on its own
                await self._commit([one])
            return
        for (_, future), result in zip(batch, results, strict=True):
            future.set_result(result)
