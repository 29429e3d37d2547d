"""Group commit: concurrent callbacks share a transaction, each answered after it."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from receiver.store import Inbound, SqlStore, open_store


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqlStore]:
    opened = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    await opened.open()
    yield opened
    await opened.close()


def _route(kind: str, platform: str, labels: object, only: object) -> list[tuple[str, int]]:
    return [("a", 0)]


def _inbound(n: int, webhook_id: str | None = None) -> Inbound:
    return Inbound(
        source="callback",
        body=b"{}",
        platform="producer",
        clips=[("song.completed", f"clip-{n}", {"title": "t"})],
        task_id=f"up-{n}",
        webhook_id=webhook_id or f"w{n}",
    )


def _count(store: SqlStore, table: str) -> int:
    with sqlite3.connect(store.database_url.split(":///", 1)[1]) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


async def test_concurrent_callbacks_share_commits_and_are_all_stored(store: SqlStore) -> None:
    """Forty callbacks at once, ten of them repeats, commit in fewer transactions than
    callbacks; every one is stored and each repeat is a duplicate."""
    before = store.writer.commits
    inbounds = [_inbound(n) for n in range(30)] + [_inbound(n) for n in range(10)]
    results = await asyncio.gather(*(store.record_inbound(i, _route) for i in inbounds))
    assert 30 == sum(not r.duplicate for r in results)
    assert 30 == _count(store, "events") == _count(store, "deliveries")
    assert 0 < store.writer.commits - before < len(inbounds)


async def test_a_failing_callback_does_not_fail_its_batch(store: SqlStore) -> None:
    """One callback whose ingest raises gets the error; the others in its batch are stored."""

    def broken(kind: str, platform: str, labels: object, only: object) -> list[tuple[str, int]]:
        raise RuntimeError("routing bug")

    calls = [store.record_inbound(_inbound(n), _route) for n in range(10)]
    calls.insert(5, store.record_inbound(_inbound(99), broken))
    results = await asyncio.gather(*calls, return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert ["routing bug"] == [str(e) for e in errors]
    assert 10 == _count(store, "events") == _count(store, "inbox")


async def test_a_caller_that_goes_away_does_not_break_its_batch(store: SqlStore) -> None:
    """A callback whose request is cancelled mid-commit (client gone) is still stored, and the
    other callbacks of its batch are answered."""
    calls = [asyncio.create_task(store.record_inbound(_inbound(n), _route)) for n in range(10)]
    await asyncio.sleep(0)  # all ten are queued; the first is committing
    calls[3].cancel()
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert isinstance(results[3], asyncio.CancelledError)
    assert 9 == sum(not isinstance(r, BaseException) for r in results)
    deadline = asyncio.get_running_loop().time() + 5
    while _count(store, "inbox") < 10:  # the cancelled one commits with its batch
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.01)
