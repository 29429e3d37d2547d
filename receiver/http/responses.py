"""Small HTTP helpers shared by the route modules."""

from __future__ import annotations

import asyncio
import hmac
from typing import Any

from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from receiver.redact import hide_callback_token
from receiver.rows import iso_time

__all__ = [
    "BODY_TIMEOUT_S",
    "BodyTimeout",
    "BodyTooLarge",
    "body_timeout_answer",
    "error",
    "first_line",
    "http_exception_answer",
    "is_api",
    "present",
    "read_body",
    "require_admin",
]


BODY_TIMEOUT_S = 10.0
"""Default time a client has to send its whole body (`RELAY_BODY_TIMEOUT_S`)."""


class BodyTooLarge(Exception):
    """The request body passed the limit; we stopped reading it."""


class BodyTimeout(Exception):
    """The request body did not all arrive in time; the app answers 408 (`body_timeout_answer`)."""


def error(
    status: int, code: str, detail: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """The contract's error body: `{"error": code, "detail": text}`; never echoes secrets."""
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


def first_line(exc: Exception) -> str:
    """The start of an exception's message for a 400's `detail` (its type when it has none)."""
    text = str(exc)
    return text.splitlines()[0][:200] if text else type(exc).__name__


async def read_body(request: Request, limit: int, timeout_s: float = BODY_TIMEOUT_S) -> bytes:
    """The raw body, refusing as soon as it passes `limit` (chunked bodies included), or when
    it has not all arrived within `timeout_s` (uvicorn has no body timeout of its own, so a
    client trickling a byte a second would otherwise hold a worker slot for ever)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise BodyTooLarge
                chunks.append(chunk)
    except TimeoutError:
        raise BodyTimeout(timeout_s) from None
    return b"".join(chunks)


async def body_timeout_answer(request: Request, exc: Exception) -> Response:
    """408 for a body that did not arrive in time; the connection is closed after it."""
    limit = exc.args[0] if exc.args else BODY_TIMEOUT_S
    return error(
        408,
        "timeout",
        f"the request body did not arrive within {limit:g} s",
        headers={"Connection": "close"},
    )


def is_api(path: str) -> bool:
    """`/api` and everything under it (not `/apiary`): the paths whose every answer is JSON."""
    return path == "/api" or path.startswith("/api/")


def _is_webhook(path: str) -> bool:
    return path == "/webhooks" or path.startswith("/webhooks/")


async def http_exception_answer(request: Request, exc: Exception) -> Response:
    """Routing's own refusals (no such path, wrong method). Under `/api` they are the contract's
    JSON error, 405 keeping its `Allow` header, so a client never has to parse plain text;
    elsewhere they stay Starlette's plain answers (the dashboard and probes rely on those)."""
    if not isinstance(exc, HTTPException):  # pragma: no cover - registered for HTTPException
        raise exc
    headers = dict(exc.headers or {})
    if _is_webhook(request.url.path):  # a sender's mistaken URL: the webhook contract's JSON
        where = f"{request.method} {request.url.path[:200]}"
        status = exc.status_code if exc.status_code in (404, 405) else 404
        code = "method_not_allowed" if status == 405 else "not_found"
        detail = f"{where}: no such webhook route; callbacks go to POST /webhooks/aimusic[/<token>]"
        return error(status, code, detail, headers if status == 405 else None)
    if not is_api(request.url.path):
        if exc.status_code in (204, 304):
            return Response(status_code=exc.status_code, headers=headers)
        return PlainTextResponse(exc.detail, status_code=exc.status_code, headers=headers)
    where = f"{request.method} {request.url.path[:200]}"
    if exc.status_code == 404:
        return error(404, "not_found", f"{where}: no such API route; see GET /api/openapi.json")
    if exc.status_code == 405:
        allowed = ", ".join(sorted(m.strip() for m in headers.get("Allow", "").split(",") if m))
        headers["Allow"] = allowed  # Starlette joins a set: sorted, the header reads the same
        return error(405, "method_not_allowed", f"{where}: this route answers {allowed}", headers)
    code = exc.detail.lower().replace(" ", "_") if exc.detail else "http_error"
    return error(exc.status_code, code, f"{where}: {exc.detail}", headers)


def require_admin(request: Request, token: str | None) -> JSONResponse | None:
    """None when the bearer token matches `RELAY_ADMIN_TOKEN`, else the 401 to send."""
    if token is None:
        return error(401, "admin_disabled", "the admin API is disabled: set RELAY_ADMIN_TOKEN")
    header = request.headers.get("authorization", "")
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        presented.strip().encode(), token.encode()
    ):
        return error(401, "unauthorized", "send Authorization: Bearer <RELAY_ADMIN_TOKEN>")
    return None


_FOREIGN = frozenset({"params", "clip", "clips"})
"""Keys whose values are someone else's JSON: their `*_at` fields are kept as written."""


def present(value: Any) -> Any:
    """Rows for JSON: `*_at` unix times become ISO 8601, raw bytes are dropped, and a callback
    URL's signed token is cut out (`/webhooks/aimusic/(hidden)`). The API, `--json` and the
    dashboard all show rows through here or `hide_callback_token`, so none prints a token.
    A row model (`receiver.rows`) is its JSON form, which writes its times alike."""
    return _present(value, times=True)


def _present(value: Any, *, times: bool) -> Any:
    """`present`; `times` is False inside what the provider or a caller wrote (a task's
    params, a clip), where `continue_at: 30` means seconds into a song, not a date."""
    if isinstance(value, BaseModel):
        return _present(value.model_dump(mode="json"), times=times)
    if isinstance(value, dict):
        shown: dict[str, Any] = {}
        for key, item in value.items():
            if isinstance(item, bytes):
                continue
            if times and key.endswith("_at") and isinstance(item, int | float):
                shown[key] = iso_time(item)
            else:
                shown[key] = _present(item, times=times and key not in _FOREIGN)
        return shown
    if isinstance(value, list):
        return [_present(item, times=times) for item in value]
    if isinstance(value, str):
        return hide_callback_token(value)
    return value
