"""Prometheus metrics for one relay process, on a registry the app owns (never the global one).

Counters and histograms count what *this process* did: with several web or worker processes,
scrape each one (or sum them). The queue gauges (depth, depth per handler, dead letters) are
read from the shared database at scrape time, so every process reports the same queue.

prometheus-client's `*_created` series (one per counter and histogram, a timestamp each) are
left out of the exposition: they double the series count and no chart uses them. They are
filtered from this registry's output rather than switched off process-wide, so nothing global
changes.

`/metrics` is unauthenticated by convention, so nothing here may carry a secret: labels are
fixed outcome codes, configured handler *names* (never their options or URLs) and HTTP
status codes.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import Metric

from receiver import __version__
from receiver.errors import StoreUnavailable
from receiver.states import DeliveryState
from receiver.store.base import Store

__all__ = [
    "CALLBACK_OUTCOMES",
    "DELIVERY_OUTCOMES",
    "POLL_RESULTS",
    "Metrics",
]

CALLBACK_OUTCOMES = (
    "accepted",
    "duplicate",
    "too_large",
    "timeout",
    "unsupported_media_type",
    "no_secret",
    "missing_signature",
    "bad_timestamp",
    "stale_timestamp",
    "bad_signature",
    "bad_token",
    "bad_payload",
    "too_many_clips",
    "wrong_route",
    "task_conflict",
    "store_unavailable",
)
"""The webhook route's answers: 200 `status`, or the `error` code of a refusal."""

DELIVERY_OUTCOMES = ("succeeded", "retry", "dead", "lost")
"""One handler run ended: done, failed and scheduled again, dead-lettered, or lost (its lease
ran out and another worker took the delivery over, so this run's outcome was not kept)."""

POLL_RESULTS = (
    "found",
    "pending",
    "rate_limited",
    "stopped",
    "error",
    "waiting",
    "timed_out",
    "failed",
)
"""One poll of a task: new events, nothing new yet, 429, polling given up for good, an upstream
failure to retry, no upstream id to ask with (create outcome unknown), deadline passed, a bug."""

_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
"""Writes per committed transaction; the writer takes at most 256 (`writer.MAX_BATCH`)."""
_COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)

_DELIVERY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


@dataclasses.dataclass(frozen=True, slots=True)
class Metrics:
    """Every instrument of one process, registered on `registry`."""

    registry: CollectorRegistry
    callbacks: Counter
    ingest_seconds: Histogram
    deliveries: Counter
    delivery_seconds: Histogram
    polls: Counter
    upstream_errors: Counter
    ignored_event_headers: Counter
    queue_depth: Gauge
    queue_depth_by_handler: Gauge
    dead_letters: Gauge
    oldest_pending_age: Gauge
    build_info: Gauge
    store_batch_size: Histogram
    store_commit_seconds: Histogram
    handlers: tuple[str, ...] = ()
    """The configured handler names: each gets its series even before its first delivery."""

    @classmethod
    def create(cls, handlers: Iterable[str] = ()) -> Metrics:
        """A fresh registry; known label values start at 0 so a rate() has a baseline."""
        registry = CollectorRegistry(auto_describe=True)
        names = tuple(handlers)
        metrics = cls(
            registry=registry,
            handlers=names,
            callbacks=Counter(
                "aimusic_relay_callbacks",
                "Webhook callbacks answered, by outcome (accepted, duplicate, or the error code).",
                ["outcome"],
                registry=registry,
            ),
            ingest_seconds=Histogram(
                "aimusic_relay_ingest_seconds",
                "Webhook request start to answer, for accepted and duplicate callbacks.",
                registry=registry,
            ),
            deliveries=Counter(
                "aimusic_relay_deliveries",
                "Handler runs finished, by handler and outcome (succeeded, retry, dead, lost).",
                ["handler", "outcome"],
                registry=registry,
            ),
            delivery_seconds=Histogram(
                "aimusic_relay_delivery_seconds",
                "Time one handler run took, by handler.",
                ["handler"],
                buckets=_DELIVERY_BUCKETS,
                registry=registry,
            ),
            polls=Counter(
                "aimusic_relay_polls",
                "Polls of the provider for a task's outcome, by result.",
                ["result"],
                registry=registry,
            ),
            upstream_errors=Counter(
                "aimusic_relay_upstream_errors",
                "Failed exchanges with the AI Music API, by HTTP status or transport failure.",
                ["status"],
                registry=registry,
            ),
            ignored_event_headers=Counter(
                "aimusic_relay_callback_event_header_ignored",
                "Signed callbacks whose unsigned X-Webhook-Event header contradicted the body"
                " (the body decided).",
                registry=registry,
            ),
            queue_depth=Gauge(
                "aimusic_relay_queue_depth",
                "Deliveries pending or running, read from the database at scrape time.",
                registry=registry,
            ),
            queue_depth_by_handler=Gauge(
                "aimusic_relay_queue_depth_by_handler",
                "Deliveries pending or running per handler, read at scrape time.",
                ["handler"],
                registry=registry,
            ),
            dead_letters=Gauge(
                "aimusic_relay_dead_letters",
                "Deliveries dead-lettered now (until replayed), read at scrape time.",
                registry=registry,
            ),
            build_info=Gauge(
                "aimusic_relay_build_info",
                "Always 1; the `version` label is the running relay's version.",
                ["version"],
                registry=registry,
            ),
            oldest_pending_age=Gauge(
                "aimusic_relay_oldest_pending_age_seconds",
                "Age of the oldest pending delivery (0 when none), read at scrape time.",
                registry=registry,
            ),
            store_batch_size=Histogram(
                "aimusic_relay_store_batch_size",
                "Writes (ingests, claims, finishes, ...) committed together in one transaction.",
                buckets=_BATCH_BUCKETS,
                registry=registry,
            ),
            store_commit_seconds=Histogram(
                "aimusic_relay_store_commit_seconds",
                "One write transaction, from its start to its commit.",
                buckets=_COMMIT_BUCKETS,
                registry=registry,
            ),
        )
        for outcome in CALLBACK_OUTCOMES:
            metrics.callbacks.labels(outcome)
        for handler in names:
            metrics.delivery_seconds.labels(handler)
            for outcome in DELIVERY_OUTCOMES:
                metrics.deliveries.labels(handler, outcome)
        for result in POLL_RESULTS:
            metrics.polls.labels(result)
        metrics.build_info.labels(__version__).set(1)
        return metrics

    def callback(self, outcome: str, seconds: float) -> None:
        """The webhook route answered; only stored callbacks feed the ingest histogram."""
        self.callbacks.labels(outcome).inc()
        if outcome in ("accepted", "duplicate"):
            self.ingest_seconds.observe(seconds)

    def delivery(self, handler: str, outcome: str, seconds: float | None = None) -> None:
        """A handler run ended; `seconds` is None when the handler never ran."""
        self.deliveries.labels(handler, outcome).inc()
        if seconds is not None:
            self.delivery_seconds.labels(handler).observe(seconds)

    def store_commit(self, writes: int, seconds: float) -> None:
        """The store's writer committed a transaction holding `writes` writes."""
        self.store_batch_size.observe(writes)
        self.store_commit_seconds.observe(seconds)

    def poll(self, result: str) -> None:
        self.polls.labels(result).inc()

    def upstream_error(self, status: str) -> None:
        """The upstream client's observer: `status` is "429", "503", "timeout", "connect"..."""
        self.upstream_errors.labels(status).inc()

    async def render(self, store: Store) -> bytes:
        """The text exposition, with the queue gauges read now; NaN when the store is down."""
        try:
            depth, oldest_at = await store.reads.queue_stats()
            queued = await store.reads.queue_by_handler()
        except StoreUnavailable:
            for gauge in (self.queue_depth, self.oldest_pending_age, self.dead_letters):
                gauge.set(math.nan)
            for handler in self.handlers:
                self.queue_depth_by_handler.labels(handler).set(math.nan)
        else:
            self.queue_depth.set(depth)
            age = 0.0 if oldest_at is None else max(0.0, time.time() - oldest_at)
            self.oldest_pending_age.set(age)
            self._set_per_handler(queued)
        return generate_latest(_WithoutCreated(self.registry))

    def _set_per_handler(self, queued: dict[tuple[str, str], int]) -> None:
        """Every configured handler gets a value (0 when idle); a handler no longer configured
        but still holding rows shows too, and disappears once it has none."""
        depth = dict.fromkeys(self.handlers, 0)
        for (handler, state), count in queued.items():
            if state != DeliveryState.DEAD:
                depth[handler] = depth.get(handler, 0) + count
        self.queue_depth_by_handler.clear()
        for handler, count in depth.items():
            self.queue_depth_by_handler.labels(handler).set(count)
        self.dead_letters.set(
            sum(n for (_, state), n in queued.items() if state == DeliveryState.DEAD)
        )


class _WithoutCreated:
    """A registry's view without the `*_created` samples (see the module docstring)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterator[Metric]:
        for metric in self._registry.collect():
            # collect() builds fresh Metric objects each time, so trimming them is safe.
            metric.samples = [s for s in metric.samples if not s.name.endswith("_created")]
            yield metric
