"""The sandbox behaves like the AI Music API, over real HTTP on loopback."""

# STYLE.md asks for `assert expected == actual`, which ruff's SIM300 calls a Yoda condition.

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import struct
import time
import uuid
import wave
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest

from receiver.errors import SignatureError
from receiver.sandbox import SandboxOptions, create_sandbox_app, serve
from receiver.signing import verify_callback
from tests.catcher import DEFAULT_SECRET, SECRET, Catcher, Hooks, wait_for
from tests.servers import free_port, run_asgi

FAST: dict[str, Any] = {
    "delay_s": 0.3,
    "callback_retry_delays": (0.1, 0.2, 0.4),
    "slow_callback_s": 1.0,
}
AUTH = {"Authorization": "Bearer test-key"}
CREATE = "/api/v1/producer/create"
RETIRED = [
    "cover_music",
    "extend_music",
    "replace_music",
    "swap_music_vocals",
    "swap_music_sound",
    "music_variation",
    "cover_upload_music",
    "extend_upload_music",
    "swap_upload_music_vocals",
]


@pytest.fixture(scope="module")
def hooks() -> Iterator[Hooks]:
    catcher = Catcher()
    with run_asgi(catcher.app) as url:
        yield Hooks(catcher, url)


@pytest.fixture(scope="module")
def sandbox_url() -> Iterator[str]:
    with run_asgi(create_sandbox_app(SandboxOptions(**FAST))) as url:
        yield url


@pytest.fixture
def make_sandbox() -> Iterator[Callable[..., str]]:
    """Start a sandbox with options of the test's choosing; stopped after the test."""
    with contextlib.ExitStack() as stack:

        def make(**options: Any) -> str:
            return stack.enter_context(run_asgi(create_sandbox_app(SandboxOptions(**options))))

        yield make


@pytest.fixture
async def api(sandbox_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sandbox_url, headers=AUTH) as client:
        yield client


async def create(api: httpx.AsyncClient, **fields: Any) -> str:
    response = await api.post(CREATE, json={"task_type": "create_music", **fields})
    assert 200 == response.status_code, response.text
    body = response.json()
    assert "success" == body["message"]
    return str(uuid.UUID(body["task_id"], version=4))


async def poll_final(api: httpx.AsyncClient, task_id: str) -> dict[str, Any]:
    for _ in range(200):
        body: dict[str, Any] = (await api.get(f"/api/v1/producer/task/{task_id}")).json()
        if body["status"] in ("SUCCESS", "FAILED"):
            return body
        await asyncio.sleep(0.03)
    raise AssertionError("task never finished")


async def sandbox_task(api: httpx.AsyncClient, task_id: str) -> dict[str, Any]:
    tasks = (await api.get("/sandbox/tasks")).json()
    return next(t for t in tasks if t["task_id"] == task_id)


async def test_healthz(sandbox_url: str) -> None:
    """The health route answers 200 without auth."""
    async with httpx.AsyncClient() as client:
        assert 200 == (await client.get(f"{sandbox_url}/healthz")).status_code


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ([1, 2], "JSON object"),
        ({"sound": "x"}, "task_type is required"),
        ({"task_type": "make_noise", "sound": "x"}, "not supported"),
        ({"task_type": "create_music"}, "sound or lyrics"),
        ({"task_type": "create_music", "sound": "  ", "lyrics": ""}, "sound or lyrics"),
        ({"task_type": "create_music", "sound": 5}, "sound must be a string"),
        ({"task_type": "create_music", "sound": "x", "title": "t" * 81}, "title is too long"),
        ({"task_type": "create_music", "sound": "x", "mv": "sonic-v4"}, "mv is invalid"),
        ({"task_type": "create_music", "sound": "x", "mv": "FUZZ-"}, "mv is invalid"),
        ({"task_type": "create_music", "sound": "x", "seed": 42}, "seed must be a string"),
        ({"task_type": "create_music", "sound": "x", "make_instrumental": "yes"}, "boolean"),
        ({"task_type": "create_music", "sound": "x", "webhook_secret": 1}, "webhook_secret"),
        (
            {
                "task_type": "create_music",
                "sound": "x",
                "webhook_url": "https://a.io/" + "x" * 1020,
            },
            "webhook_url is too long",
        ),
        ({"task_type": "create_music", "sound": "x", "webhook_url": "ftp://a.io/h"}, "https"),
        ({"task_type": "create_music", "sound": "x", "webhook_url": "http://8.8.8.8/h"}, "https"),
    ],
)
async def test_create_validation(api: httpx.AsyncClient, body: Any, needle: str) -> None:
    """Each invalid create body is a 400 whose message names the problem."""
    response = await api.post(CREATE, json=body)
    assert 400 == response.status_code
    assert 400 == response.json()["code"]
    assert needle in response.json()["message"]


async def test_create_rejects_malformed_json(api: httpx.AsyncClient) -> None:
    """A body that is not JSON at all is a 400."""
    response = await api.post(
        CREATE, content=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert {"code": 400, "message": "the request body is not valid JSON"} == response.json()


async def test_create_accepts_every_documented_field(api: httpx.AsyncClient) -> None:
    """All optional fields of the right type, http to loopback and https anywhere, are accepted."""
    for webhook in ("http://127.0.0.1:9/h", "http://localhost/h", "https://example.com/h"):
        await create(
            api,
            lyrics="la la",
            title="t" * 80,
            mv="FUZZ-1",
            seed="42",
            make_instrumental=True,
            webhook_url=webhook,
            webhook_secret="s",
            extra_field="kept quiet",
        )


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Basic dXNlcg=="}, {"Authorization": "Bearer"}, {"Authorization": "x"}],
)
async def test_api_requires_a_bearer_key(sandbox_url: str, headers: dict[str, str]) -> None:
    """Every /api route answers 401 without a non-empty bearer key."""
    async with httpx.AsyncClient(base_url=sandbox_url, headers=headers) as client:
        for response in (
            await client.post(CREATE, json={"task_type": "create_music", "sound": "x"}),
            await client.get("/api/v1/producer/task/abc"),
            await client.get("/api/v1/get-credits"),
            await client.post("/api/v1/nuro/create", json={}),
        ):
            assert 401 == response.status_code
            assert 401 == response.json()["code"]


async def test_configured_api_key_must_match(make_sandbox: Callable[..., str]) -> None:
    """With an api key configured, only that key gets in."""
    url = make_sandbox(api_key="right-key", **FAST)
    async with httpx.AsyncClient(base_url=url) as client:
        wrong = await client.get("/api/v1/get-credits", headers={"Authorization": "Bearer wrong"})
        right = await client.get(
            "/api/v1/get-credits", headers={"Authorization": "Bearer right-key"}
        )
    assert (401, 200) == (wrong.status_code, right.status_code)
    assert {"credits": 10000, "extra_credits": 0} == right.json()


@pytest.mark.parametrize("task_type", RETIRED)
async def test_retired_task_types_are_gone(api: httpx.AsyncClient, task_type: str) -> None:
    """Retired producer task types answer 410 advising a fresh create_music."""
    response = await api.post(CREATE, json={"task_type": task_type, "sound": "x"})
    assert 410 == response.status_code
    message = response.json()["message"]
    assert "retired" in message and "create_music" in message


async def test_nuro_is_gone(api: httpx.AsyncClient) -> None:
    """Both nuro routes answer 410 pointing to sonic and producer."""
    for response in (
        await api.post("/api/v1/nuro/create", json={"prompt": "x"}),
        await api.get("/api/v1/nuro/task/abc"),
    ):
        assert 410 == response.status_code
        message = response.json()["message"]
        assert "retired" in message and "sonic" in message and "producer" in message


async def test_unknown_task_is_a_400(api: httpx.AsyncClient) -> None:
    """Polling an unknown task id answers 400 `task not found.` like the provider."""
    response = await api.get(f"/api/v1/producer/task/{uuid.uuid4()}")
    assert (400, {"code": 400, "message": "task not found."}) == (
        response.status_code,
        response.json(),
    )


async def test_states_progress_over_time(make_sandbox: Callable[..., str]) -> None:
    """A task is PENDING, then RUNNING, then SUCCESS with one playable clip."""
    url = make_sandbox(delay_s=1.0)  # a PENDING phase of 0.2 s: wide enough for a slow runner
    seen: list[str] = []
    body: dict[str, Any] = {}
    async with httpx.AsyncClient(base_url=url, headers=AUTH) as api:
        task_id = await create(api, sound="dreamy synthwave", title="Night Drive")
        while not seen or seen[-1] != "SUCCESS":
            body = (await api.get(f"/api/v1/producer/task/{task_id}")).json()
            if not seen or seen[-1] != body["status"]:
                seen.append(body["status"])
            await asyncio.sleep(0.02)
    assert ["PENDING", "RUNNING", "SUCCESS"] == seen
    [clip] = body["data"]
    assert "succeeded" == clip["state"]
    assert ("Night Drive", "dreamy synthwave", "FUZZ-2.0") == (
        clip["title"],
        clip["sound"],
        clip["mv"],
    )
    assert clip["lyrics"] and 3.0 == clip["duration"]
    assert clip["audio_url"].endswith(f"/media/{clip['clip_id']}.wav")
    assert clip["wav_url"] == clip["audio_url"]
    assert clip["image_url"].endswith(f"/media/{clip['clip_id']}.png")


async def test_success_sends_one_signed_callback(api: httpx.AsyncClient, hooks: Hooks) -> None:
    """A finished task sends exactly one callback, signed with the task's webhook_secret."""
    name, url = hooks.new()
    task_id = await create(api, sound="jazz", webhook_url=url, webhook_secret=SECRET)
    await wait_for(lambda: len(hooks.of(name)) == 1)
    await asyncio.sleep(0.5)
    [delivery] = hooks.of(name)
    assert delivery.signature_error is None
    headers = delivery.headers
    assert "song.completed" == headers["x-webhook-event"]
    assert "application/json" == headers["content-type"]
    assert headers["x-webhook-id"] == headers["idempotency-key"]
    body = delivery.json
    assert (200, task_id, "producer", "song.completed", "SUCCESS") == (
        body["code"],
        body["task_id"],
        body["platform"],
        body["event"],
        body["status"],
    )
    assert ["succeeded"] == [clip["state"] for clip in body["data"]]
    assert [200] == [a["status"] for a in (await sandbox_task(api, task_id))["callback_attempts"]]


async def test_callback_without_secret_uses_default(api: httpx.AsyncClient, hooks: Hooks) -> None:
    """Without webhook_secret the callback is signed with the sandbox's default secret."""
    name, url = hooks.new()
    await create(api, lyrics="hello", webhook_url=url)
    await wait_for(lambda: len(hooks.of(name)) == 1)
    body = hooks.of(name)[0].body
    verify_callback([DEFAULT_SECRET], hooks.of(name)[0].headers, body, now=time.time())
    with pytest.raises(SignatureError):
        verify_callback([SECRET], hooks.of(name)[0].headers, body, now=time.time())


async def test_fail_marker_fails_and_refunds(
    make_sandbox: Callable[..., str], hooks: Hooks
) -> None:
    """#fail ends FAILED with a failed clip, a song.failed callback and the credits refunded."""
    url = make_sandbox(credits=10, **FAST)
    name, hook = hooks.new()
    async with httpx.AsyncClient(base_url=url, headers=AUTH) as api:
        task_id = await create(api, sound="noise #fail", webhook_url=hook, webhook_secret=SECRET)
        assert {"credits": 0, "extra_credits": 0} == (await api.get("/api/v1/get-credits")).json()
        body = await poll_final(api, task_id)
        assert "FAILED" == body["status"] and "refunded" in body["message"]
        [clip] = body["data"]
        assert "failed" == clip["state"] and clip["error_message"]
        assert "audio_url" not in clip
        assert {"credits": 10, "extra_credits": 0} == (await api.get("/api/v1/get-credits")).json()
        await wait_for(lambda: len(hooks.of(name)) == 1)
        delivery = hooks.of(name)[0]
        assert "song.failed" == delivery.headers["x-webhook-event"]
        assert ("song.failed", "FAILED") == (delivery.json["event"], delivery.json["status"])
        assert delivery.signature_error is None


async def test_nocallback_marker(api: httpx.AsyncClient, hooks: Hooks) -> None:
    """#nocallback sends nothing, yet polling still reaches SUCCESS."""
    name, url = hooks.new()
    task_id = await create(api, sound="ambient #nocallback", webhook_url=url)
    assert "SUCCESS" == (await poll_final(api, task_id))["status"]
    await asyncio.sleep(0.3)
    assert [] == hooks.of(name)
    assert [] == (await sandbox_task(api, task_id))["callback_attempts"]


async def test_no_webhook_url_no_callback(api: httpx.AsyncClient) -> None:
    """A task created without webhook_url makes no callback attempt."""
    task_id = await create(api, sound="ambient")
    await poll_final(api, task_id)
    await asyncio.sleep(0.1)
    assert [] == (await sandbox_task(api, task_id))["callback_attempts"]


async def test_dup_marker_delivers_three_times(api: httpx.AsyncClient, hooks: Hooks) -> None:
    """#dup delivers the final callback 3 times under 2 ids, with the same body."""
    name, url = hooks.new()
    await create(api, sound="polka", lyrics="again #dup", webhook_url=url, webhook_secret=SECRET)
    await wait_for(lambda: len(hooks.of(name)) >= 3)
    await asyncio.sleep(0.3)
    deliveries = hooks.of(name)
    ids = [d.headers["x-webhook-id"] for d in deliveries]
    assert 3 == len(deliveries)
    assert ids[0] == ids[1] != ids[2]
    assert 1 == len({d.body for d in deliveries})
    assert all(d.signature_error is None for d in deliveries)


async def test_slowcallback_marker_arrives_late(api: httpx.AsyncClient, hooks: Hooks) -> None:
    """#slowcallback delays the final callback by slow_callback_s after the final state."""
    name, url = hooks.new()
    started = time.monotonic()
    await create(api, sound="slow #slowcallback", webhook_url=url)
    await wait_for(lambda: len(hooks.of(name)) == 1)
    assert hooks.of(name)[0].at - started >= FAST["delay_s"] + FAST["slow_callback_s"]


async def test_badsig_marker_fails_verification(api: httpx.AsyncClient, hooks: Hooks) -> None:
    """#badsig callbacks do not verify with the task's secret."""
    name, url = hooks.new()
    await create(api, sound="punk #badsig", webhook_url=url, webhook_secret=SECRET)
    await wait_for(lambda: len(hooks.of(name)) == 1)
    assert "bad_signature" == hooks.of(name)[0].signature_error


async def test_streaming_marker_sends_streaming_first(api: httpx.AsyncClient, hooks: Hooks) -> None:
    """#streaming sends a RUNNING callback with a streaming clip before the final one."""
    name, url = hooks.new()
    await create(api, sound="live #streaming", webhook_url=url, webhook_secret=SECRET)
    await wait_for(lambda: len(hooks.of(name)) == 2)
    first, final = hooks.of(name)
    assert "song.completed" == first.headers["x-webhook-event"]
    assert ("song.completed", "RUNNING") == (first.json["event"], first.json["status"])
    [clip] = first.json["data"]
    assert "streaming" == clip["state"] and clip["audio_url"].endswith(".wav")
    assert ("SUCCESS", "succeeded") == (final.json["status"], final.json["data"][0]["state"])
    assert first.at < final.at
    assert first.headers["x-webhook-id"] != final.headers["x-webhook-id"]


async def test_markers_combine(api: httpx.AsyncClient, hooks: Hooks) -> None:
    """#fail with #streaming streams first, then fails."""
    name, url = hooks.new()
    await create(api, sound="#streaming", lyrics="#fail", webhook_url=url)
    await wait_for(lambda: len(hooks.of(name)) == 2)
    assert ["RUNNING", "FAILED"] == [d.json["status"] for d in hooks.of(name)]


async def test_failed_delivery_is_retried(api: httpx.AsyncClient, hooks: Hooks) -> None:
    """A callback answered 500 is re-sent under the same id, freshly signed, until a 2xx."""
    name, url = hooks.new(fail_first=1)
    task_id = await create(api, sound="retry me", webhook_url=url, webhook_secret=SECRET)
    await wait_for(lambda: len(hooks.of(name)) == 2)
    await asyncio.sleep(0.5)
    first, second = hooks.of(name)
    assert first.headers["x-webhook-id"] == second.headers["x-webhook-id"]
    assert second.signature_error is None
    assert second.at - first.at >= FAST["callback_retry_delays"][0]
    attempts = (await sandbox_task(api, task_id))["callback_attempts"]
    assert [(1, 500), (2, 200)] == [(a["attempt"], a["status"]) for a in attempts]


async def test_unreachable_webhook_gives_up_after_retries(api: httpx.AsyncClient) -> None:
    """A webhook that refuses connections is tried 1 + len(retry delays) times, then dropped."""
    task_id = await create(api, sound="void", webhook_url=f"http://127.0.0.1:{free_port()}/h")
    await asyncio.sleep(FAST["delay_s"] + sum(FAST["callback_retry_delays"]) + 0.4)
    attempts = (await sandbox_task(api, task_id))["callback_attempts"]
    assert [1, 2, 3, 4] == [a["attempt"] for a in attempts]
    assert all(a["status"] is None and a["error"] for a in attempts)


async def test_media_is_a_real_wav_and_png(api: httpx.AsyncClient) -> None:
    """A finished clip links to a playable WAV and a PNG cover, both with HEAD support."""
    task_id = await create(api, sound="chiptune")
    [clip] = (await poll_final(api, task_id))["data"]
    wav = await api.get(clip["audio_url"])
    assert ("audio/wav", str(len(wav.content))) == (
        wav.headers["content-type"],
        wav.headers["content-length"],
    )
    with wave.open(io.BytesIO(wav.content)) as reader:
        assert (22050, 1, 2, 3 * 22050) == (
            reader.getframerate(),
            reader.getnchannels(),
            reader.getsampwidth(),
            reader.getnframes(),
        )
        assert any(reader.readframes(reader.getnframes()))
    png = await api.get(clip["image_url"])
    assert "image/png" == png.headers["content-type"]
    assert png.content.startswith(b"\x89PNG\r\n\x1a\n")
    assert (b"IHDR", 256, 256) == struct.unpack(">4sII", png.content[12:24])
    head = await api.head(clip["audio_url"])
    assert (200, b"", wav.headers["content-length"]) == (
        head.status_code,
        head.content,
        head.headers["content-length"],
    )


async def test_media_is_deterministic_per_prompt(api: httpx.AsyncClient) -> None:
    """Two tasks with the same prompt get byte-identical audio; another prompt differs."""

    async def audio(sound: str) -> bytes:
        [clip] = (await poll_final(api, await create(api, sound=sound, lyrics="x")))["data"]
        return (await api.get(clip["audio_url"])).content

    first, second, other = await asyncio.gather(audio("same"), audio("same"), audio("other"))
    assert first == second != other


async def test_unknown_media_is_404(api: httpx.AsyncClient) -> None:
    """Unknown clips, and audio of an unfinished clip, answer 404."""
    assert 404 == (await api.get(f"/media/{uuid.uuid4()}.wav")).status_code
    assert 404 == (await api.get(f"/media/{uuid.uuid4()}.png")).status_code
    task_id = await create(api, sound="not yet")
    clip_id = (await sandbox_task(api, task_id))["clip_id"]
    assert 404 == (await api.get(f"/media/{clip_id}.wav")).status_code
    assert 200 == (await api.get(f"/media/{clip_id}.png")).status_code


async def test_public_url_is_used_in_links(make_sandbox: Callable[..., str]) -> None:
    """With public_url set, media links use it instead of the request's base URL."""
    url = make_sandbox(public_url="https://sandbox.example/", delay_s=0)
    async with httpx.AsyncClient(base_url=url, headers=AUTH) as api:
        [clip] = (await poll_final(api, await create(api, sound="x")))["data"]
    assert clip["audio_url"].startswith("https://sandbox.example/media/")


async def test_rate_limit_answers_429(make_sandbox: Callable[..., str]) -> None:
    """With rate_limit on, a third request within a second is a 429 with Retry-After."""
    url = make_sandbox(rate_limit=True, **FAST)
    async with httpx.AsyncClient(base_url=url, headers=AUTH) as api:
        answers = [await api.get("/api/v1/get-credits") for _ in range(3)]
        other = await api.get("/api/v1/get-credits", headers={"Authorization": "Bearer other"})
        refused = await api.post(CREATE, json={"task_type": "create_music", "sound": "x"})
    assert [200, 200, 429] == [a.status_code for a in answers]
    assert 429 == answers[2].json()["code"]
    assert int(answers[2].headers["retry-after"]) >= 1
    assert 200 == other.status_code
    assert 429 == refused.status_code


async def test_error_rate_answers_500_and_creates_nothing(make_sandbox: Callable[..., str]) -> None:
    """With error_rate=1.0 every API request is a 500 and no task exists afterwards."""
    url = make_sandbox(error_rate=1.0, seed=1, **FAST)
    async with httpx.AsyncClient(base_url=url, headers=AUTH) as api:
        response = await api.post(CREATE, json={"task_type": "create_music", "sound": "x"})
        assert (500, 500) == (response.status_code, response.json()["code"])
        assert [] == (await api.get("/sandbox/tasks")).json()


@pytest.mark.parametrize("status", [402, 403])
async def test_out_of_credits(make_sandbox: Callable[..., str], status: int) -> None:
    """Once credits fall below 10, create answers the configured out-of-credits status."""
    url = make_sandbox(credits=15, out_of_credits_status=status, **FAST)
    async with httpx.AsyncClient(base_url=url, headers=AUTH) as api:
        await create(api, sound="x")
        refused = await api.post(CREATE, json={"task_type": "create_music", "sound": "x"})
        balance = (await api.get("/api/v1/get-credits")).json()
    assert status == refused.status_code
    assert {
        "code": status,
        "message": "The remaining credits are not enough to complete this request.",
    } == refused.json()
    assert 5 == balance["credits"]


async def test_shutdown_cancels_pending_callbacks(hooks: Hooks) -> None:
    """Stopping the app with callbacks still pending is quick and sends nothing more."""
    name, url = hooks.new()
    app = create_sandbox_app(SandboxOptions(delay_s=5.0))
    with run_asgi(app) as base:
        async with httpx.AsyncClient(base_url=base, headers=AUTH) as api:
            await create(api, sound="never", webhook_url=url)
        stopping = time.monotonic()
    assert time.monotonic() - stopping < 3.0
    assert [] == hooks.of(name)


async def test_serve_runs_until_cancelled() -> None:
    """`serve` answers on its port and returns cleanly when its task is cancelled."""
    port = free_port()
    server = asyncio.create_task(serve("127.0.0.1", port, SandboxOptions(**FAST)))
    async with httpx.AsyncClient() as client:
        for _ in range(200):
            with contextlib.suppress(httpx.ConnectError):
                if (await client.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200:
                    break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError("serve did not start")
    server.cancel()
    with pytest.raises(asyncio.CancelledError):
        await server
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/healthz")


@pytest.mark.parametrize(
    "options",
    [
        {"error_rate": 1.5},
        {"out_of_credits_status": 400},
        {"delay_s": -1},
        {"api_key": " "},
        {"callback_timeout_s": 0},
        {"never_finish_marker": " "},
    ],
)
def test_options_refuse_nonsense(options: dict[str, Any]) -> None:
    """SandboxOptions refuses values that cannot describe a provider."""
    with pytest.raises(ValueError):
        SandboxOptions(**options)


async def test_never_marker_keeps_a_task_running(api: httpx.AsyncClient, hooks: Hooks) -> None:
    """#never keeps a producer task RUNNING well past its delay, with no final callback."""
    name, url = hooks.new()
    task_id = await create(api, sound="forever #never", webhook_url=url)
    await asyncio.sleep(FAST["delay_s"] * 3)
    body = (await api.get(f"/api/v1/producer/task/{task_id}")).json()
    assert ("RUNNING", "running") == (body["status"], body["data"][0]["state"])
    assert ["#never"] == (await sandbox_task(api, task_id))["markers"]
    assert [] == hooks.of(name)


@pytest.mark.parametrize(("marker", "expected"), [(None, "SUCCESS"), ("#hang", "RUNNING")])
async def test_never_finish_marker_is_configurable(
    make_sandbox: Callable[..., str], marker: str | None, expected: str
) -> None:
    """never_finish_marker=None turns #never off; another string takes its place."""
    url = make_sandbox(never_finish_marker=marker, delay_s=0.1)
    async with httpx.AsyncClient(base_url=url, headers=AUTH) as api:
        task_id = await create(api, sound="#never #hang")
        await asyncio.sleep(0.4)
        body = (await api.get(f"/api/v1/producer/task/{task_id}")).json()
    assert expected == body["status"]


async def test_request_log_lists_api_requests(make_sandbox: Callable[..., str]) -> None:
    """/sandbox/requests lists each API request's method, path and status, never its headers."""
    url = make_sandbox(**FAST)
    async with httpx.AsyncClient(base_url=url, headers=AUTH) as api:
        await api.get("/api/v1/get-credits")
        await api.post(CREATE, json={})
        await api.get("/healthz")
        log = (await api.get("/sandbox/requests")).json()
    assert [("GET", "/api/v1/get-credits", 200), ("POST", CREATE, 400)] == [
        (entry["method"], entry["path"], entry["status"]) for entry in log
    ]
    assert "test-key" not in json.dumps(log)


async def test_no_subscription_and_copyright_answer_403(make_sandbox: Callable[..., str]) -> None:
    """subscription_active=False and #copyright lyrics answer 403 in the provider's shape."""
    body = {"task_type": "create_music", "sound": "x", "lyrics": "words #copyright"}
    async with (
        httpx.AsyncClient(base_url=make_sandbox(subscription_active=False), headers=AUTH) as off,
        httpx.AsyncClient(base_url=make_sandbox(credits=10), headers=AUTH) as on,
    ):
        refused = await off.post(CREATE, json={"task_type": "create_music", "sound": "x"})
        rejected = await on.post(CREATE, json=body)
        balance = (await on.get("/api/v1/get-credits")).json()["credits"]
    assert (403, "no active subscription") == (
        refused.status_code,
        refused.json()["message"][: len("no active subscription")],
    )
    assert (403, {"code": 403, "message": "lyrics rejected: copyright"}, 10) == (
        rejected.status_code,
        rejected.json(),
        balance,
    )
