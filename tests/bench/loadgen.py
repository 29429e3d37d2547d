"""Load generation with wrk: pre-signed callbacks written to a file, cycled by a Lua script.

Why wrk and not a Python client: on a 2-core machine a Python load generator saturates its
own core long before uvicorn does, so it would measure itself. wrk (C, epoll) costs a
fraction of that, and costs the bare app and the relay the same.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from receiver.signing import sign_callback

LUA = Path(__file__).with_name("requests.lua")
INSTALL_HINT = (
    "wrk is not installed: `apt-get install -y wrk` (Debian/Ubuntu) or `brew install wrk`"
)


@dataclass(frozen=True, slots=True)
class WrkResult:
    """What one wrk run measured; `accepted` counts 2xx answers only."""

    requests: int
    accepted: int
    errors: int
    duration_s: float
    p50_ms: float
    p99_ms: float
    wrapped: int
    """How often a thread ran out of distinct requests and started again (duplicates)."""

    @property
    def rps(self) -> float:
        return self.accepted / self.duration_s

    def as_dict(self) -> dict[str, Any]:
        return {
            "rps": round(self.rps, 1),
            "p50_ms": round(self.p50_ms, 2),
            "p99_ms": round(self.p99_ms, 2),
            "requests": self.requests,
            "accepted": self.accepted,
            "errors": self.errors,
            "duration_s": round(self.duration_s, 2),
        }


def require_wrk() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise SystemExit(INSTALL_HINT)
    return path


def callback(run: str, i: int) -> dict[str, Any]:
    """A completion callback for external task `<run>-<i>` (one clip, no audio to fetch)."""
    return {
        "code": 200,
        "task_id": f"{run}-{i}",
        "platform": "producer",
        "event": "song.completed",
        "data": [{"clip_id": f"{run}-c{i}", "state": "succeeded", "title": f"song {i}"}],
    }


def write_requests(path: Path, count: int, secret: str) -> Path:
    """`count` distinct signed callbacks, timestamped now (the relay accepts ±300 s)."""
    run = secrets.token_hex(4)
    now = int(time.time())
    lines = []
    for i in range(count):
        body = json.dumps(callback(run, i), separators=(",", ":")).encode()
        signature = sign_callback(secret, now, body)
        lines.append(f"{run}-{i}\t{now}\t{signature}\t{body.decode()}\n")
    path.write_text("".join(lines))
    return path


def run_wrk(
    url: str, requests_file: Path, *, duration_s: float, connections: int, threads: int = 1
) -> WrkResult:
    """One wrk run against `url`; latency percentiles from wrk's own (corrected) histogram."""
    command = [
        require_wrk(),
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration_s))}s",  # wrk takes whole seconds
        "--timeout",
        "10s",
        "-s",
        str(LUA),
        url,
        "--",
        str(requests_file),
        str(threads),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=duration_s + 60)
    line = next((x for x in done.stdout.splitlines() if x.startswith("BENCH ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout}\n{done.stderr}")
    stats = json.loads(line[len("BENCH ") :])
    errors = sum(
        stats[k] for k in ("non_2xx", "connect_errors", "read_errors", "write_errors", "timeouts")
    )
    return WrkResult(
        requests=stats["requests"],
        accepted=stats["requests"] - stats["non_2xx"],
        errors=errors,
        duration_s=stats["duration_us"] / 1e6,
        p50_ms=stats["p50_us"] / 1000,
        p99_ms=stats["p99_us"] / 1000,
        wrapped=stats["wrapped"],
    )
