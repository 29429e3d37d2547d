"""Dashboard sessions the database knows about, so signing out ends one for every process.

The session cookie is signed, not stored: by itself it stays valid until it expires, and a
copy of it would outlive a logout. So each sign-in opens a row here, keyed by a digest of a
random session id the cookie carries, and logout stamps `revoked_at`; a page is served only
while the cookie's row is open and younger than the session's lifetime. The lifetime counts
from the sign-in (`opened_at`): the cookie's own timestamp is renewed on every response, so it
alone would let a session that is used every day last for ever.

One row per session rather than one generation counter for all: signing out in one browser
ends that session (and every copy of its cookie) without signing out everyone else who shares
the admin token, and the row's `opened_at` gives the absolute lifetime. Rotating
`RELAY_ADMIN_TOKEN` still ends every session at once, through the cookie's token fingerprint
(`receiver.dashboard.session`). Rows older than the lifetime are deleted at each sign-in, so
the table holds at most one lifetime's worth of sign-ins. The database holds SHA-256 digests
only: someone who can read it learns no session id.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from receiver.store._dialect import SqlDialect
from receiver.store.schema import admin_sessions
from receiver.store.writer import Tx, WriteKind

__all__ = ["OPEN_SESSION", "REVOKE_SESSION", "AdminSessions", "OpenSession", "session_digest"]


def session_digest(session_id: str) -> str:
    """What the table stores for a session id: its SHA-256, in hex."""
    return hashlib.sha256(session_id.encode()).hexdigest()


@dataclasses.dataclass(frozen=True, slots=True)
class OpenSession:
    """A sign-in: the new session's id, and the lifetime after which older rows are deleted."""

    session_id: str
    max_age_s: float


@dataclasses.dataclass(frozen=True, slots=True)
class _Sql:
    prune: str
    insert: str
    revoke: str


@functools.cache
def _sql(d: SqlDialect) -> _Sql:
    return _Sql(
        prune=d.sql("DELETE FROM admin_sessions WHERE opened_at < :oldest"),
        insert=d.sql(
            "INSERT INTO admin_sessions (id, opened_at, revoked_at) VALUES (:id, :now, NULL)"
        ),
        revoke=d.sql(
            "UPDATE admin_sessions SET revoked_at = :now WHERE id = :id AND revoked_at IS NULL"
        ),
    )


async def _open(tx: Tx, opened: list[OpenSession]) -> list[None]:
    now = time.time()
    sql = _sql(tx.dialect)
    await tx.db.run(sql.prune, {"oldest": now - max(o.max_age_s for o in opened)})
    await tx.db.run_many(
        sql.insert, [{"id": session_digest(o.session_id), "now": now} for o in opened]
    )
    return [None] * len(opened)


async def _revoke(tx: Tx, session_ids: list[str]) -> list[None]:
    now = time.time()
    await tx.db.run_many(
        _sql(tx.dialect).revoke, [{"id": session_digest(sid), "now": now} for sid in session_ids]
    )
    return [None] * len(session_ids)


OPEN_SESSION = WriteKind("admin_session_open", _open)
REVOKE_SESSION = WriteKind("admin_session_revoke", _revoke)

Submit = Callable[[WriteKind[Any, Any], Any], Awaitable[Any]]
Read = Callable[[], contextlib.AbstractAsyncContextManager[AsyncConnection]]


class AdminSessions:
    """`store.sessions`: open, check and revoke dashboard sessions. Writes go through the
    store's writer (committed before the call returns); the check is one primary-key read on
    the read pool. An unreachable database raises `StoreUnavailable`."""

    def __init__(self, submit: Submit, read: Read) -> None:
        self._submit = submit
        self._read = read

    async def open(self, session_id: str, max_age_s: float) -> None:
        """Record a new session, opened now (and delete those older than `max_age_s`)."""
        await self._submit(OPEN_SESSION, OpenSession(session_id, max_age_s))

    async def revoke(self, session_id: str) -> None:
        """End the session for good (nothing happens for an unknown or revoked id)."""
        await self._submit(REVOKE_SESSION, session_id)

    async def is_open(self, session_id: str, max_age_s: float) -> bool:
        """The session exists, is not revoked and was opened less than `max_age_s` ago."""
        query = sa.select(admin_sessions.c.id).where(
            admin_sessions.c.id == session_digest(session_id),
            admin_sessions.c.revoked_at.is_(None),
            admin_sessions.c.opened_at > time.time() - max_age_s,
        )
        async with self._read() as conn:
            return (await conn.execute(query)).first() is not None
