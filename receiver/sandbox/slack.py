"""A stand-in for Slack on loopback: an incoming webhook and the chat Web API, recorded (used
by the tests and by `aimusic-relay demo --chat`).

It answers the way Slack does (`200 ok` for a webhook; `{"ok": ...}` JSON for the Web API,
with channel ids and increasing `ts`), checks the bot token, and can be told to fail the next
requests (429 with Retry-After, 500, an error code; optionally only those a test picks) so
tests see exactly what a handler sent. File uploads take Slack's three steps: an upload URL
on the stand-in itself, the POST of the bytes there (kept in `uploads`), and the completion
that shares the file in a channel or thread (`files`).
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode

from slack_sdk.signature import SignatureVerifier
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

WEBHOOK_PATH = "/services/T/B/X"
"""The one incoming-webhook path that exists; any other answers 404 `no_service`."""


def signed_request(
    secret: str, form: Mapping[str, str], *, age_s: float = 0
) -> tuple[str, dict[str, str]]:
    """The body and headers Slack sends for `form` (a slash command, or `{"payload": …}` for an
    interaction): form-encoded, signed with the v0 scheme at a timestamp `age_s` old."""
    body = urlencode(form)
    timestamp = str(int(time.time() - age_s))
    signature = SignatureVerifier(secret).generate_signature(timestamp=timestamp, body=body)
    return body, {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": signature or "",
    }


@dataclasses.dataclass(frozen=True, slots=True)
class Recorded:
    """One request as Slack would have seen it: the path, the headers and the decoded body."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def method(self) -> str:
        """`webhook`, `upload` (a file's bytes), or the Web API method (`chat.postMessage`)."""
        if self.path.startswith("/services/"):
            return "webhook"
        return "upload" if self.path.startswith("/upload/") else self.path.rsplit("/", 1)[-1]


@dataclasses.dataclass(frozen=True, slots=True)
class Fault:
    """How to answer one request instead of the normal answer."""

    status: int
    error: str
    retry_after: int | None = None
    html: bool = False
    """Answer with an HTML page (as a proxy in front of Slack would), not Slack's own body."""
    only: Callable[[Recorded], bool] | None = None
    """Fail only a request this says yes to (others pass it by); None: the next request."""


class SlackCatcher:
    """The catcher's state (what was sent, what to fail) and its Starlette app."""

    def __init__(self, token: str = "xoxb-catcher-token") -> None:  # noqa: S107 - a stand-in's own
        self.token = token
        self.requests: list[Recorded] = []
        self.messages: dict[tuple[str, str], dict[str, Any]] = {}
        self.reject_images = False
        self.permalinks_fail = False
        """Answer every `chat.getPermalink` with an error (the post itself still works)."""
        self.files: dict[str, dict[str, Any]] = {}
        """Uploaded files by id: filename, title, length, and once shared channel, thread_ts."""
        self.uploads: dict[str, bytes] = {}
        """The bytes POSTed to each file's upload URL."""
        self._faults: deque[Fault] = deque()
        self._lock = threading.Lock()
        self._next_ts = 0
        self._next_file = 0
        self.app = Starlette(
            routes=[
                Route("/services/{rest:path}", self._webhook, methods=["POST"]),
                Route("/api/{method}", self._api, methods=["GET", "POST"]),
                Route("/upload/{file_id}", self._upload, methods=["POST"]),
            ]
        )

    def reset(self) -> None:
        """Forget requests, messages and faults (the server keeps running)."""
        with self._lock:
            self.requests.clear()
            self.messages.clear()
            self.files.clear()
            self.uploads.clear()
            self._faults.clear()
            self.reject_images = False
            self.permalinks_fail = False

    def fail_next(
        self,
        times: int,
        status: int,
        error: str = "",
        retry_after: int | None = None,
        *,
        html: bool = False,
        only: Callable[[Recorded], bool] | None = None,
    ) -> None:
        """Answer the next `times` requests with `status` (and Retry-After, if given); with
        `only`, the next `times` requests it says yes to."""
        default = {429: "ratelimited", 500: "internal_error"}.get(status, "invalid_request")
        fault = Fault(status, error or default, retry_after, html, only)
        with self._lock:
            self._faults.extend([fault] * times)

    def sent(self, method: str | None = None) -> list[Recorded]:
        """Requests so far, optionally only those of one method (`webhook`, `chat.update`).
        Without a method, the posts and edits a person sees: `chat.getPermalink` lookups only
        when asked for by name."""
        with self._lock:
            if method is None:
                return [r for r in self.requests if r.method != "chat.getPermalink"]
            return [r for r in self.requests if r.method == method]

    async def _record(self, request: Request) -> tuple[Recorded, Fault | None]:
        raw = await request.body()
        if request.method == "GET":  # read methods such as chat.getPermalink
            body: dict[str, Any] = dict(request.query_params)
        elif request.headers.get("content-type", "").startswith("application/json"):
            body = json.loads(raw or b"{}")
        elif request.url.path.startswith("/upload/"):  # a file's bytes, kept in `uploads`
            body = {"length": len(raw)}
        else:  # a form, and (slack-sdk's `params`, as for files.*) the query string
            body = {**dict(request.query_params), **dict(parse_qsl(raw.decode()))}
            if isinstance(body.get("blocks"), str):
                body["blocks"] = json.loads(body["blocks"])
        recorded = Recorded(request.url.path, dict(request.headers), body)
        with self._lock:
            self.requests.append(recorded)
            fault = self._take_fault(recorded)
        if fault is None and self.reject_images and _has_image(body.get("blocks") or []):
            fault = Fault(400 if recorded.method == "webhook" else 200, "invalid_blocks")
        return recorded, fault

    def _take_fault(self, recorded: Recorded) -> Fault | None:
        """The first queued fault that applies to `recorded`, removed from the queue."""
        for index, fault in enumerate(self._faults):
            if fault.only is None or fault.only(recorded):
                del self._faults[index]
                return fault
        return None

    async def _upload(self, request: Request) -> Response:
        """The POST of a file's bytes to the URL `files.getUploadURLExternal` handed out."""
        recorded, fault = await self._record(request)
        if fault is not None:
            return PlainTextResponse(fault.error, fault.status, _retry_headers(fault))
        file_id = request.path_params["file_id"]
        if file_id not in self.files:
            return PlainTextResponse("no such upload", 404)
        raw = await request.body()
        if len(raw) != self.files[file_id]["length"]:
            return PlainTextResponse("length mismatch", 400)
        self.uploads[file_id] = raw
        return PlainTextResponse(f"OK - {recorded.body['length']}")

    def _files(self, request: Request, method: str, body: dict[str, Any]) -> Response:
        """files.getUploadURLExternal and files.completeUploadExternal, as Slack answers."""
        if method == "files.getUploadURLExternal":
            if not body.get("filename") or not str(body.get("length", "")).isdigit():
                return _refuse("invalid_arguments")
            with self._lock:
                self._next_file += 1
                file_id = f"F{self._next_file:08d}"
            self.files[file_id] = {
                "filename": body["filename"],
                "length": int(body["length"]),
            }
            url = f"{str(request.base_url).rstrip('/')}/upload/{file_id}"
            return JSONResponse({"ok": True, "upload_url": url, "file_id": file_id})
        try:
            listed = json.loads(str(body.get("files") or "[]"))
        except ValueError:
            return _refuse("invalid_arguments")
        shared = []
        for item in listed if isinstance(listed, list) else []:
            file_id = str(item.get("id")) if isinstance(item, dict) else ""
            if file_id not in self.uploads:  # never uploaded: Slack has no bytes to share
                return _refuse("file_not_found")
            self.files[file_id].update(
                title=item.get("title"),
                channel=body.get("channel_id"),
                thread_ts=body.get("thread_ts"),
            )
            shared.append({"id": file_id, **self.files[file_id]})
        if not shared:
            return _refuse("invalid_arguments")
        return JSONResponse({"ok": True, "files": shared})

    async def _webhook(self, request: Request) -> Response:
        recorded, fault = await self._record(request)
        if fault is not None and fault.html:
            return _html(fault)
        if fault is not None:
            return PlainTextResponse(fault.error, fault.status, _retry_headers(fault))
        if request.url.path != WEBHOOK_PATH:
            return PlainTextResponse("no_service", 404)
        if not recorded.body.get("text") and not recorded.body.get("blocks"):
            return PlainTextResponse("no_text", 400)
        return PlainTextResponse("ok")

    async def _api(self, request: Request) -> Response:
        recorded, fault = await self._record(request)
        if fault is not None and fault.html:
            return _html(fault)
        if fault is not None:
            content = {"ok": False, "error": fault.error}
            return JSONResponse(content, fault.status, _retry_headers(fault))
        auth = request.headers.get("authorization")
        if auth is None:
            return _refuse("not_authed")
        if auth != f"Bearer {self.token}":
            return _refuse("invalid_auth")
        body, method = recorded.body, recorded.method
        if method == "auth.test":  # what `aimusic-relay doctor` asks to check a bot token
            return JSONResponse({"ok": True, "team": "Catcher", "user": "relay-bot"})
        if method == "chat.getPermalink":
            key = (str(body.get("channel")), str(body.get("message_ts")))
            if self.permalinks_fail:
                return _refuse("internal_error")
            if key not in self.messages:
                return _refuse("message_not_found")
            link = f"https://catcher.slack.com/archives/{key[0]}/p{key[1].replace('.', '')}"
            return JSONResponse({"ok": True, "channel": key[0], "permalink": link})
        if method in ("files.getUploadURLExternal", "files.completeUploadExternal"):
            return self._files(request, method, body)
        if method == "views.open":  # a modal (Remix asks for its style); recorded in `requests`
            view = body.get("view")
            view = json.loads(view) if isinstance(view, str) else view
            if not body.get("trigger_id") or not isinstance(view, dict) or not view.get("type"):
                return _refuse("invalid_arguments")
            with self._lock:
                self._next_ts += 1
                view_id = f"V{self._next_ts:08d}"
            return JSONResponse({"ok": True, "view": {**view, "id": view_id}})
        if method not in ("chat.postMessage", "chat.update"):
            return _refuse("unknown_method")
        if not body.get("text") and not body.get("blocks"):
            return _refuse("no_text")
        channel = str(body.get("channel") or "")
        if method == "chat.update":
            key = (channel, str(body.get("ts")))
            if key not in self.messages:  # also when given a channel name: update needs the id
                return _refuse(
                    "message_not_found" if channel.startswith("C") else "channel_not_found"
                )
            self.messages[key] = body
            return JSONResponse({"ok": True, "channel": key[0], "ts": key[1], "text": body["text"]})
        channel_id = channel if channel.startswith("C") else "C0" + channel.strip("#").upper()
        with self._lock:
            self._next_ts += 1
            ts = f"1700000000.{self._next_ts:06d}"
        self.messages[(channel_id, ts)] = body
        return JSONResponse({"ok": True, "channel": channel_id, "ts": ts, "message": body})


def _refuse(error: str) -> JSONResponse:
    """Slack's way to refuse a Web API call: HTTP 200 with `ok: false`."""
    return JSONResponse({"ok": False, "error": error})


def _html(fault: Fault) -> HTMLResponse:
    page = f"<html><body><h1>{fault.status}</h1></body></html>"
    return HTMLResponse(page, fault.status, _retry_headers(fault))


def _retry_headers(fault: Fault) -> dict[str, str]:
    return {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}


def _has_image(blocks: list[dict[str, Any]]) -> bool:
    return any(
        b.get("type") == "image" or (b.get("accessory") or {}).get("type") == "image"
        for b in blocks
    )
