"""No hot-path statement reads a whole table, on either engine, whatever the statistics say.

History is where a queue gets slow: every delivery ever made stays in `deliveries`. These
tests build a few thousand rows of it and ask each engine how it would run every hot-path
statement (ingest, claims, finishes, leases, polls): SQLite after ANALYZE, when its statistics
say every delivery has succeeded (the plan that once scanned 100k rows per claim), and
PostgreSQL *before* any ANALYZE (a fresh deployment, before autovacuum has looked).
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg

from receiver.store import migrate
from receiver.store._connections import WRITER_SETTINGS
from receiver.store._dialect import POSTGRES, SQLITE, SqlDialect
from receiver.store._tasks import _sql as task_sql
from receiver.store.ingest import _sql as ingest_sql
from receiver.store.outbox import _sql as outbox_sql
from receiver.store.polls import _sql as poll_sql
from tests.bench import backlog

_LISTS = {"ids", "replays", "refs", "keys", "exclude"}
_JSON = {"result", "params", "labels", "handlers"}


def _statements(dialect: SqlDialect) -> Iterator[tuple[str, str]]:
    for build in (ingest_sql, outbox_sql, poll_sql, task_sql):
        statements = build(dialect)
        for name in statements.__dataclass_fields__:
            text = getattr(statements, name)
            if not text.lstrip().upper().startswith("INSERT"):  # an INSERT reads nothing
                yield f"{build.__module__}.{name}", text


def _value(name: str, dialect: SqlDialect) -> Any:
    if name in _LISTS:
        # as long as a claim's list: the planner sizes a list it can see
        return dialect.values([f"{n:032x}" for n in range(64)])
    if name in _JSON:
        return None
    if name in {"limit", "number", "stage", "final", "set_result"}:
        return 1
    if name.endswith("_at") or name in {"now", "until", "dead_since"}:
        return 1.0e12
    return "x"


def test_sqlite_never_scans_a_table_after_analyze(tmp_path: Path) -> None:
    database = tmp_path / "plans.db"
    migrate.upgrade(f"sqlite:///{database}")
    backlog.seed(database, 0, 2000, done=True)  # succeeded history, then ANALYZE
    backlog.seed(database, 2000, 20, done=False)
    scans = {}
    with sqlite3.connect(database) as conn:
        for name, text in _statements(SQLITE):
            params = {p: _value(p, SQLITE) for p in re.findall(r":(\w+)", text)}
            plan = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + text, params)]
            # `SCAN k` / `SCAN json_each`: walking the list parameter itself
            full = [line for line in plan if re.match(r"SCAN (?!k\b|json_each)", line)]
            if full:
                scans[name] = full
    assert {} == scans


def test_postgres_never_scans_a_table_before_analyze(make_pg_url: Callable[[], str]) -> None:
    url = make_pg_url()
    migrate.upgrade(url)
    backlog.seed_postgres(url, 0, 3000, done=False)  # no ANALYZE: no statistics yet
    scans = {}
    with psycopg.connect(url, autocommit=True) as conn:
        for setting in WRITER_SETTINGS:  # the writer's own session
            conn.execute(setting)
        for name, text in _statements(POSTGRES):
            params = {p: _value(p, POSTGRES) for p in re.findall(r"%\((\w+)\)s", text)}
            plan = [row[0] for row in conn.execute("EXPLAIN " + text, params)]
            full = [line.strip() for line in plan if "Seq Scan" in line]
            if full:
                scans[name] = full
    assert {} == scans
