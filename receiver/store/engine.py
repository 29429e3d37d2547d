"""Engines per dialect: URL translation, pool limits, and the SQLite settings that make it a
safe queue."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

__all__ = [
    "CONNECT_TIMEOUT_S",
    "SQLITE_BUSY_TIMEOUT_MS",
    "async_url",
    "libpq_url",
    "make_reader",
]

SQLITE_BUSY_TIMEOUT_MS = 10_000
CONNECT_TIMEOUT_S = 2
"""libpq's minimum: an unreachable PostgreSQL fails a request in about this long (a 503 the
provider retries) instead of hanging until the provider's own timeout."""


def async_url(database_url: str) -> str:
    if database_url.startswith("postgres://"):
        database_url = "postgresql://" + database_url[len("postgres://") :]
    if database_url.startswith("postgresql://"):
        return "postgresql+psycopg://" + database_url[len("postgresql://") :]
    if database_url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + database_url[len("sqlite:///") :]
    return database_url


def libpq_url(database_url: str) -> str:
    """The plain `postgresql://` form psycopg's own connect() takes (query options kept)."""
    url = async_url(database_url)
    return "postgresql://" + url.split("://", 1)[1]


def make_reader(
    database_url: str, *, pool_size: int = 5, pool_timeout_s: float = 10.0
) -> AsyncEngine:
    """The engine for reads off the hot path (API, dashboard, CLI, health).

    PostgreSQL: one pool per process, `pool_size` plus as many again in overflow under bursts,
    waiting at most `pool_timeout_s` for a free connection; pre-ping replaces connections a
    restart or failover killed, so the first request after an outage does not fail.

    SQLite: a few connections; in WAL mode readers never block the writer nor wait for it.
    """
    url = async_url(database_url)
    if not url.startswith("sqlite"):
        connect_args: dict[str, Any] = {
            "connect_timeout": CONNECT_TIMEOUT_S,
            # A half-open TCP connection (the database host vanished) is noticed in ~20 s.
            "keepalives": 1,
            "keepalives_idle": 10,
            "keepalives_interval": 5,
            "keepalives_count": 2,
        }
        return create_async_engine(
            url,
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_timeout=pool_timeout_s,
            pool_pre_ping=True,
            pool_recycle=1800,
            connect_args=connect_args,
        )
    reader = create_async_engine(url, pool_size=4, max_overflow=4)
    _sqlite_pragmas(reader)
    return reader


def _sqlite_pragmas(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let us issue BEGIN ourselves (pysqlite's implicit transactions defer the lock).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        # FULL: a commit is on disk before we answer 200 (survives power loss, not only kill -9).
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN")
