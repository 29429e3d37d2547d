"""Read-only queries for the API, the CLI and the dashboard; never on the ingest hot path."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from receiver.store.schema import attempts, deliveries, events, inbox, tasks

__all__ = ["Queries"]

_MAX_PAGE = 500


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

    async def list_tasks(self, limit: int = 50, offset: int = 0) -> list[dict[str, Any]]:
        async with self._read() as conn:
            rows = await conn.execute(
                tasks.select()
                .order_by(tasks.c.created_at.desc())
                .limit(_page(limit))
                .offset(offset)
            )
            return [dict(r._mapping) for r in rows]

    async def list_events(self, limit: int = 50, offset: int = 0) -> list[dict[str, Any]]:
        async with self._read() as conn:
            rows = await conn.execute(
                events.select()
                .order_by(events.c.received_at.desc())
                .limit(_page(limit))
                .offset(offset)
            )
            return [dict(r._mapping) for r in rows]

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
        query = deliveries.select().order_by(deliveries.c.updated_at.desc())
        if state is not None:
            query = query.where(deliveries.c.state == state)
        if handler is not None:
            query = query.where(deliveries.c.handler == handler)
        async with self._read() as conn:
            rows = await conn.execute(query.limit(_page(limit)).offset(offset))
            return [dict(r._mapping) for r in rows]
