"""Durable storage: one `Store` interface, one SQL implementation for SQLite and PostgreSQL."""

from __future__ import annotations

from receiver.store.base import Claim, Inbound, IngestResult, NewTask, Router, Store
from receiver.store.sql import SqlStore

__all__ = [
    "Claim",
    "Inbound",
    "IngestResult",
    "NewTask",
    "Router",
    "SqlStore",
    "Store",
    "open_store",
]


def open_store(database_url: str) -> SqlStore:
    """The store for `DATABASE_URL` (not yet opened: call `await store.open()`)."""
    return SqlStore(database_url)
