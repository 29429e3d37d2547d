"""Task rows the relay writes itself: created before the create call, then its answer."""

from __future__ import annotations

import dataclasses
import functools
import time

from receiver.states import TaskOrigin, TaskState
from receiver.store._dialect import SqlDialect, dump_json
from receiver.store.base import NewTask
from receiver.store.writer import Tx, WriteKind

__all__ = ["CREATE_TASK", "SET_STATE", "SUBMITTED", "StateChange", "TaskSubmitted"]


@dataclasses.dataclass(frozen=True, slots=True)
class TaskSubmitted:
    task_ref: str
    upstream_id: str


@dataclasses.dataclass(frozen=True, slots=True)
class StateChange:
    task_ref: str
    state: TaskState
    error: str | None


@dataclasses.dataclass(frozen=True, slots=True)
class _Sql:
    insert: str
    submitted: str
    state: str


@functools.cache
def _sql(d: SqlDialect) -> _Sql:
    return _Sql(
        insert=d.sql(
            "INSERT INTO tasks (id, upstream_id, family, platform, state, origin, prompt, params,"
            " labels, handlers, created_at, updated_at, deadline_at, next_poll_at, poll_attempts)"
            " VALUES (:id, NULL, :family, :platform,"
            f" '{TaskState.SUBMITTING}', '{TaskOrigin.RELAY}', :prompt, :params,"
            " :labels, :handlers, :now, :now, :deadline_at, :next_poll_at, 0)"
        ),
        # A callback may have beaten the create answer here; keep its state.
        submitted=d.sql(
            "UPDATE tasks SET upstream_id = :upstream_id, updated_at = :now,"
            f" state = CASE WHEN state = '{TaskState.SUBMITTING}' THEN '{TaskState.SUBMITTED}'"
            " ELSE state END"
            " WHERE id = :id"
        ),
        state=d.sql(
            "UPDATE tasks SET state = :state, error = :error, updated_at = :now WHERE id = :id"
        ),
    )


async def _create(tx: Tx, new: list[NewTask]) -> list[None]:
    now = time.time()
    await tx.db.run_many(
        _sql(tx.dialect).insert,
        [
            {
                "id": task.id,
                "family": task.family,
                "platform": task.platform,
                "prompt": task.prompt,
                "params": dump_json(dict(task.params)),
                "labels": dump_json(dict(task.labels)),
                "handlers": dump_json(list(task.handlers)) if task.handlers is not None else None,
                "now": now,
                "deadline_at": task.deadline_at,
                "next_poll_at": task.next_poll_at,
            }
            for task in new
        ],
    )
    if any(task.next_poll_at is not None for task in new):
        tx.wake("polls")  # the poller recomputes when its next poll is due
    return [None] * len(new)


async def _submitted(tx: Tx, answers: list[TaskSubmitted]) -> list[None]:
    now = time.time()
    await tx.db.run_many(
        _sql(tx.dialect).submitted,
        [{"id": a.task_ref, "upstream_id": a.upstream_id, "now": now} for a in answers],
    )
    return [None] * len(answers)


async def _state(tx: Tx, changes: list[StateChange]) -> list[None]:
    now = time.time()
    await tx.db.run_many(
        _sql(tx.dialect).state,
        [{"id": c.task_ref, "state": c.state, "error": c.error, "now": now} for c in changes],
    )
    return [None] * len(changes)


CREATE_TASK = WriteKind("create_task", _create)
SUBMITTED = WriteKind("task_submitted", _submitted)
SET_STATE = WriteKind("task_state", _state)
