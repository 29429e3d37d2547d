"""Ingest: a batch of verified inbounds → inbox rows, tasks, events, deliveries, in one go.

Every inbound of the batch is applied as if alone and in order (a later one sees an earlier
one's rows: dedupe holds inside the batch), but the database sees a fixed number of
statements per batch, whatever its size: three reads (webhook ids seen, tasks, dedupe keys
seen) and one `executemany` per table written.

Concurrency: on SQLite the writer holds the database's write lock for the whole batch, so
"read what exists, then insert the rest" cannot race. On PostgreSQL another process may
commit the same key between our read and our insert; its unique index then fails our
batch, the writer runs each inbound again alone, and that time the read finds the row.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

from receiver.models import dedupe_key
from receiver.states import (
    FINAL_KINDS,
    FINAL_TASK_STATES,
    DeliveryState,
    EventKind,
    Source,
    TaskOrigin,
    TaskState,
)
from receiver.store._dialect import SqlDialect, dump_json, load_json
from receiver.store.base import Inbound, IngestResult, Refusal, Router
from receiver.store.writer import Tx, WriteKind

__all__ = ["INGEST"]


class _Ids:
    """Random 128-bit hex ids (the length and alphabet of `uuid4().hex`), drawn from one
    `os.urandom` call per 64 (a system call per id was a visible share of a batch's cost)."""

    def __init__(self) -> None:
        self._left: list[str] = []

    def __call__(self) -> str:
        if not self._left:
            raw = os.urandom(16 * 64).hex()
            self._left = [raw[i : i + 32] for i in range(0, len(raw), 32)]
        return self._left.pop()


@dataclasses.dataclass(frozen=True, slots=True)
class _Sql:
    inbox_seen: str
    tasks_for: str
    events_seen: str
    insert_inbox: str
    insert_task: str
    fill_upstream: str
    advance_task: str
    insert_event: str
    insert_delivery: str


@functools.cache
def _sql(d: SqlDialect) -> _Sql:
    return _Sql(
        inbox_seen=d.sql(
            f"SELECT replay_key FROM inbox WHERE {d.in_list('replay_key', 'replays')} UNION ALL"
            f" SELECT webhook_key FROM inbox WHERE {d.in_list('webhook_key', 'ids')}"
        ),
        # UNION ALL, not OR: each half is a unique-index lookup on any engine, even before
        # PostgreSQL has statistics (with an OR it scanned the whole table until ANALYZE).
        tasks_for=d.sql(
            "SELECT id, upstream_id, state, labels, handlers, origin FROM tasks"
            f" WHERE {d.in_list('id', 'refs')} UNION ALL"
            " SELECT id, upstream_id, state, labels, handlers, origin FROM tasks"
            f" WHERE {d.in_list('upstream_id', 'keys')}"
        ),
        events_seen=d.sql(f"SELECT dedupe_key FROM events WHERE {d.in_list('dedupe_key', 'keys')}"),
        insert_inbox=d.sql(
            "INSERT INTO inbox (id, webhook_id, task_id, source, event_header, body, received_at,"
            " replay_key, webhook_key) VALUES (:id, :webhook_id, :task_id, :source,"
            " :event_header, :body, :received_at, :replay_key, :webhook_key)"
        ),
        insert_task=d.sql(
            "INSERT INTO tasks (id, upstream_id, family, platform, state, origin, prompt, params,"
            " labels, handlers, created_at, updated_at, poll_attempts)"
            " VALUES (:id, :upstream_id, :platform, :platform, :state,"
            f" '{TaskOrigin.EXTERNAL}', NULL, '{{}}', '{{}}', NULL, :now, :now, 0)"
        ),
        fill_upstream=d.sql("UPDATE tasks SET upstream_id = :upstream_id WHERE id = :id"),
        advance_task=d.sql(
            "UPDATE tasks SET state = :state, updated_at = :now,"
            " next_poll_at = CASE WHEN :final = 1 THEN NULL ELSE next_poll_at END"
            " WHERE id = :id"
        ),
        insert_event=d.sql(
            "INSERT INTO events (id, inbox_id, dedupe_key, task_id, task_ref, clip_id, kind,"
            " platform, source, clip, error, received_at) VALUES (:id, :inbox_id, :dedupe_key,"
            " :task_id, :task_ref, :clip_id, :kind, :platform, :source, :clip, :error, :now)"
        ),
        insert_delivery=d.sql(
            "INSERT INTO deliveries (id, event_id, handler, stage, state, attempts,"
            " next_attempt_at, created_at, updated_at) VALUES (:id, :event_id, :handler,"
            f" :stage, '{DeliveryState.PENDING}', 0, :now, :now, :now)"
        ),
    )


@dataclasses.dataclass(slots=True)
class _Task:
    """A task row as the batch sees it: loaded once, then changed in memory."""

    id: str
    upstream_id: str | None
    state: str
    labels: Mapping[str, str]
    handlers: Sequence[str] | None
    origin: str = TaskOrigin.EXTERNAL
    new: bool = False
    platform: str = ""
    filled: bool = False
    advanced: bool = False

    @property
    def upstream_key(self) -> str:
        """Events of a task whose upstream id is still unknown are keyed by our own id."""
        return self.upstream_id if self.upstream_id is not None else f"ref:{self.id}"


def _upstream_key(inbound: Inbound) -> str | None:
    """The upstream id an unknown task is recorded under: the callback's task_id, else (a valid
    token for a task this database lacks, e.g. reset with the key kept) `ref:<token's ref>`."""
    if inbound.task_id is not None:
        return inbound.task_id
    return f"ref:{inbound.task_ref}" if inbound.task_ref is not None else None


class _Tasks:
    """The batch's tasks by id and by upstream id, read in one query."""

    def __init__(self, rows: list[tuple[Any, ...]], new_id: _Ids) -> None:
        self._new_id = new_id
        self.by_id: dict[str, _Task] = {}
        self.by_upstream: dict[str, _Task] = {}
        for id_, upstream_id, state, labels, handlers, origin in rows:
            self._add(
                _Task(id_, upstream_id, state, load_json(labels) or {}, load_json(handlers), origin)
            )

    def _add(self, task: _Task) -> None:
        self.by_id[task.id] = task
        if task.upstream_id is not None:
            self.by_upstream[task.upstream_id] = task

    def resolve(self, inbound: Inbound) -> _Task | Refusal:
        """The task this inbound is about; an unknown task is recorded as external.

        A task this relay submitted has its own secret and callback URL: only a callback on
        that URL may touch it, never the shared route (or another task's URL) naming its
        upstream id. And a task cannot take an upstream id another task already has.
        """
        task = self.by_id.get(inbound.task_ref) if inbound.task_ref is not None else None
        key = _upstream_key(inbound)
        if task is None and key is not None:
            task = self.by_upstream.get(key)
            if (
                task is not None
                and task.origin == TaskOrigin.RELAY
                and inbound.source == Source.CALLBACK
            ):
                return Refusal(
                    403,
                    "wrong_route",
                    f"task {key} was submitted by this relay; its callbacks are accepted only"
                    " on its own callback URL",
                )
        if task is None:
            task = _Task(
                self._new_id(),
                key,
                TaskState.RUNNING,
                {},
                None,
                new=True,
                platform=inbound.platform,
            )
            self._add(task)
            return task
        if task.upstream_id is None and inbound.task_id is not None:
            other = self.by_upstream.get(inbound.task_id)
            if other is not None and other is not task:
                return Refusal(
                    409,
                    "task_conflict",
                    f"the callback names upstream task {inbound.task_id}, which belongs to"
                    " another task",
                )
            # The callback arrived before the create call's answer was recorded.
            task.upstream_id = inbound.task_id
            task.filled = True
            self.by_upstream[task.upstream_id] = task
        return task


def _next_state(state: str, kinds: list[str]) -> str | None:
    """The task's state after these events, or None when they do not move it."""
    kinds = [kind for kind in kinds if kind != EventKind.SUBMITTED]
    if state in FINAL_TASK_STATES or not kinds:
        return None
    if EventKind.TIMED_OUT in kinds:
        return TaskState.TIMED_OUT
    if EventKind.COMPLETED in kinds:
        return TaskState.SUCCEEDED
    if all(kind in FINAL_KINDS for kind in kinds):
        return TaskState.FAILED
    return TaskState.STREAMING


def _clip_error(clip: Mapping[str, Any], kind: str, inbound: Inbound) -> Any:
    return (
        clip.get("error_message")
        or clip.get("error")
        or (inbound.message if kind == EventKind.FAILED else None)
    )


async def _ingest(tx: Tx, items: list[tuple[Inbound, Router]]) -> list[IngestResult]:
    sql, d, now, new_id = _sql(tx.dialect), tx.dialect, time.time(), _Ids()
    results: list[IngestResult | None] = [None] * len(items)

    # One round trip reads the signed callbacks and webhook ids seen before, the tasks, and
    # the events already known under the dedupe keys the inbounds will most likely have (their
    # task is almost always recorded under the callback's task_id); keys that turn out
    # otherwise are read after the tasks are resolved. A duplicate costs a read, not a write.
    replay_keys = [i.replay_key for i, _ in items if i.replay_key is not None]
    webhook_keys = [i.webhook_key for i, _ in items if i.webhook_key is not None]
    refs = [i.task_ref for i, _ in items if i.task_ref is not None]
    keys = [k for i, _ in items if (k := _upstream_key(i)) is not None]
    likely_keys = {
        dedupe_key(i.task_id, clip_id, kind)
        for i, _ in items
        if i.task_id is not None
        for kind, clip_id, _ in i.clips
    }
    seen_rows, task_rows, known_rows = await tx.db.rows_many(
        [
            (sql.inbox_seen, {"replays": d.values(replay_keys), "ids": d.values(webhook_keys)}),
            (sql.tasks_for, {"refs": d.values(refs), "keys": d.values(keys)}),
            (sql.events_seen, {"keys": d.values(likely_keys)}),
        ]
    )
    seen = {row[0] for row in seen_rows}

    # 1. The same signed callback, or the same provider event id on the same route and task,
    #    seen before (or earlier in this batch) is a duplicate: nothing of it is stored.
    fresh: list[tuple[int, Inbound, Router]] = []
    for index, (inbound, route) in enumerate(items):
        marks = [k for k in (inbound.replay_key, inbound.webhook_key) if k is not None]
        if any(k in seen for k in marks):
            results[index] = IngestResult(duplicate=True, task_ref=inbound.task_ref)
            continue
        seen.update(marks)
        fresh.append((index, inbound, route))

    # 2. Tasks, resolved in order; a callback that may not touch its task is refused.
    tasks = _Tasks(task_rows, new_id)
    resolved: list[tuple[int, Inbound, Router, _Task]] = []
    for index, inbound, route in fresh:
        task_or_refusal = tasks.resolve(inbound)
        if isinstance(task_or_refusal, Refusal):
            results[index] = IngestResult(
                duplicate=False, task_ref=inbound.task_ref, refused=task_or_refusal
            )
        else:
            resolved.append((index, inbound, route, task_or_refusal))

    # 3. Events: a (task, clip, kind) seen before is not a new fact. An inbound that brings
    #    clips but no new fact is a duplicate and leaves no inbox row (a replay, or a poll
    #    answer repeating what is known, must not grow the database).
    known = {row[0] for row in known_rows}
    unlikely = {
        dedupe_key(task.upstream_key, clip_id, kind)
        for _, inbound, _, task in resolved
        for kind, clip_id, _ in inbound.clips
    } - likely_keys
    if unlikely:
        rows = await tx.db.rows(sql.events_seen, {"keys": d.values(unlikely)})
        known.update(row[0] for row in rows)
    inbox_rows: list[dict[str, Any]] = []
    event_rows: list[dict[str, Any]] = []
    delivery_rows: list[dict[str, Any]] = []
    touched: dict[int, _Task] = {}
    for index, inbound, route, task in resolved:
        inbox_id = new_id()
        event_ids: list[str] = []
        count = 0
        for kind, clip_id, clip in inbound.clips:
            key = dedupe_key(task.upstream_key, clip_id, kind)
            if key in known:
                continue
            known.add(key)
            event_id = new_id()
            event_ids.append(event_id)
            event_rows.append(
                {
                    "id": event_id,
                    "inbox_id": inbox_id,
                    "dedupe_key": key,
                    "task_id": task.upstream_key,
                    "task_ref": task.id,
                    "clip_id": clip_id,
                    "kind": kind,
                    "platform": inbound.platform,
                    "source": inbound.source,
                    "clip": dump_json(dict(clip)),
                    "error": _clip_error(clip, kind, inbound),
                    "now": now,
                }
            )
            targets = route(kind, inbound.platform, task.labels, task.handlers)
            delivery_rows.extend(
                {"id": new_id(), "event_id": event_id, "handler": name, "stage": stage, "now": now}
                for name, stage in targets
            )
            count += len(targets)
        duplicate = not event_ids and bool(inbound.clips)
        if duplicate:
            results[index] = IngestResult(duplicate=True, task_ref=task.id)
            continue
        touched[id(task)] = task
        inbox_rows.append(
            {
                "id": inbox_id,
                "webhook_id": inbound.webhook_id,
                "task_id": inbound.task_id,
                "source": inbound.source,
                "event_header": inbound.event_header,
                "body": inbound.body,
                "received_at": now,
                "replay_key": inbound.replay_key,
                "webhook_key": inbound.webhook_key,
            }
        )
        state = _next_state(task.state, [kind for kind, _, _ in inbound.clips])
        if state is not None:
            task.state, task.advanced = state, True
        results[index] = IngestResult(
            duplicate=False, task_ref=task.id, event_ids=tuple(event_ids), deliveries=count
        )

    # 4. Write: one statement per table for the whole batch.
    await tx.db.run_many(sql.insert_inbox, inbox_rows)
    await tx.db.run_many(
        sql.insert_task,
        [
            {
                "id": t.id,
                "upstream_id": t.upstream_id,
                "platform": t.platform,
                "state": t.state,
                "now": now,
            }
            for t in touched.values()
            if t.new
        ],
    )
    await tx.db.run_many(
        sql.fill_upstream,
        [
            {"id": t.id, "upstream_id": t.upstream_id}
            for t in touched.values()
            if t.filled and not t.new
        ],
    )
    await tx.db.run_many(
        sql.advance_task,
        [
            {"id": t.id, "state": t.state, "now": now, "final": int(t.state in FINAL_TASK_STATES)}
            for t in touched.values()
            if t.advanced and not t.new
        ],
    )
    await tx.db.run_many(sql.insert_event, event_rows)
    await tx.db.run_many(sql.insert_delivery, delivery_rows)
    if delivery_rows:
        tx.wake("deliveries")
    return [r for r in results if r is not None]


INGEST: WriteKind[tuple[Inbound, Router], IngestResult] = WriteKind("ingest", _ingest)
