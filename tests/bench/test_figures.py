"""The benchmark's arithmetic, without running a benchmark: commit batch quantiles from a
Prometheus histogram, the key names the JSON contract fixes, and the report's verdicts.
Nothing here measures time, so it runs with the ordinary test suite."""

from __future__ import annotations

import math

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from tests.bench import batches, ingest, report
from tests.servers import run_asgi


def _metrics_app(registry: CollectorRegistry | None) -> Starlette:
    async def metrics(request: Request) -> Response:
        text = generate_latest(registry).decode() if registry is not None else "# nothing\n"
        return PlainTextResponse(text)

    return Starlette(routes=[Route("/metrics", metrics)])


def test_batch_quantiles_are_bucket_bounds_of_the_run_only() -> None:
    registry = CollectorRegistry()
    histogram = Histogram(
        batches.METRIC, "writes per commit", ["kind"], buckets=(1, 2, 4, 8, 16), registry=registry
    )
    with run_asgi(_metrics_app(registry)) as url:
        for _ in range(50):  # the warm-up: must not be counted
            histogram.labels("ingest").observe(1)
        before = batches.scrape(url)
        for size in [1, 1, 3, 3, 3, 3, 3, 10, 10]:
            histogram.labels("ingest").observe(size)
        histogram.labels("dispatch").observe(100)  # labels are summed; above every bound
        after = batches.scrape(url)
    assert batches.summary(before, after) == {"median": 4.0, "p90": 16.0, "commits": 10}


def test_p90_above_the_largest_bucket_is_none() -> None:
    before = {1.0: 0.0, 2.0: 0.0, math.inf: 0.0}
    after = {1.0: 1.0, 2.0: 1.0, math.inf: 10.0}
    assert batches.summary(before, after) == {"median": None, "p90": None, "commits": 10}


def test_a_store_without_the_histogram_gives_none() -> None:
    with run_asgi(_metrics_app(None)) as url:
        assert batches.scrape(url) == {}
        assert batches.summary(batches.scrape(url), batches.scrape(url)) is None
    assert batches.scrape("http://127.0.0.1:9") is None  # nothing listens: still no failure
    assert batches.summary(None, None) is None


def test_c16_keys_stay_as_they_were_and_c64_gets_a_suffix() -> None:
    bare = {"rps": 1000.0, "cpu_ms_per_request": 0.05}
    relay = {"rps": 100.0, "cpu_ms_per_request": 0.5, "commit_batch": None}
    narrow = ingest.Load(duration_s=1)
    wide = ingest.Load(duration_s=1, connections=ingest.WIDE)
    c16 = ingest._ratios("sqlite", narrow.suffix, bare, {**relay, "cpu_ms_per_callback": 0.7})
    assert set(c16) == {
        "ingest_bare_sqlite",
        "ingest_relay_sqlite",
        "ingest_ratio_sqlite",
        "ingest_cpu_ratio_sqlite",
        "commit_batch_sqlite",
        "cpu_ms_per_callback_sqlite",
    }
    assert c16["ingest_ratio_sqlite"] == 0.1
    c64 = ingest._ratios("postgres", wide.suffix, bare, relay)
    assert set(c64) == {
        "ingest_bare_postgres_c64",
        "ingest_relay_postgres_c64",
        "ingest_ratio_postgres_c64",
        "ingest_cpu_ratio_postgres_c64",
    }


def test_verdicts_use_each_targets_operator() -> None:
    assert "met" in report._verdict("cpu_ms_per_callback_sqlite", 0.4)
    assert "missed" in report._verdict("cpu_ms_per_callback_sqlite", 0.41)
    assert "met" in report._verdict("dispatch_rate_postgres", 5000)
    assert "missed" in report._verdict("dispatch_p99_ms", 30)
    assert report._verdict("ingest_ratio_sqlite_c64", 0.01) == ""  # no target: no verdict
