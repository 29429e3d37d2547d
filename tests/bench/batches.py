"""Commit batch sizes: how many writes each committed store transaction held, read from the
relay's own `aimusic_relay_store_batch_size` histogram on `GET /metrics`.

Group commit is what lets one writer keep up with many concurrent callbacks, so the figure
says whether batching happens under load (a median of 1 at c16 means every callback paid for
its own commit). The relay's registry is cumulative since start, so a run is the difference of
two scrapes, and the warm-up is not counted. Older stores do not export the histogram: then
the figure is None and the run goes on, because this figure must never fail a benchmark.
"""

from __future__ import annotations

import math

import httpx
from prometheus_client.parser import text_string_to_metric_families

METRIC = "aimusic_relay_store_batch_size"

Buckets = dict[float, float]
"""Cumulative observation counts by bucket upper bound (`le`), +Inf included."""


def scrape(url: str) -> Buckets | None:
    """The histogram's buckets (summed over any labels) from `url`/metrics; {} if the relay
    answers without the metric, None if /metrics could not be read or parsed."""
    try:
        answer = httpx.get(f"{url}/metrics", timeout=10)
        if answer.status_code != 200:
            return None
        buckets: Buckets = {}
        for family in text_string_to_metric_families(answer.text):
            for sample in family.samples:
                if sample.name == f"{METRIC}_bucket":
                    bound = float(sample.labels["le"])
                    buckets[bound] = buckets.get(bound, 0.0) + sample.value
    except (httpx.HTTPError, ValueError, KeyError):
        return None
    return buckets


def summary(before: Buckets | None, after: Buckets | None) -> dict[str, float | int | None] | None:
    """Median and p90 batch size of the observations between two scrapes, each the upper
    bound of the bucket where the cumulative count crosses 50 % / 90 % (None when that is the
    +Inf bucket, i.e. above the largest bound), and how many commits there were. None when
    the relay does not export the histogram."""
    if not after:
        return None
    earlier = before or {}
    delta = {bound: count - earlier.get(bound, 0.0) for bound, count in after.items()}
    commits = delta.get(math.inf, max(delta.values()))

    def quantile(q: float) -> float | None:
        if commits <= 0:
            return None
        for bound in sorted(delta):
            if delta[bound] >= q * commits:
                return None if math.isinf(bound) else bound
        return None

    return {"median": quantile(0.5), "p90": quantile(0.9), "commits": int(commits)}
