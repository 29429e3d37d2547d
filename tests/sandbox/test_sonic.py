"""Sonic end to end on loopback: client, sandbox and models agree on two-clip tasks."""

# STYLE.md asks for `assert expected == actual`, which ruff's SIM300 calls a Yoda condition.

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from receiver.errors import InsufficientCredits, TaskNotFound, UpstreamRejected
from receiver.models import CallbackBody, CreateAnswer, TaskAnswer, normalise
from receiver.upstream.client import UpstreamClient
from tests.catcher import SECRET, Catcher, Hooks, wait_for
from tests.conftest import Relay
from tests.keyed_sandbox import keyed_fixtures
from tests.servers import run_asgi

KEY = "sonic-test-key"
FAST: dict[str, Any] = {"delay_s": 0.3, "callback_retry_delays": (0.1,), "slow_callback_s": 1.0}
CUSTOM = {
    "task_type": "create_music",
    "custom_mode": True,
    "prompt": "[Verse]\nCity lights are calling me",
    "title": "City Lights",
    "tags": "synthwave, female vocals",
    "mv": "sonic-v4-5",
}
DESCRIBED = {
    "task_type": "create_music",
    "custom_mode": False,
    "gpt_description_prompt": "a cheerful song about a dog at the beach",
    "mv": "sonic-v4",
}
FINAL = ("succeeded", "failed")


@pytest.fixture(scope="module")
def hooks() -> Iterator[Hooks]:
    catcher = Catcher()
    with run_asgi(catcher.app) as url:
        yield Hooks(catcher, url)


sandbox_url, make_sandbox, client = keyed_fixtures(KEY, FAST, retry_delays=(0.01,))


async def finished(client: UpstreamClient, task_id: str) -> TaskAnswer:
    """Poll a sonic task until both clips are final."""
    for _ in range(200):
        answer = await client.sonic_task(task_id)
        if answer.data and all(clip.state in FINAL for clip in answer.data):
            return answer
        await asyncio.sleep(0.03)
    raise AssertionError("sonic task never finished")


async def test_custom_mode_round_trip(client: UpstreamClient) -> None:
    """A custom-mode sonic create makes two playable clips carrying the given words."""
    created = await client.create_sonic(CUSTOM)
    assert isinstance(created, CreateAnswer) and (200, "success") == (
        created.code,
        created.message,
    )
    first = await client.sonic_task(created.task_id)
    assert {"pending", "running"} >= {clip.state for clip in first.data}
    assert first.status is None and "success" == first.message
    answer = await finished(client, created.task_id)
    assert 2 == len(answer.data) and answer.data[0].clip_id != answer.data[1].clip_id
    for clip in answer.data:
        assert ("succeeded", "City Lights", CUSTOM["tags"]) == (clip.state, clip.title, clip.tags)
        assert (CUSTOM["prompt"], "sonic-v4-5", 3.0) == (clip.lyrics, clip.mv, clip.duration)
        assert clip.model_extra is not None and clip.model_extra["created_at"].endswith("Z")
        assert "" == clip.video_url and clip.image_url and clip.image_url.endswith(".png")
    async with httpx.AsyncClient() as http:
        audio = [(await http.get(str(clip.audio_url))).content for clip in answer.data]
    assert audio[0].startswith(b"RIFF") and audio[0] != audio[1]


async def test_described_song_through_the_generic_calls(client: UpstreamClient) -> None:
    """`create("sonic")`/`task("sonic")` work, and custom_mode=false gets invented words."""
    created = await client.create("sonic", DESCRIBED)
    await finished(client, created.task_id)
    answer = await client.task("sonic", created.task_id)
    [title] = {clip.title for clip in answer.data}
    assert "A Cheerful Song About A" == title
    for clip in answer.data:
        extra = clip.model_extra or {}
        assert DESCRIBED["gpt_description_prompt"] == extra["gpt_description_prompt"]
        assert clip.lyrics and "[Verse]" in clip.lyrics and clip.tags


async def test_families_do_not_share_task_ids(client: UpstreamClient) -> None:
    """A sonic task id is unknown to the producer poll endpoint, and the other way round."""
    sonic = await client.create_sonic(DESCRIBED)
    producer = await client.create_producer({"task_type": "create_music", "sound": "x"})
    with pytest.raises(TaskNotFound):
        await client.producer_task(sonic.task_id)
    with pytest.raises(TaskNotFound):
        await client.sonic_task(producer.task_id)


async def test_poll_and_callback_durations_both_parse_to_float(
    client: UpstreamClient, hooks: Hooks, sandbox_url: str
) -> None:
    """The poll's duration is a number, the callback's a string; both parse to 3.0."""
    name, url = hooks.new()
    created = await client.create_sonic({**CUSTOM, "webhook_url": url, "webhook_secret": SECRET})
    await finished(client, created.task_id)
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {KEY}"}) as http:
        raw = (await http.get(f"{sandbox_url}/api/v1/sonic/task/{created.task_id}")).json()
    assert [3.0, 3.0] == [clip["duration"] for clip in raw["data"]]
    assert {"code", "message", "data"} == set(raw)
    await wait_for(lambda: len(hooks.of(name)) == 1)
    body = hooks.of(name)[0].json
    assert ["3.00", "3.00"] == [clip["duration"] for clip in body["data"]]
    assert [3.0, 3.0] == [clip.duration for clip in CallbackBody.model_validate(body).data]


async def test_callback_is_signed_with_both_clips(client: UpstreamClient, hooks: Hooks) -> None:
    """One signed callback per final state, platform sonic, both clips, two completed events."""
    name, url = hooks.new()
    created = await client.create_sonic({**CUSTOM, "webhook_url": url, "webhook_secret": SECRET})
    await wait_for(lambda: len(hooks.of(name)) == 1)
    await asyncio.sleep(0.3)
    [delivery] = hooks.of(name)
    assert delivery.signature_error is None
    assert "song.completed" == delivery.headers["x-webhook-event"]
    body = CallbackBody.model_validate(delivery.json)
    assert (created.task_id, "sonic", "song.completed") == (body.task_id, body.platform, body.event)
    events = normalise(body, delivery.headers["x-webhook-event"])
    clip_ids = {clip.clip_id for clip in (await client.sonic_task(created.task_id)).data}
    assert ["song.completed", "song.completed"] == [kind for kind, _, _ in events]
    assert clip_ids == {clip_id for _, clip_id, _ in events}


async def test_streaming_marker_streams_both_clips_first(
    client: UpstreamClient, hooks: Hooks
) -> None:
    """#streaming (here in the tags) sends both clips `streaming` under song.completed first."""
    name, url = hooks.new()
    params = {**CUSTOM, "tags": "live #streaming", "webhook_url": url}
    await client.create_sonic(params)
    await wait_for(lambda: len(hooks.of(name)) == 2)
    first, final = hooks.of(name)
    assert "song.completed" == first.headers["x-webhook-event"]
    assert ["streaming", "streaming"] == [clip["state"] for clip in first.json["data"]]
    assert all(clip["audio_url"].endswith(".wav") for clip in first.json["data"])
    kinds = [kind for kind, _, _ in normalise(CallbackBody.model_validate(first.json), None)]
    assert ["song.streaming", "song.streaming"] == kinds
    assert ["succeeded", "succeeded"] == [clip["state"] for clip in final.json["data"]]


async def test_fail_marker_fails_both_clips_and_refunds(
    make_sandbox: Callable[..., str], hooks: Hooks
) -> None:
    """#fail (here in the title) fails both clips with a reason, calls back, refunds 15."""
    name, url = hooks.new()
    async with UpstreamClient(make_sandbox(credits=20), KEY) as upstream:
        created = await upstream.create_sonic({**CUSTOM, "title": "#fail", "webhook_url": url})
        assert 5 == (await upstream.credits()).credits
        answer = await finished(upstream, created.task_id)
        assert 20 == (await upstream.credits()).credits
    assert ["failed", "failed"] == [clip.state for clip in answer.data]
    assert all("refunded" in (clip.model_extra or {})["error_message"] for clip in answer.data)
    assert all(clip.audio_url is None for clip in answer.data)
    await wait_for(lambda: len(hooks.of(name)) == 1)
    delivery = hooks.of(name)[0]
    assert "song.failed" == delivery.headers["x-webhook-event"]
    kinds = [kind for kind, _, _ in normalise(CallbackBody.model_validate(delivery.json), None)]
    assert ["song.failed", "song.failed"] == kinds


@pytest.mark.parametrize(
    ("field", "marker"),
    [
        ("tags", "#nocallback"),
        ("title", "#dup"),
        ("gpt_description_prompt", "#badsig"),
        ("prompt", "#slowcallback"),
    ],
)
async def test_markers_work_in_every_text_field(
    client: UpstreamClient, hooks: Hooks, field: str, marker: str
) -> None:
    """Callback markers are found in prompt, gpt_description_prompt, tags and title."""
    name, url = hooks.new()
    params = {**CUSTOM, "webhook_url": url, "webhook_secret": SECRET}
    params[field] = f"{params.get(field, 'x')} {marker}"
    started = time.monotonic()
    await finished(client, (await client.create_sonic(params)).task_id)

    def delivered(count: int) -> Callable[[], bool]:
        return lambda: len(hooks.of(name)) >= count

    if marker == "#nocallback":
        await asyncio.sleep(0.3)
        assert [] == hooks.of(name)
    elif marker == "#dup":
        await wait_for(delivered(3))
        ids = [d.headers["x-webhook-id"] for d in hooks.of(name)]
        assert ids[0] == ids[1] != ids[2]
    elif marker == "#badsig":
        await wait_for(delivered(1))
        assert "bad_signature" == hooks.of(name)[0].signature_error
    else:
        await wait_for(delivered(1))
        assert hooks.of(name)[0].at - started >= FAST["delay_s"] + FAST["slow_callback_s"]


async def test_never_marker_keeps_running(client: UpstreamClient, hooks: Hooks) -> None:
    """#never keeps both clips running well past the delay and sends no final callback."""
    name, url = hooks.new()
    created = await client.create_sonic({**DESCRIBED, "tags": "#never", "webhook_url": url})
    await asyncio.sleep(FAST["delay_s"] * 3)
    answer = await client.sonic_task(created.task_id)
    assert ["running", "running"] == [clip.state for clip in answer.data]
    assert [] == hooks.of(name)


def custom(**fields: Any) -> dict[str, Any]:
    """CUSTOM with some fields replaced; a None value removes the field."""
    merged = {**CUSTOM, **fields}
    return {key: value for key, value in merged.items() if value is not None}


EXTEND = {"task_type": "extend_music", "continue_clip_id": "c1", "continue_at": 30}


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        (custom(task_type=None), "task_type is required"),
        (custom(task_type="swap_music"), "task_type swap_music is not supported"),
        (custom(custom_mode=None), "custom_mode is required"),
        (custom(custom_mode="yes"), "custom_mode is required"),
        (custom(mv=None), "mv is invalid"),
        (custom(mv="FUZZ-2.0"), "mv is invalid"),
        (custom(prompt=None), "prompt (the lyrics) is required when custom_mode is true"),
        ({**DESCRIBED, "gpt_description_prompt": " "}, "gpt_description_prompt is required"),
        ({**DESCRIBED, "gpt_description_prompt": "d" * 401}, "gpt_description_prompt is too"),
        (custom(mv="sonic-v4", prompt="p" * 3001), "at most 3000 characters with sonic-v4"),
        (custom(mv="sonic-v4-5", prompt="p" * 5001), "at most 5000 characters"),
        (custom(title="t" * 80), "title is too long"),
        (custom(tags="t" * 200), "tags is too long"),
        (custom(prompt=5), "prompt must be a string"),
        (custom(make_instrumental="yes"), "make_instrumental must be a boolean"),
        (custom(**{**EXTEND, "continue_clip_id": None}), "continue_clip_id is required"),
        (custom(**{**EXTEND, "continue_at": None}), "continue_at"),
        (custom(**{**EXTEND, "continue_at": "30"}), "continue_at"),
        (custom(task_type="cover_music"), "continue_clip_id is required for cover_music"),
        (custom(task_type="cover_upload_music"), "continue_clip_id is required"),
        (custom(task_type="concat_music"), "continue_clip_id is required for concat_music"),
        (custom(task_type="persona_music"), "persona_id is required"),
        (custom(vocal_gender="x"), "vocal_gender is invalid"),
        (custom(weirdness_constraint=1.5), "weirdness_constraint must be a number between 0"),
        (custom(style_weight=-0.1), "style_weight must be a number between 0 and 1"),
        (custom(audio_weight="0.5"), "audio_weight must be a number between 0 and 1"),
        (custom(webhook_url="ftp://example.com/h"), "https"),
    ],
)
async def test_validation_errors(
    client: UpstreamClient, params: dict[str, Any], needle: str
) -> None:
    """Each invalid sonic body is a 400 naming the problem, and nothing is charged."""
    before = (await client.credits()).credits
    with pytest.raises(UpstreamRejected) as caught:
        await client.create_sonic(params)
    assert 400 == caught.value.status
    assert needle in caught.value.message
    assert caught.value.message.startswith("the AI Music API rejected the sonic create: ")
    assert before == (await client.credits()).credits


@pytest.mark.parametrize(
    "params",
    [
        custom(mv="sonic-v4", prompt="p" * 3000, title="t" * 79, tags="t" * 199),
        custom(mv="sonic-v5", prompt="p" * 5000),
        custom(mv="sonic-v4-5-plus", vocal_gender="f", weirdness_constraint=0, style_weight=1),
        custom(mv="sonic-v3-5", audio_weight=0.5, negative_tags="metal", make_instrumental=True),
        custom(mv="chirp-v4-5", prompt="p" * 5000),
        custom(mv="chirp-v3-5"),
        custom(**EXTEND),
        custom(task_type="extend_upload_music", continue_clip_id="u1", continue_at=0),
        custom(task_type="cover_music", continue_clip_id="c1"),
        custom(task_type="cover_upload_music", continue_clip_id="u1"),
        {
            "task_type": "concat_music",
            "custom_mode": False,
            "mv": "sonic-v4",
            "continue_clip_id": "c",
        },
        custom(task_type="persona_music", persona_id="p1"),
        {**DESCRIBED, "gpt_description_prompt": "d" * 400, "auto_lyrics": True},
    ],
)
async def test_valid_bodies_are_accepted(client: UpstreamClient, params: dict[str, Any]) -> None:
    """Bodies at every limit, each model family and each task type are accepted."""
    assert (await client.create_sonic(params)).task_id


async def test_extend_clips_carry_the_request(client: UpstreamClient) -> None:
    """An extend task's clips name what they continue, and its words are kept."""
    created = await client.create_sonic(custom(**EXTEND))
    clip = (await client.sonic_task(created.task_id)).data[0]
    assert ("extend_music", "c1", 30) == tuple(
        (clip.model_extra or {})[key] for key in ("task_type", "continue_clip_id", "continue_at")
    )


async def test_costs_15_and_concat_2(make_sandbox: Callable[..., str]) -> None:
    """A sonic task costs 15 credits, concat 2; short of 15 it is InsufficientCredits."""
    concat = {**DESCRIBED, "task_type": "concat_music", "continue_clip_id": "c"}
    async with UpstreamClient(make_sandbox(credits=31), KEY) as upstream:
        await upstream.create_sonic(DESCRIBED)
        await upstream.create_sonic(concat)
        assert 14 == (await upstream.credits()).credits
        with pytest.raises(InsufficientCredits) as caught:
            await upstream.create_sonic(DESCRIBED)
        await upstream.create_sonic(concat)
        assert 12 == (await upstream.credits()).credits
    assert "the sonic create costs 15 credits" in caught.value.message


LYRICS = "[Verse]\nNeon rain on an empty street\n[Chorus]\nFuzz dream, fuzz dream"


@pytest.mark.slow
def test_relay_keeps_a_sonic_title_given_with_lyrics(relay: Relay) -> None:
    """Through the API, a sonic title with lyrics (custom mode) is the one the provider
    keeps: `task.submitted` and both completed songs carry it."""
    task = relay.submit("dream pop", family="sonic", title="Fuzz Dream", lyrics=LYRICS)
    assert (True, "Fuzz Dream") == (task["params"]["custom_mode"], task["params"]["title"])
    done = relay.wait_settled(task["id"])
    titles = [(e["kind"], (e.get("clip") or {}).get("title")) for e in done["events"]]
    assert [("task.submitted", "Fuzz Dream")] + [("song.completed", "Fuzz Dream")] * 2 == sorted(
        titles, key=lambda kind_title: kind_title[0] != "task.submitted"
    )


@pytest.mark.slow
def test_relay_refuses_a_sonic_title_without_lyrics(relay: Relay, sandbox: str) -> None:
    """A sonic title without lyrics would be dropped by the provider (description mode names
    the song itself): the API answers 400 naming `title` and the fix, the CLI says so in one
    line, and nothing is created upstream or stored."""
    created_before = len(httpx.get(f"{sandbox}/sandbox/tasks", timeout=5).json())
    answer = httpx.post(
        f"{relay.url}/api/tasks",
        json={"family": "sonic", "params": {"sound": "dream pop", "title": "Fuzz Dream"}},
        headers=relay.admin,
        timeout=15,
    )
    assert (400, "bad_request") == (answer.status_code, answer.json()["error"])
    detail = answer.json()["detail"]
    assert detail.startswith("title: ") and "lyrics" in detail
    command = ["submit", "dream pop", "--family", "sonic", "--title", "Fuzz Dream"]
    done = subprocess.run(
        [sys.executable, "-m", "receiver", *command],
        env={**os.environ, **relay.env},
        cwd=relay.workdir,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert 2 == done.returncode  # the input must change, as for an unknown handler
    line = done.stderr.strip().splitlines()[-1]  # warnings may be logged above it
    assert line.startswith("error: title: ") and "--lyrics" in line
    assert "Traceback" not in done.stderr
    assert 0 == relay.count("tasks")
    assert created_before == len(httpx.get(f"{sandbox}/sandbox/tasks", timeout=5).json())
