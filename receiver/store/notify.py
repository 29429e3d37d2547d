"""Cross-process wake-ups on PostgreSQL: NOTIFY in the writing transaction, LISTEN in workers.

A web process commits a callback; a worker process waiting for work should start at once, not
at its next sweep. The writer runs `pg_notify` inside the same transaction as the inserted
deliveries, so the notification is sent on commit and never for a rolled-back write. Its
payload is the topic (`deliveries` for the dispatcher, `polls` for the poller), so a worker's
poller is not woken by every callback. Each process keeps one dedicated autocommit connection
that LISTENs and calls the store's wake-up callbacks (they only set an asyncio event; the
periodic sweeps still run, so nothing depends on a notification arriving).

A LISTEN connection that drops misses whatever is sent meanwhile: after reconnecting the
listener calls the callbacks once (a sweep), so no wake-up is lost, only delayed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Collection

import psycopg

from receiver.logging import get_logger
from receiver.retry import Backoff
from receiver.store.engine import CONNECT_TIMEOUT_S, libpq_url

__all__ = ["CHANNEL", "TOPICS", "Listener"]

CHANNEL = "aimusic_relay_deliveries"
"""One channel per database; each payload is `topic:schema`, so a relay listening on one
schema is not woken by another relay's writes to another schema of the same database."""

TOPICS = ("deliveries", "polls")

log = get_logger("aimusic_relay.notify")


class Listener:
    """Holds a LISTEN connection for the life of a store; reconnects with backoff."""

    def __init__(
        self,
        database_url: str,
        wake: Callable[[Collection[str]], None],
        *,
        max_backoff_s: float = 10.0,
    ) -> None:
        self._conninfo = libpq_url(database_url)
        self._wake_topics = wake
        self._reconnect = Backoff(0.2, max_backoff_s, "none")
        self._task: asyncio.Task[None] | None = None
        self._schema: str | None = None
        self.connected = asyncio.Event()
        """Set while LISTEN is active (tests wait on it before sending a NOTIFY)."""

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="pg-listener")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _wake(self, payload: str = "") -> None:
        """Wake the payload's topic; a payload from another schema wakes nothing; an empty or
        unknown one (an older writer, or a reconnect's catch-up) wakes every topic."""
        topic, _, schema = payload.partition(":")
        if schema and self._schema is not None and schema != self._schema:
            return
        self._wake_topics([topic] if topic in TOPICS else TOPICS)

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self._conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S
                )
            except psycopg.Error as exc:
                failures += 1
                await self._backoff(failures, exc)
                continue
            try:
                async with conn:
                    found = await (await conn.execute("SELECT current_schema()")).fetchone()
                    self._schema = str(found[0]) if found and found[0] is not None else None
                    await conn.execute("LISTEN aimusic_relay_deliveries")  # CHANNEL
                    self.connected.set()
                    if failures:
                        log.info("listening again after a lost connection; sweeping")
                    failures = 0
                    self._wake()  # whatever was committed while we were not listening
                    async for notice in conn.notifies():
                        self._wake(notice.payload)
                raise psycopg.OperationalError("the notification stream ended")
            except psycopg.Error as exc:
                self.connected.clear()
                failures += 1
                await self._backoff(failures, exc)

    async def _backoff(self, failures: int, exc: Exception) -> None:
        delay = self._reconnect.delay(failures)
        log.warning("LISTEN connection lost; reconnecting", error=str(exc), retry_in_s=delay)
        await asyncio.sleep(delay)
