"""The AI Music API client: producer create and poll, credits; every failure as a typed error.

Retries happen only where they are safe. A create costs credits and the provider offers no
idempotency key, so a create is sent at most once: if we cannot tell whether it arrived (a
timeout, a dropped connection, a 5xx) we raise `OutcomeUnknown` and the caller reconciles by
polling instead of sending it again. Reads (poll, credits) are retried briefly.

The API key goes only into the `Authorization` header; it is never part of a message or repr,
and is scrubbed from provider messages that echo it.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import math
import re
import time
from collections.abc import Mapping, Sequence
from datetime import UTC
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import httpx
from pydantic import BaseModel, ValidationError

from receiver import __version__
from receiver.errors import (
    InsufficientCredits,
    OutcomeUnknown,
    RateLimited,
    TaskGone,
    TaskNotFound,
    Unauthorized,
    UpstreamError,
    UpstreamForbidden,
    UpstreamRejected,
    UpstreamUnavailable,
)
from receiver.models import CreateAnswer, Credits, TaskAnswer

__all__ = ["RETIRED_PRODUCER_TASK_TYPES", "UpstreamClient", "is_retired_task_type"]

RETIRED_PRODUCER_TASK_TYPES = frozenset(
    {
        "cover_music",
        "extend_music",
        "replace_music",
        "swap_music_vocals",
        "swap_music_sound",
        "music_variation",
    }
)
"""Producer task types the provider answers 410 for; their `*_upload_*` forms are retired too."""

_MESSAGE_KEYS = ("message", "error", "detail", "description")
_MAX_MESSAGE = 300
_REDACTED = "***"
_HEADER_SAFE = re.compile(r"[\x21-\x7e]+")  # visible ASCII: what a bearer token may contain
_TASK_NOT_FOUND = re.compile(r"\btask\b.*\bnot found", re.IGNORECASE)
_Model = TypeVar("_Model", bound=BaseModel)


def is_retired_task_type(task_type: str) -> bool:
    """`cover_music`, `cover_upload_music`, `swap_upload_music_vocals`, ... are retired."""
    if task_type in RETIRED_PRODUCER_TASK_TYPES:
        return True
    parts = task_type.split("_")
    return (
        "upload" in parts
        and "_".join(p for p in parts if p != "upload") in RETIRED_PRODUCER_TASK_TYPES
    )


class UpstreamClient:
    """An async client for one AI Music API base URL and key; use it as `async with`.

    Pass `http` to share a connection pool (it is then not closed here). `retry_delays` are
    the waits before each retry of a read (poll, credits).
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        timeout: float = 30.0,
        http: httpx.AsyncClient | None = None,
        retry_delays: Sequence[float] = (0.5, 1.5),
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._api_key = api_key or None
        self._timeout = timeout
        self._owns_http = http is None
        self._http = http or httpx.AsyncClient(timeout=timeout)
        self._retry_delays = tuple(retry_delays)

    def __repr__(self) -> str:
        key = "set" if self._api_key else "missing"
        return f"UpstreamClient(base_url={self._base_url!r}, api_key=<{key}>)"

    async def __aenter__(self) -> UpstreamClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def create_producer(self, params: Mapping[str, Any]) -> CreateAnswer:
        """Create a producer task; sent once, never retried (see the module docstring)."""
        task_type = params.get("task_type")
        if isinstance(task_type, str) and is_retired_task_type(task_type):
            raise TaskGone(
                f"producer task type {task_type!r} was retired by the AI Music API "
                "(it answers 410 Gone): send a fresh create_music task instead",
                status=410,
            )
        what = "producer create"
        try:
            response = await self._send("POST", "/api/v1/producer/create", json=dict(params))
        except httpx.HTTPError as exc:
            raise OutcomeUnknown(_unknown(what, _transport(exc))) from exc
        if response.status_code >= 500:
            raise OutcomeUnknown(
                _unknown(what, f"answered {response.status_code}: {self._message(response)}"),
                status=response.status_code,
            )
        try:
            payload = self._payload(response, what)
        except UpstreamUnavailable as exc:  # a 2xx we cannot read, or a 5xx code in the body
            raise OutcomeUnknown(_unknown(what, exc.message), status=exc.status) from exc
        try:
            return CreateAnswer.model_validate(payload)
        except ValidationError:
            # It said yes but we cannot read the task id: the task may well exist.
            raise OutcomeUnknown(
                _unknown(what, f"answered {response.status_code} without a task_id"),
                status=response.status_code,
            ) from None

    async def producer_task(self, task_id: str) -> TaskAnswer:
        """Poll a producer task (free, safe to repeat)."""
        path = f"/api/v1/producer/task/{quote(task_id, safe='')}"
        return await self._read(path, TaskAnswer, f"poll of task {task_id}", task_id=task_id)

    async def credits(self) -> Credits:
        """The account's credit balance."""
        return await self._read("/api/v1/get-credits", Credits, "credits query")

    async def _read(
        self, path: str, model: type[_Model], what: str, *, task_id: str | None = None
    ) -> _Model:
        """GET with retries on transport errors and 5xx, then map the answer."""
        response = await self._get_with_retries(path, what)
        payload = self._payload(response, what, task_id=task_id)
        try:
            return model.model_validate(payload)
        except ValidationError:
            raise UpstreamUnavailable(
                f"the AI Music API answered the {what} with an unexpected body: "
                f"{_shorten(json.dumps(payload))}",
                status=response.status_code,
            ) from None

    async def _get_with_retries(self, path: str, what: str) -> httpx.Response:
        for delay in self._retry_delays:
            try:
                response = await self._send("GET", path)
            except httpx.HTTPError:
                pass
            else:
                if response.status_code < 500:
                    return response
            await asyncio.sleep(delay)
        attempts = len(self._retry_delays) + 1
        try:
            return await self._send("GET", path)
        except httpx.HTTPError as exc:
            raise UpstreamUnavailable(
                f"the AI Music API could not be reached for the {what} "
                f"({_transport(exc)}) after {attempts} attempts"
            ) from exc

    async def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        if not self._api_key:
            raise Unauthorized(
                "AIMUSIC_API_KEY is not set: get a key from your AI Music API dashboard "
                "and export it (nothing was sent)"
            )
        if not _HEADER_SAFE.fullmatch(self._api_key):
            # Checked here because httpx's own error for such a header would quote the key.
            raise Unauthorized(
                "AIMUSIC_API_KEY contains spaces, line breaks or non-ASCII characters, which "
                "an HTTP header cannot carry: copy the key again (nothing was sent)"
            )
        headers = {
            "Authorization": f"Bearer {self._api_key}",
            "User-Agent": f"aimusic-relay/{__version__}",
            "Accept": "application/json",
        }
        try:
            return await self._http.request(
                method, self._base_url + path, headers=headers, timeout=self._timeout, **kwargs
            )
        except httpx.InvalidURL as exc:  # not an HTTPError: nothing was sent
            raise UpstreamError(
                f"AIMUSIC_BASE_URL {self._base_url!r} is not a usable URL ({exc})"
            ) from exc

    def _payload(self, response: httpx.Response, what: str, *, task_id: str | None = None) -> Any:
        """The JSON of a 2xx answer, or the typed error for anything else."""
        status = response.status_code
        try:
            payload = response.json()
        except ValueError:
            payload = None
        # Some gateways answer 200 with the real status in the body's `code`.
        if 200 <= status < 300 and isinstance(payload, dict):
            code = payload.get("code")
            if isinstance(code, int) and code >= 400 and "task_id" not in payload:
                status = code
        if 200 <= status < 300:
            if payload is None:
                raise UpstreamUnavailable(
                    f"the AI Music API answered the {what} with a body that is not JSON: "
                    f"{self._message(response)}",
                    status=status,
                )
            return payload
        raise self._error(status, response, what, task_id=task_id)

    def _error(
        self, status: int, response: httpx.Response, what: str, *, task_id: str | None
    ) -> UpstreamError:
        message = self._message(response)
        if status == 400:
            if _TASK_NOT_FOUND.search(message):
                name = f"task {task_id}" if task_id else "the task"
                return TaskNotFound(f"{name} was not found upstream: {message}", status=400)
            return UpstreamRejected(f"the AI Music API rejected the request: {message}", status=400)
        if status == 401:
            return Unauthorized(
                f"the AI Music API refused the API key (401): {message} — check AIMUSIC_API_KEY",
                status=401,
            )
        if status == 402 or (status == 403 and "credit" in message.lower()):
            return InsufficientCredits(
                f"out of credits: {message} — top up {self._top_up()} "
                "or check `aimusic-relay credits`",
                status=status,
            )
        if status == 403:
            return UpstreamForbidden(
                f"the AI Music API refused the request (403): {message} — e.g. no active "
                "subscription, or the lyrics were rejected",
                status=403,
            )
        if status == 410:
            return TaskGone(f"retired by the AI Music API (410 Gone): {message}", status=410)
        if status == 429:
            retry_after = _retry_after(response.headers.get("retry-after"))
            wait = f" (Retry-After: {retry_after:g} s)" if retry_after is not None else ""
            return RateLimited(
                f"rate limited by the AI Music API: {message}{wait}", retry_after=retry_after
            )
        if status >= 500:
            return UpstreamUnavailable(
                f"the AI Music API is unavailable ({status}) for the {what}: {message}",
                status=status,
            )
        return UpstreamError(
            f"unexpected answer {status} from the AI Music API for the {what}: {message} "
            "— is AIMUSIC_BASE_URL right?",
            status=status,
        )

    def _message(self, response: httpx.Response) -> str:
        """The provider's explanation, from whichever field carries it; the key scrubbed out."""
        text = ""
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if isinstance(payload, dict):
            for key in _MESSAGE_KEYS:
                value = payload.get(key)
                if isinstance(value, str) and value.strip():
                    text = value
                    break
                if isinstance(value, dict | list):
                    text = json.dumps(value)
                    break
        if not text:
            text = response.text.strip() or response.reason_phrase or f"HTTP {response.status_code}"
        if self._api_key:
            text = text.replace(self._api_key, _REDACTED)
        return _shorten(text)

    def _top_up(self) -> str:
        host = urlsplit(self._base_url).hostname or ""
        if host.startswith("api."):  # api.aimusicapi.ai -> https://aimusicapi.ai
            return f"at https://{host.removeprefix('api.')}"
        return "in your AI Music API account"


def _shorten(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"


def _transport(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    detail = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {_shorten(detail)}"


def _unknown(what: str, reason: str) -> str:
    return (
        f"the outcome of the {what} is unknown ({reason}); the task may exist upstream and "
        "was NOT sent again, because a create costs credits — check `aimusic-relay tasks` "
        "before retrying"
    )


def _retry_after(value: str | None) -> float | None:
    """`Retry-After` as seconds from now: delta-seconds or an HTTP date; None if unusable."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000" parses naive; HTTP dates are always GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - time.time())
