"""The polling fallback: learn a task's outcome when its callback is lost, late or impossible.

A poll answer becomes exactly the events a callback would have made (same normalisation,
same dedupe keys), so a callback and a poll — in either order, or at once — dispatch once.

Defaults (settings, env): grace 90 s before the first poll of a task that expects a callback
(the provider's callback normally arrives within seconds of completion, and songs take one to
several minutes, so polling earlier mostly wastes calls); backoff from 15 s (the provider
advises polling every 15 to 25 s) doubling to a 60 s cap, with jitter so tasks spread out; a
30-minute deadline, far beyond a normal generation, after which the task is `timed_out`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from receiver.delivery.dispatch import STORE_OUTAGE_BACKOFF, wait_any
from receiver.delivery.pacing import Pacer
from receiver.errors import (
    RateLimited,
    StoreUnavailable,
    TaskGone,
    TaskNotFound,
    Unauthorized,
    UpstreamError,
    UpstreamRejected,
)
from receiver.logging import get_logger
from receiver.models import TASK_LEVEL_CLIP, normalise
from receiver.retry import Backoff
from receiver.services import Services
from receiver.states import EventKind, Source, TaskState
from receiver.store import DuePoll, Inbound

__all__ = ["POLL_BASE_S", "Poller", "poll_interval"]

log = get_logger("aimusic_relay.poller")

POLL_BASE_S = 15.0
"""First backoff step; doubles per poll up to RELAY_POLL_MAX_INTERVAL_S."""

_NEVER = (TaskNotFound, Unauthorized, TaskGone, UpstreamRejected)
"""Answers that will not change by asking again: stop polling that task."""


def poll_interval(polls_so_far: int, base_s: float, cap_s: float) -> float:
    """Exponential backoff with equal jitter: never less than half the step, so tasks that
    started together drift apart without anyone polling in a tight loop."""
    return Backoff(base_s, cap_s, "equal").delay(polls_so_far)


class Poller:
    """Claims due tasks, asks the provider, records what it learns, times tasks out."""

    def __init__(
        self,
        services: Services,
        *,
        rate_per_s: float = 2.0,
        concurrency: int = 4,
        lease_s: float = 60.0,
        sweep_s: float = 5.0,
    ) -> None:
        self.services = services
        self.pacer = Pacer(rate_per_s)
        self.concurrency = concurrency
        self.lease_s = lease_s
        self.sweep_s = sweep_s
        settings = services.settings
        self.base_s = min(POLL_BASE_S, settings.relay_poll_max_interval_s)
        self.cap_s = settings.relay_poll_max_interval_s

    async def run(self, stop: asyncio.Event) -> None:
        wake = asyncio.Event()
        # A new task may be due sooner; deliveries are none of the poller's business.
        self.services.store.add_listener(wake.set, topic="polls")
        failures = 0
        while not stop.is_set():
            wake.clear()
            try:
                due = await self.services.store.claim_polls(self.concurrency, self.lease_s)
                failures = 0
            except StoreUnavailable as exc:
                failures += 1
                log.warning("store unavailable; poller backing off", error=str(exc))
                await wait_any(wake, stop, STORE_OUTAGE_BACKOFF.delay(failures))
                continue
            if due:
                await asyncio.gather(*(self._poll(task) for task in due))
                continue
            wait_s = self.sweep_s
            with contextlib.suppress(StoreUnavailable):
                next_due = await self.services.store.next_poll_due()
                if next_due is not None:
                    wait_s = max(0.0, min(wait_s, next_due - time.time()))
            await wait_any(wake, stop, wait_s)

    async def _poll(self, task: DuePoll) -> None:
        bound = log.bind(task_ref=task.id, task_id=task.upstream_id, family=task.family)
        try:
            await self._poll_once(task, bound)
        except StoreUnavailable as exc:
            bound.warning("could not record the poll; it will be retried", error=str(exc))
        except Exception:
            bound.exception("poll failed unexpectedly")
            self.services.metrics.poll("failed")
            with contextlib.suppress(StoreUnavailable):
                await self.services.store.poll_done(task.id, time.time() + self.cap_s)

    async def _poll_once(self, task: DuePoll, bound: Any) -> None:
        store, ref, now = self.services.store, task.id, time.time()
        metrics = self.services.metrics
        interval = poll_interval(task.poll_attempts, self.base_s, self.cap_s)
        if task.deadline_at is not None and now >= task.deadline_at:
            await self._time_out(task, bound)
            return
        if task.upstream_id is None:
            # The create call's outcome is unknown: without an id there is nothing to ask.
            # A callback (its URL names the task) reconciles it; otherwise the deadline does.
            await store.poll_done(ref, task.deadline_at)
            metrics.poll("waiting")
            return
        await self.pacer.wait()
        try:
            answer = await self.services.upstream.task(task.family, task.upstream_id)
        except RateLimited as exc:
            delay = max(exc.retry_after or 0.0, interval)
            self.pacer.hold(exc.retry_after or interval)
            bound.warning("poll rate-limited", retry_after_s=exc.retry_after)
            await store.poll_done(ref, now + delay)
            metrics.poll("rate_limited")
            return
        except _NEVER as exc:
            bound.warning("polling stopped", status=exc.status, error=exc.message)
            await store.poll_done(ref, None, error=f"polling stopped: {exc.message}")
            metrics.poll("stopped")
            return
        except UpstreamError as exc:
            bound.info("poll failed; will retry", status=exc.status, error=exc.message)
            await store.poll_done(ref, now + interval)
            metrics.poll("error")
            return
        clips = normalise(answer, None)
        found = False
        if clips:
            result = await store.record_inbound(
                Inbound(
                    source=Source.POLL,
                    body=answer.model_dump_json().encode(),
                    platform=task.platform,
                    clips=clips,
                    task_id=task.upstream_id,
                    task_ref=ref,
                    message=answer.message,
                ),
                self.services.handlers.route,
            )
            bound.info("poll found", events=len(result.event_ids), deliveries=result.deliveries)
            found = bool(result.event_ids)
        await store.poll_done(ref, now + interval)
        metrics.poll("found" if found else "pending")

    async def _time_out(self, task: DuePoll, bound: Any) -> None:
        store = self.services.store
        if task.upstream_id is None:
            reason = (
                "the create call's outcome stayed unknown and no callback came before the "
                "deadline; it was not re-sent (it may exist upstream: check your account)"
            )
        else:
            reason = "no final result before the task's deadline (RELAY_TASK_DEADLINE_S)"
        await store.record_inbound(
            Inbound(
                source=Source.POLL,
                body=b"",
                platform=task.platform,
                clips=[(EventKind.TIMED_OUT, TASK_LEVEL_CLIP, {"error": reason})],
                task_id=task.upstream_id,
                task_ref=task.id,
                message=reason,
            ),
            self.services.handlers.route,
        )
        if task.upstream_id is None:
            await store.task_state(task.id, TaskState.FAILED, reason)
        await store.poll_done(task.id, None, error=reason)
        self.services.metrics.poll("timed_out")
        bound.warning("task timed out", reason=reason)
