"""The `Store` on SQLite or PostgreSQL: hot-path writes through one writer, reads apart.

Acknowledging, deduplicating and enqueueing are one transaction (a transactional outbox), so
no crash between two writes can lose or double an event. Every hot-path call — ingest,
claims, finishes, leases, polls, task updates — goes through the process's one `Writer`,
which runs what queued together in one transaction on the plain driver. The dashboard's,
API's and CLI's reads (`Queries`) use their own pooled SQLAlchemy connections and never wait
for the writer.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Collection, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection

from receiver.errors import LeaseLost, StoreUnavailable
from receiver.states import DeliveryState, FinishState, TaskState
from receiver.store import migrate
from receiver.store._connections import (
    PostgresConnection,
    SqliteConnection,
    WriteConnection,
    unavailable,
)
from receiver.store._dialect import POSTGRES, SQLITE
from receiver.store._tasks import (
    CREATE_TASK,
    SET_STATE,
    SUBMITTED,
    StateChange,
    TaskSubmitted,
)
from receiver.store.base import (
    Claim,
    Claimed,
    DuePoll,
    Finish,
    Finished,
    Inbound,
    IngestResult,
    NewTask,
    Replay,
    Router,
)
from receiver.store.engine import async_url, make_reader
from receiver.store.ingest import INGEST
from receiver.store.notify import TOPICS, Listener
from receiver.store.outbox import (
    CLAIM,
    EVENT_SETTLED,
    EXTEND,
    FINISH,
    NEXT_DUE,
    RELEASE,
    REPLAY,
    ClaimRequest,
    Extend,
    Release,
)
from receiver.store.polls import CLAIM_POLLS, NEXT_POLL, POLL_DONE, PollClaim, PollDone
from receiver.store.queries import Queries
from receiver.store.sessions import AdminSessions
from receiver.store.writer import WriteKind, Writer

__all__ = ["SqlStore"]

Item = TypeVar("Item")
Result = TypeVar("Result")

CHECKPOINT_EVERY_S = 1.0
"""SQLite: how often the WAL is folded into the database file (off the commit path)."""


@contextlib.contextmanager
def _unavailable_as_store_error() -> Iterator[None]:
    """A database that cannot be reached (or dropped the connection) is `StoreUnavailable`,
    which callers turn into 503 or a back-off; any other database error stays what it is."""
    try:
        yield
    except (OperationalError, PoolTimeout, OSError) as exc:
        raise StoreUnavailable(f"database unavailable: {type(exc).__name__}") from exc
    except DBAPIError as exc:
        if exc.connection_invalidated:
            raise StoreUnavailable("database connection lost") from exc
        down = unavailable(exc.orig) if exc.orig is not None else None
        if down is not None:
            raise down from exc
        raise


class SqlStore:
    """Tasks, events and deliveries in one SQL database."""

    def __init__(
        self,
        database_url: str,
        *,
        migrate_on_open: bool = True,
        pool_size: int = 5,
        pool_timeout_s: float = 10.0,
    ) -> None:
        self.database_url = database_url
        self._migrate_on_open = migrate_on_open
        self._reader = make_reader(database_url, pool_size=pool_size, pool_timeout_s=pool_timeout_s)
        self.is_postgres = self._reader.dialect.name == "postgresql"
        self._listeners: dict[str, list[Callable[[], None]]] = {topic: [] for topic in TOPICS}
        self.writer = Writer(
            self._connect,
            POSTGRES if self.is_postgres else SQLITE,
            self._wake,
            checkpoint_every_s=None if self.is_postgres else CHECKPOINT_EVERY_S,
        )
        self.listener: Listener | None = None
        """PostgreSQL only: wakes this process when another one commits due work."""
        self.reads = Queries(self._read)
        """The API's, dashboard's and CLI's reads, with typed rows, on their own connections."""
        self.sessions = AdminSessions(self._submit, self._read)
        """Dashboard sessions, so a logout ends a session in every process."""

    async def _connect(self) -> WriteConnection:
        if self.is_postgres:
            return await PostgresConnection.connect(self.database_url)
        path = Path(async_url(self.database_url).split(":///", 1)[1])
        return await asyncio.to_thread(SqliteConnection, path)

    async def open(self) -> None:
        if self._migrate_on_open:
            await asyncio.to_thread(migrate.upgrade, self.database_url)
        if self.is_postgres and self.listener is None:
            self.listener = Listener(self.database_url, self._wake)
            self.listener.start()

    async def close(self) -> None:
        if self.listener is not None:
            await self.listener.stop()
            self.listener = None
        await self.writer.close()
        await self._reader.dispose()

    def add_listener(self, wake: Callable[[], None], topic: str = "deliveries") -> None:
        self._listeners[topic].append(wake)

    def _wake(self, topics: Collection[str]) -> None:
        for topic in topics:
            for wake in self._listeners.get(topic, ()):
                wake()

    async def _submit(self, kind: WriteKind[Item, Result], item: Item) -> Result:
        return await self.writer.submit(kind, item)

    @contextlib.asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        with _unavailable_as_store_error():
            async with self._reader.connect() as conn:
                yield conn

    async def ping(self) -> str | None:
        async with self._read() as conn:
            return await conn.run_sync(migrate.current_revision)

    # -- tasks ---------------------------------------------------------------------------

    async def create_task(self, task: NewTask) -> None:
        await self._submit(CREATE_TASK, task)

    async def task_submitted(self, task_ref: str, upstream_id: str) -> None:
        await self._submit(SUBMITTED, TaskSubmitted(task_ref, upstream_id))

    async def task_state(self, task_ref: str, state: TaskState, error: str | None = None) -> None:
        await self._submit(SET_STATE, StateChange(task_ref, state, error))

    async def record_inbound(self, inbound: Inbound, route: Router) -> IngestResult:
        """Store one verified inbound (dedupe, task, events, deliveries) and return once the
        transaction holding it has committed; inbounds that arrive together share it."""
        return await self._submit(INGEST, (inbound, route))

    # -- outbox --------------------------------------------------------------------------

    async def claim(
        self, owner: str, limit: int, lease_s: float, exclude: Collection[str] = ()
    ) -> list[Claim]:
        """Lease up to `limit` due deliveries, skipping handlers in `exclude` (paused)."""
        return list((await self.claim_due(owner, limit, lease_s, exclude)).claims)

    async def claim_due(
        self, owner: str, limit: int, lease_s: float, exclude: Collection[str] = ()
    ) -> Claimed:
        return await self._submit(CLAIM, ClaimRequest(owner, limit, lease_s, tuple(exclude)))

    async def finish(self, finish: Finish) -> Finished:
        # The batch answers None for a lost lease rather than raising: an exception there
        # would make the writer re-run every neighbour in a transaction of its own.
        done = await self._submit(FINISH, finish)
        if done is None:
            raise LeaseLost([finish.delivery_id])
        return done

    async def succeed(self, claim: Claim, owner: str, result: Mapping[str, Any] | None) -> None:
        await self.finish(
            Finish(claim.delivery_id, owner, claim.attempt, DeliveryState.SUCCEEDED, result=result)
        )

    async def fail(
        self, claim: Claim, owner: str, error: str, blame: str, retry_at: float | None
    ) -> None:
        state: FinishState = DeliveryState.DEAD if retry_at is None else DeliveryState.PENDING
        await self.finish(
            Finish(claim.delivery_id, owner, claim.attempt, state, error, blame, retry_at)
        )

    async def extend_lease(self, delivery_id: str, owner: str, lease_s: float) -> None:
        await self.extend_leases([delivery_id], owner, lease_s)

    async def extend_leases(
        self, delivery_ids: Collection[str], owner: str, lease_s: float
    ) -> None:
        """Every lease in one transaction (the dispatcher's periodic renewal)."""
        ids = list(delivery_ids)
        held = await asyncio.gather(
            *(self._submit(EXTEND, Extend(delivery_id, owner, lease_s)) for delivery_id in ids)
        )
        lost = [delivery_id for delivery_id, ok in zip(ids, held, strict=True) if not ok]
        if lost:
            raise LeaseLost(lost)

    async def release(self, delivery_ids: Collection[str], owner: str) -> int:
        """Expire our leases now so another worker takes the deliveries (shutdown)."""
        if not delivery_ids:
            return 0
        return await self._submit(RELEASE, Release(tuple(delivery_ids), owner))

    async def replay(
        self,
        *,
        delivery_id: str | None = None,
        event_id: str | None = None,
        handler: str | None = None,
        dead_since: float | None = None,
    ) -> int:
        """Make finished deliveries due again (attempt count reset, result kept so a handler
        can update what it sent instead of sending it twice). Returns how many."""
        return await self._submit(REPLAY, Replay(delivery_id, event_id, handler, dead_since))

    async def next_due_at(self, exclude: Collection[str] = ()) -> float | None:
        """When the next delivery becomes claimable (ignoring paused handlers)."""
        return await self._submit(NEXT_DUE, tuple(exclude))

    async def event_settled(self, event_id: str) -> bool:
        return await self._submit(EVENT_SETTLED, event_id)

    # -- polls ---------------------------------------------------------------------------

    async def claim_polls(self, limit: int, lease_s: float) -> list[DuePoll]:
        """Tasks due for a poll (or a deadline check), leased to the caller."""
        return await self._submit(CLAIM_POLLS, PollClaim(limit, lease_s))

    async def next_poll_due(self) -> float | None:
        return await self._submit(NEXT_POLL, None)

    async def poll_done(
        self, task_ref: str, next_poll_at: float | None, error: str | None = None
    ) -> None:
        """Schedule the next poll (None: stop polling), keeping a final state's own schedule."""
        await self._submit(POLL_DONE, PollDone(task_ref, next_poll_at, error))
