"""Read-only queries for the API, the CLI and the dashboard; never on the ingest hot path."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from receiver.store.schema import attempts, deliveries, events, inbox, tasks

__all__ = ["Queries"]

_MAX_PAGE = 1000
"""A runaway request cannot read a whole table (the API allows 500 and asks one more)."""


def _page(limit: int) -> int:
    return max(1, min(limit, _MAX_PAGE))


class Queries:
    """Query methods shared by every SQL backend; `_read` is provided by the store."""

    _read: Callable[[], contextlib.AbstractAsyncContextManager[AsyncConnection]]

    async def get_task(self, task_id: str) -> dict[str, Any] | None:
        async with self._read() as conn:
            row = (
                await conn.execute(
                    tasks.select().where(
                        sa.or_(tasks.c.id == task_id, tasks.c.upstream_id == task_id)
                    )
                )
            ).first()
        return dict(row._mapping) if row is not None else None

    async def task_detail(self, task_id: str) -> dict[str, Any] | None:
        """The task with its inbound payloads, events, deliveries and every attempt."""
        task = await self.get_task(task_id)
        if task is None:
            return None
        async with self._read() as conn:
            event_rows = [
                dict(r._mapping)
                for r in await conn.execute(
                    events.select()
                    .where(events.c.task_ref == task["id"])
                    .order_by(events.c.received_at)
                )
            ]
            event_ids = [e["id"] for e in event_rows]
            delivery_rows = [
                dict(r._mapping)
                for r in await conn.execute(
                    deliveries.select()
                    .where(deliveries.c.event_id.in_(event_ids))
                    .order_by(deliveries.c.created_at)
                )
            ]
            attempt_rows = [
                dict(r._mapping)
                for r in await conn.execute(
                    attempts.select()
                    .where(attempts.c.delivery_id.in_([d["id"] for d in delivery_rows]))
                    .order_by(attempts.c.id)
                )
            ]
            inbox_rows = []
            if task["upstream_id"]:
                inbox_rows = [
                    dict(r._mapping)
                    for r in await conn.execute(
                        sa.select(
                            inbox.c.id,
                            inbox.c.webhook_id,
                            inbox.c.source,
                            inbox.c.event_header,
                            inbox.c.received_at,
                        )
                        .where(inbox.c.task_id == task["upstream_id"])
                        .order_by(inbox.c.received_at)
                    )
                ]
        for delivery in delivery_rows:
            delivery["attempt_log"] = [
                a for a in attempt_rows if a["delivery_id"] == delivery["id"]
            ]
        for event in event_rows:
            event["deliveries"] = [d for d in delivery_rows if d["event_id"] == event["id"]]
        task["events"] = event_rows
        task["inbox"] = inbox_rows
        return task

    async def list_tasks(
        self,
        limit: int = 50,
        offset: int = 0,
        *,
        state: str | None = None,
        family: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> list[dict[str, Any]]:
        """Newest first; `labels` must all match (JSON lookups work on SQLite and PostgreSQL)."""
        query = tasks.select().order_by(tasks.c.created_at.desc(), tasks.c.id)
        if state is not None:
            query = query.where(tasks.c.state == state)
        if family is not None:
            query = query.where(tasks.c.family == family)
        for key, value in (labels or {}).items():
            query = query.where(tasks.c.labels[key].as_string() == value)
        async with self._read() as conn:
            rows = await conn.execute(query.limit(_page(limit)).offset(offset))
            return [dict(r._mapping) for r in rows]

    async def list_events(
        self,
        limit: int = 50,
        offset: int = 0,
        *,
        kind: str | None = None,
        task: str | None = None,
    ) -> list[dict[str, Any]]:
        """Newest first; `task` is the provider's task id or the relay's own."""
        query = events.select().order_by(events.c.received_at.desc(), events.c.id)
        if kind is not None:
            query = query.where(events.c.kind == kind)
        if task is not None:
            query = query.where(sa.or_(events.c.task_id == task, events.c.task_ref == task))
        async with self._read() as conn:
            rows = await conn.execute(query.limit(_page(limit)).offset(offset))
            return [dict(r._mapping) for r in rows]

    async def queue_stats(self) -> tuple[int, float | None]:
        """(deliveries pending or running, creation time of the oldest pending one): one
        aggregate over the `(state, next_attempt_at)` index, cheap enough for every scrape."""
        query = sa.select(
            sa.func.count(),
            sa.func.min(
                sa.case((deliveries.c.state == "pending", deliveries.c.created_at), else_=None)
            ),
        ).where(deliveries.c.state.in_(("pending", "running")))
        async with self._read() as conn:
            depth, oldest = (await conn.execute(query)).one()
        return int(depth), None if oldest is None else float(oldest)

    async def count_deliveries(self, state: str) -> int:
        """How many deliveries are in `state` (the dashboard's dead-letter banner)."""
        query = sa.select(sa.func.count()).where(deliveries.c.state == state)
        async with self._read() as conn:
            return int(await conn.scalar(query) or 0)

    async def get_delivery(self, delivery_id: str) -> dict[str, Any] | None:
        async with self._read() as conn:
            row = (
                await conn.execute(deliveries.select().where(deliveries.c.id == delivery_id))
            ).first()
        return dict(row._mapping) if row is not None else None

    async def list_deliveries(
        self,
        state: str | None = None,
        limit: int = 50,
        offset: int = 0,
        handler: str | None = None,
    ) -> list[dict[str, Any]]:
        query = deliveries.select().order_by(deliveries.c.updated_at.desc(), deliveries.c.id)
        if state is not None:
            query = query.where(deliveries.c.state == state)
        if handler is not None:
            query = query.where(deliveries.c.handler == handler)
        async with self._read() as conn:
            rows = await conn.execute(query.limit(_page(limit)).offset(offset))
            return [dict(r._mapping) for r in rows]

    async def inbox_bodies(self, upstream_id: str) -> list[dict[str, Any]]:
        """A task's raw inbound payloads, oldest first (the dashboard shows them redacted)."""
        async with self._read() as conn:
            rows = await conn.execute(
                inbox.select().where(inbox.c.task_id == upstream_id).order_by(inbox.c.received_at)
            )
            return [dict(r._mapping) for r in rows]

    async def events_for(
        self, *, task_refs: list[str] | None = None, ids: list[str] | None = None
    ) -> list[dict[str, Any]]:
        """Events of several tasks (the dashboard's song list) or with the given ids."""
        query = events.select().order_by(events.c.received_at)
        if task_refs is not None:
            query = query.where(events.c.task_ref.in_(task_refs))
        if ids is not None:
            query = query.where(events.c.id.in_(ids))
        async with self._read() as conn:
            return [dict(r._mapping) for r in await conn.execute(query)]
