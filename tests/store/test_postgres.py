"""Scale-out on the machine's PostgreSQL: several web and worker processes, a crash, shutdown."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.pg_cluster import Cluster, make_payloads, send_callbacks

pytestmark = pytest.mark.slow

CALLBACKS = int(os.environ.get("RELAY_TEST_CALLBACKS", "1000"))


def test_many_processes_deliver_each_event_once_despite_a_killed_worker(
    tmp_path: Path, make_pg_url: Callable[[], str]
) -> None:
    """2 web + 3 worker processes, 1,000 callbacks (10% duplicates), one worker killed -9:
    every event reaches each handler, and the deliveries table holds one success per pair."""
    cluster = Cluster(tmp_path, make_pg_url())
    try:
        urls = [cluster.start_web(), cluster.start_web()]
        cluster.wait_ready()
        for _ in range(3):
            cluster.start_worker()
        payloads = make_payloads(CALLBACKS)
        distinct = CALLBACKS - CALLBACKS // 10
        victim = cluster.workers[1]

        started = time.time()
        statuses = asyncio.run(send_callbacks(urls, payloads, halfway=victim.kill9))
        accepted_s = time.time() - started
        assert {200} == set(statuses)
        finished = cluster.wait_drained(distinct * 2, timeout=60)
    finally:
        cluster.stop()
    assert victim.popen.returncode == -signal.SIGKILL

    rows = cluster.sql(
        "SELECT e.task_ref, d.handler, d.state, d.attempts FROM deliveries d "
        "JOIN events e ON e.id = d.event_id"
    )
    assert distinct * 2 == len(rows)
    assert {"succeeded"} == {state for _, _, state, _ in rows}
    assert distinct == len(cluster.sql("SELECT 1 FROM events"))
    retried = {(ref, handler) for ref, handler, _, attempts in rows if attempts > 1}
    for handler in cluster.handlers:
        seen = Counter(line["task_ref"] for line in cluster.recorded(handler))
        assert {ref for ref, h, _, _ in rows if h == handler} == set(seen)
        # At least once across a crash: a second run only where the killed worker held the lease.
        twice = {ref for ref, n in seen.items() if n > 1}
        assert twice <= {ref for ref, h in retried if h == handler}
    print(
        f"\n{CALLBACKS} callbacks ({distinct} distinct) accepted in {accepted_s:.2f} s "
        f"= {CALLBACKS / accepted_s:.0f}/s; {len(rows)} deliveries done in "
        f"{finished - started:.2f} s = {len(rows) / (finished - started):.0f}/s; "
        f"{len(retried)} retried after the kill"
    )


def test_sigterm_finishes_in_flight_releases_the_rest_and_exits_zero(
    tmp_path: Path, make_pg_url: Callable[[], str]
) -> None:
    """SIGTERM lets a short delivery finish, releases one that outlives the grace period, exit 0."""
    cluster = Cluster(tmp_path, make_pg_url(), handlers=["quick"], sleep_s=1.5)
    config = tmp_path / "relay.toml"
    config.write_text(
        config.read_text()
        + f'[[handlers]]\nname = "slow"\ntype = "tests.plugins:RecorderHandler"\n'
        f'log_file = "{tmp_path / "slow.jsonl"}"\nsleep_s = 30\n'
    )
    try:
        url = cluster.start_web()
        cluster.wait_ready()
        worker = cluster.start_worker(RELAY_SHUTDOWN_GRACE_S="3", RELAY_LEASE_S="60")
        assert [200] == asyncio.run(send_callbacks([url], make_payloads(1)))
        deadline = time.monotonic() + 30
        while cluster.sql("SELECT count(*) FROM deliveries WHERE state = 'running'") != [(2,)]:
            assert time.monotonic() < deadline, cluster.outputs()
            time.sleep(0.02)
        signalled = time.monotonic()
        worker.popen.send_signal(signal.SIGTERM)
        code = worker.popen.wait(timeout=20)
        took = time.monotonic() - signalled
        states = dict(cluster.sql("SELECT handler, state FROM deliveries"))
        [(released,)] = cluster.sql(
            "SELECT lease_until < extract(epoch from now()) FROM deliveries WHERE handler = 'slow'"
        )
    finally:
        cluster.stop()
    assert 0 == code, worker.output()
    assert took < 10
    assert {"quick": "succeeded", "slow": "running"} == states
    assert released, "the slow delivery's lease was not given up"
    assert 1 == len(cluster.recorded("quick"))
    assert [] == cluster.recorded("slow")
