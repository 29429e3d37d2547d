"""Lyrics both ways (producer task, sonic at once) and credits accounting across families."""

# STYLE.md asks for `assert expected == actual`, which ruff's SIM300 calls a Yoda condition.

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from receiver.errors import UpstreamError, UpstreamRejected
from receiver.models import LyricsAnswer, LyricsResult, LyricsTaskAnswer
from receiver.upstream.client import UpstreamClient
from tests.keyed_sandbox import keyed_fixtures

KEY = "lyrics-test-key"
FAST: dict[str, Any] = {"delay_s": 0.3, "callback_retry_delays": (0.1,)}
PRODUCER = {"task_type": "create_music", "sound": "lofi beats"}
SONIC = {
    "task_type": "create_music",
    "custom_mode": False,
    "gpt_description_prompt": "rainy day",
    "mv": "sonic-v4-5",
}


sandbox_url, make_sandbox, client = keyed_fixtures(KEY, FAST, retry_delays=(0.01,))


async def test_producer_lyrics_task_round_trip(client: UpstreamClient) -> None:
    """lyrics-create answers a task id; its poll goes PENDING/RUNNING, then SUCCESS with lyrics."""
    created = await client.lyrics_create({"prompt": "a song about autumn leaves"})
    answer = await client.lyrics_task(created.task_id)
    assert isinstance(answer, LyricsTaskAnswer)
    assert answer.status in ("PENDING", "RUNNING") and [] == answer.data
    while answer.status != "SUCCESS":
        await asyncio.sleep(0.05)
        answer = await client.lyrics_task(created.task_id)
    [result] = answer.data
    assert "A Song About Autumn Leaves" == result.title
    assert result.lyrics and result.lyrics.startswith("[Verse]")


async def test_write_lyrics_both_flavours(client: UpstreamClient) -> None:
    """write_lyrics gives one result from producer (polled) and two from sonic (at once)."""
    producer = await client.write_lyrics("city at night", poll_s=0.05)
    sonic = await client.write_lyrics("city at night", family="sonic")
    assert 1 == len(producer) and 2 == len(sonic)
    assert all(isinstance(r, LyricsResult) and r.title and r.lyrics for r in producer + sonic)
    assert sonic[0].lyrics != sonic[1].lyrics


async def test_sonic_lyrics_reads_text_as_lyrics(client: UpstreamClient) -> None:
    """The sonic answer's `text` is read into `lyrics`; the raw answer keeps code and message."""
    answer = await client.sonic_lyrics("a lullaby for a robot")
    assert isinstance(answer, LyricsAnswer) and (200, "success") == (answer.code, answer.message)
    assert ["A Lullaby For A Robot", "A Lullaby For A Robot (Alternate Take)"] == [
        r.title for r in answer.data
    ]
    assert all(r.lyrics and "[Chorus]" in r.lyrics for r in answer.data)


@pytest.mark.parametrize("key", ["lyrics", "text"])
def test_lyrics_result_accepts_both_names(key: str) -> None:
    """A lyrics result may call its text `lyrics` or `text`; unknown fields are kept."""
    result = LyricsResult.model_validate({"title": "T", key: "la la", "clip_id": "c", "x": 1})
    assert ("T", "la la", "c", {"x": 1}) == (
        result.title,
        result.lyrics,
        result.clip_id,
        result.model_extra,
    )


@pytest.mark.parametrize(
    ("call", "needle"),
    [
        ({}, "prompt is required"),
        ({"prompt": "  "}, "prompt is required"),
        ({"prompt": "p" * 401}, "prompt is too long"),
        ({"description": ""}, "description is required"),
        ({"description": "d" * 401}, "description is too long"),
    ],
)
async def test_lyrics_validation(client: UpstreamClient, call: dict[str, str], needle: str) -> None:
    """A missing or over-long prompt/description is a 400 naming it, and costs nothing."""
    before = (await client.credits()).credits
    with pytest.raises(UpstreamRejected, match=needle):
        if "description" in call:
            await client.sonic_lyrics(call["description"])
        else:
            await client.lyrics_create(call)
    assert before == (await client.credits()).credits


async def test_failed_lyrics_task_raises_and_refunds(make_sandbox: Callable[..., str]) -> None:
    """#fail makes the lyrics task FAILED: write_lyrics says so, and the credit comes back."""
    async with UpstreamClient(make_sandbox(credits=5), KEY) as upstream:
        with pytest.raises(UpstreamError, match=r"the lyrics task \S+ failed: .*refunded"):
            await upstream.write_lyrics("sad song #fail", poll_s=0.05)
        assert 5 == (await upstream.credits()).credits


async def test_write_lyrics_gives_up_after_its_timeout(client: UpstreamClient) -> None:
    """A lyrics task that never finishes (#never) ends write_lyrics after timeout_s."""
    with pytest.raises(UpstreamError, match=r"no lyrics after 0.4 s: task \S+ is still RUNNING"):
        await client.write_lyrics("endless #never", poll_s=0.05, timeout_s=0.4)


async def test_credits_follow_every_charge_and_refund(make_sandbox: Callable[..., str]) -> None:
    """Producer 10, sonic 15, concat 2, lyrics 1 each; failed tasks give their credits back."""
    concat = {**SONIC, "task_type": "concat_music", "continue_clip_id": "c"}
    async with UpstreamClient(
        make_sandbox(credits=100, delay_s=1.0), KEY, retry_delays=(0.01,)
    ) as upstream:
        await upstream.create_producer(PRODUCER)
        await upstream.create_sonic(SONIC)
        await upstream.create_sonic(concat)
        await upstream.lyrics_create({"prompt": "p"})
        await upstream.sonic_lyrics("d")
        assert 100 - 10 - 15 - 2 - 1 - 1 == (await upstream.credits()).credits
        await upstream.create_producer({**PRODUCER, "sound": "#fail"})
        await upstream.create_sonic({**SONIC, "gpt_description_prompt": "#fail"})
        await upstream.create_sonic({**concat, "gpt_description_prompt": "#fail"})
        await upstream.lyrics_create({"prompt": "#fail"})
        assert 71 - 10 - 15 - 2 - 1 == (await upstream.credits()).credits
        await asyncio.sleep(1.1)
        assert 71 == (await upstream.credits()).credits
