"""What differs between SQLite and PostgreSQL on the hot path, in one place.

The hot-path statements are SQL text written once with `:name` binds; the few fragments that
differ (lists, row locks) come from here, and SQLAlchemy's compiler turns the binds into each
driver's parameter style once, when the store is built.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect

__all__ = ["POSTGRES", "SQLITE", "SqlDialect"]


@dataclasses.dataclass(frozen=True, slots=True)
class SqlDialect:
    """One database's spelling of the hot-path statements."""

    name: str
    compiler: Dialect

    @property
    def is_postgres(self) -> bool:
        return self.name == "postgresql"

    def sql(self, text: str) -> str:
        """`text` with its `:name` binds in this driver's parameter style."""
        return str(sa.text(text).compile(dialect=self.compiler))

    def in_list(self, column: str, param: str) -> str:
        """`column` is one of the values of list parameter `param` (see `values`)."""
        if self.is_postgres:
            return f"{column} = ANY(:{param})"
        return f"{column} IN (SELECT value FROM json_each(:{param}))"

    def each(self, param: str, alias: str) -> str:
        """The values of list parameter `param` as a table `alias(value)`, to start a chain
        of `then` joins from: lookups by a list of ids then begin at the list and probe an
        index for each id, whatever the planner's statistics say."""
        if self.is_postgres:
            return f"unnest(CAST(:{param} AS text[])) AS {alias}(value)"
        return f"json_each(:{param}) AS {alias}"

    def then(self, table: str, alias: str, condition: str) -> str:
        """Join `table AS alias` on `condition` (an equality on an indexed column of the
        table), as a probe per row of what came before: SQLite keeps a CROSS JOIN's order;
        PostgreSQL runs a LATERAL subquery once per outer row. Without that, PostgreSQL
        before its first ANALYZE hash-joined a whole-table scan (a fresh deployment's
        tables look tiny to it), and SQLite with statistics could start from the table."""
        if self.is_postgres:
            return f" CROSS JOIN LATERAL (SELECT * FROM {table} {alias} WHERE {condition}) {alias}"
        return f" CROSS JOIN {table} AS {alias} ON {condition}"

    def not_in_list(self, column: str, param: str) -> str:
        if self.is_postgres:
            return f"{column} <> ALL(:{param})"
        return f"{column} NOT IN (SELECT value FROM json_each(:{param}))"

    def values(self, items: Iterable[Any]) -> Any:
        """A list parameter: an array for PostgreSQL, a JSON array for SQLite's json_each
        (one prepared statement for any length, where `IN (?, ?, ...)` needs one per length)."""
        return list(items) if self.is_postgres else json.dumps(list(items))

    @staticmethod
    def unindexed(column: str) -> str:
        """`column` in a form no index matches (the same text on both databases).

        For "these few ids, in this state": without statistics about a list parameter,
        SQLite would rather walk every row in the state (all succeeded deliveries ever) than
        look the ids up; hiding the state column from the planner makes it use the id index.
        """
        return f"({column} || '')"

    def rare(self, condition: str) -> str:
        """`condition` marked as true for few rows (an open state among all deliveries ever
        made). SQLite's statistics from a moment when every delivery had succeeded say each
        state holds the whole table, and it then scans the table instead of using the index
        (8 ms per claim at 100k deliveries); `likelihood` overrides that guess. PostgreSQL
        keeps per-value statistics and needs no hint."""
        return condition if self.is_postgres else f"likelihood({condition}, 0.001)"

    @property
    def skip_locked(self) -> str:
        """Claims: rows another transaction holds are skipped, not waited for."""
        return " FOR UPDATE SKIP LOCKED" if self.is_postgres else ""

    @property
    def lock(self) -> str:
        """Rows read to be updated in the same transaction (SQLite's single writer already
        holds the whole database)."""
        return " FOR UPDATE" if self.is_postgres else ""


def load_json(value: Any) -> Any:
    """A JSON column as read back: psycopg parses it, sqlite3 returns the text."""
    if isinstance(value, str | bytes):
        return json.loads(value)
    return value


def dump_json(value: Any) -> str | None:
    """A JSON column as written: text on both (PostgreSQL casts an untyped text to json)."""
    return None if value is None else json.dumps(value)


SQLITE = SqlDialect("sqlite", sqlite.dialect(paramstyle="named"))
POSTGRES = SqlDialect("postgresql", postgresql.psycopg.dialect())  # type: ignore[no-untyped-call]
