"""The forward handler POSTs events that an off-the-shelf Standard Webhooks verifier accepts."""

# STYLE.md asks for `assert expected == actual`, which ruff's SIM300 calls a Yoda condition.

from __future__ import annotations

import asyncio
import base64
import email.utils
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pydantic
import pytest
import structlog
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from handlers.base import Handler, HandlerContext, HandlerError
from handlers.forward import ForwardHandler
from receiver.delivery.spool import DownloadPolicy, Spool
from receiver.models import Event
from tests.servers import free_port, run_asgi

SECRET = "whsec_" + base64.b64encode(b"k" * 24).decode()
OTHER_SECRET = "whsec_" + base64.b64encode(b"x" * 24).decode()
NOT_FOUND = "no such hook; " * 30

Received = list[dict[str, Any]]
"""What the receiver saw: per request, whether the signature verified, the body and headers."""


@pytest.fixture(scope="module")
def receiver() -> Iterator[tuple[str, Received]]:
    """A service that verifies with `standardwebhooks` (401 if that fails), then answers as told."""
    received: Received = []

    async def hook(request: Request) -> Response:
        body, headers = await request.body(), dict(request.headers)
        try:
            payload = Webhook(SECRET).verify(body, headers)
        except WebhookVerificationError:
            received.append({"verified": False, "headers": headers})
            return Response("bad signature", status_code=401)
        received.append({"verified": True, "payload": payload, "headers": headers})
        answer = request.path_params["answer"]
        if answer == "429":
            return Response(status_code=429, headers={"Retry-After": "7"})
        if answer == "503":
            later = email.utils.formatdate(time.time() + 30, usegmt=True)
            return Response(status_code=503, headers={"Retry-After": later})
        if answer == "404":
            return Response(NOT_FOUND, status_code=404)
        if answer == "302":
            return Response(status_code=302, headers={"Location": "/hook/200"})
        if answer == "slow":
            await asyncio.sleep(2)
        return Response("ok", status_code=200 if answer == "slow" else int(answer))

    app = Starlette(routes=[Route("/hook/{answer}", hook, methods=["POST"])])
    with run_asgi(app) as url:
        yield url, received


@pytest.fixture
def ctx(tmp_path: Path, http: httpx.AsyncClient) -> HandlerContext:
    """A handler context whose earlier handler `bucket` stored a copy."""
    return HandlerContext(
        http=http,
        spool=Spool(tmp_path / "spool", "evt-1", http, DownloadPolicy()),
        log=structlog.get_logger(),
        public_url="https://relay.example",
        delivery_id="d1",
        attempt=1,
        results={"bucket": {"url": "https://s3.example/k.mp3", "key": "k"}},
    )


def make_event(kind: str = "song.completed", error: str | None = None) -> Event:
    """A completed song (or another kind) for clip-1 of task-1."""
    return Event(
        id="evt-1",
        kind=kind,  # type: ignore[arg-type]
        task_id="task-1",
        clip_id="clip-1",
        platform="sonic",
        clip={"title": "Night Drive", "audio_url": "https://cdn.example/a.mp3", "duration": 65.2},
        source="callback",
        received_at=datetime(2024, 5, 6, 23, 30, tzinfo=UTC),
        labels={"team": "a"},
        task_ref="ref-1",
        prompt="a calm song",
        error=error,
    )


MakeForward = Callable[..., ForwardHandler]


@pytest.fixture
def forward(receiver: tuple[str, Received]) -> MakeForward:
    """A forward handler named `out` aimed at `/hook/<answer>` on the receiver."""

    def make(answer: str = "200", **options: Any) -> ForwardHandler:
        url = options.pop("url", f"{receiver[0]}/hook/{answer}")
        config = ForwardHandler.Config(url=url, **{"secret": SECRET, **options})
        return ForwardHandler("out", config)

    return make


async def test_event_arrives_signed_with_the_standard_webhooks_scheme(
    forward: MakeForward, receiver: tuple[str, Received], ctx: HandlerContext
) -> None:
    """The receiver verifies the signature with `standardwebhooks` and gets the whole event."""
    handler = forward(headers={"X-Team": "ads"})
    result = await handler.handle(make_event(), ctx)
    assert {"status": 200, "webhook_id": "evt-1:out"} == result
    seen = receiver[1][-1]
    assert seen["verified"]
    assert ("evt-1:out", "ads", "application/json") == (
        seen["headers"]["webhook-id"],
        seen["headers"]["x-team"],
        seen["headers"]["content-type"],
    )
    assert abs(int(seen["headers"]["webhook-timestamp"]) - time.time()) < 60
    assert {
        "type": "song.completed",
        "timestamp": "2024-05-06T23:30:00+00:00",
        "data": {
            "event_id": "evt-1",
            "task_id": "task-1",
            "task_ref": "ref-1",
            "clip_id": "clip-1",
            "platform": "sonic",
            "labels": {"team": "a"},
            "prompt": "a calm song",
            "title": "Night Drive",
            "audio_url": "https://cdn.example/a.mp3",
            "image_url": None,
            "duration": 65.2,
            "tags": None,
            "lyrics": None,
            "error": None,
            "source": "callback",
            "received_at": "2024-05-06T23:30:00+00:00",
            "results": {"bucket": {"url": "https://s3.example/k.mp3", "key": "k"}},
            "clip": {
                "title": "Night Drive",
                "audio_url": "https://cdn.example/a.mp3",
                "duration": 65.2,
            },
        },
    } == seen["payload"]
    assert isinstance(handler, Handler)


async def test_retry_sends_the_same_webhook_id(
    forward: MakeForward, receiver: tuple[str, Received], ctx: HandlerContext
) -> None:
    """Receivers dedupe on `webhook-id`, so every attempt of one delivery repeats it."""
    handler = forward()
    event = make_event("song.failed", error="content policy")
    await handler.handle(event, ctx)
    await handler.handle(event, ctx)
    first, second = receiver[1][-2:]
    assert ("evt-1:out", "evt-1:out") == (
        first["headers"]["webhook-id"],
        second["headers"]["webhook-id"],
    )
    assert "content policy" == second["payload"]["data"]["error"]


async def test_wrong_secret_fails_verification_at_the_receiver(
    forward: MakeForward, receiver: tuple[str, Received], ctx: HandlerContext
) -> None:
    """A body signed with another secret is refused, so the receiver really checks."""
    with pytest.raises(HandlerError) as caught:
        await forward(secret=OTHER_SECRET).handle(make_event(), ctx)
    assert not receiver[1][-1]["verified"]
    assert (False, "destination") == (caught.value.retryable, caught.value.blame)
    assert "HTTP 401: bad signature" in caught.value.message
    assert OTHER_SECRET.removeprefix("whsec_") not in caught.value.message


async def test_rate_limit_is_retried_after_the_requested_delay(
    forward: MakeForward, ctx: HandlerContext
) -> None:
    """A 429 with `Retry-After: 7` is retryable no sooner than 7 s, blamed on availability."""
    with pytest.raises(HandlerError) as caught:
        await forward("429").handle(make_event(), ctx)
    error = caught.value
    assert (True, 7.0, "unavailable") == (error.retryable, error.retry_after, error.blame)


async def test_unavailable_with_an_http_date_is_retried_after_it(
    forward: MakeForward, ctx: HandlerContext
) -> None:
    """A 503 whose `Retry-After` is an HTTP date waits until about then."""
    with pytest.raises(HandlerError) as caught:
        await forward("503").handle(make_event(), ctx)
    assert caught.value.retryable
    assert caught.value.retry_after is not None
    assert 20 < caught.value.retry_after <= 31


@pytest.mark.parametrize(
    ("answer", "retryable", "blame", "text"),
    [
        ("500", True, "unavailable", "HTTP 500: ok"),
        ("404", False, "destination", f"HTTP 404: {NOT_FOUND[:200].strip()}"),
        ("302", False, "destination", "HTTP 302 (redirects are not followed"),
    ],
)
async def test_error_answers_are_classified(
    forward: MakeForward,
    ctx: HandlerContext,
    answer: str,
    retryable: bool,
    blame: str,
    text: str,
) -> None:
    """5xx is retried; 4xx and redirects are permanent and quote the start of the answer."""
    with pytest.raises(HandlerError) as caught:
        await forward(answer).handle(make_event(), ctx)
    error = caught.value
    assert (retryable, blame) == (error.retryable, error.blame)
    assert text in error.message
    assert f"/hook/{answer}" not in error.message


async def test_unreachable_or_slow_receiver_is_retryable(
    forward: MakeForward, ctx: HandlerContext
) -> None:
    """Refused connections and timeouts are retryable and do not show the URL's path."""
    dead = f"http://127.0.0.1:{free_port()}/hook/tok-secret"
    with pytest.raises(HandlerError) as refused:
        await forward(url=dead).handle(make_event(), ctx)
    with pytest.raises(HandlerError) as slow:
        await forward("slow", request_timeout_s=0.2).handle(make_event(), ctx)
    assert ("unavailable", "unavailable") == (refused.value.blame, slow.value.blame)
    assert refused.value.retryable and slow.value.retryable
    assert "tok-secret" not in refused.value.message
    assert "no answer within 0.2 s" in slow.value.message


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"secret": "k" * 32}, "must start with 'whsec_'"),
        ({"secret": "whsec_not*base64!"}, "not valid base64"),
        ({"secret": "whsec_" + base64.b64encode(b"short").decode()}, "too short"),
        ({"url": "ftp://example.com/x"}, "http:// or https://"),
        ({"headers": {"Webhook-Signature": "v1,x"}}, "set by the relay"),
        ({"headers": {"X-Token": "a\r\nb: c"}}, "line break"),
        ({"timeout_s": 5}, "Extra inputs are not permitted"),
    ],
)
def test_bad_config_is_refused_with_advice_and_without_the_secret(
    options: dict[str, Any], needle: str
) -> None:
    """Bad secrets say how to make one; no error echoes the value it refused."""
    with pytest.raises(pydantic.ValidationError) as caught:
        ForwardHandler.Config(**{"url": "https://example.com/h", "secret": SECRET, **options})
    message = str(caught.value)
    assert needle in message
    if "secret" in options:
        assert "secrets.token_bytes(24)" in message
        assert options["secret"] not in message
