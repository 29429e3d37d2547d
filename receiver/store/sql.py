"""The `Store` on SQLAlchemy Core: one implementation for SQLite and PostgreSQL.

Acknowledging, deduplicating and enqueueing are one transaction (a transactional outbox), so
no crash between two writes can lose or double an event.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection

from receiver.errors import StoreUnavailable
from receiver.models import FINAL_KINDS, event_from_row
from receiver.store import migrate
from receiver.store.base import Claim, Inbound, IngestResult, NewTask, Router
from receiver.store.engine import make_engines
from receiver.store.queries import Queries
from receiver.store.schema import attempts, deliveries, events, inbox, tasks

__all__ = ["SqlStore"]

FINAL_TASK_STATES = frozenset({"succeeded", "failed", "timed_out"})


def new_id() -> str:
    return uuid.uuid4().hex


class SqlStore(Queries):
    """Tasks, events and deliveries in one SQL database."""

    def __init__(self, database_url: str, *, migrate_on_open: bool = True) -> None:
        self.database_url = database_url
        self._migrate_on_open = migrate_on_open
        self._writer, self._reader = make_engines(database_url)
        self._listeners: list[Callable[[], None]] = []

    async def open(self) -> None:
        if self._migrate_on_open:
            await asyncio.to_thread(migrate.upgrade, self.database_url)

    async def close(self) -> None:
        await self._writer.dispose()
        if self._reader is not self._writer:
            await self._reader.dispose()

    def add_listener(self, wake: Callable[[], None]) -> None:
        self._listeners.append(wake)

    def _notify(self) -> None:
        for wake in self._listeners:
            wake()

    @contextlib.asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        try:
            async with self._writer.begin() as conn:
                yield conn
        except (OperationalError, PoolTimeout, OSError) as exc:
            raise StoreUnavailable(f"database unavailable: {type(exc).__name__}") from exc
        except DBAPIError as exc:
            if exc.connection_invalidated:
                raise StoreUnavailable("database connection lost") from exc
            raise

    @contextlib.asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        try:
            async with self._reader.connect() as conn:
                yield conn
        except (OperationalError, PoolTimeout, OSError) as exc:
            raise StoreUnavailable(f"database unavailable: {type(exc).__name__}") from exc

    def _insert(self, table: sa.Table) -> Any:
        dialect = postgresql if self._writer.dialect.name == "postgresql" else sqlite
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
                )
            )

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
        now = time.time()
        async with self._write() as conn:
            inbox_id = new_id()
            stored = await conn.execute(
                self._insert(inbox)
                .values(
                    id=inbox_id,
                    webhook_id=inbound.webhook_id,
                    task_id=inbound.task_id,
                    source=inbound.source,
                    event_header=inbound.event_header,
                    body=inbound.body,
                    received_at=now,
                )
                .on_conflict_do_nothing(index_elements=["webhook_id"])
                .returning(inbox.c.id)
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
                    self._insert(events)
                    .values(
                        id=event_id,
                        inbox_id=inbox_id,
                        dedupe_key=f"{upstream_id}:{clip_id}:{kind}",
                        task_id=upstream_id,
                        task_ref=task["id"],
                        clip_id=clip_id,
                        kind=kind,
                        platform=inbound.platform,
                        source=inbound.source,
                        clip=dict(clip),
                        error=clip.get("error_message")
                        or clip.get("error")
                        or (inbound.message if kind == "song.failed" else None),
                        received_at=now,
                    )
                    .on_conflict_do_nothing(index_elements=["dedupe_key"])
                    .returning(events.c.id)
                )
                if inserted.first() is None:
                    continue
                event_ids.append(event_id)
                names = route(kind, inbound.platform, task["labels"] or {}, task["handlers"])
                for name in names:
                    await conn.execute(
                        deliveries.insert().values(
                            id=new_id(),
                            event_id=event_id,
                            handler=name,
                            state="pending",
                            attempts=0,
                            next_attempt_at=now,
                            created_at=now,
                            updated_at=now,
                        )
                    )
                delivery_count += len(names)
            await self._advance_task(conn, task, [kind for kind, _, _ in inbound.clips], now)
        if delivery_count:
            self._notify()
        return IngestResult(
            duplicate=not event_ids and bool(inbound.clips),
            task_ref=task["id"],
            event_ids=tuple(event_ids),
            deliveries=delivery_count,
        )

    async def _task_for(self, conn: AsyncConnection, inbound: Inbound, now: float) -> Any:
        """The task this inbound is about; an unknown task is recorded as external."""
        row = None
        if inbound.task_ref is not None:
            row = (await conn.execute(tasks.select().where(tasks.c.id == inbound.task_ref))).first()
        if row is None and inbound.task_id is not None:
            row = (
                await conn.execute(tasks.select().where(tasks.c.upstream_id == inbound.task_id))
            ).first()
        if row is not None:
            task = dict(row._mapping)
            if task["upstream_id"] is None and inbound.task_id is not None:
                # The callback arrived before the create call's answer was recorded.
                await conn.execute(
                    tasks.update()
                    .where(tasks.c.id == task["id"])
                    .values(upstream_id=inbound.task_id)
                )
                task["upstream_id"] = inbound.task_id
            if task["upstream_id"] is None:
                task["upstream_id"] = f"ref:{task['id']}"
            return task
        task = {
            "id": new_id(),
            "upstream_id": inbound.task_id,
            "family": inbound.platform,
            "platform": inbound.platform,
            "state": "running",
            "origin": "external",
            "prompt": None,
            "params": {},
            "labels": {},
            "handlers": None,
            "created_at": now,
            "updated_at": now,
        }
        await conn.execute(tasks.insert().values(**task))
        return task

    async def _advance_task(
        self, conn: AsyncConnection, task: Mapping[str, Any], kinds: list[str], now: float
    ) -> None:
        if task["state"] in FINAL_TASK_STATES or not kinds:
            return
        if "song.completed" in kinds:
            state = "succeeded"
        elif all(kind in FINAL_KINDS for kind in kinds):
            state = "failed"
        else:
            state = "streaming"
        await conn.execute(
            tasks.update()
            .where(tasks.c.id == task["id"])
            .values(
                state=state,
                updated_at=now,
                next_poll_at=None if state in FINAL_TASK_STATES else tasks.c.next_poll_at,
            )
        )

    # -- the outbox ----------------------------------------------------------------------

    async def claim(self, owner: str, limit: int, lease_s: float) -> list[Claim]:
        now = time.time()
        due = sa.or_(
            sa.and_(deliveries.c.state == "pending", deliveries.c.next_attempt_at <= now),
            sa.and_(deliveries.c.state == "running", deliveries.c.lease_until < now),
        )
        async with self._write() as conn:
            picked = (
                sa.select(deliveries.c.id)
                .where(due)
                .order_by(deliveries.c.next_attempt_at)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
            ids = [row.id for row in await conn.execute(picked)]
            if not ids:
                return []
            await conn.execute(
                attempts.update()
                .where(attempts.c.delivery_id.in_(ids), attempts.c.outcome == "running")
                .values(outcome="lost", finished_at=now, error="lease expired: the worker stopped")
            )
            claimed = await conn.execute(
                deliveries.update()
                .where(deliveries.c.id.in_(ids))
                .values(
                    state="running",
                    attempts=deliveries.c.attempts + 1,
                    lease_owner=owner,
                    lease_until=now + lease_s,
                    updated_at=now,
                )
                .returning(
                    deliveries.c.id,
                    deliveries.c.event_id,
                    deliveries.c.handler,
                    deliveries.c.attempts,
                )
            )
            rows = claimed.all()
            for row in rows:
                await conn.execute(
                    attempts.insert().values(
                        delivery_id=row.id, number=row.attempts, started_at=now, outcome="running"
                    )
                )
            loaded = await conn.execute(
                sa.select(events, tasks.c.labels, tasks.c.prompt)
                .select_from(events.outerjoin(tasks, tasks.c.id == events.c.task_ref))
                .where(events.c.id.in_({row.event_id for row in rows}))
            )
            by_id = {r.id: event_from_row(dict(r._mapping)) for r in loaded}
        return [
            Claim(delivery_id=r.id, handler=r.handler, attempt=r.attempts, event=by_id[r.event_id])
            for r in rows
        ]

    async def extend_lease(self, delivery_id: str, owner: str, lease_s: float) -> bool:
        async with self._write() as conn:
            done = await conn.execute(
                deliveries.update()
                .where(
                    deliveries.c.id == delivery_id,
                    deliveries.c.lease_owner == owner,
                    deliveries.c.state == "running",
                )
                .values(lease_until=time.time() + lease_s)
            )
            return bool(done.rowcount)

    async def succeed(self, claim: Claim, owner: str, result: Mapping[str, Any] | None) -> bool:
        return await self._finish(claim, owner, "succeeded", None, None, None, result)

    async def fail(
        self, claim: Claim, owner: str, error: str, blame: str, retry_at: float | None
    ) -> bool:
        state = "dead" if retry_at is None else "pending"
        return await self._finish(claim, owner, state, error, blame, retry_at, None)

    async def _finish(
        self,
        claim: Claim,
        owner: str,
        state: str,
        error: str | None,
        blame: str | None,
        retry_at: float | None,
        result: Mapping[str, Any] | None,
    ) -> bool:
        now = time.time()
        async with self._write() as conn:
            done = await conn.execute(
                deliveries.update()
                .where(
                    deliveries.c.id == claim.delivery_id,
                    deliveries.c.lease_owner == owner,
                    deliveries.c.state == "running",
                    deliveries.c.attempts == claim.attempt,
                )
                .values(
                    state=state,
                    lease_owner=None,
                    lease_until=None,
                    last_error=error,
                    blame=blame,
                    result=dict(result) if result is not None else None,
                    next_attempt_at=retry_at if retry_at is not None else now,
                    updated_at=now,
                )
            )
            held = bool(done.rowcount)
            if not held:
                # Our lease expired and another worker took over: its attempt is the record.
                return False
            await conn.execute(
                attempts.update()
                .where(
                    attempts.c.delivery_id == claim.delivery_id, attempts.c.number == claim.attempt
                )
                .values(
                    outcome="succeeded" if state == "succeeded" else "failed",
                    finished_at=now,
                    error=error,
                    blame=blame,
                )
            )
        if state == "pending":
            self._notify()
        return True

    async def next_due_at(self) -> float | None:
        async with self._read() as conn:
            pending = await conn.scalar(
                sa.select(sa.func.min(deliveries.c.next_attempt_at)).where(
                    deliveries.c.state == "pending"
                )
            )
            leased = await conn.scalar(
                sa.select(sa.func.min(deliveries.c.lease_until)).where(
                    deliveries.c.state == "running"
                )
            )
        times = [t for t in (pending, leased) if t is not None]
        return min(times) if times else None

    async def event_settled(self, event_id: str) -> bool:
        async with self._read() as conn:
            open_count = await conn.scalar(
                sa.select(sa.func.count()).where(
                    deliveries.c.event_id == event_id,
                    deliveries.c.state.in_(("pending", "running")),
                )
            )
        return not open_count

    async def results_for_event(self, event_id: str) -> dict[str, Mapping[str, Any]]:
        async with self._read() as conn:
            rows = await conn.execute(
                sa.select(deliveries.c.handler, deliveries.c.result).where(
                    deliveries.c.event_id == event_id, deliveries.c.state == "succeeded"
                )
            )
            return {row.handler: row.result or {} for row in rows}
