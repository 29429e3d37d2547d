"""Small HTTP helpers shared by the route modules."""

from __future__ import annotations

import asyncio
import hmac
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

__all__ = [
    "BODY_TIMEOUT_S",
    "BodyTimeout",
    "BodyTooLarge",
    "body_timeout_answer",
    "error",
    "first_line",
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


def present(value: Any) -> Any:
    """Rows for JSON: `*_at` unix times become ISO 8601, raw bytes are dropped."""
    if isinstance(value, dict):
        shown: dict[str, Any] = {}
        for key, item in value.items():
            if isinstance(item, bytes):
                continue
            if key.endswith("_at") and isinstance(item, int | float):
                shown[key] = datetime.fromtimestamp(item, tz=UTC).isoformat()
            else:
                shown[key] = present(item)
        return shown
    if isinstance(value, list):
        return [present(item) for item in value]
    return value
