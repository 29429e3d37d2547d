"""Which file on disk a dashboard download may serve: never an arbitrary path.

A delivery's stored `result` is data — a replay, a plugin or a hand-edited row could put any
path there — so a download is served only when the delivery's handler is a configured disk
handler and the stored path, with every `..` and symlink resolved, is a regular file inside
that handler's directory (`views.disk_file`), and the delivery belongs to the task in the URL.
"""

from __future__ import annotations

from pathlib import Path

from handlers.disk import DiskHandler
from receiver.dashboard.views import disk_file
from receiver.rows import DeliveryRow
from receiver.services import Services

__all__ = ["disk_copy", "task_file"]


def disk_copy(services: Services, delivery: DeliveryRow) -> Path | None:
    """The delivery's audio file, if a disk handler wrote it inside its directory; else None."""
    configured = services.handlers.get(delivery.handler)
    if configured is None or not isinstance(configured.handler, DiskHandler):
        return None
    return disk_file(delivery.result, configured.handler.config.path)


async def task_file(services: Services, task_id: str, delivery_id: str) -> Path | None:
    """The file to stream for `GET /admin/tasks/{task_id}/download/{delivery_id}`, or None."""
    reads = services.store.reads
    delivery = await reads.get_delivery(delivery_id)
    task = await reads.get_task(task_id)
    if delivery is None or task is None:
        return None
    events = await reads.events_for(ids=[delivery.event_id])
    if [event.task_ref for event in events] != [task.id]:
        return None
    return disk_copy(services, delivery)
