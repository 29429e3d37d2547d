"""The `discord` handler against the Discord stand-in on loopback: where each message goes
(the interaction's original response, a follow-up, or the channel once the token is gone),
how a replay edits instead of posting again, how Discord's errors become retry decisions, and
the audio attached up to `upload_max_mb`. The token never appears in a result or an error."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from handlers.base import HandlerError
from handlers.discord import DiscordHandler
from handlers.discord_seal import seal, unseal
from receiver.config import Settings
from receiver.errors import ConfigError
from receiver.models import Event
from receiver.services import build_services
from tests.conftest import MakeContext
from tests.discord_catcher import DiscordCatcher
from tests.media_server import WAV
from tests.servers import run_asgi

BOT = "discordbot-" + secrets.token_hex(8)
APP_ID = "1100000000000000001"
USER, CHANNEL = "80351110224678912", "1090000000000000001"
BIG = WAV + b"\x00" * (1024 * 1024)
"""A little over 1 MB: over `upload_max_mb = 1`."""


@pytest.fixture(scope="module")
def discord() -> Iterator[tuple[DiscordCatcher, str]]:
    catcher = DiscordCatcher(BOT, APP_ID)
    with run_asgi(catcher.app) as url:
        yield catcher, url


@pytest.fixture
def catcher(discord: tuple[DiscordCatcher, str]) -> DiscordCatcher:
    discord[0].reset()
    return discord[0]


@pytest.fixture(scope="module")
def media() -> Iterator[str]:
    """The song's audio (a small WAV, one over 1 MB, a host answering 503 and one 404), on
    loopback."""

    def serve_status(status: int) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            return Response(b"no", status_code=status, media_type="text/plain")

        return endpoint

    def serve(body: bytes, kind: str) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            return Response(body, media_type=kind)

        return endpoint

    app = Starlette(
        routes=[
            Route("/song.wav", serve(WAV, "audio/wav")),
            Route("/big.wav", serve(BIG, "audio/wav")),
            Route("/busy.wav", serve_status(503)),
            Route("/gone.wav", serve_status(404)),
        ]
    )
    with run_asgi(app) as url:
        yield url


def handler(url: str, **options: Any) -> DiscordHandler:
    config = DiscordHandler.Config(
        application_id=APP_ID, bot_token=BOT, api_base_url=url, **options
    )
    return DiscordHandler("chat-discord", config)


def event(
    kind: str = "song.completed",
    *,
    token: str | None = None,
    asked_s_ago: float = 5,
    clip_id: str = "clip-1",
    **clip: Any,
) -> Event:
    """An event of a task asked for in Discord, its interaction `asked_s_ago` seconds ago."""
    labels = {"chat": "discord", "chat.channel": CHANNEL, "chat.user": USER}
    if token is not None:
        labels["chat.interaction_token"] = token
        labels["chat.interaction_at"] = f"{time.time() - asked_s_ago:.0f}"
    fields = {"title": "Night Drive", "duration": 95, "tags": "synthwave", **clip}
    return Event(
        id=f"evt-{kind}-{clip_id}",
        kind=kind,  # type: ignore[arg-type]
        task_id="up-1",
        clip_id=clip_id if kind != "task.submitted" else "-",
        platform="sonic",
        clip=fields if kind != "task.submitted" else {},
        source="callback",
        received_at=datetime(2026, 5, 6, 23, 30, tzinfo=UTC),
        labels=labels,
        task_ref="ref-1",
        prompt="night drive",
    )


def token() -> str:
    return "itok-" + secrets.token_urlsafe(64)


async def test_submitted_then_song_edit_the_original_response(
    discord: tuple[DiscordCatcher, str], catcher: DiscordCatcher, make_ctx: MakeContext
) -> None:
    """ "Generating…" and then the song both edit @original: one message, no bot token."""
    chat, itok = handler(discord[1]), token()
    placed = await chat.handle(event("task.submitted", token=itok), make_ctx())
    assert placed is not None
    song = await chat.handle(event(token=itok), make_ctx(task_results={chat.name: placed}))
    assert song is not None
    assert {
        "via": "webhook",
        "event": "song.completed",
        "clip": "clip-1",
        "final": True,
    }.items() <= (song.items())
    assert "is ready" in catcher.original(itok)["content"]  # type: ignore[index]
    assert all(r.path.endswith("/messages/@original") for r in catcher.sent())
    assert all("authorization" not in r.headers for r in catcher.sent())
    assert itok not in repr(song)


async def test_the_second_song_of_a_task_is_a_follow_up(
    discord: tuple[DiscordCatcher, str], catcher: DiscordCatcher, make_ctx: MakeContext
) -> None:
    """Sonic's second clip, after the first took the original response, is POSTed as a
    follow-up; the original keeps the first song."""
    chat, itok = handler(discord[1]), token()
    first = await chat.handle(event(token=itok, clip_id="clip-1"), make_ctx())
    assert first is not None
    earlier = {chat.name: first}
    second = await chat.handle(
        event(token=itok, clip_id="clip-2", title="Night Drive II"), make_ctx(task_results=earlier)
    )
    assert second is not None and second["followup"] is True
    assert ["PATCH", "POST"] == [r.method for r in catcher.sent()]
    assert "Night Drive II" in catcher.sent()[1].body["content"]
    assert "“Night Drive”" in catcher.original(itok)["content"]  # type: ignore[index]


async def test_a_late_submitted_event_does_not_overwrite_the_song(
    discord: tuple[DiscordCatcher, str], catcher: DiscordCatcher, make_ctx: MakeContext
) -> None:
    """Deliveries can run out of order: "generating…" after the song is skipped."""
    chat, itok = handler(discord[1]), token()
    song = await chat.handle(event(token=itok), make_ctx())
    late = await chat.handle(
        event("task.submitted", token=itok), make_ctx(task_results={chat.name: song or {}})
    )
    assert late is not None and "skipped" in late
    assert 1 == len(catcher.sent())


async def test_an_old_interaction_goes_to_the_channel_with_the_bot_token(
    discord: tuple[DiscordCatcher, str], catcher: DiscordCatcher, make_ctx: MakeContext
) -> None:
    """An interaction older than 14 minutes is not tried: the song is a channel message by
    the bot, naming and pinging only the requester."""
    chat = handler(discord[1])
    result = await chat.handle(event(token=token(), asked_s_ago=15 * 60), make_ctx())
    assert result is not None
    assert ("channel", CHANNEL) == (result["via"], result["channel_id"])
    [sent] = catcher.sent()
    assert (f"/channels/{CHANNEL}/messages", f"Bot {BOT}") == (
        sent.path,
        sent.headers["authorization"],
    )
    assert f"<@{USER}>" in sent.body["content"]
    assert {"parse": [], "users": [USER]} == sent.body["allowed_mentions"]


async def test_an_expired_token_falls_back_to_the_channel(
    discord: tuple[DiscordCatcher, str], catcher: DiscordCatcher, make_ctx: MakeContext
) -> None:
    """Discord answers 404 Unknown Webhook (code 10015): the handler posts in the channel."""
    chat, itok = handler(discord[1]), token()
    catcher.expire(itok)
    result = await chat.handle(event(token=itok), make_ctx())
    assert result is not None and "channel" == result["via"]
    assert ["PATCH", "POST"] == [r.method for r in catcher.sent()]


async def test_a_sealed_token_is_opened_and_a_foreign_seal_falls_back(
    discord: tuple[DiscordCatcher, str], catcher: DiscordCatcher, make_ctx: MakeContext
) -> None:
    """With `seal_keys`, the label holds the sealed token: the relay's key opens it (the
    webhook is used); one sealed under another key opens nowhere (the channel is)."""
    itok = token()
    chat = handler(discord[1], seal_keys=["relay-secret-1"])
    ours = await chat.handle(event(token=seal(itok, ["relay-secret-1"])), make_ctx())
    assert ours is not None and "webhook" == ours["via"]
    assert catcher.original(itok) is not None
    foreign = await chat.handle(event(token=seal(token(), ["another"])), make_ctx())
    assert foreign is not None and "channel" == foreign["via"]


def test_seal_round_trips_under_any_rotated_key_and_refuses_forgeries() -> None:
    """The first key seals, every key opens; tampering, another key or plain text open to
    None; a sealed value does not contain the token."""
    itok = token()
    sealed = seal(itok, ["new-key", "old-key"])
    assert itok not in sealed and sealed.startswith("sealed:")
    assert itok == unseal(sealed, ["old-key", "new-key"])
    assert itok == unseal(seal(itok, ["old-key"]), ["new-key", "old-key"])
    assert unseal(sealed, ["other"]) is None
    assert unseal(sealed[:-4] + "AAAA", ["new-key"]) is None
    assert unseal(itok, ["new-key"]) is None
    with pytest.raises(ValueError, match="RELAY_SECRET_KEY"):
        seal(itok, [])


async def test_a_replay_edits_the_message_it_made(
    discord: tuple[DiscordCatcher, str], catcher: DiscordCatcher, make_ctx: MakeContext
) -> None:
    """Replaying a delivery edits its own message (the follow-up by id through the webhook,
    or the bot's channel message), never posting a second one."""
    chat, itok = handler(discord[1]), token()
    first = await chat.handle(event(token=itok, clip_id="clip-1"), make_ctx())
    follow = await chat.handle(
        event(token=itok, clip_id="clip-2"), make_ctx(task_results={chat.name: first or {}})
    )
    assert follow is not None
    catcher.requests.clear()
    again = await chat.handle(event(token=itok, clip_id="clip-2"), make_ctx(previous_result=follow))
    assert again is not None and again["message_id"] == follow["message_id"]
    [edit] = catcher.sent()
    assert ("PATCH", True) == (edit.method, edit.path.endswith(f"/messages/{follow['message_id']}"))
    old = await chat.handle(event(token=token(), asked_s_ago=3600), make_ctx())
    assert old is not None
    catcher.requests.clear()
    replayed = await chat.handle(
        event(token=token(), asked_s_ago=3600), make_ctx(previous_result=old)
    )
    assert replayed is not None
    [edit] = catcher.sent()
    assert ("PATCH", f"/channels/{CHANNEL}/messages/{old['message_id']}") == (
        edit.method,
        edit.path,
    )


@pytest.mark.parametrize(
    ("status", "retryable", "retry_after", "said"),
    [
        (429, True, 7.0, "retry after 7 s"),
        (500, True, None, "HTTP 500"),
        (400, False, None, "Invalid Form Body (code 50035, HTTP 400)"),
    ],
)
async def test_discord_errors_become_retry_decisions_without_the_token(
    discord: tuple[DiscordCatcher, str],
    catcher: DiscordCatcher,
    make_ctx: MakeContext,
    status: int,
    retryable: bool,
    retry_after: float | None,
    said: str,
) -> None:
    """429 waits as long as Discord asks; 5xx is retried; another 4xx is permanent with
    Discord's own message. The error names the call with the token cut out."""
    chat, itok = handler(discord[1]), token()
    catcher.fail_next(1, status, retry_after=7)
    with pytest.raises(HandlerError) as raised:
        await chat.handle(event(token=itok), make_ctx())
    error = raised.value
    assert (retryable, retry_after) == (error.retryable, error.retry_after)
    assert said in error.message
    assert f"/webhooks/{APP_ID}/(token)/messages/@original" in error.message
    assert itok not in error.message


async def test_the_audio_is_attached_up_to_upload_max_mb(
    discord: tuple[DiscordCatcher, str],
    catcher: DiscordCatcher,
    make_ctx: MakeContext,
    media: str,
) -> None:
    """`upload_audio`: a song's file within `upload_max_mb` is sent with the message
    (multipart `payload_json` + `files[0]`); a larger one is only linked."""
    chat = handler(discord[1], upload_audio=True, upload_max_mb=1)
    small, big = token(), token()
    await chat.handle(event(token=small, audio_url=f"{media}/song.wav"), make_ctx())
    [sent] = catcher.sent()
    [upload] = sent.files
    assert ("files[0]", "night-drive.wav", WAV) == (upload.field, upload.filename, upload.data)
    assert [{"id": 0, "filename": "night-drive.wav"}] == sent.body["attachments"]
    fields = {f["name"]: f["value"] for f in sent.body["embeds"][0]["fields"]}
    assert "attached (night-drive.wav)" == fields["Audio"]
    catcher.requests.clear()
    result = await chat.handle(event(token=big, audio_url=f"{media}/big.wav"), make_ctx())
    [linked] = catcher.sent()
    assert () == linked.files
    assert "attachments" not in linked.body
    assert f"{media}/big.wav" in str(linked.body["embeds"])
    assert result is not None
    assert {"skipped": "the audio is 1.0 MB, over upload_max_mb = 1; linked only"} == (
        result["upload"]
    )


@pytest.mark.parametrize("asked_s_ago", [5, 3600], ids=["webhook", "channel"])
async def test_a_file_discord_refuses_as_too_large_is_linked_instead(
    discord: tuple[DiscordCatcher, str],
    catcher: DiscordCatcher,
    make_ctx: MakeContext,
    media: str,
    asked_s_ago: float,
) -> None:
    """A file within `upload_max_mb` but over the server's limit is answered 413 (code
    40005): the same message goes again without it, the song linked, and the result says
    why. One message is made, through the webhook or in the channel."""
    catcher.upload_limit = len(WAV) - 1
    chat, itok = handler(discord[1], upload_audio=True), token()
    result = await chat.handle(
        event(token=itok, asked_s_ago=asked_s_ago, audio_url=f"{media}/song.wav"), make_ctx()
    )
    assert result is not None
    refused, sent = catcher.sent()
    assert (refused.method, refused.path, 1) == (sent.method, sent.path, len(refused.files))
    assert () == sent.files and "attachments" not in sent.body
    fields = {f["name"]: f["value"] for f in sent.body["embeds"][0]["fields"]}
    assert "Audio" not in fields and f"{media}/song.wav" in fields["Links"]
    size = f"{len(WAV) / 1024:.0f} KB"
    why = f"Discord refused the {size} file as too large (HTTP 413, code 40005); linked only"
    assert {"failed": why} == result["upload"]
    assert 1 == len(catcher.messages)
    [made] = catcher.messages.values()
    assert "is ready" in made["content"] and result["message_id"] == made["id"]
    assert itok not in repr(result)


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("busy.wav", "failed: HTTP 503"),
        ("gone.wav", "refused: HTTP 404"),
    ],
)
async def test_a_failed_download_sends_the_song_without_its_file(
    discord: tuple[DiscordCatcher, str],
    catcher: DiscordCatcher,
    make_ctx: MakeContext,
    media: str,
    path: str,
    why: str,
) -> None:
    """Attaching is best effort: an audio host answering 503 (retryable) or 404 does not
    delay or dead-letter the song; it is sent, linked, and the result says why."""
    chat, itok = handler(discord[1], upload_audio=True), token()
    result = await chat.handle(event(token=itok, audio_url=f"{media}/{path}"), make_ctx())
    assert result is not None and "webhook" == result["via"]
    [sent] = catcher.sent()
    assert () == sent.files
    assert "is ready" in catcher.original(itok)["content"]  # type: ignore[index]
    assert ["failed"] == list(result["upload"])
    assert result["upload"]["failed"].startswith("download: download from 127.0.0.1:")
    assert result["upload"]["failed"].endswith(why)


def test_the_config_refuses_a_bad_api_url_and_redacts_the_bot_token() -> None:
    """`api_base_url` must be http(s); the bot token is among the handler's secrets."""
    with pytest.raises(ValueError, match="http"):
        DiscordHandler.Config(application_id=APP_ID, bot_token=BOT, api_base_url="ftp://x")
    assert BOT in list(handler("http://127.0.0.1:1").secrets())


def test_chat_discord_adds_its_handler_and_reserves_its_name(tmp_path: Path) -> None:
    """`[chat.discord]` adds a `chat-discord` handler taking only `chat = "discord"` tasks,
    its token label sealed with RELAY_SECRET_KEY; a file entry of that name is refused with
    an error saying what reserves it."""
    table = (
        f'[chat.discord]\npublic_key = "{"ab" * 32}"\napplication_id = "{APP_ID}"\n'
        f'bot_token = "{BOT}"\n'
    )
    path = tmp_path / "relay.toml"
    settings = Settings(
        relay_secret_key="k" * 16,
        database_url=f"sqlite:///{tmp_path / 'relay.db'}",
        relay_config=str(path),
    )
    path.write_text(table)
    services = build_services(settings)
    asyncio.run(services.aclose())
    configured = services.handlers.get("chat-discord")
    assert configured is not None
    made = configured.handler
    assert isinstance(made, DiscordHandler)
    assert ["k" * 16] == [key.get_secret_value() for key in made.config.seal_keys]
    assert 10 == made.config.upload_max_mb, "Discord's attachment limit for a bot is 10 MiB"
    assert 10 == DiscordHandler.Config(application_id=APP_ID, bot_token=BOT).upload_max_mb
    assert {"chat": "discord"} == dict(configured.spec.labels or {})
    path.write_text('[[handlers]]\nname = "chat-discord"\ntype = "disk"\n\n' + table)
    with pytest.raises(ConfigError) as caught:
        build_services(settings)
    assert (
        f"{path}: handler name 'chat-discord' is reserved for [chat.discord] (its replies in "
        "Discord); give that [[handlers]] entry another name"
    ) == str(caught.value)
