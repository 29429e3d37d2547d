"""Raise `delivery.dead` events inside the transaction that records the dead letters.

One alert per dead-lettering: the dedupe key is the delivery and how many attempts it has had
in all (attempt rows outlive a replay's reset of the counter), so a replayed delivery that dies
again alerts again, while the same write run twice (the writer reruns a failed batch item by
item) stores one event. Dead letters are rare: none of this runs on the hot path.
"""

from __future__ import annotations

import functools
from typing import Any

from receiver.states import EventKind
from receiver.store._dialect import SqlDialect, dump_json
from receiver.store.base import DeadAlert
from receiver.store.ingest import _Ids as Ids
from receiver.store.ingest import _sql as ingest_sql
from receiver.store.writer import Tx

__all__ = ["raise_dead_alerts"]


@functools.cache
def _attempts_of(d: SqlDialect) -> str:
    # S608: assembled from the dialect's constant list clause; every value is bound.
    return d.sql(
        f"SELECT delivery_id, count(*) FROM attempts WHERE {d.in_list('delivery_id', 'ids')}"  # noqa: S608
        " GROUP BY delivery_id"
    )


async def raise_dead_alerts(tx: Tx, dead: list[tuple[str, DeadAlert]], now: float) -> None:
    """Store a `delivery.dead` event, and its deliveries, for each (delivery id, alert) just
    recorded as dead; an alert about an alert, or one nobody takes, stores nothing."""
    dead = [(i, a) for i, a in dead if a.targets and a.event.kind != EventKind.DELIVERY_DEAD]
    if not dead:
        return
    # The events and deliveries are written with ingest's own statements: one shape of row.
    sql, d, new_id = ingest_sql(tx.dialect), tx.dialect, Ids()
    counts = dict(await tx.db.rows(_attempts_of(d), {"ids": d.values({i for i, _ in dead})}))
    keyed = {f"dead:{i}:{counts.get(i, 0)}": a for i, a in dead}
    seen = {row[0] for row in await tx.db.rows(sql.events_seen, {"keys": d.values(list(keyed))})}
    events: list[dict[str, Any]] = []
    deliveries: list[dict[str, Any]] = []
    for key, alert in keyed.items():
        if key in seen:
            continue
        event_id, about = new_id(), alert.event
        events.append(
            {
                "id": event_id,
                "inbox_id": None,
                "dedupe_key": key,
                "task_id": about.task_id,
                "task_ref": about.task_ref,
                "clip_id": about.clip_id,
                "kind": EventKind.DELIVERY_DEAD,
                "platform": about.platform,
                "source": "relay",
                "clip": dump_json(dict(alert.clip)),
                "error": alert.clip.get("error"),
                "now": now,
            }
        )
        deliveries.extend(
            {
                "id": new_id(),
                "event_id": event_id,
                "handler": name,
                "stage": stage,
                "now": now,
            }
            for name, stage in alert.targets
        )
    await tx.db.run_many(sql.insert_event, events)
    await tx.db.run_many(sql.insert_delivery, deliveries)
    if deliveries:
        tx.wake("deliveries")
