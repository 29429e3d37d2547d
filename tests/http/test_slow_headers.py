"""Request headers have a deadline and a size cap: slow-headers clients (slowloris) are
answered 408 and let go, endless headers 431.

The first test runs a real `aimusic-relay serve` with 47 slow clients (50 connections at most,
about 12 s, loopback only). The others run uvicorn in-process with `HeaderLimitsProtocol` made
small (1 s, 8 KiB), to pin down what the limits cover: a silent connection, not a slow answer,
a keep-alive connection's next request, a pipelined request in flight, not a body.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import uvicorn

from receiver.http.protocol import HEADER_TIMEOUT_S, HeaderLimitsProtocol
from tests.conftest import REPO
from tests.servers import Process, free_port

SLOW_CLIENTS = 47
"""With the silent, the in-time and the probing client: 50 connections at most."""
START = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One `aimusic-relay serve` process on SQLite; yields its URL."""
    workdir = tmp_path_factory.mktemp("slow-headers")
    port = free_port()
    env = {
        "PORT": str(port),
        "AIMUSIC_BASE_URL": "http://127.0.0.1:9",
        "RELAY_SECRET_KEY": secrets.token_urlsafe(16),
        "DATABASE_URL": f"sqlite:///{workdir / 'relay.db'}",
        "RELAY_SPOOL_DIR": str(workdir / "spool"),
        "RELAY_LOG_FORMAT": "json",
        "PYTHONPATH": str(REPO),
    }
    process = Process(["serve", "--port", str(port)], env, workdir, workdir / "serve.log")
    url = f"http://127.0.0.1:{port}"
    try:
        process.wait_http(f"{url}/healthz")
        yield url
    finally:
        process.stop()


async def read_until_closed(reader: asyncio.StreamReader, limit_s: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes or resets (or `limit_s` passes), and when."""
    began = time.monotonic()
    data = b""
    with contextlib.suppress(TimeoutError, ConnectionResetError):
        async with asyncio.timeout(limit_s):
            while chunk := await reader.read(65536):
                data += chunk
    return data, time.monotonic() - began


def answer_of(raw: bytes) -> tuple[int, dict[str, Any]]:
    """Status and JSON body of one HTTP/1.1 answer."""
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body)


@pytest.mark.slow
async def test_serve_answers_slow_headers_408_and_keeps_serving(serve: str) -> None:
    """47 clients trickling header bytes (and one sending nothing) are each answered 408
    `timeout` and closed HEADER_TIMEOUT_S after connecting, not before; a client that
    finishes its headers in time is served; /healthz answers quickly throughout."""
    port = int(serve.rsplit(":", 1)[1])
    stop = asyncio.Event()

    async def slow(first: bytes) -> tuple[bytes, float]:
        """Send `first`, then (if it is not empty) one more header byte every 2 s."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(first)

        async def trickle() -> None:
            while first and not stop.is_set():
                await asyncio.sleep(2.0)
                with contextlib.suppress(OSError):
                    writer.write(b"a")

        dripping = asyncio.create_task(trickle())
        try:
            return await read_until_closed(reader, HEADER_TIMEOUT_S + 4)
        finally:
            dripping.cancel()
            writer.close()

    async def in_time() -> int:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(START)
        for _ in range(6):  # headers finished after about 6 s, inside the deadline
            await asyncio.sleep(1.0)
            writer.write(b"a")
        writer.write(b"\r\nConnection: close\r\n\r\n")
        raw, _ = await read_until_closed(reader, 5)
        writer.close()
        return int(raw.split(b" ", 2)[1])

    async def probe() -> list[float]:
        took = []
        async with httpx.AsyncClient(timeout=5, trust_env=False) as http:
            while not stop.is_set():
                began = time.monotonic()
                assert 200 == (await http.get(f"{serve}/healthz")).status_code
                took.append(time.monotonic() - began)
                await asyncio.sleep(0.25)
        return took

    probing = asyncio.create_task(probe())
    clients = [slow(START) for _ in range(SLOW_CLIENTS)]
    outcomes = await asyncio.gather(slow(b""), in_time(), *clients)
    stop.set()
    took = await probing
    silent, served, *slowed = outcomes
    assert 200 == served
    for raw, closed_after in [silent, *slowed]:
        assert HEADER_TIMEOUT_S - 0.5 < closed_after < HEADER_TIMEOUT_S + 2, "still open"
        assert (408, "timeout") == (answer_of(raw)[0], answer_of(raw)[1]["error"])
    assert len(took) > 20 and max(took) < 1.0, took


class QuickHeaders(HeaderLimitsProtocol):
    """The same limits made small: 1 s and 8 KiB."""

    header_timeout_s = 1.0
    max_header_bytes = 8 * 1024


CAP = QuickHeaders.max_header_bytes


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """`/sleep` answers after 1.6 s (longer than the deadline); a POST with its body's size;
    anything else with its path, at once."""
    if scope["type"] != "http":
        return
    if scope["path"] == "/sleep":
        await asyncio.sleep(1.6)
    body = scope["path"].encode()
    if scope["method"] == "POST":
        size, more = 0, True
        while more:
            message = await receive()
            size, more = size + len(message.get("body", b"")), message.get("more_body", False)
        body = str(size).encode()
    headers = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module")
def quick() -> Iterator[int]:
    """uvicorn in a thread with `QuickHeaders`; yields its port."""
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, http=QuickHeaders, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.01)
    yield port
    server.should_exit = True
    thread.join(timeout=15)


@pytest.fixture
async def connection(quick: int) -> AsyncIterator[tuple[asyncio.StreamReader, Any]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", quick)
    yield reader, writer
    writer.close()


def request(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()


async def test_a_silent_connection_is_closed_at_the_deadline(
    connection: tuple[asyncio.StreamReader, Any],
) -> None:
    """A connection that never sends a byte is answered 408 and closed after 1 s."""
    reader, _ = connection
    raw, closed_after = await read_until_closed(reader, 3)
    assert (408, "timeout") == (answer_of(raw)[0], answer_of(raw)[1]["error"])
    assert 0.9 < closed_after < 2.0


async def test_a_slow_answer_is_not_cut_off(connection: tuple[asyncio.StreamReader, Any]) -> None:
    """The clock stops when the headers are in: an answer taking longer than it arrives whole,
    and the connection stays open for the next request."""
    reader, writer = connection
    for path in ("/sleep", "/again"):
        writer.write(request(path))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 200")
        assert path.encode() == await asyncio.wait_for(reader.readexactly(len(path)), 1)


async def test_a_keep_alive_connections_next_request_has_the_same_deadline(
    connection: tuple[asyncio.StreamReader, Any],
) -> None:
    """After one answer on a connection, the next request's headers also get 1 s, counted
    from their first byte: trickled, they are answered 408 and the connection is closed."""
    reader, writer = connection
    writer.write(request("/first"))
    await asyncio.wait_for(reader.readuntil(b"/first"), 5)
    writer.write(START)
    began = time.monotonic()
    # Trickle only before the deadline: a byte still unread by the server when it closes
    # turns its close into a reset, which can discard the 408 before the client reads it.
    for _ in range(2):
        await asyncio.sleep(0.3)
        writer.write(b"a")
    raw, _ = await read_until_closed(reader, 3)
    assert (408, "timeout") == (answer_of(raw)[0], answer_of(raw)[1]["error"])
    assert 0.9 < time.monotonic() - began < 2.5


async def test_a_pipelined_request_in_flight_is_answered_before_the_close(
    connection: tuple[asyncio.StreamReader, Any],
) -> None:
    """A request being answered when the next one's headers run out of time gets its whole
    answer, with nothing written into it; then the connection is closed."""
    reader, writer = connection
    writer.write(request("/sleep") + START)
    raw, closed_after = await read_until_closed(reader, 5)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert (True, b"/sleep") == (head.startswith(b"HTTP/1.1 200"), body)
    assert 1.5 < closed_after < 3.0


async def test_headers_over_the_cap_are_answered_431(
    connection: tuple[asyncio.StreamReader, Any],
) -> None:
    """A client that stops after going over the cap reads the 431 answer."""
    reader, writer = connection
    writer.write(START + b"a\r\nX-Big: ")
    await asyncio.sleep(0.05)
    writer.write(b"b" * (CAP + 1))
    raw, closed_after = await read_until_closed(reader, 3)
    assert (431, "headers_too_large") == (answer_of(raw)[0], answer_of(raw)[1]["error"])
    assert closed_after < 1.0


async def test_headers_without_end_are_cut_off_at_once(
    connection: tuple[asyncio.StreamReader, Any],
) -> None:
    """Headers sent fast but without end (here 1 MiB) are cut off at the cap, long
    before the deadline, instead of being kept in memory: 431 `headers_too_large`, or a reset
    when the client is still sending as the server closes (the kernel discards the answer)."""
    reader, writer = connection
    writer.write(START + b"a\r\n" + b"X-Big: " + b"b" * (1024 * 1024))  # 128 times the cap
    with contextlib.suppress(OSError):
        await writer.drain()
    raw, closed_after = await read_until_closed(reader, 3)
    assert closed_after < 1.0, "still open"
    if raw:
        assert (431, "headers_too_large") == (answer_of(raw)[0], answer_of(raw)[1]["error"])


async def test_large_headers_under_the_cap_and_large_bodies_are_served(
    connection: tuple[asyncio.StreamReader, Any],
) -> None:
    """Headers just under the cap, trickled in small pieces, are accepted, twice on one
    connection (the count is per request); a body sharing a read with the first bytes of a
    pipelined request after it does not count against that request's headers."""
    reader, writer = connection
    lines = b"".join(b"X-Fill-%d: %s\r\n" % (n, b"f" * 1000) for n in range(7))
    assert len(lines) < CAP - 512
    for path in ("/big", "/again"):
        head = request(path)[:-2] + lines + b"\r\n"
        for at in range(0, len(head), 1024):
            writer.write(head[at : at + 1024])
            await asyncio.sleep(0.005)
        raw = await asyncio.wait_for(reader.readuntil(path.encode()), 5)
        assert raw.startswith(b"HTTP/1.1 200")
    body = b"x" * (4 * CAP)
    post = b"POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n" % len(body)
    after = request("/after")
    writer.write(post[:10])
    await asyncio.sleep(0.1)
    writer.write(post[10:] + body + after[:20])  # one read: headers' end, body, next's start
    await asyncio.sleep(0.1)
    writer.write(after[20:])
    raw = await asyncio.wait_for(reader.readuntil(b"/after"), 5)
    assert (True, True) == (raw.startswith(b"HTTP/1.1 200"), str(len(body)).encode() in raw)
