"""Read-only queries for the API, the CLI and the dashboard; never on the hot path.

They run on their own pooled connections (`SqlStore.reads`), so an operator's page never
queues behind the writer, and they return typed rows (`receiver.rows`), the models the
API serialises and the OpenAPI document describes.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Mapping
from typing import TypedDict, cast

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from receiver.rows import DeliveryRow, EventRow, InboxRow, TaskDetail, TaskRow
from receiver.states import QUEUED_DELIVERY_STATES, DeliveryState, EventKind
from receiver.store.schema import attempts, deliveries, events, inbox, tasks

__all__ = ["Queries", "TaskCost"]


_LIKE_SPECIAL = re.compile(r"[\\%_]")


class TaskCost(TypedDict):
    """What prices a task: its family, task type and whether it failed (refunded)."""

    created_at: float
    family: str
    task_type: str | None
    state: str


_MAX_PAGE = 1000
"""A runaway request cannot read a whole table (the API allows 500 and asks one more)."""


def _page(limit: int) -> int:
    return max(1, min(limit, _MAX_PAGE))


class Queries:
    """The operator surface's reads, on connections of their own."""

    def __init__(
        self, read: Callable[[], contextlib.AbstractAsyncContextManager[AsyncConnection]]
    ) -> None:
        self._read = read

    async def get_task(self, task_id: str) -> TaskRow | None:
        async with self._read() as conn:
            row = (
                await conn.execute(
                    tasks.select().where(
                        sa.or_(tasks.c.id == task_id, tasks.c.upstream_id == task_id)
                    )
                )
            ).first()
        return TaskRow.model_validate(dict(row._mapping)) if row is not None else None

    async def task_detail(self, task_id: str) -> TaskDetail | None:
        """The task with its inbound payloads, events, deliveries and every attempt."""
        task = await self.get_task(task_id)
        if task is None:
            return None
        async with self._read() as conn:
            event_rows = [
                dict(r._mapping)
                for r in await conn.execute(
                    events.select()
                    .where(events.c.task_ref == task.id)
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
            if task.upstream_id:
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
                        .where(inbox.c.task_id == task.upstream_id)
                        .order_by(inbox.c.received_at)
                    )
                ]
        for delivery in delivery_rows:
            delivery["attempt_log"] = [
                a for a in attempt_rows if a["delivery_id"] == delivery["id"]
            ]
        for event in event_rows:
            event["deliveries"] = [d for d in delivery_rows if d["event_id"] == event["id"]]
        return TaskDetail.model_validate(
            {**task.model_dump(), "events": event_rows, "inbox": inbox_rows}
        )

    async def list_tasks(
        self,
        limit: int = 50,
        offset: int = 0,
        *,
        state: str | None = None,
        family: str | None = None,
        labels: Mapping[str, str] | None = None,
        search: str | None = None,
    ) -> list[TaskRow]:
        """Newest first; `labels` must all match (JSON lookups work on SQLite and PostgreSQL).

        `search` is a case-insensitive substring of the prompt, the requested title or a
        song's title (`%` and `_` are literal: an operator types words, not patterns)."""
        query = tasks.select().order_by(tasks.c.created_at.desc(), tasks.c.id)
        if state is not None:
            query = query.where(tasks.c.state == state)
        if family is not None:
            query = query.where(tasks.c.family == family)
        for key, value in (labels or {}).items():
            query = query.where(tasks.c.labels[key].as_string() == value)
        if search:
            pattern = "%" + _LIKE_SPECIAL.sub(r"\\\g<0>", search) + "%"
            song_titles = (
                sa.select(events.c.id)
                .where(events.c.task_ref == tasks.c.id)
                .where(events.c.clip["title"].as_string().ilike(pattern, escape="\\"))
            )
            query = query.where(
                sa.or_(
                    tasks.c.prompt.ilike(pattern, escape="\\"),
                    tasks.c.params["title"].as_string().ilike(pattern, escape="\\"),
                    song_titles.exists(),
                )
            )
        async with self._read() as conn:
            rows = await conn.execute(query.limit(_page(limit)).offset(offset))
            return [TaskRow.model_validate(dict(r._mapping)) for r in rows]

    async def list_events(
        self,
        limit: int = 50,
        offset: int = 0,
        *,
        kind: str | None = None,
        task: str | None = None,
    ) -> list[EventRow]:
        """Newest first; `task` is the provider's task id or the relay's own."""
        query = events.select().order_by(events.c.received_at.desc(), events.c.id)
        if kind is not None:
            query = query.where(events.c.kind == kind)
        if task is not None:
            query = query.where(sa.or_(events.c.task_id == task, events.c.task_ref == task))
        async with self._read() as conn:
            rows = await conn.execute(query.limit(_page(limit)).offset(offset))
            return [EventRow.model_validate(dict(r._mapping)) for r in rows]

    async def queue_stats(self) -> tuple[int, float | None]:
        """(deliveries pending or running, creation time of the oldest pending one): one
        aggregate over the `(state, next_attempt_at)` index, cheap enough for every scrape."""
        query = sa.select(
            sa.func.count(),
            sa.func.min(
                sa.case(
                    (deliveries.c.state == DeliveryState.PENDING, deliveries.c.created_at),
                    else_=None,
                )
            ),
        ).where(deliveries.c.state.in_(QUEUED_DELIVERY_STATES))
        async with self._read() as conn:
            depth, oldest = (await conn.execute(query)).one()
        return int(depth), None if oldest is None else float(oldest)

    async def queue_by_handler(self) -> dict[tuple[str, str], int]:
        """(handler, state) → rows, for the states a scrape reports: pending, running, dead."""
        query = (
            sa.select(deliveries.c.handler, deliveries.c.state, sa.func.count())
            .where(deliveries.c.state.in_((*QUEUED_DELIVERY_STATES, DeliveryState.DEAD)))
            .group_by(deliveries.c.handler, deliveries.c.state)
        )
        async with self._read() as conn:
            return {(h, s): int(n) for h, s, n in await conn.execute(query)}

    async def song_times(self, since: float) -> list[float]:
        """When each song finished since `since` (the overview's songs per day)."""
        query = sa.select(events.c.received_at).where(
            events.c.kind == EventKind.COMPLETED, events.c.received_at >= since
        )
        async with self._read() as conn:
            return [float(at) for (at,) in await conn.execute(query)]

    async def task_costs(self, since: float) -> list[TaskCost]:
        """Tasks created since `since`, with what prices them (the overview's credits)."""
        query = sa.select(
            tasks.c.created_at,
            tasks.c.family,
            tasks.c.params["task_type"].as_string().label("task_type"),
            tasks.c.state,
        ).where(tasks.c.created_at >= since)
        async with self._read() as conn:
            return [cast(TaskCost, dict(r._mapping)) for r in await conn.execute(query)]

    async def delivery_counts(self, since: float) -> dict[tuple[str, str], int]:
        """(handler, state) → deliveries created since `since` (the overview's outcomes)."""
        query = (
            sa.select(deliveries.c.handler, deliveries.c.state, sa.func.count())
            .where(deliveries.c.created_at >= since)
            .group_by(deliveries.c.handler, deliveries.c.state)
        )
        async with self._read() as conn:
            return {(h, s): int(n) for h, s, n in await conn.execute(query)}

    async def tasks_by_id(self, ids: list[str]) -> list[TaskRow]:
        """The tasks with these relay ids (the deliveries page's song titles)."""
        if not ids:
            return []
        async with self._read() as conn:
            rows = await conn.execute(tasks.select().where(tasks.c.id.in_(ids)))
            return [TaskRow.model_validate(dict(r._mapping)) for r in rows]

    async def count_deliveries(self, state: str) -> int:
        """How many deliveries are in `state` (the dashboard's dead-letter banner)."""
        query = sa.select(sa.func.count()).where(deliveries.c.state == state)
        async with self._read() as conn:
            return int(await conn.scalar(query) or 0)

    async def get_delivery(self, delivery_id: str) -> DeliveryRow | None:
        async with self._read() as conn:
            row = (
                await conn.execute(deliveries.select().where(deliveries.c.id == delivery_id))
            ).first()
        return DeliveryRow.model_validate(dict(row._mapping)) if row is not None else None

    async def list_deliveries(
        self,
        state: str | None = None,
        limit: int = 50,
        offset: int = 0,
        handler: str | None = None,
    ) -> list[DeliveryRow]:
        query = deliveries.select().order_by(deliveries.c.updated_at.desc(), deliveries.c.id)
        if state is not None:
            query = query.where(deliveries.c.state == state)
        if handler is not None:
            query = query.where(deliveries.c.handler == handler)
        async with self._read() as conn:
            rows = await conn.execute(query.limit(_page(limit)).offset(offset))
            return [DeliveryRow.model_validate(dict(r._mapping)) for r in rows]

    async def inbox_bodies(self, upstream_id: str) -> list[InboxRow]:
        """A task's raw inbound payloads, oldest first (the dashboard shows them redacted)."""
        async with self._read() as conn:
            rows = await conn.execute(
                inbox.select().where(inbox.c.task_id == upstream_id).order_by(inbox.c.received_at)
            )
            return [InboxRow.model_validate(dict(r._mapping)) for r in rows]

    async def events_for(
        self, *, task_refs: list[str] | None = None, ids: list[str] | None = None
    ) -> list[EventRow]:
        """Events of several tasks (the dashboard's song list) or with the given ids."""
        query = events.select().order_by(events.c.received_at)
        if task_refs is not None:
            query = query.where(events.c.task_ref.in_(task_refs))
        if ids is not None:
            query = query.where(events.c.id.in_(ids))
        async with self._read() as conn:
            return [EventRow.model_validate(dict(r._mapping)) for r in await conn.execute(query)]
