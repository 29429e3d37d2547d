"""A webhook catcher for sandbox callbacks: records every delivery per hook, checks signatures."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from receiver.errors import SignatureError
from receiver.sandbox import SandboxOptions
from receiver.signing import verify_callback

SECRET = "catcher-secret"
DEFAULT_SECRET = SandboxOptions().default_secret


@dataclasses.dataclass(frozen=True)
class Delivery:
    """One callback as the catcher received it."""

    headers: dict[str, str]
    body: bytes
    at: float
    signature_error: str | None

    @property
    def json(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


class Catcher:
    """A webhook receiver that records every callback per hook name and checks its signature."""

    def __init__(self) -> None:
        self.deliveries: dict[str, list[Delivery]] = defaultdict(list)
        self.fail_first: dict[str, int] = {}
        self.app = Starlette(routes=[Route("/hook/{name}", self._hook, methods=["POST"])])

    async def _hook(self, request: Request) -> Response:
        name = request.path_params["name"]
        body = await request.body()
        try:
            verify_callback([SECRET, DEFAULT_SECRET], request.headers, body, now=time.time())
            error = None
        except SignatureError as exc:
            error = exc.reason
        self.deliveries[name].append(Delivery(dict(request.headers), body, time.monotonic(), error))
        if self.fail_first.get(name, 0) > 0:
            self.fail_first[name] -= 1
            return JSONResponse({"error": "try again"}, status_code=500)
        return JSONResponse({"ok": True})


@dataclasses.dataclass
class Hooks:
    """The running catcher and its base URL."""

    catcher: Catcher
    url: str

    def new(self, fail_first: int = 0) -> tuple[str, str]:
        """A fresh hook: its name (to read deliveries) and its URL (for webhook_url)."""
        name = uuid.uuid4().hex
        self.catcher.fail_first[name] = fail_first
        return name, f"{self.url}/hook/{name}"

    def of(self, name: str) -> list[Delivery]:
        return list(self.catcher.deliveries[name])


async def wait_for(check: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until `check()` holds, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)
