"""Which tasks the poller asks the provider about, and when.

A poll is claimed by pushing the task's `next_poll_at` one lease ahead in the same
transaction that selects it (`FOR UPDATE SKIP LOCKED` on PostgreSQL), so two pollers never
ask about the same task at once, and a poller that dies mid-poll only delays that task by one
lease. Poll results from many tasks are written with one `executemany`.
"""

from __future__ import annotations

import dataclasses
import functools
import time

from receiver.states import FINAL_TASK_STATES
from receiver.store._dialect import SqlDialect
from receiver.store.base import DuePoll
from receiver.store.writer import Tx, WriteKind

__all__ = ["CLAIM_POLLS", "NEXT_POLL", "POLL_DONE", "PollClaim", "PollDone"]

_FINAL = "(" + ", ".join(f"'{state}'" for state in sorted(FINAL_TASK_STATES)) + ")"


@dataclasses.dataclass(frozen=True, slots=True)
class PollClaim:
    limit: int
    lease_s: float


@dataclasses.dataclass(frozen=True, slots=True)
class PollDone:
    task_ref: str
    next_poll_at: float | None
    error: str | None


@dataclasses.dataclass(frozen=True, slots=True)
class _Sql:
    pick: str
    lease: str
    next_due: str
    done: str


@functools.cache
def _sql(d: SqlDialect) -> _Sql:
    return _Sql(
        pick=d.sql(
            f"SELECT id FROM tasks WHERE next_poll_at <= :now AND state NOT IN {_FINAL}"
            f" ORDER BY next_poll_at LIMIT :limit{d.skip_locked}"
        ),
        lease=d.sql(
            "UPDATE tasks SET next_poll_at = :until, poll_attempts = poll_attempts + 1"
            f" WHERE {d.in_list('id', 'ids')}"
            " RETURNING id, upstream_id, family, platform, poll_attempts, deadline_at"
        ),
        # `IS NOT NULL` is implied by min(), but it lets the index skip every task not being
        # polled (NULL sorts first): without it this walked all tasks, 24 ms at 100k.
        next_due=d.sql(
            "SELECT min(next_poll_at) FROM tasks"
            f" WHERE next_poll_at IS NOT NULL AND state NOT IN {_FINAL}"
        ),
        # Keep a final state's own schedule (none); COALESCE keeps a given error only. The
        # CAST: PostgreSQL types an all-NULL CASE as text and refuses it for a float.
        done=d.sql(
            f"UPDATE tasks SET next_poll_at = CASE WHEN state IN {_FINAL} THEN NULL"
            " ELSE CAST(:next_poll_at AS DOUBLE PRECISION) END, updated_at = :now,"
            " error = COALESCE(:error, error)"
            " WHERE id = :id"
        ),
    )


async def _claim(tx: Tx, claims: list[PollClaim]) -> list[list[DuePoll]]:
    sql, d = _sql(tx.dialect), tx.dialect
    out: list[list[DuePoll]] = []
    for claim in claims:
        now = time.time()
        ids = [row[0] for row in await tx.db.rows(sql.pick, {"now": now, "limit": claim.limit})]
        if not ids:
            out.append([])
            continue
        rows = await tx.db.rows(sql.lease, {"ids": d.values(ids), "until": now + claim.lease_s})
        out.append(
            [
                DuePoll(
                    id=id_,
                    upstream_id=upstream_id,
                    family=family,
                    platform=platform,
                    poll_attempts=int(attempts),
                    deadline_at=deadline_at,
                )
                for id_, upstream_id, family, platform, attempts, deadline_at in rows
            ]
        )
    return out


async def _next_due(tx: Tx, asks: list[None]) -> list[float | None]:
    value = (await tx.db.rows(_sql(tx.dialect).next_due, {}))[0][0]
    return [float(value) if value is not None else None] * len(asks)


async def _done(tx: Tx, results: list[PollDone]) -> list[None]:
    now = time.time()
    await tx.db.run_many(
        _sql(tx.dialect).done,
        [
            {"id": r.task_ref, "next_poll_at": r.next_poll_at, "now": now, "error": r.error}
            for r in results
        ],
    )
    return [None] * len(results)


CLAIM_POLLS = WriteKind("claim_polls", _claim)
NEXT_POLL = WriteKind("next_poll_due", _next_due)
POLL_DONE = WriteKind("poll_done", _done)
