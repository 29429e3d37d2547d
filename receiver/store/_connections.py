"""The writer's one database connection, on the plain drivers (stdlib sqlite3, psycopg 3).

SQLite: statements run on the event loop thread itself. They touch only pages in memory and
take microseconds; hopping to a thread for each would cost more than the work (and on
CPython a second thread mostly waits for the GIL). What does block — `COMMIT`'s fsync with
`synchronous=FULL`, and waiting for another process's write lock — runs on a thread of the
writer's own, so the loop keeps serving requests meanwhile. WAL checkpoints are taken off the
commit path (`wal_autocheckpoint=0`, a passive checkpoint from another connection).

PostgreSQL: an `AsyncConnection` in pipeline mode for the whole transaction: writes are
sent without waiting for their answers, reads that do not depend on each other go out
together (`rows_many`), and the commit flushes the lot; a batch costs a few round trips, not
one per statement. Each round trip hands the event loop back to the HTTP work queued meanwhile,
so on a busy process every avoided round trip is a loop iteration less of latency.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import sqlite3
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import psycopg

from receiver.errors import StoreUnavailable
from receiver.store.engine import CONNECT_TIMEOUT_S, SQLITE_BUSY_TIMEOUT_MS, libpq_url

__all__ = [
    "PostgresConnection",
    "SqliteConnection",
    "WriteConnection",
    "is_conflict",
    "unavailable",
]

Params = Mapping[str, Any]


class WriteConnection(Protocol):
    """What a write batch runs on: statements inside one transaction, then commit."""

    async def begin(self) -> None: ...
    async def rows(self, sql: str, params: Params) -> list[tuple[Any, ...]]: ...
    async def rows_many(
        self, statements: Sequence[tuple[str, Params]]
    ) -> list[list[tuple[Any, ...]]]:
        """Several independent reads, sent together where the driver can."""
        ...

    async def run(self, sql: str, params: Params) -> int:
        """Execute; the number of rows it changed."""
        ...

    async def run_many(self, sql: str, params: Sequence[Params]) -> None: ...
    async def commit(self) -> None: ...
    async def rollback(self) -> None: ...
    async def close(self) -> None: ...

    @property
    def broken(self) -> bool:
        """The connection cannot be used again (the writer opens a new one)."""
        ...


_SCHEMA_MISSING = (
    psycopg.errors.UndefinedTable,
    psycopg.errors.UndefinedColumn,
    psycopg.errors.InvalidSchemaName,
    psycopg.errors.InsufficientPrivilege,
    psycopg.errors.ReadOnlySqlTransaction,
)
"""A database we reach but cannot use as ours (dropped or foreign schema, revoked rights, a
read-only replica): like an outage, the answer is 503 and retry later, never a 500."""


def unavailable(exc: BaseException) -> StoreUnavailable | None:
    """The database cannot be reached (or dropped us): a 503 / back-off, not a bug."""
    if isinstance(exc, StoreUnavailable):
        return exc
    if isinstance(exc, sqlite3.OperationalError):
        return StoreUnavailable(f"database unavailable: {exc}")
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError | OSError):
        return StoreUnavailable(f"database unavailable: {type(exc).__name__}")
    if isinstance(exc, _SCHEMA_MISSING):
        return StoreUnavailable(
            f"database schema missing or not ours ({type(exc).__name__}):"
            " run `aimusic-relay db upgrade`"
        )
    return None


def is_conflict(exc: BaseException) -> bool:
    """A unique key another transaction committed first (a race between processes)."""
    return isinstance(exc, sqlite3.IntegrityError | psycopg.errors.UniqueViolation)


class SqliteConnection:
    """sqlite3 in autocommit mode with our own `BEGIN IMMEDIATE`: the write lock is taken up
    front, so a concurrent writer (another process) queues instead of failing to upgrade."""

    def __init__(self, path: Path) -> None:
        self._path = path
        # The fast path never waits for a lock on the loop: busy_timeout 0 there, and the
        # waiting (up to SQLITE_BUSY_TIMEOUT_MS) happens on the writer's thread.
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=0)
        self._conn.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is on disk before we answer 200 (survives power loss, not only kill -9).
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        self._conn.execute("PRAGMA wal_autocheckpoint=0")
        self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="sqlite-commit")
        _prompt_thread_handoff()
        self._checkpointer: sqlite3.Connection | None = None

    @property
    def broken(self) -> bool:
        return False

    async def _off_loop(self, call: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._thread, call)

    async def begin(self) -> None:
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if not _busy(exc):
                raise
            await self._off_loop(self._begin_waiting)

    def _begin_waiting(self) -> None:
        self._conn.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        finally:
            self._conn.execute("PRAGMA busy_timeout=0")

    async def rows(self, sql: str, params: Params) -> list[tuple[Any, ...]]:
        return self._conn.execute(sql, params).fetchall()

    async def rows_many(
        self, statements: Sequence[tuple[str, Params]]
    ) -> list[list[tuple[Any, ...]]]:
        return [self._conn.execute(sql, params).fetchall() for sql, params in statements]

    async def run(self, sql: str, params: Params) -> int:
        return self._conn.execute(sql, params).rowcount

    async def run_many(self, sql: str, params: Sequence[Params]) -> None:
        if params:
            self._conn.executemany(sql, params)

    async def commit(self) -> None:
        await self._off_loop(self._commit_waiting)

    def _commit_waiting(self) -> None:
        deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
        while True:
            try:
                self._conn.execute("COMMIT")
                return
            except sqlite3.OperationalError as exc:
                if not _busy(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.001)

    async def rollback(self) -> None:
        if self._conn.in_transaction:
            self._conn.execute("ROLLBACK")

    def checkpoint(self) -> None:
        """Copy the WAL into the database file without blocking the writer (PASSIVE), from
        a connection of its own; called on a thread, never on the commit path."""
        if self._checkpointer is None:
            self._checkpointer = sqlite3.connect(self._path, check_same_thread=False)
        self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)")

    async def close(self) -> None:
        await self._off_loop(self._close)
        self._thread.shutdown(wait=True)

    def _close(self) -> None:
        if self._checkpointer is not None:
            with contextlib.suppress(sqlite3.Error):
                self._checkpointer.close()
        with contextlib.suppress(sqlite3.Error):
            # The last connection out folds the WAL back in, as autocheckpoint would have.
            self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        self._conn.close()


SWITCH_INTERVAL_S = 0.0005
"""How long a thread that wants the GIL waits before the running one must let go (CPython's
default is 5 ms). The commit thread needs the GIL for a moment after each fsync; with the
default, a busy event loop kept it waiting up to 5 ms per commit, which capped group commit
at roughly 16 callbacks per 8 ms at 16 connections."""


def _prompt_thread_handoff() -> None:
    """Lower the interval, process-wide, once a process runs the commit thread."""
    if sys.getswitchinterval() > SWITCH_INTERVAL_S:
        sys.setswitchinterval(SWITCH_INTERVAL_S)


def _busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc)
    return "locked" in text or "busy" in text


WRITER_SETTINGS = ("SET enable_seqscan = off", "SET enable_bitmapscan = off")
"""The writer's session: every hot-path statement is a lookup by key or an ordered indexed
range, so neither a whole-table scan nor a bitmap (which loses the index's order and makes a
claim sort every due row) is the plan we want. Before its first ANALYZE (a fresh deployment,
the first minute or so) PostgreSQL believes the tables hold a few hundred rows and plans
exactly those, at a cost that grows with the history until autovacuum catches up. This makes
the planner walk the index it has; the dashboard's and API's reads keep the defaults."""


class PostgresConnection:
    """One psycopg `AsyncConnection` outside autocommit: a pipelined transaction per batch."""

    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self._conn = conn
        self._pipeline: Any = None
        self._pipeline_block: Any = None

    @classmethod
    async def connect(cls, database_url: str) -> PostgresConnection:
        conn = await psycopg.AsyncConnection.connect(
            libpq_url(database_url),
            connect_timeout=CONNECT_TIMEOUT_S,
            # A half-open TCP connection (the database host vanished) is noticed in ~20 s.
            keepalives=1,
            keepalives_idle=10,
            keepalives_interval=5,
            keepalives_count=2,
        )
        for setting in WRITER_SETTINGS:
            await conn.execute(setting)
        await conn.commit()
        return cls(conn)

    @property
    def broken(self) -> bool:
        return self._conn.closed or self._conn.broken

    async def begin(self) -> None:
        """Enter pipeline mode; psycopg opens the transaction with the first statement."""
        self._pipeline_block = self._conn.pipeline()
        self._pipeline = await self._pipeline_block.__aenter__()

    async def _leave_pipeline(self, exc: BaseException | None = None) -> None:
        block, self._pipeline_block, self._pipeline = self._pipeline_block, None, None
        if block is not None:
            await block.__aexit__(type(exc) if exc else None, exc, None)

    async def rows(self, sql: str, params: Params) -> list[tuple[Any, ...]]:
        cursor = await self._conn.execute(sql, params)
        return await cursor.fetchall()

    async def rows_many(
        self, statements: Sequence[tuple[str, Params]]
    ) -> list[list[tuple[Any, ...]]]:
        cursors = [await self._conn.execute(sql, params) for sql, params in statements]
        return [await cursor.fetchall() for cursor in cursors]

    async def run(self, sql: str, params: Params) -> int:
        cursor = await self._conn.execute(sql, params)
        if self._pipeline is not None:
            await self._pipeline.sync()  # the row count is only known once it has run
        return cursor.rowcount

    async def run_many(self, sql: str, params: Sequence[Params]) -> None:
        if params:
            await self._conn.cursor().executemany(sql, params)

    async def commit(self) -> None:
        await self._conn.commit()
        await self._leave_pipeline()

    async def rollback(self) -> None:
        # Leaving the pipeline may report the error that made us roll back once more.
        with contextlib.suppress(psycopg.Error):
            await self._leave_pipeline(RuntimeError("rolled back"))
        if not self.broken:
            await self._conn.rollback()

    async def close(self) -> None:
        await self._conn.close()
