"""The delivery outbox: claim with a lease, finish, keep leases, release, replay.

A claim takes due rows (`FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite's single writer
already serialises claims) and a lease; a lease that runs out — the worker died — makes the
row claimable again, and the stale worker's late answer is ignored. A claim carries what the
handler needs (the event, its task's labels and prompt, the results of the event's earlier
stages and of the task's other events), so the dispatcher reads nothing before a handler runs.

Finishes and lease extensions arrive from many deliveries at once and are written in batches:
one read of the rows they are about, then one `executemany` per table.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Collection, Mapping
from typing import Any

from receiver.models import Event, event_from_row
from receiver.states import (
    FINISHED_DELIVERY_STATES,
    QUEUED_DELIVERY_STATES,
    AttemptOutcome,
    DeliveryState,
    EventKind,
)
from receiver.store._alerts import raise_dead_alerts
from receiver.store._dialect import SqlDialect, dump_json, load_json
from receiver.store.base import Claim, Claimed, Finish, Finished, Replay
from receiver.store.writer import Tx, WriteKind

__all__ = [
    "CLAIM",
    "EVENT_SETTLED",
    "EXTEND",
    "FINISH",
    "NEXT_DUE",
    "RELEASE",
    "REPLAY",
    "ClaimRequest",
    "Extend",
    "Release",
]


@dataclasses.dataclass(frozen=True, slots=True)
class ClaimRequest:
    owner: str
    limit: int
    lease_s: float
    exclude: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class Extend:
    delivery_id: str
    owner: str
    lease_s: float


@dataclasses.dataclass(frozen=True, slots=True)
class Release:
    delivery_ids: tuple[str, ...]
    owner: str


def _literal(value: str) -> str:
    """A state as a SQL literal: the enums are constants, never input, so they can be inlined
    where a bound parameter would cost the planner its partial-index match."""
    return f"'{value}'"


def _literals(values: Collection[str]) -> str:
    return "(" + ", ".join(_literal(value) for value in sorted(values)) + ")"


_OPEN = _literals(QUEUED_DELIVERY_STATES)
_FINISHED = _literals(FINISHED_DELIVERY_STATES)
_PENDING, _RUNNING = _literal(DeliveryState.PENDING), _literal(DeliveryState.RUNNING)
_SUCCEEDED, _DEAD = _literal(DeliveryState.SUCCEEDED), _literal(DeliveryState.DEAD)
_ATTEMPT_RUNNING, _ATTEMPT_LOST = _literal(AttemptOutcome.RUNNING), _literal(AttemptOutcome.LOST)


@dataclasses.dataclass(frozen=True, slots=True)
class _Sql:
    pick_expired: str
    pick_pending: str
    lose_attempts: str
    lease: str
    start_attempt: str
    events: str
    event_results: str
    task_results: str
    next_pending: str
    next_running: str
    held: str
    finish: str
    finish_attempt: str
    open_of_events: str
    extend: str
    release: str
    settled: str


@functools.cache
def _sql(d: SqlDialect) -> _Sql:
    # Stages: a delivery waits while one of a lower stage of its event is still open. Only
    # the event's own few rows are looked at (its state kept off the index: PostgreSQL
    # without statistics intersected the event's rows with every open delivery, per row),
    # and a stage-0 delivery, the common case, has nothing to wait for.
    unblocked = (
        " AND (d.stage = 0 OR NOT EXISTS (SELECT 1 FROM deliveries e"
        " WHERE e.event_id = d.event_id AND e.stage < d.stage"
        f" AND {d.unindexed('e.state')} IN {_OPEN}))"
        f" AND {d.not_in_list('d.handler', 'exclude')}"
    )
    d_state = d.unindexed("d.state")
    pending, running = d.rare(f"state = {_PENDING}"), d.rare(f"state = {_RUNNING}")
    d_pending, d_running = d.rare(f"d.state = {_PENDING}"), d.rare(f"d.state = {_RUNNING}")
    return _Sql(
        # Two picks, each walking ix_deliveries_due in order and stopping at its LIMIT (one
        # query with an OR of both states sorts every due row, the whole backlog, per claim):
        # leases that ran out (a worker died; usually none), then pending deliveries.
        pick_expired=d.sql(
            f"SELECT d.id FROM deliveries d WHERE {d_running}"
            " AND d.lease_until < :now"
            f"{unblocked} ORDER BY d.lease_until LIMIT :limit{d.skip_locked}"
        ),
        pick_pending=d.sql(
            f"SELECT d.id FROM deliveries d WHERE {d_pending}"
            f" AND d.next_attempt_at <= :now{unblocked}"
            f" ORDER BY d.next_attempt_at LIMIT :limit{d.skip_locked}"
        ),
        lose_attempts=d.sql(
            f"UPDATE attempts SET outcome = {_ATTEMPT_LOST}, finished_at = :now,"
            " error = 'lease expired: the worker stopped'"
            f" WHERE {d.in_list('delivery_id', 'ids')} AND outcome = {_ATTEMPT_RUNNING}"
        ),
        lease=d.sql(
            f"UPDATE deliveries SET state = {_RUNNING}, attempts = attempts + 1,"
            " lease_owner = :owner, lease_until = :until, updated_at = :now"
            f" WHERE {d.in_list('id', 'ids')}"
            " RETURNING id, event_id, handler, attempts, result"
        ),
        start_attempt=d.sql(
            "INSERT INTO attempts (delivery_id, number, started_at, outcome)"
            f" VALUES (:delivery_id, :number, :now, {_ATTEMPT_RUNNING})"
        ),
        events=d.sql(
            "SELECT e.id, e.kind, e.task_id, e.clip_id, e.platform, e.clip, e.source,"
            " e.received_at, e.task_ref, e.error,"
            " (SELECT t.labels FROM tasks t WHERE t.id = e.task_ref),"
            " (SELECT t.prompt FROM tasks t WHERE t.id = e.task_ref)"
            f" FROM {d.each('ids', 'k')}{d.then('events', 'e', 'e.id = k.value')}"
        ),
        event_results=d.sql(
            "SELECT d.event_id, d.handler, d.result"
            f" FROM {d.each('ids', 'k')}{d.then('deliveries', 'd', 'd.event_id = k.value')}"
            f" WHERE {d_state} = {_SUCCEEDED}"
        ),
        # The results of every event of the tasks these events belong to. (A task's events
        # come twice when two of them are claimed together: the caller keys the rows.) Not
        # those of `delivery.dead` alerts: an alert is no step of the task's conversation (a
        # Slack bot would thread the next song under it).
        task_results=d.sql(
            "SELECT e.task_ref, e.id, d.handler, d.result"
            f" FROM {d.each('ids', 'k')}{d.then('events', 'c', 'c.id = k.value')}"
            f"{d.then('events', 'e', 'e.task_ref = c.task_ref')}"
            f"{d.then('deliveries', 'd', 'd.event_id = e.id')}"
            f" WHERE {d_state} = {_SUCCEEDED} AND e.kind <> {_literal(EventKind.DELIVERY_DEAD)}"
            " ORDER BY d.updated_at"
        ),
        # Two minimums, one per state, each read from ix_deliveries_due alone. One query with
        # `state IN (...)` and a CASE is equivalent, but once SQLite has statistics it scans
        # the whole table for it: 15 ms per call at 100k events.
        next_pending=d.sql(
            "SELECT min(next_attempt_at) FROM deliveries"
            f" WHERE {pending} AND {d.not_in_list('handler', 'exclude')}"
        ),
        next_running=d.sql(
            "SELECT min(lease_until) FROM deliveries"
            f" WHERE {running} AND {d.not_in_list('handler', 'exclude')}"
        ),
        held=d.sql(
            "SELECT id, lease_owner, state, attempts, event_id, stage FROM deliveries"
            f" WHERE {d.in_list('id', 'ids')}{d.lock}"
        ),
        finish=d.sql(
            "UPDATE deliveries SET state = :state, lease_owner = NULL, lease_until = NULL,"
            " last_error = :error, blame = :blame, next_attempt_at = :next_attempt_at,"
            " updated_at = :now, result = CASE WHEN :set_result = 1 THEN :result ELSE result END"
            " WHERE id = :id"
        ),
        finish_attempt=d.sql(
            "UPDATE attempts SET outcome = :outcome, finished_at = :now, error = :error,"
            f" blame = :blame WHERE delivery_id = :id AND outcome = {_ATTEMPT_RUNNING}"
        ),
        open_of_events=d.sql(
            "SELECT d.event_id, d.state, d.stage"
            f" FROM {d.each('ids', 'k')}{d.then('deliveries', 'd', 'd.event_id = k.value')}"
            f" WHERE {d_state} IN {_OPEN}"
        ),
        extend=d.sql("UPDATE deliveries SET lease_until = :until WHERE id = :id"),
        release=d.sql(
            "UPDATE deliveries SET lease_until = :until WHERE id = :id"
            f" AND lease_owner = :owner AND state = {_RUNNING}"
        ),
        settled=d.sql(f"SELECT count(*) FROM deliveries WHERE event_id = :id AND state IN {_OPEN}"),
    )


_EVENT_COLUMNS = (
    "id", "kind", "task_id", "clip_id", "platform", "clip", "source", "received_at",
    "task_ref", "error", "labels", "prompt",
)  # fmt: skip
"""The columns of the `events` statement, in its order."""


def _event(row: tuple[Any, ...]) -> Event:
    fields = dict(zip(_EVENT_COLUMNS, row, strict=True))
    fields["clip"], fields["labels"] = load_json(fields["clip"]), load_json(fields["labels"])
    return event_from_row(fields)


async def _next_due(tx: Tx, exclude: Collection[str]) -> float | None:
    sql, params = _sql(tx.dialect), {"exclude": tx.dialect.values(exclude)}
    values = [
        (await tx.db.rows(sql.next_pending, params))[0][0],
        (await tx.db.rows(sql.next_running, params))[0][0],
    ]
    due = [float(value) for value in values if value is not None]
    return min(due) if due else None


async def _claim_one(tx: Tx, request: ClaimRequest) -> Claimed:
    sql, d, now = _sql(tx.dialect), tx.dialect, time.time()
    params = {"now": now, "limit": request.limit, "exclude": d.values(request.exclude)}
    expired_rows, pending_rows = await tx.db.rows_many(
        [(sql.pick_expired, params), (sql.pick_pending, params)]
    )
    expired = [row[0] for row in expired_rows]
    pending = [row[0] for row in pending_rows][: request.limit - len(expired)]
    if expired:  # usually none: one statement less on the way to every handler
        await tx.db.run_many(sql.lose_attempts, [{"ids": d.values(expired), "now": now}])
    if not expired and not pending:
        return Claimed((), await _next_due(tx, request.exclude))
    ids = d.values([*expired, *pending])
    leased = await tx.db.rows(
        sql.lease, {"ids": ids, "owner": request.owner, "until": now + request.lease_s, "now": now}
    )
    await tx.db.run_many(
        sql.start_attempt,
        [{"delivery_id": row[0], "number": row[3], "now": now} for row in leased],
    )
    event_ids = {"ids": d.values({row[1] for row in leased})}
    event_rows, result_rows, task_rows = await tx.db.rows_many(
        [(sql.events, event_ids), (sql.event_results, event_ids), (sql.task_results, event_ids)]
    )
    events = {row[0]: _event(row) for row in event_rows}
    by_event: dict[str, dict[str, Mapping[str, Any]]] = {}
    for event_id, handler, result in result_rows:
        by_event.setdefault(event_id, {})[handler] = load_json(result) or {}
    by_task: dict[str, list[tuple[str, str, Mapping[str, Any]]]] = {}
    for ref, event_id, handler, result in task_rows:
        by_task.setdefault(ref, []).append((event_id, handler, load_json(result) or {}))
    claims = []
    for delivery_id, event_id, handler, attempts, result in leased:
        event = events[event_id]
        earlier = by_task.get(event.task_ref or "", [])
        claims.append(
            Claim(
                delivery_id=delivery_id,
                handler=handler,
                attempt=attempts,
                event=event,
                previous_result=load_json(result),
                results=by_event.get(event_id, {}),
                task_results={h: r for e, h, r in earlier if e != event_id},
            )
        )
    next_due = None if len(claims) == request.limit else await _next_due(tx, request.exclude)
    return Claimed(tuple(claims), next_due)


async def _claim(tx: Tx, requests: list[ClaimRequest]) -> list[Claimed]:
    return [await _claim_one(tx, request) for request in requests]


async def _finish(tx: Tx, finishes: list[Finish]) -> list[Finished | None]:
    """Record outcomes whose lease still holds (None for one whose lease was lost); wake
    dispatchers only when work became due (a retry, a later stage of the event, an alert):
    after a plain success there is nothing new. A delivery recorded as dead raises its
    `delivery.dead` alert in this transaction."""
    sql, d, now = _sql(tx.dialect), tx.dialect, time.time()
    rows = await tx.db.rows(sql.held, {"ids": d.values({f.delivery_id for f in finishes})})
    held = {row[0]: list(row[1:]) for row in rows}
    recorded: list[tuple[int, str, int]] = []
    updates, attempt_updates = [], []
    for index, finish in enumerate(finishes):
        row = held.get(finish.delivery_id)
        if row is None:
            continue
        owner, state, attempts, event_id, stage = row
        if (owner, state, attempts) != (finish.owner, "running", finish.attempt):
            continue  # our lease expired and another worker took over: its attempt counts
        row[1] = finish.state  # a second finish of the same delivery in this batch loses
        recorded.append((index, event_id, stage))
        updates.append(
            {
                "id": finish.delivery_id,
                "state": finish.state,
                "error": finish.error,
                "blame": finish.blame,
                "next_attempt_at": finish.retry_at if finish.retry_at is not None else now,
                "now": now,
                "set_result": int(finish.state == DeliveryState.SUCCEEDED),
                "result": dump_json(dict(finish.result)) if finish.result is not None else None,
            }
        )
        attempt_updates.append(
            {
                "id": finish.delivery_id,
                "outcome": AttemptOutcome.SUCCEEDED
                if finish.state == DeliveryState.SUCCEEDED
                else AttemptOutcome.FAILED,
                "now": now,
                "error": finish.error,
                "blame": finish.blame,
            }
        )
    await tx.db.run_many(sql.finish, updates)
    await tx.db.run_many(sql.finish_attempt, attempt_updates)
    dead = [
        (finishes[index].delivery_id, alert)
        for index, _, _ in recorded
        if finishes[index].state == DeliveryState.DEAD
        and (alert := finishes[index].alert) is not None
    ]
    await raise_dead_alerts(tx, dead, now)
    still_open: dict[str, list[tuple[str, int]]] = {}
    if recorded:
        events = d.values({event_id for _, event_id, _ in recorded})
        for event_id, state, stage in await tx.db.rows(sql.open_of_events, {"ids": events}):
            still_open.setdefault(event_id, []).append((state, stage))
    results: list[Finished | None] = [None] * len(finishes)
    for index, event_id, stage in recorded:
        others = still_open.get(event_id, [])
        if finishes[index].state == DeliveryState.PENDING or any(
            state == DeliveryState.PENDING and later > stage for state, later in others
        ):
            tx.wake("deliveries")
        results[index] = Finished(event_settled=not others)
    return results


async def _extend(tx: Tx, extends: list[Extend]) -> list[bool]:
    sql, d, now = _sql(tx.dialect), tx.dialect, time.time()
    rows = await tx.db.rows(sql.held, {"ids": d.values({e.delivery_id for e in extends})})
    held = {row[0]: (row[1], row[2]) for row in rows}
    ok = [held.get(e.delivery_id) == (e.owner, "running") for e in extends]
    await tx.db.run_many(
        sql.extend,
        [
            {"id": e.delivery_id, "until": now + e.lease_s}
            for e, good in zip(extends, ok, strict=True)
            if good
        ],
    )
    return ok


async def _release(tx: Tx, releases: list[Release]) -> list[int]:
    """Give up leases now (graceful shutdown): another worker may take them at once."""
    sql, until, counts = _sql(tx.dialect), time.time() - 0.001, []
    for release in releases:
        count = 0
        for delivery_id in release.delivery_ids:
            params = {"id": delivery_id, "owner": release.owner, "until": until}
            count += await tx.db.run(sql.release, params)
        counts.append(count)
    if any(counts):
        tx.wake("deliveries")
    return counts


async def _replay(tx: Tx, replays: list[Replay]) -> list[int]:
    """Make finished deliveries due again (attempt count reset, result kept so a handler can
    update what it sent instead of sending it twice)."""
    counts = []
    now = time.time()
    for replay in replays:
        where = [f"state IN {_FINISHED}"]
        params: dict[str, Any] = {"now": now}
        for column, value in (
            ("id", replay.delivery_id),
            ("event_id", replay.event_id),
            ("handler", replay.handler),
        ):
            if value is not None:
                where.append(f"{column} = :{column}")
                params[column] = value
        if replay.dead_since is not None:
            where.append(f"state = {_DEAD} AND updated_at >= :dead_since")
            params["dead_since"] = replay.dead_since
        statement = tx.dialect.sql(
            f"UPDATE deliveries SET state = {_PENDING}, attempts = 0, next_attempt_at = :now,"
            " last_error = NULL, blame = NULL, updated_at = :now WHERE " + " AND ".join(where)
        )
        counts.append(await tx.db.run(statement, params))
    if any(counts):
        tx.wake("deliveries")
    return counts


async def _next_due_many(tx: Tx, excludes: list[tuple[str, ...]]) -> list[float | None]:
    return [await _next_due(tx, exclude) for exclude in excludes]


async def _settled(tx: Tx, event_ids: list[str]) -> list[bool]:
    sql = _sql(tx.dialect).settled
    return [not (await tx.db.rows(sql, {"id": event_id}))[0][0] for event_id in event_ids]


CLAIM = WriteKind("claim", _claim)
FINISH = WriteKind("finish", _finish)
EXTEND = WriteKind("extend", _extend)
RELEASE = WriteKind("release", _release)
REPLAY = WriteKind("replay", _replay)
NEXT_DUE = WriteKind("next_due", _next_due_many)
EVENT_SETTLED = WriteKind("event_settled", _settled)
