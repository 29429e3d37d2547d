"""One writer per process: every hot-path write shares group-committed transactions.

Callers (a callback's ingest, the dispatcher's claims and finishes, lease extensions, poll
claims and results, task updates) queue a *write* — a kind and an item — and wait. The
writer takes whatever queued while its previous transaction ran, groups the items by kind and
hands each kind its whole list at once (so a kind writes a table with one `executemany`, not
a statement per item), commits once, and only then answers every caller: a 200 still means
"committed". At low load a batch is a single item, so nothing waits for company.

One failing item must not fail its neighbours: when a batch raises, each item is run again
in a transaction of its own and only the one that fails again gets the error (a unique key
that another process committed first is retried once more: the second time it reads that
row). An unreachable database (`StoreUnavailable`) fails the whole batch at once.

Wake-ups are collected per batch: one `pg_notify` per topic inside the transaction (sent on
commit, never for a rollback), and the in-process listeners called once after the commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Awaitable, Callable, Collection
from typing import Any, Generic, TypeVar

from receiver.errors import StoreUnavailable
from receiver.logging import get_logger
from receiver.store._connections import WriteConnection, is_conflict, unavailable
from receiver.store._dialect import SqlDialect
from receiver.store.notify import CHANNEL

__all__ = ["MAX_BATCH", "Tx", "WriteKind", "Writer"]

log = get_logger("aimusic_relay.store")

Item = TypeVar("Item")
Result = TypeVar("Result")

MAX_BATCH = 256
"""At most this many writes per transaction, so one commit never holds the lock for long."""


@dataclasses.dataclass(slots=True)
class Tx:
    """What a write kind sees: the connection, inside the batch's transaction."""

    db: WriteConnection
    dialect: SqlDialect
    wakes: set[str] = dataclasses.field(default_factory=set)

    def wake(self, topic: str) -> None:
        """After commit, wake `topic`'s listeners here and (PostgreSQL) in other processes."""
        self.wakes.add(topic)


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class WriteKind(Generic[Item, Result]):
    """A kind of write: `run(tx, items)` returns one result per item, in order."""

    name: str
    run: Callable[[Tx, list[Item]], Awaitable[list[Result]]]


@dataclasses.dataclass(slots=True)
class _Queued:
    kind: WriteKind[Any, Any]
    item: Any
    future: asyncio.Future[Any]


class Writer:
    """Owns the write connection; runs queued writes in shared transactions."""

    def __init__(
        self,
        connect: Callable[[], Awaitable[WriteConnection]],
        dialect: SqlDialect,
        on_wake: Callable[[Collection[str]], None],
        *,
        checkpoint_every_s: float | None = None,
    ) -> None:
        self._connect = connect
        self.dialect = dialect
        self._on_wake = on_wake
        self._conn: WriteConnection | None = None
        self._queue: list[_Queued] = []
        self._drainer: asyncio.Task[None] | None = None
        self._checkpoint_every_s = checkpoint_every_s
        self._checkpointer: asyncio.Task[None] | None = None
        self._commits_since_checkpoint = 0
        self.on_commit: Callable[[int, float], None] | None = None
        """Called with (writes in the batch, seconds) after each commit (metrics)."""
        self.commits = 0
        """Transactions committed so far (tests check that writes share them)."""

    async def submit(self, kind: WriteKind[Item, Result], item: Item) -> Result:
        """The item's result once the transaction that holds it has committed."""
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._queue.append(_Queued(kind, item, future))
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain(), name="store-writer")
        # shield: a caller that goes away (client disconnect) leaves its future uncancelled,
        # so the writer can still resolve it; its write commits all the same, as it would
        # in a transaction of its own that was already under way.
        return await asyncio.shield(future)

    async def close(self) -> None:
        """Finish what is queued, then close the connection."""
        if self._drainer is not None:
            with contextlib.suppress(Exception):
                await self._drainer
        if self._checkpointer is not None:
            self._checkpointer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checkpointer
            self._checkpointer = None
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(Exception):
                await conn.close()

    async def _drain(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
            try:
                await self._commit(batch)
            except BaseException as exc:
                # Cancelled (shutdown) or a bug here: nobody may wait for ever.
                for queued in [*batch, *self._queue]:
                    if not queued.future.done():
                        queued.future.set_exception(exc)
                self._queue.clear()
                raise

    async def _commit(self, batch: list[_Queued], tries: int = 1) -> None:
        started = time.perf_counter()
        try:
            results, wakes = await self._transaction(batch)
        except StoreUnavailable as exc:
            for queued in batch:
                if not queued.future.done():
                    queued.future.set_exception(exc)
            return
        except Exception as exc:
            if len(batch) > 1:
                for one in batch:  # the batch rolled back: find the item that fails alone
                    await self._commit([one])
            elif tries < 3 and is_conflict(exc):
                await self._commit(batch, tries + 1)
            elif not batch[0].future.done():
                batch[0].future.set_exception(exc)
            return
        self.commits += 1
        self._commits_since_checkpoint += 1
        for queued, result in zip(batch, results, strict=True):
            if not queued.future.done():
                queued.future.set_result(result)
        if wakes:
            self._on_wake(wakes)
        if self.on_commit is not None:
            self.on_commit(len(batch), time.perf_counter() - started)

    async def _transaction(self, batch: list[_Queued]) -> tuple[list[Any], set[str]]:
        conn = await self._connection()
        tx = Tx(conn, self.dialect)
        groups: dict[WriteKind[Any, Any], list[int]] = {}
        for index, queued in enumerate(batch):
            groups.setdefault(queued.kind, []).append(index)
        results: list[Any] = [None] * len(batch)
        try:
            await conn.begin()
            for kind, indexes in groups.items():
                done = await kind.run(tx, [batch[i].item for i in indexes])
                for index, result in zip(indexes, done, strict=True):
                    results[index] = result
            if self.dialect.is_postgres:
                for topic in sorted(tx.wakes):
                    await conn.rows(
                        # "topic:schema": listeners on another schema of this database skip it
                        self.dialect.sql(
                            "SELECT pg_notify(:channel, :topic || ':' || current_schema())"
                        ),
                        {"channel": CHANNEL, "topic": topic},
                    )
            await conn.commit()
        except BaseException as exc:
            await self._rollback(conn)
            down = unavailable(exc)
            if down is not None and not isinstance(exc, StoreUnavailable):
                raise down from exc
            raise
        return results, tx.wakes

    async def _rollback(self, conn: WriteConnection) -> None:
        try:
            await conn.rollback()
        except Exception as exc:
            log.warning("rollback failed; reconnecting", error=type(exc).__name__)
            self._conn = None
            with contextlib.suppress(Exception):
                await conn.close()
            return
        if conn.broken:
            self._conn = None
            with contextlib.suppress(Exception):
                await conn.close()

    async def _connection(self) -> WriteConnection:
        if self._conn is None:
            try:
                self._conn = await self._connect()
            except Exception as exc:
                down = unavailable(exc)
                if down is not None:
                    raise down from exc
                raise
            if self._checkpoint_every_s is not None and self._checkpointer is None:
                self._checkpointer = asyncio.create_task(self._checkpoints(), name="checkpoint")
        return self._conn

    async def _checkpoints(self) -> None:
        """SQLite: fold the WAL into the database now and then, off the commit path."""
        assert self._checkpoint_every_s is not None
        while True:
            await asyncio.sleep(self._checkpoint_every_s)
            conn = self._conn
            checkpoint = getattr(conn, "checkpoint", None)
            if not self._commits_since_checkpoint or checkpoint is None:
                continue
            self._commits_since_checkpoint = 0
            try:
                await asyncio.to_thread(checkpoint)
            except Exception as exc:
                log.warning("WAL checkpoint failed", error=str(exc))
