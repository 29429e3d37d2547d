"""The `forward` handler: POST each event as JSON to your own URL, signed with Standard Webhooks.

Standard Webhooks (https://www.standardwebhooks.com) is an open signing scheme with verifiers
in every major language, so the receiving service needs no code of ours to check a request.
`webhook-id` is the event id plus the handler name: a retry or a replay carries the same id,
and receivers that dedupe on it process the event once. The timestamp is the time of each
attempt, since receivers refuse signatures older than five minutes.

The URL is chosen by whoever runs the relay, not by the provider, so unlike audio downloads it
may point at a loopback or private address on purpose (a service beside the relay): there is
no SSRF guard here. Redirects are not followed: a signed body goes only where it was aimed.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import re
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from standardwebhooks.webhooks import Webhook

from handlers._text import NOT_SENT
from handlers.base import HandlerCheck, HandlerContext, HandlerError, config_secrets
from receiver.models import Event
from receiver.retry import parse_retry_after

__all__ = ["ForwardHandler"]

HOW_TO_GENERATE = (
    'python -c "import base64,secrets;'
    "print('whsec_'+base64.b64encode(secrets.token_bytes(24)).decode())\""
)
"""A shell command that prints a fresh secret."""

_RESERVED_HEADERS = frozenset(
    {"content-type", "content-length", "host", "transfer-encoding"}
    | {"webhook-id", "webhook-timestamp", "webhook-signature"}
)
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_SNIPPET_BYTES = 1024  # read at most this much of an error answer
_SNIPPET_CHARS = 200


class ForwardHandler:
    """POSTs `{"type", "timestamp", "data"}` to `url`, signed with the `whsec_` secret."""

    class Config(BaseModel):
        """Options of one `type = "forward"` entry in relay.toml."""

        # The secret and header values are credentials: never echo inputs in an error.
        model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

        url: str
        secret: SecretStr
        request_timeout_s: float = Field(default=10.0, gt=0, le=300)
        """One POST's timeout; `timeout_s` is the dispatcher's limit for the whole attempt."""
        headers: dict[str, str] = Field(default_factory=dict)

        @field_validator("url")
        @classmethod
        def _check_url(cls, url: str) -> str:
            try:
                parts = urlsplit(url)
                parts.port  # noqa: B018 - raises ValueError for a port out of range
            except ValueError as exc:
                raise ValueError("not a valid URL") from exc
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("must be an http:// or https:// URL with a host")
            return url

        @field_validator("secret")
        @classmethod
        def _check_secret(cls, secret: SecretStr) -> SecretStr:
            value = secret.get_secret_value()
            how = f"generate one with: {HOW_TO_GENERATE}"
            if not value.startswith("whsec_"):
                raise ValueError(f"must start with 'whsec_' (Standard Webhooks); {how}")
            encoded = value.removeprefix("whsec_")
            try:  # unpadded base64 is common and verifiers accept it
                key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
            except (binascii.Error, ValueError):
                raise ValueError(f"the part after 'whsec_' is not valid base64; {how}") from None
            if len(key) < 16:
                raise ValueError(f"too short: use at least 16 random bytes; {how}")
            return secret

        @field_validator("headers")
        @classmethod
        def _check_headers(cls, headers: dict[str, str]) -> dict[str, str]:
            for name, value in headers.items():
                if not _HEADER_NAME.fullmatch(name):
                    raise ValueError(f"{name!r} is not a valid header name")
                if name.lower() in _RESERVED_HEADERS:
                    raise ValueError(f"{name!r} is set by the relay and cannot be overridden")
                if any(ch in value for ch in "\r\n\0"):
                    raise ValueError(f"the value of {name!r} contains a line break or NUL")
            return headers

    def __init__(self, name: str, config: ForwardHandler.Config) -> None:
        self.name = name
        self.config = config
        self._signer: Webhook | None = None
        parts = urlsplit(config.url)
        port = f":{parts.port}" if parts.port else ""
        self._where = f"{parts.scheme}://{parts.hostname}{port}"  # paths may hold tokens

    async def handle(self, event: Event, ctx: HandlerContext) -> dict[str, Any]:
        """POST the event once; 2xx succeeds, 4xx is permanent, the rest is retried."""
        if self._signer is None:
            self._signer = Webhook(self.config.secret.get_secret_value())
        webhook_id = f"{event.id}:{self.name}"
        body = json.dumps(
            _payload(event, ctx), ensure_ascii=False, separators=(",", ":"), default=str
        )
        now = int(time.time())
        signature = self._signer.sign(webhook_id, datetime.fromtimestamp(now, tz=UTC), body)
        headers = {
            **self.config.headers,
            "content-type": "application/json",
            "webhook-id": webhook_id,
            "webhook-timestamp": str(now),
            "webhook-signature": signature,
        }
        timeout = self.config.request_timeout_s
        try:
            async with ctx.http.stream(
                "POST",
                self.config.url,
                content=body.encode(),
                headers=headers,
                timeout=timeout,
                follow_redirects=False,
            ) as response:
                status = response.status_code
                if 200 <= status < 300:
                    with contextlib.suppress(httpx.HTTPError):  # delivered; the rest is courtesy
                        await _snippet(response)  # a short answer read whole: socket reused
                    return {"status": status, "webhook_id": webhook_id}
                snippet = await _snippet(response)
                retry_after = parse_retry_after(response.headers.get("retry-after"))
        except httpx.TimeoutException as exc:
            raise HandlerError(
                f"forward to {self._where}: no answer within {timeout:g} s",
                retryable=True,
                blame="unavailable",
            ) from exc
        except httpx.HTTPError as exc:
            detail = " ".join(str(exc).replace(self.config.url, self._where).split())[:200]
            raise HandlerError(
                f"forward to {self._where}: {type(exc).__name__}: {detail}",
                retryable=True,
                blame="unavailable",
            ) from exc
        raise _refused(self._where, status, snippet, retry_after)

    async def check(self) -> HandlerCheck:
        """The URL's form only: any request would deliver to the receiver (its path is not
        shown, since it may hold a token)."""
        if urlsplit(self.config.url).scheme != "https":
            return HandlerCheck(
                "warn",
                f"URL well-formed but plain http ({self._where}); {NOT_SENT}",
                "use https so the event is not readable on the way",
            )
        return HandlerCheck("ok", f"URL well-formed ({self._where}, path not shown); {NOT_SENT}")

    def secrets(self) -> Iterable[str]:
        """The signing secret and every header value (they carry tokens)."""
        return config_secrets(self.config)


def _payload(event: Event, ctx: HandlerContext) -> dict[str, Any]:
    """The Standard Webhooks envelope around our normalised event."""
    clip = event.clip
    return {
        "type": event.kind,
        "timestamp": event.received_at.isoformat(),
        "data": {
            "event_id": event.id,
            "task_id": event.task_id,
            "task_ref": event.task_ref,
            "clip_id": event.clip_id,
            "platform": event.platform,
            "labels": dict(event.labels),
            "prompt": event.prompt,
            "title": event.title,
            "audio_url": event.audio_url,
            "image_url": event.image_url,
            "duration": clip.get("duration"),
            "tags": clip.get("tags"),
            "lyrics": clip.get("lyrics"),
            "error": event.error,
            "source": event.source,
            "received_at": event.received_at.isoformat(),
            "results": {name: dict(result) for name, result in ctx.results.items()},
            "clip": dict(clip),
        },
    }


def _refused(where: str, status: int, snippet: str, retry_after: float | None) -> HandlerError:
    """What a non-2xx answer means: retry (429, 408, 5xx) or stop (the other 3xx and 4xx)."""
    said = f": {snippet}" if snippet else ""
    if status in (429, 503):
        wait = f", retry after {retry_after:g} s" if retry_after is not None else ""
        return HandlerError(
            f"forward to {where}: HTTP {status}{wait}{said}",
            retryable=True,
            retry_after=retry_after,
            blame="unavailable",
        )
    if status == 408 or status >= 500:
        return HandlerError(
            f"forward to {where}: HTTP {status}{said}", retryable=True, blame="unavailable"
        )
    hint = " (redirects are not followed; put the final URL in relay.toml)" if status < 400 else ""
    return HandlerError(
        f"forward to {where}: HTTP {status}{hint}{said}", retryable=False, blame="destination"
    )


async def _snippet(response: httpx.Response) -> str:
    """The first 200 characters of the answer, on one line, without reading it all."""
    head = b""
    async for chunk in response.aiter_bytes():
        head += chunk
        if len(head) >= _SNIPPET_BYTES:
            break
    text = head[:_SNIPPET_BYTES].decode("utf-8", errors="replace")
    return " ".join(text.split())[:_SNIPPET_CHARS]
