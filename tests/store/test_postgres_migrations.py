"""Migrations on both dialects: from empty and from the previous revision, compared with the
tables the code declares."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from receiver.store import migrate
from receiver.store.schema import metadata


def _url(dialect: str, tmp_path: Path, make_pg_url: Callable[[], str]) -> str:
    return f"sqlite:///{tmp_path / 'm.db'}" if dialect == "sqlite" else make_pg_url()


def _diffs(database_url: str) -> list[object]:
    engine = sa.create_engine(migrate.sync_url(database_url))
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(context, metadata))
    finally:
        engine.dispose()


def _revision(database_url: str) -> str | None:
    engine = sa.create_engine(migrate.sync_url(database_url))
    try:
        with engine.connect() as conn:
            return migrate.current_revision(conn)
    finally:
        engine.dispose()


@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
@pytest.mark.parametrize("start", [None, "0001"])
def test_upgrade_reaches_the_declared_schema(
    dialect: str, start: str | None, tmp_path: Path, make_pg_url: Callable[[], str]
) -> None:
    """Upgrading from empty, or from the previous revision, gives exactly `schema.metadata`."""
    url = _url(dialect, tmp_path, make_pg_url)
    if start is not None:
        migrate.upgrade(url, start)
        assert start == _revision(url)
    migrate.upgrade(url)
    assert migrate.head_revision() == _revision(url)
    assert [] == _diffs(url)
    migrate.upgrade(url)  # again: a no-op, as on every start
    assert migrate.head_revision() == _revision(url)
