"""The upstream client maps every provider answer to a typed error and retries only when safe."""

# STYLE.md asks for `assert expected == actual`, which ruff's SIM300 calls a Yoda condition.

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

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
from receiver.upstream.client import UpstreamClient
from tests.keyed_sandbox import keyed_fixtures
from tests.servers import free_port, run_asgi

KEY = "sk-live-very-secret-0123456789"
FAST: dict[str, Any] = {"delay_s": 0.3, "callback_retry_delays": (0.1,), "slow_callback_s": 1.0}
MUSIC = {"task_type": "create_music", "sound": "bossa nova", "title": "Rio"}


@dataclasses.dataclass(frozen=True)
class Answer:
    """One scripted HTTP answer."""

    status: int = 200
    body: bytes = b"{}"
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    sleep: float = 0.0
    content_type: str = "application/json"


class Scripted:
    """A fake upstream that plays back answers in order (the last one repeats) and logs requests."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.answers: list[Answer] = [Answer()]
        self.app = Starlette(routes=[Route("/{path:path}", self._answer, methods=["GET", "POST"])])

    def play(self, *answers: Answer) -> None:
        self.requests.clear()
        self.answers = list(answers)

    async def _answer(self, request: Request) -> Response:
        raw_path = request.scope["raw_path"].decode("ascii")  # as sent, before unquoting
        self.requests.append((request.method, raw_path, dict(request.headers)))
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if answer.sleep:
            await asyncio.sleep(answer.sleep)
        return Response(
            answer.body, answer.status, headers=answer.headers, media_type=answer.content_type
        )


def error(status: int, message: str, **headers: str) -> Answer:
    body = f'{{"code": {status}, "message": "{message}"}}'.encode()
    return Answer(status, body, headers)


@pytest.fixture(scope="module")
def scripted_server() -> Iterator[tuple[Scripted, str]]:
    scripted = Scripted()
    with run_asgi(scripted.app) as url:
        yield scripted, url


@pytest.fixture
def scripted(scripted_server: tuple[Scripted, str]) -> Scripted:
    scripted_server[0].play(Answer())
    return scripted_server[0]


sandbox_url, make_sandbox, client = keyed_fixtures(KEY, FAST, retry_delays=(0.01, 0.01))


@pytest.fixture
async def fake(scripted_server: tuple[Scripted, str]) -> AsyncIterator[UpstreamClient]:
    async with UpstreamClient(
        scripted_server[1], KEY, timeout=0.5, retry_delays=(0.01, 0.01)
    ) as upstream:
        yield upstream


def assert_no_key(exc: BaseException) -> None:
    """Neither the error nor anything chained to it shows the API key."""
    seen: BaseException | None = exc
    while seen is not None:
        assert KEY not in str(seen) and KEY not in repr(seen)
        assert all(KEY not in str(arg) for arg in seen.args)
        seen = seen.__cause__ or seen.__context__


async def test_create_poll_and_credits_against_the_sandbox(client: UpstreamClient) -> None:
    """A create returns a task id, polling reaches SUCCESS, and the credits went down by 10."""
    before = await client.credits()
    created = await client.create_producer(MUSIC)
    assert isinstance(created, CreateAnswer) and "success" == created.message
    answer = await client.producer_task(created.task_id)
    assert isinstance(answer, TaskAnswer) and answer.status in ("PENDING", "RUNNING")
    while answer.status != "SUCCESS":
        await asyncio.sleep(0.05)
        answer = await client.producer_task(created.task_id)
    [clip] = answer.data
    assert ("Rio", "succeeded") == (clip.title, clip.state)
    assert clip.audio_url and clip.audio_url.endswith(".wav")
    after = await client.credits()
    assert isinstance(after, Credits) and before.credits - 10 == after.credits


async def test_validation_error_is_rejected(client: UpstreamClient) -> None:
    """A 400 validation answer becomes UpstreamRejected carrying the provider's message."""
    with pytest.raises(UpstreamRejected) as caught:
        await client.create_producer({**MUSIC, "title": "x" * 81})
    assert 400 == caught.value.status
    assert "title is too long" in caught.value.message
    assert_no_key(caught.value)


async def test_unknown_task_is_task_not_found(client: UpstreamClient) -> None:
    """The provider's 400 `task not found.` becomes TaskNotFound naming the task."""
    with pytest.raises(TaskNotFound) as caught:
        await client.producer_task("no-such-task")
    assert 400 == caught.value.status and "no-such-task" in caught.value.message
    assert_no_key(caught.value)


async def test_wrong_key_is_unauthorized(sandbox_url: str) -> None:
    """A 401 becomes Unauthorized that points at AIMUSIC_API_KEY without showing the key."""
    async with UpstreamClient(sandbox_url, KEY + "-wrong") as upstream:
        with pytest.raises(Unauthorized) as caught:
            await upstream.credits()
    assert 401 == caught.value.status and "AIMUSIC_API_KEY" in caught.value.message
    assert "-wrong" not in str(caught.value)


@pytest.mark.parametrize("key", [None, ""])
async def test_missing_key_sends_nothing(
    scripted_server: tuple[Scripted, str], key: str | None
) -> None:
    """Without an API key every call fails before anything is sent."""
    scripted, url = scripted_server
    scripted.play(Answer())
    async with UpstreamClient(url, key) as upstream:
        for call in (
            upstream.credits(),
            upstream.producer_task("t"),
            upstream.create_producer(MUSIC),
        ):
            with pytest.raises(Unauthorized, match="AIMUSIC_API_KEY is not set"):
                await call
    assert [] == scripted.requests


@pytest.mark.parametrize("key", [KEY + "\n", f" {KEY}", f"{KEY}é"])
async def test_unsendable_key_is_refused_without_showing_it(
    scripted_server: tuple[Scripted, str], key: str
) -> None:
    """A key that cannot travel in a header is refused before sending, without quoting it."""
    scripted, url = scripted_server
    scripted.play(Answer())
    async with UpstreamClient(url, key) as upstream:
        with pytest.raises(Unauthorized, match="copy the key again") as caught:
            await upstream.create_producer(MUSIC)
    assert_no_key(caught.value)
    assert [] == scripted.requests


@pytest.mark.parametrize("task_type", ["cover_music", "cover_upload_music", "swap_music_vocals"])
async def test_retired_task_type_refused_locally(
    scripted: Scripted, fake: UpstreamClient, task_type: str
) -> None:
    """A retired producer task type raises TaskGone advising create_music, without a request."""
    with pytest.raises(TaskGone) as caught:
        await fake.create_producer({"task_type": task_type, "sound": "x"})
    assert 410 == caught.value.status
    assert "retired" in caught.value.message and "create_music" in caught.value.message
    assert [] == scripted.requests


async def test_gone_from_server_is_task_gone(scripted: Scripted, fake: UpstreamClient) -> None:
    """A 410 from the provider becomes TaskGone with its message."""
    scripted.play(error(410, "this API family has been retired"))
    with pytest.raises(TaskGone, match="has been retired") as caught:
        await fake.producer_task("t")
    assert_no_key(caught.value)


@pytest.mark.parametrize("status", [402, 403])
async def test_out_of_credits(make_sandbox: Callable[..., str], status: int) -> None:
    """Both out-of-credits answers (402, 403 with the credits message) are InsufficientCredits."""
    url = make_sandbox(credits=0, out_of_credits_status=status)
    async with UpstreamClient(url, KEY) as upstream:
        with pytest.raises(InsufficientCredits) as caught:
            await upstream.create_producer(MUSIC)
    assert status == caught.value.status
    assert caught.value.message.startswith("out of credits: The remaining credits are not enough")
    assert "aimusic-relay credits" in caught.value.message
    assert_no_key(caught.value)


async def test_other_403_is_forbidden(scripted: Scripted, fake: UpstreamClient) -> None:
    """A 403 that is not about credits becomes UpstreamForbidden."""
    scripted.play(error(403, "lyrics rejected by moderation"))
    with pytest.raises(UpstreamForbidden, match="lyrics rejected by moderation") as caught:
        await fake.create_producer(MUSIC)
    assert 403 == caught.value.status
    assert_no_key(caught.value)


async def test_rate_limit_from_the_sandbox(make_sandbox: Callable[..., str]) -> None:
    """The sandbox's 429 becomes RateLimited with its Retry-After seconds."""
    async with UpstreamClient(make_sandbox(rate_limit=True), KEY) as upstream:
        await upstream.credits()
        await upstream.credits()
        with pytest.raises(RateLimited) as caught:
            await upstream.credits()
    assert 429 == caught.value.status
    assert caught.value.retry_after is not None and caught.value.retry_after >= 1
    assert_no_key(caught.value)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"Retry-After": "<HTTP date in 30 s>"}, 30.0),
        ({"Retry-After": "soon"}, None),
        ({}, None),
    ],
)
async def test_retry_after_forms(
    scripted: Scripted, fake: UpstreamClient, headers: dict[str, str], expected: float | None
) -> None:
    """Retry-After is read as seconds or as an HTTP date, and is None when absent or unusable."""
    if headers.get("Retry-After", "").startswith("<HTTP date"):
        headers = {"Retry-After": email.utils.formatdate(time.time() + 30, usegmt=True)}
    scripted.play(error(429, "slow down", **headers))
    with pytest.raises(RateLimited) as caught:
        await fake.producer_task("t")
    if expected is None:
        assert caught.value.retry_after is None
    else:
        assert caught.value.retry_after == pytest.approx(expected, abs=2)
    assert 1 == len(scripted.requests)


async def test_create_5xx_is_outcome_unknown(make_sandbox: Callable[..., str]) -> None:
    """A 500 on create becomes OutcomeUnknown: the task may exist, so nothing is re-sent."""
    async with UpstreamClient(make_sandbox(error_rate=1.0, seed=3), KEY) as upstream:
        with pytest.raises(OutcomeUnknown) as caught:
            await upstream.create_producer(MUSIC)
    assert 500 == caught.value.status
    assert "NOT sent again" in caught.value.message
    assert_no_key(caught.value)


async def test_create_is_never_retried(scripted: Scripted, fake: UpstreamClient) -> None:
    """A 502 on create is sent exactly once."""
    scripted.play(error(502, "bad gateway"), Answer(200, b'{"task_id": "t"}'))
    with pytest.raises(OutcomeUnknown):
        await fake.create_producer(MUSIC)
    assert 1 == len(scripted.requests)


async def test_create_timeout_is_outcome_unknown(scripted: Scripted, fake: UpstreamClient) -> None:
    """A create that times out becomes OutcomeUnknown after a single attempt."""
    scripted.play(Answer(200, b'{"task_id": "late"}', sleep=1.0))
    with pytest.raises(OutcomeUnknown, match="timed out") as caught:
        await fake.create_producer(MUSIC)
    assert 1 == len(scripted.requests)
    assert_no_key(caught.value)


async def test_create_with_unreadable_success_is_outcome_unknown(
    scripted: Scripted, fake: UpstreamClient
) -> None:
    """A 200 without a task id (or not JSON) is OutcomeUnknown, since the task may exist."""
    for body in (b'{"message": "success"}', b"<html>ok</html>"):
        scripted.play(Answer(200, body))
        with pytest.raises(OutcomeUnknown):
            await fake.create_producer(MUSIC)


async def test_create_connection_refused_is_outcome_unknown() -> None:
    """A create to a port nobody listens on is OutcomeUnknown (kept simple and safe)."""
    async with UpstreamClient(f"http://127.0.0.1:{free_port()}", KEY) as upstream:
        with pytest.raises(OutcomeUnknown) as caught:
            await upstream.create_producer(MUSIC)
    assert_no_key(caught.value)


async def test_poll_retries_5xx_then_succeeds(scripted: Scripted, fake: UpstreamClient) -> None:
    """A poll answered 500 twice is retried and returns the third answer."""
    ok = Answer(200, b'{"code": 200, "status": "RUNNING", "data": []}')
    scripted.play(error(500, "oops"), error(503, "busy"), ok)
    answer = await fake.producer_task("t")
    assert "RUNNING" == answer.status
    assert 3 == len(scripted.requests)


async def test_poll_gives_up_as_unavailable(scripted: Scripted, fake: UpstreamClient) -> None:
    """A poll that keeps getting 5xx raises UpstreamUnavailable after 1 + 2 attempts."""
    scripted.play(error(502, "bad gateway"))
    with pytest.raises(UpstreamUnavailable) as caught:
        await fake.producer_task("t")
    assert (502, 3) == (caught.value.status, len(scripted.requests))
    assert_no_key(caught.value)


async def test_poll_unreachable_is_unavailable() -> None:
    """A poll that cannot connect raises UpstreamUnavailable after its retries."""
    url = f"http://127.0.0.1:{free_port()}"
    async with UpstreamClient(url, KEY, retry_delays=(0.01, 0.01)) as upstream:
        with pytest.raises(UpstreamUnavailable, match="could not be reached") as caught:
            await upstream.producer_task("t")
    assert_no_key(caught.value)


async def test_sends_bearer_key_and_user_agent(scripted: Scripted, fake: UpstreamClient) -> None:
    """Every request carries the bearer key and the relay's User-Agent."""
    scripted.play(Answer(200, b'{"credits": 5, "extra_credits": 1}'))
    assert (5, 1) == ((await fake.credits()).credits, (await fake.credits()).extra_credits)
    _, path, headers = scripted.requests[0]
    assert "/api/v1/get-credits" == path
    assert f"Bearer {KEY}" == headers["authorization"]
    assert f"aimusic-relay/{__version__}" == headers["user-agent"]


async def test_task_id_is_escaped_in_the_path(scripted: Scripted, fake: UpstreamClient) -> None:
    """A task id cannot change the request path."""
    scripted.play(Answer(200, b'{"code": 200, "status": "PENDING", "data": []}'))
    await fake.producer_task("../get-credits")
    assert "/api/v1/producer/task/..%2Fget-credits" == scripted.requests[0][1]


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        (b'{"error": "from error"}', "application/json", "from error"),
        (b'{"detail": "from detail"}', "application/json", "from detail"),
        (b'{"description": "from description"}', "application/json", "from description"),
        (b"plain words", "text/plain", "plain words"),
    ],
)
async def test_message_is_read_from_any_field(
    scripted: Scripted, fake: UpstreamClient, body: bytes, content_type: str, expected: str
) -> None:
    """The provider's explanation is taken from message/error/detail/description or the text."""
    scripted.play(Answer(400, body, content_type=content_type))
    with pytest.raises(UpstreamRejected) as caught:
        await fake.create_producer(MUSIC)
    assert caught.value.message.endswith(expected)


async def test_long_message_is_truncated(scripted: Scripted, fake: UpstreamClient) -> None:
    """A huge error body does not end up whole in the exception."""
    scripted.play(Answer(400, b"x" * 5000, content_type="text/plain"))
    with pytest.raises(UpstreamRejected) as caught:
        await fake.create_producer(MUSIC)
    assert len(caught.value.message) < 400


async def test_echoed_key_is_redacted(scripted: Scripted, fake: UpstreamClient) -> None:
    """A provider message that echoes the API key is scrubbed before it reaches the error."""
    scripted.play(error(401, f"invalid key {KEY}"))
    with pytest.raises(Unauthorized) as caught:
        await fake.credits()
    assert "invalid key ***" in caught.value.message
    assert_no_key(caught.value)


async def test_unexpected_status_is_a_plain_upstream_error(
    scripted: Scripted, fake: UpstreamClient
) -> None:
    """A 404 (wrong base URL) is an UpstreamError that hints at AIMUSIC_BASE_URL."""
    scripted.play(Answer(404, b"Not Found", content_type="text/plain"))
    with pytest.raises(UpstreamError, match="AIMUSIC_BASE_URL") as caught:
        await fake.credits()
    assert type(caught.value) is UpstreamError and 404 == caught.value.status


async def test_repr_hides_the_key(sandbox_url: str) -> None:
    """The client's repr shows the base URL, never the key."""
    async with UpstreamClient(sandbox_url, KEY) as upstream:
        assert KEY not in repr(upstream) and sandbox_url in repr(upstream)


SONIC = {"task_type": "create_music", "custom_mode": False, "gpt_description_prompt": "x"}


@pytest.mark.parametrize(
    "body",
    [
        b'{"message": "success", "task_id": "s1"}',
        b'{"code": 200, "message": "success", "task_id": "s1"}',
    ],
)
async def test_sonic_create_answer_with_or_without_code(
    scripted: Scripted, fake: UpstreamClient, body: bytes
) -> None:
    """A sonic create answer is read with or without `code`, from the sonic path."""
    scripted.play(Answer(200, body))
    assert "s1" == (await fake.create_sonic(SONIC)).task_id
    assert [("POST", "/api/v1/sonic/create")] == [(m, p) for m, p, _ in scripted.requests]


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.create_sonic(SONIC),
        lambda c: c.create("sonic", SONIC),
        lambda c: c.lyrics_create({"prompt": "p"}),
    ],
)
async def test_paid_creates_are_sent_once(
    scripted: Scripted, fake: UpstreamClient, call: Callable[[UpstreamClient], Any]
) -> None:
    """Sonic and lyrics creates, like producer's, are never retried: a 502 is OutcomeUnknown."""
    scripted.play(error(502, "bad gateway"), Answer(200, b'{"task_id": "t"}'))
    with pytest.raises(OutcomeUnknown, match="NOT sent again"):
        await call(fake)
    assert 1 == len(scripted.requests)


async def test_sonic_lyrics_failure_is_not_repeated(
    scripted: Scripted, fake: UpstreamClient
) -> None:
    """A sonic lyrics call that times out is sent once and says it was not repeated."""
    scripted.play(Answer(200, b'{"data": []}', sleep=1.0))
    with pytest.raises(UpstreamUnavailable, match=r"timed out.*sent once and not repeated"):
        await fake.sonic_lyrics("d")
    assert 1 == len(scripted.requests)


async def test_sonic_poll_is_retried(scripted: Scripted, fake: UpstreamClient) -> None:
    """A sonic poll answered 503 is retried, reads clips without an overall status."""
    clip = b'{"clip_id": "c", "state": "running", "duration": 1}'
    scripted.play(error(503, "busy"), Answer(200, b'{"code": 200, "data": [' + clip + b"]}"))
    answer = await fake.task("sonic", "s/1")
    assert (None, "running") == (answer.status, answer.data[0].state)
    assert ["/api/v1/sonic/task/s%2F1"] * 2 == [p for _, p, _ in scripted.requests]
