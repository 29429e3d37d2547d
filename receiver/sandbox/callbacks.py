"""Signed callbacks, sent the way the provider sends them, including its failure modes.

Each task gets one tracked asyncio job that sleeps until the moments its timeline names and
then delivers. Bodies are snapshots of the task *at* that moment (state is a function of time),
so a late-running event loop never sends a callback whose content disagrees with its header.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
import uuid
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import Any, Literal

import httpx

from receiver import __version__
from receiver.sandbox.options import SandboxOptions
from receiver.sandbox.tasks import CallbackAttempt, Job, TaskRegistry
from receiver.signing import sign_callback

__all__ = ["CallbackSender", "callback_body"]

_log = logging.getLogger(__name__)
_BAD_SECRET_PREFIX = "not-the-secret-"  # noqa: S105 - #badsig spoils the real secret on purpose


def callback_body(task: Job, at: float, audio_seconds: float) -> tuple[str, bytes]:
    """The `X-Webhook-Event` header and the exact body bytes of a callback for `task` at `at`.

    Like the provider, a streaming clip goes out under `song.completed`; receivers must look
    at each clip's own `state`.
    """
    event, body = task.callback(at, audio_seconds)
    return event, json.dumps(body, separators=(",", ":")).encode("utf-8")


class CallbackSender:
    """Runs every task's callback timeline; `aclose` cancels them all (app shutdown)."""

    def __init__(self, options: SandboxOptions, registry: TaskRegistry) -> None:
        self._options = options
        self._registry = registry
        self._jobs: set[asyncio.Task[None]] = set()
        self._http: httpx.AsyncClient | None = None

    def start(self, task: Job) -> None:
        """Schedule the callbacks of a new task; a no-op without a webhook or with #nocallback."""
        if task.webhook_url and "#nocallback" not in task.markers:
            self._spawn(self._timeline(task))

    async def aclose(self) -> None:
        jobs = list(self._jobs)
        for job in jobs:
            job.cancel()
        await asyncio.gather(*jobs, return_exceptions=True)
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        job = asyncio.get_running_loop().create_task(self._guarded(coro))
        self._jobs.add(job)
        job.add_done_callback(self._jobs.discard)

    @staticmethod
    async def _guarded(coro: Coroutine[Any, Any, None]) -> None:
        # A bug in one timeline must show in the log, not as "exception never retrieved".
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception:
            _log.exception("sandbox callback job crashed")

    async def _timeline(self, task: Job) -> None:
        seconds = self._options.audio_seconds
        if "#streaming" in task.markers:
            at = task.streaming_at()
            if task.status(at) == "RUNNING":  # with delay 0 there is no streaming phase
                await _sleep_until(at)
                event, body = callback_body(task, at, seconds)
                # Separate job: a slow retry of this one must not hold back the final callback.
                self._spawn(self._deliver_all(task, "streaming", event, body, repeat=False))
        if math.isinf(task.final_at()):  # the never-finish marker: no final callback, ever
            return
        await _sleep_until(task.final_at())
        self._registry.settle(time.monotonic())
        event, body = callback_body(task, task.final_at(), seconds)
        if "#slowcallback" in task.markers:
            await asyncio.sleep(self._options.slow_callback_s)
        await self._deliver_all(task, "final", event, body, repeat="#dup" in task.markers)

    async def _deliver_all(
        self,
        task: Job,
        kind: Literal["streaming", "final"],
        event: str,
        body: bytes,
        *,
        repeat: bool,
    ) -> None:
        """Deliver once; with #dup twice under one id and once more under a fresh id."""
        webhook_id = str(uuid.uuid4())
        await self._deliver(task, kind, event, body, webhook_id)
        if repeat:
            await self._deliver(task, kind, event, body, webhook_id)
            await self._deliver(task, kind, event, body, str(uuid.uuid4()))

    async def _deliver(
        self,
        task: Job,
        kind: Literal["streaming", "final"],
        event: str,
        body: bytes,
        webhook_id: str,
    ) -> None:
        """POST until a 2xx answer, waiting `callback_retry_delays` between tries."""
        if task.webhook_url is None:
            return
        secret = task.webhook_secret or self._options.default_secret
        if "#badsig" in task.markers:
            secret = _BAD_SECRET_PREFIX + secret
        waits = (0.0, *self._options.callback_retry_delays)
        for attempt, wait in enumerate(waits, start=1):
            if wait:
                await asyncio.sleep(wait)
            timestamp = int(time.time())  # re-signed on every try, like a real sender
            headers = {
                "Content-Type": "application/json",
                "User-Agent": f"aimusic-sandbox/{__version__}",
                "X-Webhook-Id": webhook_id,
                "Idempotency-Key": webhook_id,
                "X-Webhook-Event": event,
                "X-Webhook-Timestamp": str(timestamp),
                "X-Webhook-Signature": sign_callback(secret, timestamp, body),
            }
            status: int | None = None
            error: str | None = None
            try:
                response = await self._client().post(
                    task.webhook_url, content=body, headers=headers
                )
                status = response.status_code
            except httpx.TimeoutException:
                error = f"timeout after {self._options.callback_timeout_s:g} s"
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"
            task.attempts.append(
                CallbackAttempt(
                    kind=kind,
                    webhook_id=webhook_id,
                    attempt=attempt,
                    status=status,
                    error=error,
                    at=datetime.now(UTC).isoformat(),
                )
            )
            if status is not None and 200 <= status < 300:
                return
            _log.info(
                "sandbox callback %s for task %s not delivered (attempt %d): %s",
                webhook_id,
                task.task_id,
                attempt,
                error or f"HTTP {status}",
            )
        _log.warning("sandbox gave up on callback %s for task %s", webhook_id, task.task_id)

    def _client(self) -> httpx.AsyncClient:
        # Created on first use inside the running loop; closed by `aclose` at shutdown.
        # trust_env=False: a proxy from the environment must not swallow loopback callbacks.
        if self._http is None:
            self._http = httpx.AsyncClient(
                timeout=self._options.callback_timeout_s, follow_redirects=False, trust_env=False
            )
        return self._http


async def _sleep_until(deadline: float) -> None:
    delay = deadline - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)
