"""The worker loop: claim due deliveries, run each handler with a timeout, retry or dead-letter.

Shaped like procrastinate's worker: drain what is due, then wait for a wake-up *or* the next
due time *or* a slow sweep *or* the stop signal. A wake-up only shortens the wait; the sweep
always runs, so no delivery depends on a notification arriving.

A claim brings everything a handler reads (see `receiver.store.outbox`), so a delivery costs
the store nothing between its claim and its finish; claims take as many deliveries as there
are free slots, finishes from many deliveries share the writer's transactions, and one
renewal task keeps every in-flight lease alive (not a timer per delivery).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import socket
import time
import uuid
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import httpx

from handlers.base import HandlerContext, HandlerError
from receiver.config import is_public_https
from receiver.delivery.alerts import DeadNotice
from receiver.delivery.handler_set import ConfiguredHandler, HandlerSet
from receiver.delivery.pacing import Pacer
from receiver.delivery.spool import DownloadPolicy, Spool
from receiver.errors import LeaseLost, StoreUnavailable
from receiver.logging import get_logger
from receiver.metrics import Metrics
from receiver.retry import Backoff
from receiver.states import DeliveryState, FinishState
from receiver.store import Claim, DeadAlert, Finish, Store

__all__ = ["STORE_OUTAGE_BACKOFF", "Dispatcher", "wait_any"]

log = get_logger("aimusic_relay.dispatch")

STORE_OUTAGE_BACKOFF = Backoff(1.0, 30.0, "none")
"""The dispatcher's and poller's wait while the database is down: 1 s doubling to 30 s, no
jitter (one loop per process; a wake-up or the stop signal still cuts it short)."""


class Dispatcher:
    """Runs deliveries from the store's outbox through the configured handlers."""

    def __init__(
        self,
        store: Store,
        handlers: HandlerSet,
        http: httpx.AsyncClient,
        *,
        spool_root: Path,
        download_policy: DownloadPolicy,
        public_url: str,
        concurrency: int = 64,
        lease_s: float = 60.0,
        sweep_s: float = 5.0,
        shutdown_grace_s: float = 25.0,
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.handlers = handlers
        self.http = http
        self.spool_root = spool_root
        self.download_policy = download_policy
        self.public_url = public_url
        self.concurrency = concurrency
        self.lease_s = lease_s
        self.sweep_s = sweep_s
        self.shutdown_grace_s = shutdown_grace_s
        self.metrics = metrics or Metrics.create(h.name for h in handlers)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._wake = asyncio.Event()
        self._running: set[asyncio.Task[None]] = set()
        self._claimed: dict[asyncio.Task[None], Claim] = {}
        self._recording: set[str] = set()
        """Deliveries whose outcome is being written: a lost lease there is `finish`'s to say."""
        self._per_handler = {h.name: asyncio.Semaphore(h.spec.concurrency) for h in handlers}
        self._pacers = {
            h.name: Pacer(h.spec.rate_limit_per_s) for h in handlers if h.spec.rate_limit_per_s
        }
        self._paused_until: dict[str, float] = {}
        self._next_due: float | None = None
        """When the store said the next delivery is due, as of the last short claim."""
        self._task_url_base = f"{public_url}/admin/tasks/" if is_public_https(public_url) else None
        store.add_listener(self.wake)

    def wake(self) -> None:
        """Something became due: stop waiting (thread-safe enough for the event loop)."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Work until `stop` is set; then claim nothing more, give in-flight deliveries up to
        `shutdown_grace_s` to finish, and release the rest (a PaaS restart sends SIGTERM and
        kills ~30 s later: released deliveries are taken over at once, not after a lease)."""
        log.info("dispatcher started", owner=self.owner, handlers=[h.name for h in self.handlers])
        keeper = asyncio.create_task(self._keep_leases(), name="lease-keeper")
        try:
            await self._loop(stop)
        finally:
            await self._finish_in_flight()
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
        log.info("dispatcher stopped", owner=self.owner)

    async def _loop(self, stop: asyncio.Event) -> None:
        failures = 0
        while not stop.is_set():
            self._wake.clear()
            try:
                await self._drain(stop)
                timeout = self._idle_timeout()
                failures = 0
            except StoreUnavailable as exc:
                failures += 1
                timeout = STORE_OUTAGE_BACKOFF.delay(failures)
                log.warning("store unavailable; backing off", error=str(exc), retry_in_s=timeout)
            await wait_any(self._wake, stop, timeout)

    async def _finish_in_flight(self) -> None:
        if not self._running:
            return
        log.info("finishing in-flight deliveries", count=len(self._running))
        _, late = await asyncio.wait(set(self._running), timeout=self.shutdown_grace_s)
        if not late:
            return
        delivery_ids = [self._claimed[task].delivery_id for task in late]
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
        try:
            released = await self.store.release(delivery_ids, self.owner)
        except StoreUnavailable as exc:
            # Their leases still run out by themselves: later, but nothing is lost.
            log.warning("could not release deliveries", error=str(exc), count=len(late))
            return
        log.warning("released unfinished deliveries at shutdown", count=released)

    async def _drain(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            free = self.concurrency - len(self._running)
            if free <= 0:
                await asyncio.wait(self._running, return_when=asyncio.FIRST_COMPLETED)
                continue
            claimed = await self.store.claim_due(self.owner, free, self.lease_s, self._paused())
            self._next_due = claimed.next_due_at
            for claim in claimed.claims:
                task = asyncio.create_task(self._deliver(claim))
                self._running.add(task)
                self._claimed[task] = claim
                task.add_done_callback(self._forget)
            if len(claimed.claims) < free:
                return

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        claim = self._claimed.pop(task, None)
        if claim is not None:
            self._recording.discard(claim.delivery_id)

    def _paused(self) -> list[str]:
        """Handlers a destination asked us to leave alone for a while (Retry-After)."""
        now = time.time()
        for name, until in list(self._paused_until.items()):
            if until <= now:
                del self._paused_until[name]
        return list(self._paused_until)

    def _idle_timeout(self) -> float:
        self._paused()
        wake_at = [time.time() + self.sweep_s, *self._paused_until.values()]
        if self._next_due is not None:
            wake_at.append(self._next_due)
        return max(0.0, min(wake_at) - time.time())

    async def _deliver(self, claim: Claim) -> None:
        event = claim.event
        bound = log.bind(
            delivery_id=claim.delivery_id,
            event_id=event.id,
            task_id=event.task_id,
            clip_id=event.clip_id,
            kind=event.kind,
            handler=claim.handler,
            attempt=claim.attempt,
        )
        configured = self.handlers.get(claim.handler)
        try:
            if configured is None:
                error = f"handler {claim.handler!r} is no longer configured"
                await self._record(claim, _Outcome(DeliveryState.DEAD, error=error, blame="relay"))
                self.metrics.delivery(claim.handler, "dead")
                bound.error("delivery dead: handler not configured")
                return
            # The lease is held from the claim on (see `_keep_leases`): waiting for a slot
            # or the rate limit does not let it expire. The slot is the destination's: it is
            # given back when the handler returns, before the outcome is written.
            async with self._per_handler[claim.handler]:
                pacer = self._pacers.get(claim.handler)
                if pacer is not None:
                    await pacer.wait()
                outcome = await self._run_handler(claim, configured, bound)
            await self._record(claim, outcome)
            self.metrics.delivery(claim.handler, outcome.metric, outcome.seconds)
            outcome.log(bound)
        except StoreUnavailable as exc:
            # The lease will expire and another attempt will run: nothing is lost.
            bound.warning("could not record the delivery outcome", error=str(exc))
        except LeaseLost:
            self._lease_lost(claim, bound)
        except Exception:
            bound.exception("dispatcher error")

    async def _record(self, claim: Claim, outcome: _Outcome) -> None:
        """Write the attempt's outcome (a dead letter with its `delivery.dead` alert); the
        last delivery of an event removes its spool. `LeaseLost` when another worker took
        the delivery over: nothing was written."""
        self._recording.add(claim.delivery_id)
        finished = await self.store.finish(
            Finish(
                claim.delivery_id,
                self.owner,
                claim.attempt,
                outcome.state,
                outcome.error,
                outcome.blame,
                outcome.retry_at,
                outcome.result,
                self._dead_alert(claim, outcome) if outcome.state == DeliveryState.DEAD else None,
            )
        )
        if finished.event_settled:
            spool = Spool(self.spool_root, claim.event.id, self.http, self.download_policy)
            if spool.exists():
                await asyncio.to_thread(spool.cleanup)

    def _dead_alert(self, claim: Claim, outcome: _Outcome) -> DeadAlert | None:
        """The alert for this dead letter, or None when no handler takes it."""
        event = claim.event
        targets = self.handlers.route_dead(event.kind, claim.handler, event.platform, event.labels)
        if not targets:
            return None
        configured = self.handlers.get(claim.handler)
        notice = DeadNotice.for_death(
            event,
            handler=claim.handler,
            handler_type=configured.spec.type if configured is not None else "",
            delivery_id=claim.delivery_id,
            error=outcome.error or "unknown error",
            blame=outcome.blame or "relay",
            attempts=claim.attempt,
            public_url=self.public_url,
        )
        return DeadAlert(event, notice.as_clip(), tuple(targets))

    async def _run_handler(
        self, claim: Claim, configured: ConfiguredHandler, bound: Any
    ) -> _Outcome:
        spec = configured.spec
        event = claim.event
        ctx = HandlerContext(
            http=self.http,
            spool=Spool(self.spool_root, event.id, self.http, self.download_policy),
            log=bound,
            public_url=self.public_url,
            delivery_id=claim.delivery_id,
            attempt=claim.attempt,
            results=claim.results,
            previous_result=claim.previous_result,
            task_results=claim.task_results,
            task_url=self._task_url_base + event.task_ref
            if self._task_url_base and event.task_ref
            else None,
        )
        started = time.monotonic()
        bound.info("delivery started")
        try:
            async with asyncio.timeout(spec.timeout_s):
                result = await configured.handler.handle(claim.event, ctx)
        except HandlerError as exc:
            return self._failed(
                claim, configured, exc.message, exc.blame, exc.retryable, exc.retry_after, started
            )
        except TimeoutError:
            error = f"timed out after {spec.timeout_s:g} s"
            return self._failed(claim, configured, error, "unavailable", True, None, started)
        except Exception as exc:
            bound.exception("handler raised an unexpected error")
            error = f"{type(exc).__name__}: {exc}"
            return self._failed(claim, configured, error, "relay", True, None, started)
        return _Outcome(
            DeliveryState.SUCCEEDED,
            seconds=time.monotonic() - started,
            result=dict(result) if result else None,
        )

    def _failed(
        self,
        claim: Claim,
        configured: ConfiguredHandler,
        error: str,
        blame: str,
        retryable: bool,
        retry_after: float | None,
        started: float,
    ) -> _Outcome:
        seconds = time.monotonic() - started
        if retry_after:
            # The destination asked for quiet: pause the whole handler, not just this delivery.
            until = time.time() + retry_after
            self._paused_until[claim.handler] = max(until, self._paused_until.get(claim.handler, 0))
        exhausted = claim.attempt >= configured.spec.max_attempts
        if retryable and not exhausted:
            delay = configured.retry_delay(claim.attempt, retry_after)
            return _Outcome(
                DeliveryState.PENDING,
                seconds=seconds,
                error=error,
                blame=blame,
                retry_at=time.time() + delay,
                retry_in_s=delay,
            )
        why = "attempts exhausted" if retryable else "permanent error"
        return _Outcome(DeliveryState.DEAD, seconds=seconds, error=error, blame=blame, why=why)

    async def _keep_leases(self) -> None:
        """Slow handlers keep their claims: renew every in-flight lease, in one batch, well
        before it expires."""
        while True:
            await asyncio.sleep(self.lease_s / 3)
            held = [claim.delivery_id for claim in self._claimed.values()]
            if not held:
                continue
            try:
                await self.store.extend_leases(held, self.owner, self.lease_s)
            except StoreUnavailable:
                pass  # the next renewal tries again (and says which leases were taken over)
            except LeaseLost as exc:
                self._abandon(exc.delivery_ids)

    def _abandon(self, lost: Collection[str]) -> None:
        """Stop the handlers of deliveries another worker took over (our lease ran out, say
        while the database was unreachable): the new owner runs them and only its outcome
        counts, so ours would be work and side effects for nothing. A delivery whose outcome
        is being written is left alone: its `finish` says whether it was really lost."""
        for task, claim in list(self._claimed.items()):
            if claim.delivery_id in lost and claim.delivery_id not in self._recording:
                task.cancel()
                self._lease_lost(claim, log.bind(delivery_id=claim.delivery_id))

    def _lease_lost(self, claim: Claim, bound: Any) -> None:
        self.metrics.delivery(claim.handler, "lost")
        bound.warning(
            "lease lost: another worker owns this delivery now; its outcome is the one kept",
            handler=claim.handler,
            attempt=claim.attempt,
        )


@dataclasses.dataclass(frozen=True, slots=True)
class _Outcome:
    """How one attempt ended, decided while the handler's slot is held and written after."""

    state: FinishState
    seconds: float | None = None
    error: str | None = None
    blame: str | None = None
    retry_at: float | None = None
    result: Mapping[str, Any] | None = None
    retry_in_s: float = 0.0
    why: str = ""

    @property
    def metric(self) -> str:
        """The outcome as `aimusic_relay_deliveries` counts it: succeeded, retry or dead."""
        return "retry" if self.state == DeliveryState.PENDING else str(self.state)

    def log(self, bound: Any) -> None:
        if self.state == DeliveryState.SUCCEEDED:
            duration_ms = round((self.seconds or 0.0) * 1000, 1)
            bound.info("delivery succeeded", duration_ms=duration_ms)
        elif self.state == DeliveryState.PENDING:
            bound.warning(
                "delivery failed; will retry",
                error=self.error,
                blame=self.blame,
                retry_in_s=round(self.retry_in_s, 3),
            )
        elif self.why:
            bound.error(f"delivery dead-lettered: {self.why}", error=self.error, blame=self.blame)


async def wait_any(wake: asyncio.Event, stop: asyncio.Event, wait_s: float) -> None:
    waiters = [asyncio.create_task(wake.wait()), asyncio.create_task(stop.wait())]
    try:
        await asyncio.wait(waiters, timeout=wait_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
