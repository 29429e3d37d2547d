"""Flat memory: relay one large audio file through the disk and S3 handlers and compare the
relay's peak RSS (VmHWM) before and after. Downloads stream to a spool file, the disk handler
moves it, the S3 handler uploads it in parts, so the peak must not grow with the file."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3  # type: ignore[import-untyped]  # no type information shipped
import httpx

from tests.bench import procs
from tests.conftest import REPO
from tests.s3_server import FAKE_CREDENTIALS, UNSET
from tests.servers import free_port

BUCKET = "bench-songs"
WARMUP_BYTES = 1024 * 1024
"""A first, small song loads boto3 and the handlers, so their import cost is not counted."""


@contextlib.contextmanager
def _server(args: list[str], url: str, log: Path) -> Iterator[str]:
    with log.open("ab") as out:
        popen = subprocess.Popen(args, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(url, timeout=1)
                break
            if time.monotonic() > deadline or popen.poll() is not None:
                raise RuntimeError(f"{args[0]} did not start: {log.read_text()[-2000:]}")
            time.sleep(0.1)
        yield url
    finally:
        popen.terminate()
        popen.wait(timeout=15)


@contextlib.contextmanager
def _fake_aws(workdir: Path) -> Iterator[None]:
    """moto's fake credentials for this process and its children, never the user's own."""
    saved = dict(os.environ)
    for name in UNSET:
        os.environ.pop(name, None)
    os.environ.update(FAKE_CREDENTIALS)
    (workdir / "aws").write_text("")
    os.environ["AWS_CONFIG_FILE"] = os.environ["AWS_SHARED_CREDENTIALS_FILE"] = str(workdir / "aws")
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _config(workdir: Path, s3_url: str) -> str:
    return (
        f'[[handlers]]\nname = "disk"\ntype = "disk"\npath = "{workdir / "songs"}"\n'
        "cover = false\ntimeout_s = 900\n\n"
        f'[[handlers]]\nname = "s3"\ntype = "s3"\nbucket = "{BUCKET}"\n'
        f'endpoint_url = "{s3_url}"\ntimeout_s = 900\n'
    )


def _wait_delivered(database: Path, expected: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with sqlite3.connect(database) as conn:
            states = dict(conn.execute("SELECT state, count(*) FROM deliveries GROUP BY state"))
        if states.get("succeeded", 0) >= expected:
            return
        if states.get("dead") or time.monotonic() > deadline:
            with sqlite3.connect(database) as conn:
                errors = conn.execute("SELECT handler, last_error FROM deliveries").fetchall()
            raise RuntimeError(f"deliveries not done: {states} {errors}")
        time.sleep(0.2)


def run(workdir: Path, size_bytes: int) -> dict[str, Any]:
    workdir.mkdir()
    database = workdir / "relay.db"
    audio_port, s3_port = free_port(), free_port()
    audio_args = [sys.executable, "-m", "tests.bench.audio", "--port", str(audio_port)]
    s3_args = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(s3_port)]
    audio = f"http://127.0.0.1:{audio_port}"
    with (
        _fake_aws(workdir),
        _server(audio_args, f"{audio}/0.mp3", workdir / "audio.log"),
        _server(s3_args, f"http://127.0.0.1:{s3_port}", workdir / "moto.log") as s3_url,
    ):
        s3 = boto3.client("s3", endpoint_url=s3_url)
        s3.create_bucket(Bucket=BUCKET)
        env = procs.relay_env(
            workdir,
            f"sqlite:///{database}",
            _config(workdir, s3_url),
            RELAY_ALLOW_PRIVATE_NETWORKS="true",
        )
        with procs.relay(workdir, env) as (url, pid):
            procs.send_callback(url, "warm-up", f"{audio}/{WARMUP_BYTES}.mp3")
            _wait_delivered(database, 2, timeout=120)
            before = procs.peak_rss_mb(pid)
            started = time.monotonic()
            procs.send_callback(url, "big", f"{audio}/{size_bytes}.mp3")
            _wait_delivered(database, 4, timeout=900)
            took = time.monotonic() - started
            after = procs.peak_rss_mb(pid)
        objects = s3.list_objects_v2(Bucket=BUCKET)["Contents"]
        uploaded = max(o["Size"] for o in objects)
    on_disk = max(p.stat().st_size for p in (workdir / "songs").rglob("*.mp3"))
    if not uploaded == on_disk == size_bytes:
        raise RuntimeError(f"sizes differ: sent {size_bytes}, disk {on_disk}, s3 {uploaded}")
    return {
        "stream_file_mb": round(size_bytes / 2**20, 1),
        "stream_rss_before_mb": round(before, 1),
        "stream_rss_after_mb": round(after, 1),
        "stream_rss_growth_mb": round(after - before, 1),
        "stream_seconds": round(took, 1),
        "stream_mb_per_s": round(size_bytes / 2**20 / took, 1),
    }


if __name__ == "__main__":  # a quick look: python -m tests.bench.memory <MB>
    import tempfile

    directory = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    print(json.dumps(run(directory / "m", int(sys.argv[1]) * 2**20), indent=2))
