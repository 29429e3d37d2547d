"""The `Store` on SQLAlchemy Core: one implementation for SQLite and PostgreSQL.

Acknowledging, deduplicating and enqueueing are one transaction (a transactional outbox), so
no crash between two writes can lose or double an event.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection

from receiver.errors import StoreUnavailable
from receiver.store import migrate
from receiver.store._group_commit import GroupCommit
from receiver.store._tasks import TaskRows, new_id
from receiver.store.base import Inbound, IngestResult, NewTask, Router
from receiver.store.engine import make_engines
from receiver.store.notify import Listener, notify
from receiver.store.outbox import Outbox
from receiver.store.polls import Polls
from receiver.store.queries import Queries
from receiver.store.schema import deliveries, events, inbox, tasks

__all__ = ["SqlStore"]


@contextlib.contextmanager
def _unavailable_as_store_error() -> Iterator[None]:
    """A database that cannot be reached (or dropped the connection) is `StoreUnavailable`,
    which callers turn into 503 or a back-off; any other database error stays what it is."""
    try:
        yield
    except (OperationalError, PoolTimeout, OSError) as exc:
        raise StoreUnavailable(f"database unavailable: {type(exc).__name__}") from exc
    except DBAPIError as exc:
        if exc.connection_invalidated:
            raise StoreUnavailable("database connection lost") from exc
        raise


class SqlStore(TaskRows, Outbox, Polls, Queries):
    """Tasks, events and deliveries in one SQL database."""

    def __init__(
        self,
        database_url: str,
        *,
        migrate_on_open: bool = True,
        pool_size: int = 5,
        pool_timeout_s: float = 10.0,
    ) -> None:
        self.database_url = database_url
        self._migrate_on_open = migrate_on_open
        self._writer, self._reader = make_engines(
            database_url, pool_size=pool_size, pool_timeout_s=pool_timeout_s
        )
        self.is_postgres = self._writer.dialect.name == "postgresql"
        self._listeners: list[Callable[[], None]] = []
        self._group_commit = GroupCommit[tuple[Inbound, Router], IngestResult](
            self._write, self._ingest
        )
        # The ingest INSERTs, built once with their values passed at execution: building a
        # statement per call (and SQLAlchemy hashing it for its compile cache) was about a
        # tenth of the relay's CPU under a burst of callbacks.
        self._insert_inbox = (
            self._insert(inbox)
            .on_conflict_do_nothing(index_elements=["webhook_id"])
            .returning(inbox.c.id)
        )
        self._insert_event = (
            self._insert(events)
            .on_conflict_do_nothing(index_elements=["dedupe_key"])
            .returning(events.c.id)
        )
        self._insert_delivery = deliveries.insert()
        self.listener: Listener | None = None
        """PostgreSQL only: wakes this process when another one commits due work."""

    async def open(self) -> None:
        if self._migrate_on_open:
            await asyncio.to_thread(migrate.upgrade, self.database_url)
        if self.is_postgres and self.listener is None:
            self.listener = Listener(self.database_url, self._listeners)
            self.listener.start()

    async def close(self) -> None:
        if self.listener is not None:
            await self.listener.stop()
            self.listener = None
        await self._writer.dispose()
        if self._reader is not self._writer:
            await self._reader.dispose()

    def add_listener(self, wake: Callable[[], None]) -> None:
        self._listeners.append(wake)

    def _notify(self) -> None:
        for wake in self._listeners:
            wake()

    async def _notify_others(self, conn: AsyncConnection) -> None:
        """Wake other processes when this transaction commits (PostgreSQL's NOTIFY)."""
        if self.is_postgres:
            await notify(conn)

    @contextlib.asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        with _unavailable_as_store_error():
            async with self._writer.begin() as conn:
                yield conn

    @contextlib.asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        with _unavailable_as_store_error():
            async with self._reader.connect() as conn:
                yield conn

    def _insert(self, table: sa.Table) -> Any:
        dialect = postgresql if self.is_postgres else sqlite
        return dialect.insert(table)

    async def ping(self) -> str | None:
        async with self._read() as conn:
            return await conn.run_sync(migrate.current_revision)

    # -- tasks ---------------------------------------------------------------------------

    async def create_task(self, task: NewTask) -> None:
        now = time.time()
        async with self._write() as conn:
            await conn.execute(
                tasks.insert().values(
                    id=task.id,
                    upstream_id=None,
                    family=task.family,
                    platform=task.platform,
                    state="submitting",
                    origin="relay",
                    prompt=task.prompt,
                    params=dict(task.params),
                    labels=dict(task.labels),
                    handlers=list(task.handlers) if task.handlers is not None else None,
                    created_at=now,
                    updated_at=now,
                    deadline_at=task.deadline_at,
                    next_poll_at=task.next_poll_at,
                )
            )
            if task.next_poll_at is not None:
                await self._notify_others(conn)
        self._notify()  # the poller recomputes when its next poll is due

    async def task_submitted(self, task_ref: str, upstream_id: str) -> None:
        async with self._write() as conn:
            await conn.execute(
                tasks.update()
                .where(tasks.c.id == task_ref)
                .values(
                    upstream_id=upstream_id,
                    updated_at=time.time(),
                    # A callback may have beaten the create answer here; keep its state.
                    state=sa.case(
                        (tasks.c.state == "submitting", "submitted"), else_=tasks.c.state
                    ),
                )
            )

    async def task_state(self, task_ref: str, state: str, error: str | None = None) -> None:
        async with self._write() as conn:
            await conn.execute(
                tasks.update()
                .where(tasks.c.id == task_ref)
                .values(state=state, error=error, updated_at=time.time())
            )

    # -- ingest --------------------------------------------------------------------------

    async def record_inbound(self, inbound: Inbound, route: Router) -> IngestResult:
        """Store one verified inbound (dedupe, task, events, deliveries) in one transaction
        and return once it has committed. On SQLite, callbacks that arrive together share that
        transaction (see `_group_commit`); PostgreSQL takes concurrent writers as they come."""
        if self.is_postgres:
            async with self._write() as conn:
                result = await self._ingest(conn, (inbound, route))
        else:
            result = await self._group_commit.submit((inbound, route))
        if result.deliveries:
            self._notify()
        return result

    async def _ingest(self, conn: AsyncConnection, item: tuple[Inbound, Router]) -> IngestResult:
        """The ingest steps on an open transaction; the caller commits."""
        inbound, route = item
        now = time.time()
        inbox_id = new_id()
        stored = await conn.execute(
            self._insert_inbox,
            {
                "id": inbox_id,
                "webhook_id": inbound.webhook_id,
                "task_id": inbound.task_id,
                "source": inbound.source,
                "event_header": inbound.event_header,
                "body": inbound.body,
                "received_at": now,
            },
        )
        if stored.first() is None:
            return IngestResult(duplicate=True, task_ref=inbound.task_ref)
        task = await self._task_for(conn, inbound, now)
        upstream_id = task["upstream_id"]
        event_ids: list[str] = []
        delivery_count = 0
        for kind, clip_id, clip in inbound.clips:
            event_id = new_id()
            inserted = await conn.execute(
                self._insert_event,
                {
                    "id": event_id,
                    "inbox_id": inbox_id,
                    "dedupe_key": f"{upstream_id}:{clip_id}:{kind}",
                    "task_id": upstream_id,
                    "task_ref": task["id"],
                    "clip_id": clip_id,
                    "kind": kind,
                    "platform": inbound.platform,
                    "source": inbound.source,
                    "clip": dict(clip),
                    "error": clip.get("error_message")
                    or clip.get("error")
                    or (inbound.message if kind == "song.failed" else None),
                    "received_at": now,
                },
            )
            if inserted.first() is None:
                continue
            event_ids.append(event_id)
            targets = route(kind, inbound.platform, task["labels"] or {}, task["handlers"])
            for name, stage in targets:
                await conn.execute(
                    self._insert_delivery,
                    {
                        "id": new_id(),
                        "event_id": event_id,
                        "handler": name,
                        "stage": stage,
                        "state": "pending",
                        "attempts": 0,
                        "next_attempt_at": now,
                        "created_at": now,
                        "updated_at": now,
                    },
                )
            delivery_count += len(targets)
        await self._advance_task(conn, task, [kind for kind, _, _ in inbound.clips], now)
        if delivery_count:
            await self._notify_others(conn)
        return IngestResult(
            duplicate=not event_ids and bool(inbound.clips),
            task_ref=task["id"],
            event_ids=tuple(event_ids),
            deliveries=delivery_count,
        )
