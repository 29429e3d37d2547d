"""PostgreSQL going away and coming back, and how fast a commit wakes a handler."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.pg_cluster import Cluster, make_payloads, percentile, send_callbacks
from tests.servers import free_port

pytestmark = pytest.mark.slow


class TcpProxy:
    """Forwards a loopback port to PostgreSQL; `down()` refuses new connections and cuts the
    open ones (a database restart as the relay sees it), `up()` accepts again."""

    def __init__(self, target_port: int = 5432) -> None:
        self.port = free_port()
        self.target_port = target_port
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.up()

    def _call(self, coro: object) -> None:
        asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=10)  # type: ignore[arg-type]

    def up(self) -> None:
        async def start() -> None:
            self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

        self._call(start())

    def down(self) -> None:
        async def stop() -> None:
            assert self.server is not None
            self.server.close()
            for writer in list(self.writers):
                writer.transport.abort()
            self.writers.clear()

        self._call(stop())

    def close(self) -> None:
        self.down()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        self.loop.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self.writers |= {writer, up_writer}

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except OSError:
                pass
            finally:
                sink.transport.abort()
                self.writers.discard(sink)

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    """A pausable path to PostgreSQL."""
    running = TcpProxy()
    yield running
    running.close()


def test_outage_answers_503_fast_then_recovers_and_loses_nothing(
    tmp_path: Path, make_pg_url: Callable[[], str], proxy: TcpProxy
) -> None:
    """With PostgreSQL unreachable the webhook and /readyz answer 503 within 2 s; once it is
    back, every callback that got a 200 is delivered, with no restart."""
    direct = make_pg_url()
    cluster = Cluster(tmp_path, direct.replace(":5432/", f":{proxy.port}/"), handlers=["rec"])
    cluster.database_url = direct  # the test's own queries bypass the proxy
    payloads = make_payloads(60, duplicate_every=1000)
    try:
        url = cluster.start_web()
        cluster.wait_ready()
        cluster.start_worker()
        assert [200] * 20 == asyncio.run(send_callbacks([url], payloads[:20]))

        proxy.down()
        started = time.monotonic()
        first = asyncio.run(send_callbacks([url], payloads[20:21]))
        took = time.monotonic() - started
        during = asyncio.run(send_callbacks([url], payloads[21:40], concurrency=5))
        ready = httpx.get(f"{url}/readyz", timeout=10)
        assert [503] == first
        assert took < 2.0
        assert {503} == set(during)
        assert 503 == ready.status_code

        proxy.up()
        deadline = time.monotonic() + 20
        while httpx.get(f"{url}/readyz", timeout=10).status_code != 200:
            assert time.monotonic() < deadline, cluster.outputs()
            time.sleep(0.1)
        # The provider retries what got a 503; then new callbacks arrive.
        assert [200] * 40 == asyncio.run(send_callbacks([url], payloads[20:]))
        cluster.wait_drained(60, timeout=30)
    finally:
        cluster.stop()
    assert 60 == len({line["task_ref"] for line in cluster.recorded("rec")})
    print(f"\n503 while PostgreSQL is down after {took * 1000:.0f} ms")


def _latencies(cluster: Cluster, received: dict[str, float]) -> list[float]:
    lines = cluster.recorded("rec")
    return [
        line["started"] - received[line["task_ref"]]
        for line in lines
        if line["task_ref"] in received
    ]


def _measure(cluster: Cluster, url: str, count: int) -> None:
    """Warm up, then send `count` callbacks one after another with idle gaps between them."""
    asyncio.run(send_callbacks([url], make_payloads(1, duplicate_every=1000)))
    time.sleep(1.0)
    payloads = make_payloads(count + 1, duplicate_every=1000)[1:]
    for payload in payloads:
        asyncio.run(send_callbacks([url], [payload]))
        time.sleep(0.03)


@pytest.mark.parametrize("dialect", ["postgres", "sqlite"])
def test_commit_to_handler_start_latency(
    tmp_path: Path, make_pg_url: Callable[[], str], dialect: str
) -> None:
    """Every committed callback starts its handler; commit→start p50/p99 printed, not asserted."""
    count = 50
    if dialect == "postgres":
        cluster = Cluster(tmp_path, make_pg_url(), handlers=["rec"])
    else:
        cluster = Cluster(tmp_path, f"sqlite:///{tmp_path / 'relay.db'}", handlers=["rec"])
    try:
        url = cluster.start_web()
        cluster.wait_ready()
        if dialect == "postgres":
            cluster.start_worker()
        _measure(cluster, url, count)
        deadline = time.monotonic() + 30
        while len(cluster.recorded("rec")) < count + 1:
            assert time.monotonic() < deadline, cluster.outputs()
            time.sleep(0.05)
    finally:
        cluster.stop()
    query = "SELECT task_ref, received_at FROM events WHERE task_id <> 'ext-0'"  # not the warm-up
    if dialect == "postgres":
        received = {ref: at for ref, at in cluster.sql(query)}
    else:
        with sqlite3.connect(tmp_path / "relay.db") as conn:
            received = dict(conn.execute(query).fetchall())
    latencies = _latencies(cluster, received)
    assert count == len(latencies)
    print(
        f"\n{dialect}: commit→handler-start p50 {percentile(latencies, 0.5) * 1000:.1f} ms, "
        f"p99 {percentile(latencies, 0.99) * 1000:.1f} ms over {len(latencies)} callbacks"
    )
