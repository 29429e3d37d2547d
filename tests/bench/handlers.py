"""Handlers used only by the benchmarks, loaded by the relay as `tests.bench.handlers:Class`."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from handlers.base import HandlerContext
from receiver.models import Event


class NoopHandler:
    """Succeeds at once: the cost measured is the relay's own (claim, run, finish)."""

    class Config(BaseModel):
        pass

    def __init__(self, name: str, config: Config) -> None:
        self.name = name
        self.config = config

    async def handle(self, event: Event, ctx: HandlerContext) -> dict[str, Any]:
        return {}
