"""A stand-in for Discord's HTTP API on loopback: it checks the bot token as Discord does and
records every request, so a test can see what the relay asked for.

It answers `GET /applications/@me` (doctor's dry run of the bot token),
`PUT /applications/{id}/commands` (`chat register`'s bulk overwrite, kept in `commands`), the
interaction webhooks (`PATCH …/messages/@original` or a follow-up's id, `POST` follow-ups; JSON
or multipart with `payload_json` and `files[n]`) and channel messages with the bot token
(`POST`/`PATCH /channels/{id}/messages`). An interaction token is good until `expire(token)`,
then 404 Unknown Webhook (code 10015) as Discord answers after 15 minutes; `fail_next` answers
the next requests with an error such as 429 and its Retry-After. A file over `upload_limit`
(Discord's 10 MiB for a bot by default) is refused with 413, code 40005, as Discord does.
"""

from __future__ import annotations

import dataclasses
import email.parser
import email.policy
import itertools
import json
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

UNAUTHORIZED = {"message": "401: Unauthorized", "code": 0}
"""Discord's body for a missing or wrong `Authorization` header."""
UNKNOWN_WEBHOOK = {"message": "Unknown Webhook", "code": 10015}
"""Discord's body for an interaction token that expired (15 minutes) or never existed."""
UNKNOWN_MESSAGE = {"message": "Unknown Message", "code": 10008}
TOO_LARGE = {"message": "Request entity too large", "code": 40005}
"""Discord's body for an attachment over the upload limit (HTTP 413)."""
UPLOAD_LIMIT = 10 * 1024 * 1024
"""Discord's default attachment limit for a bot (a server's boosts raise it)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Upload:
    """One file of a multipart request: its form field, file name, type and bytes."""

    field: str
    filename: str
    content_type: str
    data: bytes


@dataclasses.dataclass(frozen=True, slots=True)
class Fault:
    """How to answer one request instead of the normal answer."""

    status: int
    retry_after: float | None = None
    only: Callable[[Recorded], bool] | None = None
    """Fail only a request this says yes to (others pass it by); None: the next request."""


@dataclasses.dataclass(frozen=True, slots=True)
class Recorded:
    """One request as Discord would have seen it: method, path, headers and the JSON body."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    files: tuple[Upload, ...] = ()
    """The files of a multipart request (its `payload_json` is `body`)."""


class DiscordCatcher:
    """The catcher's state (the application it plays, what was sent) and its Starlette app."""

    def __init__(
        self,
        bot_token: str = "catcher-bot-token",
        application_id: str = "1100000000000000001",
        name: str = "Catcher Music",
        upload_limit: int = UPLOAD_LIMIT,
    ) -> None:
        self.bot_token = bot_token
        self.default_upload_limit = upload_limit
        self.upload_limit = upload_limit
        """Bytes a file may have; a larger one is answered 413 (code 40005). A test may lower
        it; `reset` restores the constructor's."""
        self.application_id = application_id
        self.name = name
        self.requests: list[Recorded] = []
        self.commands: list[dict[str, Any]] = []
        """The application's global commands, as the last bulk overwrite left them."""
        self.messages: dict[str, dict[str, Any]] = {}
        """Every message by id as it reads now (`content`, `embeds`, ..., and `channel_id`, or
        `token` for one made through an interaction webhook)."""
        self.originals: dict[str, str] = {}
        """Per interaction token, the id of its original response."""
        self.expired: set[str] = set()
        self._faults: deque[Fault] = deque()
        self._ids = itertools.count(1300000000000000000)
        self._lock = threading.Lock()
        hook = "/webhooks/{app_id}/{token}"
        self.app = Starlette(
            routes=[
                Route("/applications/@me", self._me, methods=["GET"]),
                Route("/applications/{app_id}/commands", self._commands, methods=["PUT"]),
                Route(hook, self._followup, methods=["POST"]),
                Route(hook + "/messages/{message_id}", self._edit_hook, methods=["PATCH"]),
                Route("/channels/{channel}/messages", self._post, methods=["POST"]),
                Route("/channels/{channel}/messages/{message_id}", self._edit, methods=["PATCH"]),
            ]
        )

    def expire(self, token: str) -> None:
        """From now on `token` is gone, as Discord makes it 15 minutes after the interaction."""
        with self._lock:
            self.expired.add(token)

    def fail_next(
        self,
        times: int = 1,
        status: int = 429,
        retry_after: float | None = 1.0,
        only: Callable[[Recorded], bool] | None = None,
    ) -> None:
        """Answer the next `times` webhook or channel requests (those `only` picks, if given)
        with `status`; a 429 carries `retry_after` both as the Retry-After header and in the
        body, as Discord sends it."""
        with self._lock:
            self._faults.extend(Fault(status, retry_after, only) for _ in range(times))

    def original(self, token: str) -> dict[str, Any] | None:
        """The interaction's original response as it reads now."""
        with self._lock:
            found = self.originals.get(token)
            return dict(self.messages[found]) if found else None

    def reset(self) -> None:
        """Forget the requests (the server keeps running)."""
        with self._lock:
            self.requests.clear()
            self.commands.clear()
            self.messages.clear()
            self.originals.clear()
            self.expired.clear()
            self._faults.clear()
            self.upload_limit = self.default_upload_limit

    def sent(self, path: str | None = None) -> list[Recorded]:
        """Requests so far, optionally only those to one path."""
        with self._lock:
            return [r for r in self.requests if path is None or r.path == path]

    async def _record(self, request: Request) -> Recorded:
        raw = await request.body()
        kind = request.headers.get("content-type", "")
        body: Any = None
        files: tuple[Upload, ...] = ()
        if kind.startswith("multipart/form-data"):
            body, files = _multipart(kind, raw)
        elif raw:
            body = json.loads(raw)
        recorded = Recorded(request.method, request.url.path, dict(request.headers), body, files)
        with self._lock:
            self.requests.append(recorded)
        return recorded

    def _fault(self, recorded: Recorded) -> Response | None:
        with self._lock:
            fault = next((f for f in self._faults if f.only is None or f.only(recorded)), None)
            if fault is not None:
                self._faults.remove(fault)
        if fault is None:
            return None
        if fault.status == 429:
            wait = fault.retry_after if fault.retry_after is not None else 1.0
            body = {"message": "You are being rate limited.", "retry_after": wait, "global": False}
            return JSONResponse(body, 429, {"Retry-After": f"{wait:g}"})
        if fault.status < 500:
            return JSONResponse({"message": "Invalid Form Body", "code": 50035}, fault.status)
        return JSONResponse({"message": "Internal Server Error", "code": 0}, fault.status)

    def _too_large(self, recorded: Recorded) -> Response | None:
        """413 Request entity too large for a file over `upload_limit`; nothing is stored."""
        with self._lock:
            limit = self.upload_limit
        if any(len(upload.data) > limit for upload in recorded.files):
            return JSONResponse(TOO_LARGE, 413)
        return None

    def _hook_refused(self, request: Request) -> Response | None:
        """404 Unknown Webhook for another application or an expired token."""
        params = request.path_params
        with self._lock:
            gone = params["token"] in self.expired
        if params["app_id"] != self.application_id or gone:
            return JSONResponse(UNKNOWN_WEBHOOK, 404)
        return None

    def _store(self, message_id: str | None, body: Any, where: dict[str, str]) -> dict[str, Any]:
        """Create (no id) or update a message from a post's or an edit's body; its JSON."""
        fields = body if isinstance(body, dict) else {}
        with self._lock:
            if message_id is None:
                message_id = str(next(self._ids))
                self.messages[message_id] = {"id": message_id, **where}
            message = self.messages[message_id]
            for key in ("content", "embeds", "components", "allowed_mentions", "attachments"):
                if key in fields:
                    message[key] = fields[key]
            return dict(message)

    async def _followup(self, request: Request) -> Response:
        recorded = await self._record(request)
        refused = self._fault(recorded) or self._too_large(recorded) or self._hook_refused(request)
        if refused is not None:
            return refused
        token = request.path_params["token"]
        return JSONResponse(self._store(None, recorded.body, {"token": token}))

    async def _edit_hook(self, request: Request) -> Response:
        """Edit the original response (made by the deferred answer) or a follow-up."""
        recorded = await self._record(request)
        refused = self._fault(recorded) or self._too_large(recorded) or self._hook_refused(request)
        if refused is not None:
            return refused
        token, wanted = request.path_params["token"], request.path_params["message_id"]
        with self._lock:
            if wanted == "@original" and token not in self.originals:
                self.originals[token] = str(next(self._ids))
                self.messages[self.originals[token]] = {"id": self.originals[token], "token": token}
            found = self.originals[token] if wanted == "@original" else wanted
            if self.messages.get(found, {}).get("token") != token:
                return JSONResponse(UNKNOWN_MESSAGE, 404)
        return JSONResponse(self._store(found, recorded.body, {}))

    async def _post(self, request: Request) -> Response:
        recorded = await self._record(request)
        refused = self._fault(recorded) or self._too_large(recorded)
        if refused is not None:
            return refused
        if not self._authorized(recorded):
            return JSONResponse(UNAUTHORIZED, 401)
        channel = request.path_params["channel"]
        return JSONResponse(self._store(None, recorded.body, {"channel_id": channel}))

    async def _edit(self, request: Request) -> Response:
        recorded = await self._record(request)
        refused = self._fault(recorded) or self._too_large(recorded)
        if refused is not None:
            return refused
        if not self._authorized(recorded):
            return JSONResponse(UNAUTHORIZED, 401)
        channel, wanted = request.path_params["channel"], request.path_params["message_id"]
        with self._lock:
            if self.messages.get(wanted, {}).get("channel_id") != channel:
                return JSONResponse(UNKNOWN_MESSAGE, 404)
        return JSONResponse(self._store(wanted, recorded.body, {}))

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


def _multipart(content_type: str, raw: bytes) -> tuple[Any, tuple[Upload, ...]]:
    """A multipart/form-data body read with the standard library: `payload_json` and files."""
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    parsed = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + raw)
    body: Any = None
    files: list[Upload] = []
    for part in parsed.iter_parts():
        field = str(part.get_param("name", header="content-disposition") or "")
        data = part.get_payload(decode=True)
        data = data if isinstance(data, bytes) else b""
        if field == "payload_json":
            body = json.loads(data)
        else:
            name = str(part.get_filename() or "")
            files.append(Upload(field, name, part.get_content_type(), data))
    return body, tuple(files)
