"""Handlers used only by tests, loaded by the relay subprocess as `tests.plugins:Class`."""

from __future__ import annotations

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
