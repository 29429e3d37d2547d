"""The HTTP side of `UpstreamClient`: auth, retries of reads, answer mapping.

`UpstreamClient` adds the API's calls on top; this base holds how one request is sent, when a
read is retried, and how an answer becomes a payload or a typed error.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, ValidationError

from receiver import __version__
from receiver.errors import Unauthorized, UpstreamError, UpstreamUnavailable
from receiver.retry import parse_retry_after
from receiver.upstream.errors import Call, error_for, message_of, shorten, transport

__all__ = ["Transport", "Unsure"]

_HEADER_SAFE = re.compile(r"[\x21-\x7e]+")  # visible ASCII: what a bearer token may contain
_Model = TypeVar("_Model", bound=BaseModel)


class Unsure(Exception):
    """A once-only POST whose outcome we cannot know; each caller words its own error."""

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason, self.status = reason, status


class Transport:
    """One base URL and key over one connection pool; use it as `async with`.

    Pass `http` to share a connection pool (it is then not closed here). `retry_delays` are
    the waits before each retry of a read (poll, credits). `on_error` is told about every
    failed exchange ("429", "503", "timeout", "connect", ...): the app counts them in its
    metrics without this module knowing about metrics.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        timeout: float = 30.0,
        http: httpx.AsyncClient | None = None,
        retry_delays: Sequence[float] = (0.5, 1.5),
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._api_key = api_key or None
        self._timeout = timeout
        self._owns_http = http is None
        self._http = http or httpx.AsyncClient(timeout=timeout)
        self._retry_delays = tuple(retry_delays)
        self._on_error = on_error

    def __repr__(self) -> str:
        key = "set" if self._api_key else "missing"
        return f"{type(self).__name__}(base_url={self._base_url!r}, api_key=<{key}>)"

    async def __aenter__(self) -> Self:
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

    async def _post_once(self, path: str, body: dict[str, Any], call: Call) -> Any:
        """The JSON answer of one POST; `Unsure` on timeout, transport error or 5xx."""
        try:
            response = await self._send("POST", path, json=body)
        except httpx.HTTPError as exc:
            raise Unsure(transport(exc)) from exc
        if response.status_code >= 500:
            message = message_of(response, self._api_key)
            raise Unsure(f"answered {response.status_code}: {message}", response.status_code)
        try:
            return self._payload(response, call)
        except UpstreamUnavailable as exc:  # a 2xx we cannot read, or a 5xx code in the body
            raise Unsure(exc.message, exc.status) from exc

    async def _read(self, path: str, model: type[_Model], call: Call) -> _Model:
        """GET with retries on transport errors and 5xx, then map the answer."""
        response = await self._get_with_retries(path, call.what)
        return self._model(self._payload(response, call), model, call, response.status_code)

    def _model(self, payload: Any, model: type[_Model], call: Call, status: int) -> _Model:
        try:
            return model.model_validate(payload)
        except ValidationError:
            raise UpstreamUnavailable(
                f"the AI Music API answered the {call.what} with an unexpected body: "
                f"{shorten(json.dumps(payload))}",
                status=status,
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
                f"({transport(exc)}) after {attempts} attempts"
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
            response = await self._http.request(
                method, self._base_url + path, headers=headers, timeout=self._timeout, **kwargs
            )
        except httpx.InvalidURL as exc:  # not an HTTPError: nothing was sent
            raise UpstreamError(
                f"AIMUSIC_BASE_URL {self._base_url!r} is not a usable URL ({exc})"
            ) from exc
        except httpx.HTTPError as exc:
            self._observe(_failure_label(exc))
            raise
        if response.status_code >= 400:
            self._observe(str(response.status_code))
        return response

    def _observe(self, status: str) -> None:
        if self._on_error is not None:
            self._on_error(status)

    def _payload(self, response: httpx.Response, call: Call) -> Any:
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
                self._observe(str(code))
        if 200 <= status < 300 and payload is not None:
            return payload
        message = message_of(response, self._api_key)
        if 200 <= status < 300:
            self._observe("bad_answer")
            raise UpstreamUnavailable(
                f"the AI Music API answered the {call.what} with a body that is not JSON: "
                f"{message}",
                status=status,
            )
        wait = parse_retry_after(response.headers.get("retry-after")) if status == 429 else None
        raise error_for(status, message, call, retry_after_s=wait, account=self._account())

    def _account(self) -> str:
        """Where the user tops up or subscribes: the brand's site, or a generic pointer."""
        host = urlsplit(self._base_url).hostname or ""
        if host.startswith("api."):  # api.aimusicapi.ai -> https://aimusicapi.ai
            return f"at https://{host.removeprefix('api.')}"
        return "in your AI Music API account"


def _failure_label(exc: httpx.HTTPError) -> str:
    """A transport failure as a metrics label: timeout, connect or transport."""
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, httpx.ConnectError):
        return "connect"
    return "transport"
