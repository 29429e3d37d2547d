"""Handlers used only by tests, loaded by the relay subprocess as `tests.plugins:Class`."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from handlers.base import HandlerContext, HandlerError
from receiver.models import Event


class FlakyHandler:
    """Fails `fail_times` times, then succeeds; counts its calls in a file (it crosses restarts)."""

    class Config(BaseModel):
        fail_times: int = 2
        counter_file: str
        permanent: bool = False

    def __init__(self, name: str, config: Config) -> None:
        self.name = name
        self.config = config

    async def handle(self, event: Event, ctx: HandlerContext) -> dict[str, Any]:
        counter = Path(self.config.counter_file)
        calls = int(counter.read_text()) + 1 if counter.exists() else 1
        counter.write_text(str(calls))
        if calls <= self.config.fail_times:
            raise HandlerError(
                f"planned failure {calls} of {self.config.fail_times}",
                retryable=not self.config.permanent,
                blame="destination",
            )
        return {"calls": calls, "clip_id": event.clip_id}


class RecorderHandler:
    """Records each call (what it was given, when it ran) as a JSON line; optionally slow,
    or failing its very first call with a Retry-After."""

    class Config(BaseModel):
        log_file: str
        sleep_s: float = 0.0
        first_retry_after_s: float | None = None

    def __init__(self, name: str, config: Config) -> None:
        self.name = name
        self.config = config

    async def handle(self, event: Event, ctx: HandlerContext) -> dict[str, Any]:
        started = time.time()
        log = Path(self.config.log_file)
        first_call = not log.exists() or not log.read_text().strip()
        await asyncio.sleep(self.config.sleep_s)
        failing = first_call and self.config.first_retry_after_s is not None
        line = {
            "handler": self.name,
            "kind": event.kind,
            "task_ref": event.task_ref,
            "labels": dict(event.labels),
            "results": {k: dict(v) for k, v in ctx.results.items()},
            "previous_result": dict(ctx.previous_result) if ctx.previous_result else None,
            "started": started,
            "finished": time.time(),
            "failed": failing,
        }
        with log.open("a") as out:
            out.write(json.dumps(line) + "\n")
        if failing:
            raise HandlerError(
                "busy", retry_after=self.config.first_retry_after_s, blame="unavailable"
            )
        return {"url": f"https://copy.example/{self.name}/{event.clip_id}", "at": started}


def read_log(path: Path) -> list[dict[str, Any]]:
    """The lines a RecorderHandler wrote."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
