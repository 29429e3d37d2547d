"""The delivery outbox: claim with a lease, finish, retry, dead-letter, replay.

A claim takes due rows with `FOR UPDATE SKIP LOCKED` (a no-op on SQLite, where the single
writer connection already serialises claims) and a lease; a lease that runs out — the worker
died — makes the row claimable again, and the stale worker's late answer is ignored.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from receiver.models import event_from_row
from receiver.store.base import Claim
from receiver.store.schema import attempts, deliveries, events, tasks

__all__ = ["Outbox"]

_OPEN = ("pending", "running")


class Outbox:
    """Outbox operations shared by every SQL backend; the store provides the connections."""

    _write: Callable[[], contextlib.AbstractAsyncContextManager[AsyncConnection]]
    _read: Callable[[], contextlib.AbstractAsyncContextManager[AsyncConnection]]
    _notify: Callable[[], None]
    _notify_others: Callable[[AsyncConnection], Awaitable[None]]

    @staticmethod
    def _due(now: float, exclude: Collection[str]) -> Any:
        earlier = deliveries.alias("earlier")
        blocked = sa.exists().where(
            earlier.c.event_id == deliveries.c.event_id,
            earlier.c.stage < deliveries.c.stage,
            earlier.c.state.in_(_OPEN),
        )
        due = sa.and_(
            # Implied by the OR below, but spelled out so both engines read only the open rows
            # through ix_deliveries_due: without it SQLite scans every delivery ever made.
            deliveries.c.state.in_(_OPEN),
            sa.or_(
                sa.and_(deliveries.c.state == "pending", deliveries.c.next_attempt_at <= now),
                sa.and_(deliveries.c.state == "running", deliveries.c.lease_until < now),
            ),
            ~blocked,
        )
        if exclude:
            due = sa.and_(due, deliveries.c.handler.not_in(list(exclude)))
        return due

    async def claim(
        self, owner: str, limit: int, lease_s: float, exclude: Collection[str] = ()
    ) -> list[Claim]:
        """Lease up to `limit` due deliveries, skipping handlers in `exclude` (paused)."""
        now = time.time()
        async with self._write() as conn:
            picked = (
                sa.select(deliveries.c.id, deliveries.c.state)
                .where(self._due(now, exclude))
                .order_by(deliveries.c.next_attempt_at)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
            rows_picked = (await conn.execute(picked)).all()
            ids = [row.id for row in rows_picked]
            if not ids:
                return []
            expired = [row.id for row in rows_picked if row.state == "running"]
            if expired:  # usually none: one statement less on the way to every handler
                await conn.execute(
                    attempts.update()
                    .where(attempts.c.delivery_id.in_(expired), attempts.c.outcome == "running")
                    .values(
                        outcome="lost", finished_at=now, error="lease expired: the worker stopped"
                    )
                )
            rows = (
                await conn.execute(
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
                        deliveries.c.result,
                    )
                )
            ).all()
            attempt_ids = {}
            for row in rows:
                attempt_ids[row.id] = await conn.scalar(
                    attempts.insert()
                    .values(
                        delivery_id=row.id, number=row.attempts, started_at=now, outcome="running"
                    )
                    .returning(attempts.c.id)
                )
            loaded = await conn.execute(
                sa.select(events, tasks.c.labels, tasks.c.prompt)
                .select_from(events.outerjoin(tasks, tasks.c.id == events.c.task_ref))
                .where(events.c.id.in_({row.event_id for row in rows}))
            )
            by_id = {r.id: event_from_row(dict(r._mapping)) for r in loaded}
        return [
            Claim(
                delivery_id=r.id,
                handler=r.handler,
                attempt=r.attempts,
                event=by_id[r.event_id],
                attempt_id=attempt_ids[r.id],
                previous_result=r.result,
            )
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

    async def release(self, delivery_ids: Collection[str], owner: str) -> int:
        """Give up our leases now (graceful shutdown): another worker may take them at once."""
        if not delivery_ids:
            return 0
        async with self._write() as conn:
            done = await conn.execute(
                deliveries.update()
                .where(
                    deliveries.c.id.in_(list(delivery_ids)),
                    deliveries.c.lease_owner == owner,
                    deliveries.c.state == "running",
                )
                .values(lease_until=time.time() - 0.001)
            )
            if done.rowcount:
                await self._notify_others(conn)
        return int(done.rowcount)

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
        values: dict[str, Any] = {
            "state": state,
            "lease_owner": None,
            "lease_until": None,
            "last_error": error,
            "blame": blame,
            "next_attempt_at": retry_at if retry_at is not None else now,
            "updated_at": now,
        }
        if state == "succeeded":
            values["result"] = dict(result) if result is not None else None
        async with self._write() as conn:
            done = await conn.execute(
                deliveries.update()
                .where(
                    deliveries.c.id == claim.delivery_id,
                    deliveries.c.lease_owner == owner,
                    deliveries.c.state == "running",
                    deliveries.c.attempts == claim.attempt,
                )
                .values(**values)
            )
            if not done.rowcount:
                # Our lease expired and another worker took over: its attempt is the record.
                return False
            await conn.execute(
                attempts.update()
                .where(attempts.c.id == claim.attempt_id)
                .values(
                    outcome="succeeded" if state == "succeeded" else "failed",
                    finished_at=now,
                    error=error,
                    blame=blame,
                )
            )
            # Wake dispatchers only when this made work due: a retry (later), or a later stage
            # of this event. After a plain success there is nothing new to claim, and a wake-up
            # would cost every listener (dispatcher, poller) a needless write transaction.
            became_due = state == "pending" or await self._unblocks_later_stage(conn, claim)
            if became_due:
                await self._notify_others(conn)
        if became_due:
            self._notify()
        return True

    @staticmethod
    async def _unblocks_later_stage(conn: AsyncConnection, claim: Claim) -> bool:
        """True when the event still has deliveries waiting for an earlier stage (`after`)."""
        own_stage = (
            sa.select(deliveries.c.stage)
            .where(deliveries.c.id == claim.delivery_id)
            .scalar_subquery()
        )
        waiting = await conn.scalar(
            sa.select(sa.func.count()).where(
                deliveries.c.event_id == claim.event.id,
                deliveries.c.state == "pending",
                deliveries.c.stage > own_stage,
            )
        )
        return bool(waiting)

    async def next_due_at(self, exclude: Collection[str] = ()) -> float | None:
        """When the next delivery becomes claimable (ignoring paused handlers).

        Two minimums, one per state, each read from ix_deliveries_due alone. One query with
        `state IN (...)` and a CASE is equivalent, but once SQLite has statistics (ANALYZE,
        `PRAGMA optimize`) it scans the whole table for it: 15 ms per call at 100k events."""
        pending = sa.select(sa.func.min(deliveries.c.next_attempt_at)).where(
            deliveries.c.state == "pending"
        )
        running = sa.select(sa.func.min(deliveries.c.lease_until)).where(
            deliveries.c.state == "running"
        )
        if exclude:
            paused = deliveries.c.handler.not_in(list(exclude))
            pending, running = pending.where(paused), running.where(paused)
        async with self._read() as conn:
            values = [await conn.scalar(pending), await conn.scalar(running)]
        due = [float(value) for value in values if value is not None]
        return min(due) if due else None

    async def event_settled(self, event_id: str) -> bool:
        async with self._read() as conn:
            open_count = await conn.scalar(
                sa.select(sa.func.count()).where(
                    deliveries.c.event_id == event_id, deliveries.c.state.in_(_OPEN)
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

    async def results_for_task(
        self, task_ref: str | None, excluding_event: str
    ) -> dict[str, Mapping[str, Any]]:
        """Per handler, its latest successful result for the task's *other* events."""
        if task_ref is None:
            return {}
        async with self._read() as conn:
            rows = await conn.execute(
                sa.select(deliveries.c.handler, deliveries.c.result)
                .join(events, events.c.id == deliveries.c.event_id)
                .where(
                    events.c.task_ref == task_ref,
                    events.c.id != excluding_event,
                    deliveries.c.state == "succeeded",
                )
                .order_by(deliveries.c.updated_at)
            )
            return {row.handler: row.result or {} for row in rows}

    async def replay(
        self,
        *,
        delivery_id: str | None = None,
        event_id: str | None = None,
        handler: str | None = None,
        dead_since: float | None = None,
    ) -> int:
        """Make finished deliveries due again (attempt count reset, result kept so a handler
        can update what it sent instead of sending it twice). Returns how many."""
        query = deliveries.update().where(deliveries.c.state.in_(("succeeded", "dead")))
        if delivery_id is not None:
            query = query.where(deliveries.c.id == delivery_id)
        if event_id is not None:
            query = query.where(deliveries.c.event_id == event_id)
        if handler is not None:
            query = query.where(deliveries.c.handler == handler)
        if dead_since is not None:
            query = query.where(deliveries.c.state == "dead", deliveries.c.updated_at >= dead_since)
        now = time.time()
        async with self._write() as conn:
            done = await conn.execute(
                query.values(
                    state="pending",
                    attempts=0,
                    next_attempt_at=now,
                    last_error=None,
                    blame=None,
                    updated_at=now,
                )
            )
            if done.rowcount:
                await self._notify_others(conn)
        if done.rowcount:
            self._notify()
        return int(done.rowcount)
