"""The relay's own checks for `aimusic-relay doctor`: settings, database, provider key, public
URL and the relay's secrets (each handler's dry run is in `doctor_checks`).

Each looks without changing anything: the database through a read-only connection, the key
through the credits endpoint, the public URL through `GET /healthz`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from receiver.cli.doctor_checks import Check
from receiver.config import Settings, is_public_https, secret_key_path
from receiver.errors import StoreUnavailable, Unauthorized, UpstreamError
from receiver.store import Store, open_store
from receiver.store.migrate import head_revision
from receiver.upstream.client import UpstreamClient

__all__ = ["public_url_check", "secret_checks", "settings_check", "store_check", "upstream_check"]

UPSTREAM_TIMEOUT_S = 10.0
PUBLIC_URL_TIMEOUT_S = 5.0


def settings_check(settings: Settings) -> Check:
    """What loaded, without the URLs' paths (they may hold credentials)."""
    database = "SQLite" if settings.is_sqlite else "PostgreSQL"
    return Check(
        "settings",
        "ok",
        f"environment loaded; {database} store; upstream {_origin(settings.aimusic_base_url)}",
    )


async def store_check(settings: Settings) -> Check:
    """Is the database reachable and at this code's schema, without creating or migrating it?"""
    if settings.is_sqlite and not settings.sqlite_path.is_file():
        return _missing_sqlite_check(settings.sqlite_path)
    if settings.is_sqlite:
        return _revision_check(*await asyncio.to_thread(_sqlite_revision, settings.sqlite_path))
    store: Store = open_store(settings.database_url, migrate_on_open=False, pool_size=1)
    try:
        revision = await store.ping()
    except StoreUnavailable as exc:
        return Check(
            "database",
            "fail",
            f"cannot reach it ({exc})",
            "check DATABASE_URL (host, port, user, database) and that the server runs",
        )
    except Exception as exc:  # doctor reports whatever went wrong instead of a traceback
        return Check("database", "fail", f"{type(exc).__name__}: {exc}", "check DATABASE_URL")
    finally:
        await store.close()
    return _revision_check(revision)


def _revision_check(revision: str | None, error: str | None = None) -> Check:
    upgrade = "run `aimusic-relay db upgrade` (the Procfile's release step)"
    if error is not None:
        return Check("database", "fail", error, "check DATABASE_URL")
    head = head_revision()
    if revision is None:
        return Check("database", "fail", "reachable, but it has no relay schema", upgrade)
    if revision != head:
        return Check("database", "fail", f"schema {revision}, this code needs {head}", upgrade)
    return Check("database", "ok", f"reachable; schema at head ({head})")


def _sqlite_revision(path: Path) -> tuple[str | None, str | None]:
    """(schema revision, None), or (None, what is wrong), read through a read-only connection:
    the store's own would switch the journal mode, leave -wal/-shm files and checkpoint, and
    doctor must change nothing."""
    try:
        with contextlib.closing(
            sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True, timeout=5)
        ) as connection:
            try:
                row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
            except sqlite3.OperationalError as exc:
                if "no such table" not in str(exc):
                    raise
                return None, None  # a SQLite file, but not migrated
    except sqlite3.Error as exc:
        return None, f"cannot read {path}: {exc}"
    return (str(row[0]) if row else None), None


def _missing_sqlite_check(path: Path) -> Check:
    """No SQLite file yet is how every deployment starts (`serve` creates and migrates it):
    a warning, unless `serve` could not create it either."""
    target = path.absolute()
    if target.exists():
        return Check("database", "fail", f"{target} is not a file", "point DATABASE_URL at a file")
    existing = target.parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        return Check(
            "database",
            "fail",
            f"no SQLite file at {target}, and it cannot be created there "
            f"({existing} is {'not a directory' if not existing.is_dir() else 'not writable'})",
            "point DATABASE_URL at a writable directory",
        )
    return Check(
        "database",
        "warn",
        f"no SQLite file at {target} yet",
        "`aimusic-relay serve` creates it on start (or run `aimusic-relay db upgrade` first)",
    )


async def upstream_check(settings: Settings) -> Check:
    """Does the provider accept the key? Asking for the balance costs no credits."""
    where = _origin(settings.aimusic_base_url)
    if settings.aimusic_api_key is None:
        return Check(
            "upstream key",
            "fail",
            "AIMUSIC_API_KEY is not set; submitting is refused",
            "set AIMUSIC_API_KEY to the key from your AI Music API dashboard",
        )
    key = settings.aimusic_api_key.get_secret_value()
    client = UpstreamClient(
        settings.aimusic_base_url, key, timeout=UPSTREAM_TIMEOUT_S, retry_delays=()
    )
    try:
        async with client:
            balance = await asyncio.wait_for(client.credits(), UPSTREAM_TIMEOUT_S * 2)
    except Unauthorized:
        return Check(
            "upstream key",
            "fail",
            f"AIMUSIC_API_KEY is wrong: {where} answered 401",
            "copy the key again from your AI Music API dashboard",
        )
    except (UpstreamError, TimeoutError) as exc:
        return Check(
            "upstream key",
            "fail",
            f"cannot check the key at {where}: {exc or 'timed out'}",
            "check AIMUSIC_BASE_URL and this machine's outbound network",
        )
    detail = f"key accepted by {where}: {balance.credits:g} credits"
    if balance.extra_credits:
        detail += f" (+{balance.extra_credits:g} extra)"
    if balance.credits + balance.extra_credits < 10:
        return Check("upstream key", "warn", detail, "top up: a song costs about 10 credits")
    return Check("upstream key", "ok", detail)


async def public_url_check(settings: Settings) -> Check:
    """Can the provider reach us, and will submit send `webhook_url` (`callbacks_enabled`)?"""
    url = settings.public_url
    public = is_public_https(url)
    mode = settings.relay_callbacks
    callbacks = settings.callbacks_enabled
    reached = await _get_healthz(url)
    problems: list[str] = []
    advice = ""
    if settings.relay_public_url is None:
        problems.append("RELAY_PUBLIC_URL is not set")
        advice = "set RELAY_PUBLIC_URL to the https:// address your platform gives the app"
    if not public and not settings.upstream_is_local:
        private = not is_public_https("https://" + url.split("://", 1)[-1])
        why = "on localhost or a private network" if private else "http, not https"
        problems.append(f"{url} is {why}: the provider cannot reach this")
        advice = advice or "use the platform's public https:// URL as RELAY_PUBLIC_URL"
    if reached is not None:
        problems.append(f"GET {url}/healthz from here: {reached}")
        advice = advice or "is `aimusic-relay serve` running and the URL right (DNS, TLS)?"
    how = "callbacks on" if callbacks else "callbacks off, the relay polls (slower)"
    if mode != "auto":
        how += f" (RELAY_CALLBACKS={mode})"
    if mode == "on" and not public and not settings.upstream_is_local:
        return Check("public URL", "fail", "; ".join([*problems, how]), advice)
    if problems:
        return Check("public URL", "warn", "; ".join([*problems, how]), advice)
    return Check("public URL", "ok", f"{url} answers /healthz; {how}")


async def _get_healthz(url: str) -> str | None:
    """None when `<url>/healthz` answers 200, else what went wrong, in a few words."""
    try:
        async with httpx.AsyncClient(timeout=PUBLIC_URL_TIMEOUT_S, trust_env=False) as client:
            answer = await client.get(f"{url}/healthz")
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__} (not reachable)"
    return None if answer.status_code == 200 else f"HTTP {answer.status_code}"


def secret_checks(settings: Settings) -> list[Check]:
    """Which of the relay's secrets are set, and what is refused or degraded without one."""
    checks = []
    shared = settings.webhook_secrets
    if shared:
        many = f" ({len(shared)}, rotation)" if len(shared) > 1 else ""
        checks.append(Check("AIMUSIC_WEBHOOK_SECRET", "ok", f"set{many}"))
    else:
        checks.append(
            Check(
                "AIMUSIC_WEBHOOK_SECRET",
                "warn",
                "not set: POST /webhooks/aimusic answers 401 (tasks the relay submits still "
                "call back on their own signed URLs)",
                "set it to the secret you gave the provider for tasks created elsewhere",
            )
        )
    token = settings.relay_admin_token
    if token is None:
        checks.append(
            Check(
                "RELAY_ADMIN_TOKEN",
                "warn",
                "not set: /api and the dashboard are disabled",
                "set it to a long random value: "
                "python -c 'import secrets; print(secrets.token_urlsafe(32))'",
            )
        )
    elif len(token.get_secret_value()) < 16:
        checks.append(
            Check("RELAY_ADMIN_TOKEN", "warn", "set, but short", "use 32 random characters")
        )
    else:
        checks.append(Check("RELAY_ADMIN_TOKEN", "ok", "set"))
    if os.environ.get("RELAY_SECRET_KEY"):
        checks.append(Check("RELAY_SECRET_KEY", "ok", "set"))
    else:
        key_file = secret_key_path(settings)
        lasting = "fine for one machine with a lasting disk"
        if settings.relay_secret_key is not None:
            detail = f"generated and kept in {key_file} ({lasting})"
        else:
            detail = f"not set: will be generated into {key_file} by the first `serve` ({lasting})"
        checks.append(Check("RELAY_SECRET_KEY", "ok", detail))
    return checks


def _origin(url: str) -> str:
    """scheme://host[:port] only: paths and query strings may hold tokens."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
