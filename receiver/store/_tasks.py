"""Finding, creating and advancing the task an inbound callback or poll answer is about."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from receiver.models import FINAL_KINDS
from receiver.store.base import Inbound
from receiver.store.schema import tasks

__all__ = ["FINAL_TASK_STATES", "TaskRows", "new_id"]

FINAL_TASK_STATES = frozenset({"succeeded", "failed", "timed_out"})


def new_id() -> str:
    return uuid.uuid4().hex


class TaskRows:
    """Task-row steps of the ingest transaction; the store provides the dialect's INSERT."""

    _insert: Callable[[sa.Table], Any]
    """The store's INSERT for its dialect (ON CONFLICT differs between SQLite and PostgreSQL)."""

    async def _task_for(self, conn: AsyncConnection, inbound: Inbound, now: float) -> Any:
        """The task this inbound is about; an unknown task is recorded as external.

        Two callbacks for the same unknown task can race here on PostgreSQL (SQLite serialises
        writers): the loser's insert does nothing and it reads the winner's row instead.
        """
        task = await self._find_task(conn, inbound)
        if task is not None:
            return task
        task = {
            "id": new_id(),
            "upstream_id": _upstream_key(inbound),
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
        inserted = await conn.execute(
            self._insert(tasks)
            .values(**task)
            .on_conflict_do_nothing(index_elements=["upstream_id"])
            .returning(tasks.c.id)
        )
        if inserted.first() is None:
            return await self._find_task(conn, inbound)
        return task

    async def _find_task(self, conn: AsyncConnection, inbound: Inbound) -> Any:
        row = None
        if inbound.task_ref is not None:
            row = (await conn.execute(tasks.select().where(tasks.c.id == inbound.task_ref))).first()
        upstream_key = _upstream_key(inbound)
        if row is None and upstream_key is not None:
            row = (
                await conn.execute(tasks.select().where(tasks.c.upstream_id == upstream_key))
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
        return None

    async def _advance_task(
        self, conn: AsyncConnection, task: Mapping[str, Any], kinds: list[str], now: float
    ) -> None:
        kinds = [kind for kind in kinds if kind != "task.submitted"]
        if task["state"] in FINAL_TASK_STATES or not kinds:
            return
        if "task.timed_out" in kinds:
            state = "timed_out"
        elif "song.completed" in kinds:
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


def _upstream_key(inbound: Inbound) -> str | None:
    """The upstream id an unknown task is recorded under: the callback's task_id, else (a valid
    token for a task this database lacks, e.g. reset with the key kept) `ref:<token's ref>`."""
    if inbound.task_id is not None:
        return inbound.task_id
    return f"ref:{inbound.task_ref}" if inbound.task_ref is not None else None
