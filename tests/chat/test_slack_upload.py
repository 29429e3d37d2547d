"""`upload_audio`: a finished song's audio file goes into its Slack thread, up to a size cap,
and a failed upload never fails (and so reposts) the song's message. Real servers on loopback:
the relay process, the sandbox, the Slack stand-in and a media server."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pydantic
import pytest
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

from handlers.slack import SlackHandler
from receiver.models import Event
from receiver.sandbox import create_sandbox_app
from receiver.sandbox.slack import Recorded, SlackCatcher
from tests.chat.helpers import SLACK_TABLE, SLACK_TOKEN, StartRelay, ask, wait_for
from tests.conftest import FAST_SANDBOX, MakeContext, Relay
from tests.servers import run_asgi

CONFIG = SLACK_TABLE + "upload_audio = true\n{extra}\n"
AUDIO = b"RIFF" + bytes(range(256)) * 64
"""What the media server serves: 16 KiB and 4 bytes, recognisable byte for byte."""


def song_delivery(relay: Relay, task_id: str) -> dict[str, Any]:
    """The chat-slack delivery of the task's finished song, once the task has settled."""
    detail = relay.wait_settled(task_id)
    [event] = [e for e in detail["events"] if e["kind"] == "song.completed"]
    [delivery] = [d for d in event["deliveries"] if d["handler"] == "chat-slack"]
    assert "succeeded" == delivery["state"], delivery
    return {"event": event, **delivery}


def test_the_audio_file_is_uploaded_into_the_songs_thread(
    start_relay: StartRelay,
    slack: tuple[SlackCatcher, str],
    catcher: SlackCatcher,
    sandbox: str,
) -> None:
    """With `upload_audio`, the song's own audio bytes reach Slack through the three upload
    steps and are shared in the thread under "generating…", after the song's reply."""
    relay = start_relay(CONFIG, sandbox)
    task_id = ask(relay, slack, "an uploaded harbour song", "C0UPLOAD")
    delivery = song_delivery(relay, task_id)
    generating, reply = wait_for(catcher, "chat.postMessage", 2)
    thread = delivery["result"]["thread_ts"]
    assert "C0UPLOAD" == reply.body["channel"] and thread == reply.body["thread_ts"]
    assert ("C0UPLOAD", thread) in catcher.messages  # the thread is the "generating…" post
    assert generating.body["text"].startswith("🎵 Generating “an uploaded harbour song”")
    upload = delivery["result"]["upload"]
    [(file_id, shared)] = catcher.files.items()
    assert file_id == upload["file_id"]
    assert ("C0UPLOAD", thread) == (shared["channel"], shared["thread_ts"])
    audio = httpx.get(delivery["event"]["clip"]["audio_url"], timeout=10).content
    assert audio == catcher.uploads[file_id]
    assert len(audio) == upload["bytes"] == shared["length"]
    title = delivery["event"]["clip"]["title"]
    assert title == shared["title"] and shared["filename"].endswith(".wav")
    methods = [r.method for r in catcher.sent() if r.method != "webhook"]
    assert [
        "chat.postMessage",
        "chat.postMessage",
        "files.getUploadURLExternal",
        "upload",
        "files.completeUploadExternal",
    ] == methods


def test_audio_over_the_cap_is_linked_only_and_the_result_says_why(
    start_relay: StartRelay, slack: tuple[SlackCatcher, str], catcher: SlackCatcher
) -> None:
    """A 30 s WAV (1.3 MB) with `upload_max_mb = 1`: the song is still answered in its
    thread (with its link), nothing is uploaded, and the delivery's result says why."""
    long_songs = dataclasses.replace(FAST_SANDBOX, audio_seconds=30.0)
    with run_asgi(create_sandbox_app(long_songs)) as upstream:
        relay = start_relay(CONFIG, upstream, extra="upload_max_mb = 1")
        task_id = ask(relay, slack, "a very long song for the cap", "C0CAP")
        delivery = song_delivery(relay, task_id)
    assert {"skipped": "the audio is 1.3 MB, over upload_max_mb = 1; linked only"} == delivery[
        "result"
    ]["upload"]
    assert 2 == len(wait_for(catcher, "chat.postMessage", 2))
    assert [] == catcher.sent("files.getUploadURLExternal")
    assert {} == catcher.files


@pytest.fixture(scope="module")
def media() -> Iterator[str]:
    """A loopback server for the song's audio file (`/song.wav`)."""

    async def wav(_: Any) -> Response:
        return Response(AUDIO, media_type="audio/wav")

    with run_asgi(Starlette(routes=[Route("/song.wav", wav)])) as url:
        yield url


def song_event(media: str) -> Event:
    return Event(
        id="evt-1",
        kind="song.completed",
        task_id="task-1",
        clip_id="clip-1",
        platform="producer",
        clip={"title": "Night Drive", "audio_url": f"{media}/song.wav", "duration": 3.0},
        source="relay",
        received_at=datetime(2024, 5, 6, 23, 30, tzinfo=UTC),
        task_ref="t-1",
        prompt="a calm synthwave song",
    )


def bot(url: str) -> SlackHandler:
    config = SlackHandler.Config(
        token=SLACK_TOKEN, channel="#music", api_base_url=url + "/api/", upload_audio=True
    )
    return SlackHandler("chat-slack", config)


def is_upload(recorded: Recorded) -> bool:
    return "upload" == recorded.method


async def test_a_failed_upload_keeps_the_delivery_and_says_why(
    slack: tuple[SlackCatcher, str], catcher: SlackCatcher, media: str, make_ctx: MakeContext
) -> None:
    """Slack refuses the bytes (500): the song's message is out, so the handler still succeeds
    (a retry would post it twice) and its result says the upload failed."""
    catcher.fail_next(1, 500, only=is_upload)
    result = await bot(slack[1]).handle(song_event(media), make_ctx())
    assert result is not None
    assert {"failed": "upload not sent: SlackRequestError"} == result["upload"]
    assert 1 == len(catcher.sent("chat.postMessage"))
    assert [] == catcher.sent("files.completeUploadExternal")
    assert {} == catcher.uploads


async def test_a_replay_keeps_its_earlier_upload(
    slack: tuple[SlackCatcher, str], catcher: SlackCatcher, media: str, make_ctx: MakeContext
) -> None:
    """The first run uploads; a replay edits the message and does not upload the file again."""
    handler = bot(slack[1])
    first = await handler.handle(song_event(media), make_ctx())
    assert first is not None and first["upload"]["file_id"]
    assert AUDIO == catcher.uploads[first["upload"]["file_id"]]
    again = await handler.handle(song_event(media), make_ctx(previous_result=first))
    assert again is not None
    assert first["upload"] == again["upload"]
    assert 1 == len(catcher.sent("chat.update"))
    assert 1 == len(catcher.sent("files.getUploadURLExternal"))


def test_upload_audio_needs_a_bot_token() -> None:
    """An incoming webhook cannot upload a file: the config error names the key."""
    with pytest.raises(pydantic.ValidationError) as caught:
        SlackHandler.Config(webhook_url="https://hooks.slack.com/services/T/B/X", upload_audio=True)
    assert ("upload_audio",) == caught.value.errors()[0]["loc"]
