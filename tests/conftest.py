"""Fixtures that start real servers on loopback: the sandbox upstream and relay processes."""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog

from handlers.base import HandlerContext
from receiver.delivery.spool import DownloadPolicy, Spool
from receiver.sandbox import SandboxOptions, create_sandbox_app
from receiver.signing import sign_callback
from receiver.store import SqlStore, open_store
from tests.s3_server import moto_s3
from tests.servers import Process, free_port, run_asgi

__all__ = ["moto_s3"]  # a fixture, imported so every test module can use it

REPO = Path(__file__).resolve().parent.parent
FAST_SANDBOX = SandboxOptions(
    delay_s=0.4, callback_retry_delays=(0.3, 0.6, 1.2), slow_callback_s=1.5, callback_timeout_s=5
)


@pytest.fixture(scope="session")
def sandbox() -> Iterator[str]:
    """A fast sandbox upstream shared by the session; yields its base URL."""
    with run_asgi(create_sandbox_app(FAST_SANDBOX)) as url:
        yield url


def sandbox_task(sandbox_url: str, task_id: str) -> dict[str, Any]:
    """What the sandbox knows about one task (state, callback attempts)."""
    tasks = httpx.get(f"{sandbox_url}/sandbox/tasks", timeout=5).json()
    return next(t for t in tasks if t.get("task_id", t.get("id")) == task_id)


class Relay:
    """A relay `serve` process with its own SQLite file, songs directory and secrets."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.workdir = workdir
        self.env = env
        self.port = int(env["PORT"])
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin = {"Authorization": f"Bearer {env['RELAY_ADMIN_TOKEN']}"}
        self.db_path = workdir / "relay.db"
        self.songs = workdir / "songs"
        self.process: Process | None = None

    def start(self) -> Relay:
        self.process = Process(
            ["serve", "--port", str(self.port)], self.env, self.workdir, self.workdir / "relay.log"
        )
        self.process.wait_http(f"{self.url}/healthz")
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None

    def kill9(self) -> None:
        assert self.process is not None
        self.process.kill9()
        self.process = None

    def log(self) -> str:
        path = self.workdir / "relay.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def submit(self, sound: str, **params: Any) -> dict[str, Any]:
        top = {k: params.pop(k) for k in ("labels", "handlers", "family") if k in params}
        body = {"params": {"sound": sound, **params}, **top}
        answer = httpx.post(f"{self.url}/api/tasks", json=body, headers=self.admin, timeout=15)
        assert answer.status_code == 202, answer.text
        return dict(answer.json())

    def task(self, task_id: str) -> dict[str, Any]:
        answer = httpx.get(f"{self.url}/api/tasks/{task_id}", headers=self.admin, timeout=10)
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    def wait_settled(self, task_id: str, timeout: float = 30.0) -> dict[str, Any]:
        """Poll the API until the task is final and every delivery has finished."""
        from receiver.cli.progress import is_settled

        deadline = time.monotonic() + timeout
        while True:
            task = self.task(task_id)
            if is_settled(task) and songs(task):
                return task
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"task not settled in {timeout} s: {json.dumps(task)[:2000]}\n"
                    f"{self.log()[-3000:]}"
                )
            time.sleep(0.05)

    def count(self, table: str, where: str = "1=1") -> int:
        """Rows in one table of the relay's SQLite file, read directly."""
        with sqlite3.connect(self.db_path) as conn:
            return int(conn.execute(f"SELECT count(*) FROM {table} WHERE {where}").fetchone()[0])

    def audio_files(self) -> list[Path]:
        return sorted(self.songs.rglob("*.wav")) if self.songs.exists() else []


def new_relay(workdir: Path, sandbox: str, config: str, **env: str) -> Relay:
    """A relay (not started) in `workdir`: `config` written there (`{workdir}` filled in), its
    own port, fresh secrets, SQLite file and spool; loopback downloads allowed; `env` on top."""
    (workdir / "relay.toml").write_text(config.replace("{workdir}", str(workdir)))
    port = free_port()
    full_env = {
        "PORT": str(port),
        "AIMUSIC_API_KEY": "test-key",
        "AIMUSIC_BASE_URL": sandbox,
        "RELAY_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "RELAY_SECRET_KEY": secrets.token_urlsafe(16),
        "RELAY_ADMIN_TOKEN": secrets.token_urlsafe(16),
        "DATABASE_URL": f"sqlite:///{workdir / 'relay.db'}",
        "RELAY_CONFIG": str(workdir / "relay.toml"),
        "RELAY_ALLOW_PRIVATE_NETWORKS": "true",
        "RELAY_SPOOL_DIR": str(workdir / "spool"),
        "RELAY_LOG_FORMAT": "json",
        "PYTHONPATH": str(REPO),
        **env,
    }
    return Relay(workdir, full_env)


@pytest.fixture
def make_relay(tmp_path: Path, sandbox: str) -> Iterator[Callable[..., Relay]]:
    """Factory: `make_relay(config=..., **env)` starts a relay; all are stopped at the end."""
    started: list[Relay] = []

    def factory(config: str | None = None, start: bool = True, **env: str) -> Relay:
        workdir = tmp_path / f"relay{len(started)}"
        workdir.mkdir()
        if config is None:
            config = f'[[handlers]]\nname = "disk"\ntype = "disk"\npath = "{workdir / "songs"}"\n'
        relay = new_relay(workdir, sandbox, config, **env)
        started.append(relay)
        return relay.start() if start else relay

    yield factory
    for relay in started:
        relay.stop()


@pytest.fixture
def relay(make_relay: Callable[..., Relay]) -> Relay:
    """A relay with one disk handler and AIMUSIC_WEBHOOK_SECRET set for the shared route."""
    return make_relay(AIMUSIC_WEBHOOK_SECRET="shared-secret-1")


def songs(task: dict[str, Any]) -> list[dict[str, Any]]:
    """The task's song events (everything but the relay's own `task.submitted`)."""
    return [e for e in task["events"] if e["kind"] != "task.submitted"]


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """A shared client for handler tests; it ignores proxy settings from the environment."""
    async with httpx.AsyncClient(trust_env=False) as client:
        yield client


MakeContext = Callable[..., HandlerContext]
"""`make_ctx(**fields)`: a HandlerContext; keyword arguments set results, previous_result, ..."""


@pytest.fixture
def make_ctx(tmp_path: Path, http: httpx.AsyncClient) -> MakeContext:
    """A handler context for delivery d1 of event evt-1 with a real Spool (a fresh one per call,
    as a retry or another handler of the same event would get)."""

    def make(**fields: Any) -> HandlerContext:
        spool = Spool(
            tmp_path / "spool", "evt-1", http, DownloadPolicy(allow_private_networks=True)
        )
        return HandlerContext(
            http=http,
            spool=spool,
            log=structlog.get_logger(),
            public_url="https://relay.example",
            delivery_id="d1",
            attempt=1,
            **fields,
        )

    return make


def signed(
    body: dict[str, Any] | bytes,
    secret: str,
    *,
    timestamp: int | None = None,
    webhook_id: str | None = None,
    event: str = "song.completed",
) -> tuple[dict[str, str], bytes]:
    """Headers and bytes of a callback signed exactly as the provider signs it."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    ts = int(time.time()) if timestamp is None else timestamp
    webhook_id = webhook_id or secrets.token_hex(8)
    headers = {
        "Content-Type": "application/json",
        "X-Webhook-Id": webhook_id,
        "Idempotency-Key": webhook_id,
        "X-Webhook-Event": event,
        "X-Webhook-Timestamp": str(ts),
        "X-Webhook-Signature": sign_callback(secret, ts, raw),
    }
    return headers, raw


@pytest.fixture
def make_callback() -> Callable[..., tuple[dict[str, str], bytes]]:
    return signed


def finished_sandbox_task(sandbox_url: str, sound: str) -> dict[str, Any]:
    """Create a task directly on the sandbox (no callback) and return its final poll answer."""
    headers = {"Authorization": "Bearer test-key"}
    created = httpx.post(
        f"{sandbox_url}/api/v1/producer/create",
        json={"task_type": "create_music", "sound": sound + " #nocallback"},
        headers=headers,
        timeout=10,
    ).json()
    task_id = created["task_id"]
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        answer = httpx.get(
            f"{sandbox_url}/api/v1/producer/task/{task_id}", headers=headers, timeout=10
        ).json()
        if answer["status"] in ("SUCCESS", "FAILED"):
            return {"task_id": task_id, "platform": "producer", "event": "song.completed", **answer}
        time.sleep(0.05)
    raise AssertionError("sandbox task did not finish")


POSTGRES_URL = os.environ.get("RELAY_TEST_POSTGRES_URL", "postgresql://root@127.0.0.1:5432/test")
"""The machine's PostgreSQL; each test gets its own schema in it."""


def _postgres_admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=3) as conn:
        conn.execute(sql)


def schema_url(schema: str, *, base: str = POSTGRES_URL) -> str:
    """`base` with every connection confined to `schema` and tagged with it (application_name),
    so a test can find and terminate exactly its own backends."""
    return f"{base}?options=-csearch_path%3D{schema}&application_name={schema}"


@pytest.fixture
def make_pg_url() -> Iterator[Callable[[], str]]:
    """Factory: a fresh, empty PostgreSQL schema per call, as a DATABASE_URL; dropped at the end.
    Skips when no PostgreSQL answers, except in CI (`CI` set), where that is a failure."""
    import psycopg

    try:
        _postgres_admin("SELECT 1")
    except psycopg.OperationalError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES_URL}: {exc}")
    created: list[str] = []

    def factory() -> str:
        schema = f"t_{secrets.token_hex(6)}"
        _postgres_admin(f"CREATE SCHEMA {schema}")
        created.append(schema)
        return schema_url(schema)

    yield factory
    for schema in created:
        _postgres_admin(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE application_name = '{schema}'"
        )
        _postgres_admin(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=["sqlite", "postgres"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, make_pg_url: Callable[[], str]
) -> AsyncIterator[SqlStore]:
    """An opened, migrated store on a fresh database (SQLite file or PostgreSQL schema)."""
    url = f"sqlite:///{tmp_path / 'store.db'}" if request.param == "sqlite" else make_pg_url()
    opened = open_store(url)
    await opened.open()
    yield opened
    await opened.close()


os.environ.setdefault("NO_COLOR", "1")
