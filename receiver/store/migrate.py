"""Schema migrations with Alembic, for both dialects, callable from code and the CLI."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from receiver.store.engine import CONNECT_TIMEOUT_S

__all__ = ["current_revision", "head_revision", "sync_url", "upgrade"]

_MIGRATIONS = Path(__file__).with_name("migrations")


def sync_url(database_url: str) -> str:
    """The URL for a synchronous engine (Alembic runs synchronously)."""
    if database_url.startswith("postgres://"):
        database_url = "postgresql://" + database_url[len("postgres://") :]
    if database_url.startswith("postgresql://"):
        return "postgresql+psycopg://" + database_url[len("postgresql://") :]
    if database_url.startswith("sqlite+aiosqlite"):
        return "sqlite" + database_url[len("sqlite+aiosqlite") :]
    return database_url


def _config(connection: sa.Connection | None = None, url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url)
    if connection is not None:
        config.attributes["connection"] = connection
    return config


_MIGRATION_LOCK = 0x61696D72  # "aimr": any constant shared by every relay process


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the schema to `revision`; safe to run on every start, from many processes at once.

    On PostgreSQL the whole upgrade runs under a transaction-scoped advisory lock, so web and
    worker processes starting together apply each migration once (the others wait, then find
    the schema current); DDL is transactional there, so a failed upgrade leaves nothing half-done.
    """
    url = sync_url(database_url)
    is_pg = url.startswith("postgresql")
    connect_args = {"connect_timeout": CONNECT_TIMEOUT_S} if is_pg else {}
    engine = sa.create_engine(url, connect_args=connect_args)
    try:
        with engine.begin() as connection:
            if is_pg:
                connection.execute(
                    sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK}
                )
            command.upgrade(_config(connection), revision)
    finally:
        engine.dispose()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(_config()).get_current_head()


def current_revision(connection: sa.Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()
