"""Durable storage: one `Store` interface, one SQL implementation for SQLite and PostgreSQL."""

from __future__ import annotations

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
from receiver.store.sql import SqlStore

__all__ = [
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
    "open_store",
]


def open_store(database_url: str, *, pool_size: int = 5, pool_timeout_s: float = 10.0) -> SqlStore:
    """The store for `DATABASE_URL` (not yet opened: call `await store.open()`)."""
    return SqlStore(database_url, pool_size=pool_size, pool_timeout_s=pool_timeout_s)
