"""One family-agnostic client surface: producer and sonic dispatch, nuro refused locally."""

# STYLE.md asks for `assert expected == actual`, which ruff's SIM300 calls a Yoda condition.

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest

from receiver.errors import TaskGone, UpstreamRejected
from receiver.models import CallbackBody, Clip, normalise
from receiver.sandbox import SandboxOptions, create_sandbox_app
from receiver.upstream.client import UpstreamClient
from tests.servers import run_asgi

KEY = "families-test-key"
PRODUCER = {"task_type": "create_music", "sound": "surf rock"}
SONIC = {
    "task_type": "create_music",
    "custom_mode": False,
    "gpt_description_prompt": "surf rock",
    "mv": "sonic-v4-5",
}
NURO_CALLBACK: dict[str, Any] = {
    "code": 200,
    "platform": "nuro",
    "task_id": "nuro-task-1",
    "data": [
        {
            "id": "nuro-clip-1",
            "state": "succeeded",
            "title": "Old Song",
            "audio_url": "https://cdn.example/nuro-clip-1.mp3",
            "duration": "95.5",
            "style": "kept as an extra field",
        }
    ],
}


@pytest.fixture
def sandbox_url() -> Iterator[str]:
    """A fresh sandbox per test, so its request log holds only this test's requests."""
    with run_asgi(create_sandbox_app(SandboxOptions(api_key=KEY, delay_s=0.2))) as url:
        yield url


@pytest.fixture
async def client(sandbox_url: str) -> AsyncIterator[UpstreamClient]:
    async with UpstreamClient(sandbox_url, KEY, retry_delays=(0.01,)) as upstream:
        yield upstream


def requests_seen(sandbox_url: str) -> list[tuple[str, str, int]]:
    """(method, path, status) of every API request the sandbox received."""
    log = httpx.get(f"{sandbox_url}/sandbox/requests", timeout=5).json()
    return [(entry["method"], entry["path"], entry["status"]) for entry in log]


@pytest.mark.parametrize(("family", "params"), [("producer", PRODUCER), ("sonic", SONIC)])
async def test_generic_calls_dispatch_on_family(
    client: UpstreamClient, sandbox_url: str, family: str, params: dict[str, Any]
) -> None:
    """create(family) and task(family) reach that family's endpoints and parse the answer."""
    created = await client.create(family, params)
    answer = await client.task(family, created.task_id)
    assert {1: "producer", 2: "sonic"}[len(answer.data)] == family
    assert [
        ("POST", f"/api/v1/{family}/create", 200),
        ("GET", f"/api/v1/{family}/task/{created.task_id}", 200),
    ] == requests_seen(sandbox_url)


def _nuro_calls(client: UpstreamClient) -> list[Callable[[], Awaitable[Any]]]:
    return [
        lambda: client.nuro_create({"prompt": "x"}),
        lambda: client.nuro_task("old-task"),
        lambda: client.create("nuro", {"prompt": "x"}),
        lambda: client.task("nuro", "old-task"),
    ]


async def test_nuro_is_refused_without_a_request(client: UpstreamClient, sandbox_url: str) -> None:
    """Every nuro call raises TaskGone (410) pointing to sonic and producer; nothing is sent."""
    for call in _nuro_calls(client):
        with pytest.raises(TaskGone) as caught:
            await call()
        message = caught.value.message
        assert 410 == caught.value.status
        assert message.startswith("nuro was retired by the provider (410 Gone)")
        assert "`--family sonic`" in message and "`--family producer`" in message
        assert "nothing was sent" in message and "\n" not in message
    assert [] == requests_seen(sandbox_url)
    assert [] == httpx.get(f"{sandbox_url}/sandbox/tasks", timeout=5).json()


async def test_unknown_family_is_rejected_without_a_request(
    client: UpstreamClient, sandbox_url: str
) -> None:
    """A family name that does not exist is UpstreamRejected naming the valid ones."""
    with pytest.raises(UpstreamRejected, match="unknown API family 'udio': use producer or sonic"):
        await client.create("udio", PRODUCER)
    with pytest.raises(UpstreamRejected, match="nothing was sent"):
        await client.task("udio", "t")
    assert [] == requests_seen(sandbox_url)


async def test_the_sandbox_still_answers_410_for_nuro(sandbox_url: str) -> None:
    """Sent by hand, nuro routes get the provider's 410 advising sonic and producer."""
    headers = {"Authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(base_url=sandbox_url, headers=headers) as http:
        answers = [
            await http.post("/api/v1/nuro/create", json={}),
            await http.get("/api/v1/nuro/task/x"),
        ]
    assert [410, 410] == [a.status_code for a in answers]
    assert all("sonic" in a.json()["message"] for a in answers)


def test_nuro_callback_parses_with_id_as_clip_id() -> None:
    """An old nuro callback whose clips use `id` parses, and normalises to one completed song."""
    body = CallbackBody.model_validate(NURO_CALLBACK)
    assert ("nuro", "nuro-task-1") == (body.platform, body.task_id)
    [(kind, clip_id, fields)] = normalise(body, "song.completed")
    assert ("song.completed", "nuro-clip-1") == (kind, clip_id)
    assert (95.5, "kept as an extra field") == (fields["duration"], fields["style"])
    assert "https://cdn.example/nuro-clip-1.mp3" == fields["audio_url"]


def test_clip_id_wins_over_id() -> None:
    """With both `clip_id` and `id`, `clip_id` is the clip's id and `id` is kept as an extra."""
    clip = Clip.model_validate({"clip_id": "c", "id": "i"})
    assert ("c", {"id": "i"}) == (clip.clip_id, clip.model_extra)
    assert {"clip_id": "c", "id": "i"} == clip.model_dump(exclude_none=True)


def test_clip_without_any_id_is_still_refused() -> None:
    """A clip with neither `clip_id` nor `id` is invalid, as before."""
    with pytest.raises(ValueError, match="clip_id"):
        Clip.model_validate({"state": "succeeded"})
