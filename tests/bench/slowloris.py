"""A bounded slow-headers (slowloris) run against a real relay process, on loopback only.

`python -m tests.bench.slowloris [--server serve|stock] [--connections 300] [--interval 3]
[--duration 30] [--fd-limit N] [--reconnect] [--timeline]` from the repository root, or
`... --flood-headers MIB` for one client sending headers fast, or `... --throughput S` for
what the limits cost (wrk on /healthz). Not part of the test suite.

`serve` is `aimusic-relay serve`; `stock` is the same app under uvicorn's own HTTP protocol
(no header timeout), the way `serve` ran before it had one. Each slow client sends the request
line, `Host` and the start of a header at once, then one byte every `--interval` seconds, never
finishing its headers. Meanwhile a probe asks `GET /healthz` on a fresh connection every
0.25 s. Every second the run samples how many slow connections are still open, and the
server's open file descriptors, RSS and CPU; after `--duration` seconds every client closes.
`--fd-limit` gives the server a container's `ulimit -n`; `--reconnect` reopens each connection
the server closes (once per interval), as the original slowloris tool does.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from receiver.http.protocol import HEADER_TIMEOUT_S
from tests.conftest import REPO
from tests.servers import free_port

STOCK = """
import os, uvicorn
from receiver.app import create_app
from receiver.config import load_settings
from receiver.logging import configure_logging
settings = load_settings()
configure_logging(settings.relay_log_level, settings.relay_log_format, settings.secret_values())
uvicorn.run(create_app(settings), host="127.0.0.1", port=settings.port, log_config=None,
            access_log=False, proxy_headers=True, forwarded_allow_ips="*",
            timeout_graceful_shutdown=25)
"""
"""`serve`'s uvicorn settings without `http=`: the stock protocol, for the before figures."""

PROBE_EVERY_S = 0.25
SAMPLE_EVERY_S = 1.0


@dataclass
class Run:
    """What one run saw: a sample a second, probe latencies, and how slow clients ended."""

    server: str
    connections: int
    interval_s: float
    duration_s: float
    fd_limit: int | None
    reconnect: bool
    samples: list[dict[str, float]] = field(default_factory=list)
    probe_ms: list[float] = field(default_factory=list)
    probe_failures: int = 0
    baseline_ms: list[float] = field(default_factory=list)
    closed_after_s: list[float] = field(default_factory=list)
    answers: dict[str, int] = field(default_factory=dict)
    connect_failures: int = 0
    open_now: int = 0
    opened: int = 0
    idle: dict[str, float] = field(default_factory=dict)
    cpu_pct_during: float = 0.0


def proc_stats(pid: int, ticks: float = os.sysconf("SC_CLK_TCK")) -> tuple[int, int, float]:
    """Open fds, RSS in KiB and CPU seconds (user + system) of process `pid`."""
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    rss = next(
        int(line.split()[1])
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if line.startswith("VmRSS:")
    )
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return fds, rss, (int(fields[11]) + int(fields[12])) / ticks


async def slow_client(port: int, run: Run, stop: asyncio.Event) -> None:
    """One slow client: a connection at a time, opened again `interval_s` after the server
    closed it if `run.reconnect` (as the original slowloris tool does)."""
    while not stop.is_set():
        if not await slow_connection(port, run, stop) or not run.reconnect:
            return
        with contextlib.suppress(TimeoutError):  # at most one connection per interval
            await asyncio.wait_for(stop.wait(), run.interval_s)


async def slow_connection(port: int, run: Run, stop: asyncio.Event) -> bool:
    """One slow connection until the server closes it (True) or `stop` is set (False)."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        run.connect_failures += 1
        return True
    opened = time.monotonic()
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    closed = asyncio.create_task(reader.read(4096))
    stopped = asyncio.create_task(stop.wait())
    run.open_now += 1
    run.opened += 1
    try:
        while not stop.is_set():
            done, _ = await asyncio.wait(
                {closed, stopped}, timeout=run.interval_s, return_when=asyncio.FIRST_COMPLETED
            )
            if closed in done:
                answer = closed.result() if closed.exception() is None else b""
                status = answer.split(b" ", 2)[1].decode() if answer.startswith(b"HTTP/") else ""
                run.answers[status or "closed"] = run.answers.get(status or "closed", 0) + 1
                run.closed_after_s.append(time.monotonic() - opened)
                return True
            if not stop.is_set():
                writer.write(b"a")
        return False
    finally:
        run.open_now -= 1
        closed.cancel()
        stopped.cancel()
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def probe(url: str, out: list[float], run: Run, until: asyncio.Event) -> None:
    """GET /healthz on a fresh connection every PROBE_EVERY_S until `until` is set."""
    async with httpx.AsyncClient(
        trust_env=False, timeout=5, limits=httpx.Limits(max_keepalive_connections=0)
    ) as http:
        while not until.is_set():
            began = time.perf_counter()
            try:
                answer = await http.get(f"{url}/healthz")
                answer.raise_for_status()
                out.append((time.perf_counter() - began) * 1000)
            except httpx.HTTPError:
                run.probe_failures += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(until.wait(), PROBE_EVERY_S)


async def attack(port: int, pid: int, run: Run) -> None:
    url = f"http://127.0.0.1:{port}"
    done = asyncio.Event()
    await asyncio.wait_for(probe(url, run.baseline_ms, run, _after(done, 3.0)), 10)
    fds, rss, _ = proc_stats(pid)
    run.idle = {"fds": fds, "rss_mib": round(rss / 1024, 1)}
    stop = asyncio.Event()
    probing = asyncio.create_task(probe(url, run.probe_ms, run, stop))
    started = time.monotonic()
    clients = [asyncio.create_task(slow_client(port, run, stop)) for _ in range(run.connections)]
    cpu0 = proc_stats(pid)[2]
    last_cpu, last_at = cpu0, started
    while (now := time.monotonic()) - started < run.duration_s + 0.01:
        await asyncio.sleep(SAMPLE_EVERY_S)
        fds, rss, cpu = proc_stats(pid)
        now = time.monotonic()
        run.samples.append(
            {
                "t_s": round(now - started, 1),
                "slow_open": run.open_now,
                "fds": fds,
                "rss_mib": round(rss / 1024, 1),
                "cpu_pct": round(100 * (cpu - last_cpu) / (now - last_at), 1),
            }
        )
        last_cpu, last_at = cpu, now
    run.cpu_pct_during = round(100 * (last_cpu - cpu0) / (last_at - started), 1)
    stop.set()
    await asyncio.gather(probing, *clients)


def _after(event: asyncio.Event, seconds: float) -> asyncio.Event:
    asyncio.get_running_loop().call_later(seconds, event.set)
    return event


@contextlib.contextmanager
def running_server(
    kind: str, workdir: Path, fd_limit: int | None = None
) -> Iterator[tuple[int, int]]:
    """Start `serve` (or the stock variant) on a free loopback port, with at most `fd_limit`
    open files if given (a PaaS container's `ulimit -n`); yield (port, pid)."""
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "AIMUSIC_BASE_URL": "http://127.0.0.1:9",
        "RELAY_SECRET_KEY": secrets.token_urlsafe(16),
        "DATABASE_URL": f"sqlite:///{workdir / 'relay.db'}",
        "RELAY_SPOOL_DIR": str(workdir / "spool"),
        "RELAY_LOG_LEVEL": "warning",
        "RELAY_LOG_FORMAT": "json",
        "PYTHONPATH": str(REPO),
    }
    args = ["-m", "receiver", "serve", "--port", str(port)] if kind == "serve" else ["-c", STOCK]
    with (workdir / "server.log").open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, *args],
            env=env,
            cwd=workdir,
            stdout=log,
            stderr=log,
            preexec_fn=None if fd_limit is None else lambda: _limit_files(fd_limit),
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((workdir / "server.log").read_text(errors="replace"))
            time.sleep(0.05)
        yield port, process.pid
    finally:
        process.terminate()
        process.wait(timeout=30)


async def flood_headers(port: int, pid: int, mib: int) -> dict[str, Any]:
    """One connection sends header lines as fast as it can (at most `mib` MiB, 8 s), then
    waits for the answer; the server's RSS before, after sending, and 1 s after the answer."""
    rss_before = proc_stats(pid)[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    line = b"X-Big: " + b"a" * 8000 + b"\r\n"
    sent, began = 0, time.monotonic()
    with contextlib.suppress(OSError):
        while sent < mib * 2**20 and time.monotonic() - began < 8:
            writer.write(line * 16)
            await writer.drain()
            sent += len(line) * 16
    took = time.monotonic() - began
    rss_sent = proc_stats(pid)[1]
    answer = b""
    with contextlib.suppress(OSError, TimeoutError):
        answer = await asyncio.wait_for(reader.read(200), HEADER_TIMEOUT_S + 5)
    answered = time.monotonic() - began
    writer.close()
    await asyncio.sleep(1)
    return {
        "sent_mib": round(sent / 2**20, 1),
        "send_s": round(took, 2),
        "answer": answer.split(b"\r\n", 1)[0].decode() or "(reset or none)",
        "answered_after_s": round(answered, 1),
        "rss_mib": {
            "before": round(rss_before / 1024, 1),
            "after_sending": round(rss_sent / 1024, 1),
            "1s_after_close": round(proc_stats(pid)[1] / 1024, 1),
        },
    }


def throughput(port: int, pid: int, seconds: int) -> dict[str, Any]:
    """What the header limits cost: wrk on GET /healthz over 16 keep-alive connections, then
    with a new connection per request; requests per second and server CPU per request."""
    result: dict[str, Any] = {}
    for name, extra in (("keep_alive", []), ("new_connection_each", ["-H", "Connection: close"])):
        cpu0 = proc_stats(pid)[2]
        done = subprocess.run(
            ["wrk", "-t1", "-c16", f"-d{seconds}s", *extra, f"http://127.0.0.1:{port}/healthz"],
            capture_output=True,
            text=True,
            timeout=seconds + 30,
            check=True,
        )
        cpu = proc_stats(pid)[2] - cpu0
        total = next(int(x.split()[0]) for x in done.stdout.splitlines() if "requests in" in x)
        rate = next(float(x.split()[1]) for x in done.stdout.splitlines() if "Requests/sec" in x)
        result[name] = {"req_per_s": round(rate), "cpu_us_per_req": round(1e6 * cpu / total, 1)}
    return result


def _limit_files(limit: int) -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))


def summary(run: Run) -> dict[str, Any]:
    def pct(values: list[float], q: float) -> float | None:
        if not values:
            return None
        return round(sorted(values)[min(len(values) - 1, int(q * len(values)))], 1)

    peak = max(run.samples, key=lambda s: s["fds"])
    return {
        "server": run.server,
        "connections": run.connections,
        "interval_s": run.interval_s,
        "duration_s": run.duration_s,
        "fd_limit": run.fd_limit,
        "reconnect": run.reconnect,
        "slow_connections_opened": run.opened,
        "baseline_probe_ms": {"p50": pct(run.baseline_ms, 0.5), "max": pct(run.baseline_ms, 1)},
        "probe_ms": {
            "n": len(run.probe_ms),
            "p50": pct(run.probe_ms, 0.5),
            "p99": pct(run.probe_ms, 0.99),
            "max": pct(run.probe_ms, 1),
        },
        "probe_failures": run.probe_failures,
        "idle": run.idle,
        "cpu_pct_during": run.cpu_pct_during,
        "slow_closed_by_server": len(run.closed_after_s),
        "closed_after_s": {
            "min": round(min(run.closed_after_s), 1),
            "median": round(statistics.median(run.closed_after_s), 1),
            "max": round(max(run.closed_after_s), 1),
        }
        if run.closed_after_s
        else None,
        "answers": run.answers,
        f"slow_open_at_{HEADER_TIMEOUT_S + 2:g}s": next(
            (x["slow_open"] for x in run.samples if x["t_s"] >= HEADER_TIMEOUT_S + 2), None
        ),
        "slow_open_at_end": run.samples[-1]["slow_open"],
        "peak": peak,
        "last": run.samples[-1],
        "connect_failures": run.connect_failures,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", choices=["serve", "stock"], default="serve")
    parser.add_argument("--connections", type=int, default=300)
    parser.add_argument("--interval", type=float, default=3.0, help="seconds between bytes")
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--fd-limit", type=int, help="the server's RLIMIT_NOFILE soft limit")
    parser.add_argument("--reconnect", action="store_true", help="reopen closed connections")
    parser.add_argument("--timeline", action="store_true", help="print every sample")
    parser.add_argument(
        "--flood-headers", type=int, metavar="MIB", help="instead: one fast client, MIB of headers"
    )
    parser.add_argument(
        "--throughput", type=int, metavar="S", help="instead: wrk on /healthz for S s (needs wrk)"
    )
    args = parser.parse_args()
    if not (1 <= args.connections <= 1000 and 0 < args.duration <= 60):
        parser.error("bounded runs only: at most 1000 connections for at most 60 s")
    if args.throughput is not None:
        with (
            tempfile.TemporaryDirectory(prefix="slowloris-") as workdir,
            running_server(args.server, Path(workdir)) as (port, pid),
        ):
            print(json.dumps({"server": args.server, **throughput(port, pid, args.throughput)}))
        return
    if args.flood_headers is not None:
        if not 1 <= args.flood_headers <= 1024:
            parser.error("--flood-headers: 1 to 1024 MiB")
        with (
            tempfile.TemporaryDirectory(prefix="slowloris-") as workdir,
            running_server(args.server, Path(workdir)) as (port, pid),
        ):
            result = asyncio.run(flood_headers(port, pid, args.flood_headers))
        print(json.dumps({"server": args.server, **result}, indent=2))
        return
    run = Run(
        args.server, args.connections, args.interval, args.duration, args.fd_limit, args.reconnect
    )
    with (
        tempfile.TemporaryDirectory(prefix="slowloris-") as workdir,
        running_server(args.server, Path(workdir), args.fd_limit) as (port, pid),
    ):
        asyncio.run(attack(port, pid, run))
    result = summary(run)
    if args.timeline:
        result["timeline"] = run.samples
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
