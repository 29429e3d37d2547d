"""A stand-in for Discord's HTTP API on loopback: it checks the bot token as Discord does and
records every request, so a test can see what the relay asked for.

It answers `GET /applications/@me` (doctor's dry run of the bot token) and
`PUT /applications/{id}/commands` (`chat register`'s bulk overwrite, kept in `commands`).
"""

from __future__ import annotations

import dataclasses
import json
import threading
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

UNAUTHORIZED = {"message": "401: Unauthorized", "code": 0}
"""Discord's body for a missing or wrong `Authorization` header."""


@dataclasses.dataclass(frozen=True, slots=True)
class Recorded:
    """One request as Discord would have seen it: method, path, headers and the JSON body."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any


class DiscordCatcher:
    """The catcher's state (the application it plays, what was sent) and its Starlette app."""

    def __init__(
        self,
        bot_token: str = "catcher-bot-token",
        application_id: str = "1100000000000000001",
        name: str = "Catcher Music",
    ) -> None:
        self.bot_token = bot_token
        self.application_id = application_id
        self.name = name
        self.requests: list[Recorded] = []
        self.commands: list[dict[str, Any]] = []
        """The application's global commands, as the last bulk overwrite left them."""
        self._lock = threading.Lock()
        self.app = Starlette(
            routes=[
                Route("/applications/@me", self._me, methods=["GET"]),
                Route("/applications/{app_id}/commands", self._commands, methods=["PUT"]),
            ]
        )

    def reset(self) -> None:
        """Forget the requests (the server keeps running)."""
        with self._lock:
            self.requests.clear()
            self.commands.clear()

    def sent(self, path: str | None = None) -> list[Recorded]:
        """Requests so far, optionally only those to one path."""
        with self._lock:
            return [r for r in self.requests if path is None or r.path == path]

    async def _record(self, request: Request) -> Recorded:
        raw = await request.body()
        recorded = Recorded(
            request.method,
            request.url.path,
            dict(request.headers),
            json.loads(raw) if raw else None,
        )
        with self._lock:
            self.requests.append(recorded)
        return recorded

    def _authorized(self, recorded: Recorded) -> bool:
        return recorded.headers.get("authorization") == f"Bot {self.bot_token}"

    async def _me(self, request: Request) -> Response:
        recorded = await self._record(request)
        if not self._authorized(recorded):
            return JSONResponse(UNAUTHORIZED, 401)
        return JSONResponse({"id": self.application_id, "name": self.name, "bot_public": False})

    async def _commands(self, request: Request) -> Response:
        """Bulk-overwrite the global commands: Discord answers them back with ids."""
        recorded = await self._record(request)
        if not self._authorized(recorded):
            return JSONResponse(UNAUTHORIZED, 401)
        if request.path_params["app_id"] != self.application_id:
            return JSONResponse({"message": "Unknown Application", "code": 10002}, 404)
        body = recorded.body
        if not isinstance(body, list) or not all(
            isinstance(c, dict) and c.get("name") and c.get("description") for c in body
        ):
            return JSONResponse({"message": "Invalid Form Body", "code": 50035}, 400)
        stored = [
            {**command, "id": str(1200000000000000000 + n), "application_id": self.application_id}
            for n, command in enumerate(body)
        ]
        with self._lock:
            self.commands = stored
        return JSONResponse(stored)
