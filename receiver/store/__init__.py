"""Durable storage: one `Store` interface, one SQL implementation for SQLite and PostgreSQL."""

from __future__ import annotations

from receiver.store._connections import is_conflict
from receiver.store.base import (
    Claim,
    Claimed,
    DeadAlert,
    DuePoll,
    Finish,
    Finished,
    Inbound,
    IngestResult,
    NewTask,
    Refusal,
    Router,
    Store,
)
from receiver.store.limits import EVENT_HEADER_CHARS, ID_LIMITS
from receiver.store.sql import SqlStore

__all__ = [
    "EVENT_HEADER_CHARS",
    "ID_LIMITS",
    "Claim",
    "Claimed",
    "DeadAlert",
    "DuePoll",
    "Finish",
    "Finished",
    "Inbound",
    "IngestResult",
    "NewTask",
    "Refusal",
    "Router",
    "SqlStore",
    "Store",
    "is_conflict",
    "open_store",
]


def open_store(
    database_url: str,
    *,
    migrate_on_open: bool = True,
    pool_size: int = 5,
    pool_timeout_s: float = 10.0,
) -> SqlStore:
    """The store for `DATABASE_URL` (not yet opened: call `await store.open()`). Callers
    outside the store hold it as a `Store`; the concrete type is for wiring and tests."""
    return SqlStore(
        database_url,
        migrate_on_open=migrate_on_open,
        pool_size=pool_size,
        pool_timeout_s=pool_timeout_s,
    )
