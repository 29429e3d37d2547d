"""The apprise handler renders its templates and notifies real Apprise URLs without leaking them."""

# STYLE.md asks for `assert expected == actual`, which ruff's SIM300 calls a Yoda condition.

from __future__ import annotations

import collections
import dataclasses
import html
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pydantic
import pytest
from apprise.plugins.discord import NotifyDiscord
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from handlers.apprise import AppriseHandler
from handlers.base import Handler, HandlerError
from receiver.delivery.alerts import DeadNotice
from receiver.models import Event
from tests.conftest import MakeContext
from tests.servers import run_asgi

HOSTILE = "hi <@&123456> @everyone <@!42>"
"""A clip title that would ping a Discord role, everyone and a user if passed on as it is."""
MENTION = re.compile(r"<[@#!]|@(?=[\w&!*])")
"""Raw mention syntax of Discord (`<@id>`, `<@&id>`, `<#id>`), Slack (`<!here>`, `<@U1>`), and
`@everyone`/`@here`/`@channel`/`@room`/`@all`/`@user` on Discord, Slack, Matrix, Telegram, ..."""
DISCORD = NotifyDiscord(webhook_id="4174216298", webhook_token="JHMHI8qBe7bk2ZwO5U711o3dV_js")
"""Apprise's own Discord plugin: its `ping_payload` finds the mentions it would make ping."""

Catcher = tuple[str, dict[str, list[dict[str, Any]]]]
"""A notification catcher's base URL and the JSON bodies it received, by path."""


@pytest.fixture(scope="module")
def catcher() -> Iterator[Catcher]:
    """Answers `/<code>/<key>` with that status (`flaky`: 500 once, then 200), recording bodies."""
    received: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    hits: collections.Counter[str] = collections.Counter()

    async def endpoint(request: Request) -> Response:
        path = request.url.path
        hits[path] += 1
        code = request.path_params["code"]
        status = (500 if hits[path] == 1 else 200) if code == "flaky" else int(code)
        if status == 200:
            received[path].append(await request.json())
        return Response(status_code=status)

    app = Starlette(routes=[Route("/{code}/{key}", endpoint, methods=["POST"])])
    with run_asgi(app) as url:
        yield url, received


def target(catcher: Catcher, code: str = "200") -> tuple[str, str]:
    """A fresh `json://` Apprise URL on the catcher and the path it records under."""
    path = f"/{code}/{uuid.uuid4().hex}"
    return f"json://{catcher[0].removeprefix('http://')}{path}", path


def make_event(kind: str = "song.completed", error: str | None = None, **clip: Any) -> Event:
    """An event for clip-1 of task-1 whose clip fields can be overridden."""
    fields = {
        "title": "Night Drive",
        "audio_url": "https://cdn.example/song.mp3?sig=abc",
        "image_url": "https://cdn.example/cover.png",
        "lyrics": "la la la",
        "tags": "synthwave",
        "duration": 65.2,
        **clip,
    }
    return Event(
        id="evt-1",
        kind=kind,  # type: ignore[arg-type]
        task_id="task-1",
        clip_id="clip-1",
        platform="sonic",
        clip={k: v for k, v in fields.items() if v is not None},
        source="callback",
        received_at=datetime(2024, 5, 6, 23, 30, tzinfo=UTC),
        labels={"team": "a"},
        prompt="a calm song",
        error=error,
    )


def notifier(*urls: str, **options: Any) -> AppriseHandler:
    """An apprise handler named team-chat."""
    return AppriseHandler("team-chat", AppriseHandler.Config(urls=list(urls), **options))


async def test_completed_song_gets_the_default_markdown_message(
    catcher: Catcher, make_ctx: MakeContext
) -> None:
    """Title, duration, tags, audio, stored copy and dashboard reach the service, as markdown."""
    url, path = target(catcher)
    ctx = make_ctx(
        results={"bucket": {"url": "https://s3.example/k.mp3", "key": "k"}, "archive": {}},
        task_url="https://relay.example/admin/tasks/t1",
    )
    handler = notifier(url)
    result = await handler.handle(make_event(), ctx)
    assert {"notified": 1} == result
    [sent] = catcher[1][path]
    assert "🎵 Night Drive" == sent["title"]
    assert (
        "Duration: 1:05\n"
        "Tags: synthwave\n"
        "Listen: <https://cdn.example/song.mp3?sig=abc>\n"
        "Stored: [bucket](<https://s3.example/k.mp3>)\n"
        "Dashboard: <https://relay.example/admin/tasks/t1>"
    ) == sent["message"]
    assert isinstance(handler, Handler)


async def test_custom_text_template_drops_lines_whose_fields_are_empty(
    catcher: Catcher, make_ctx: MakeContext
) -> None:
    """A line whose every field is empty disappears; provider text cannot ping everyone."""
    url, path = target(catcher)
    handler = notifier(
        url,
        title="{title} ({platform})",
        body="{kind} for {task_id}\nCover: {image_url}\nLyrics:\n{lyrics}",
        body_format="text",
    )
    event = make_event(title="@everyone listen", image_url=None, lyrics="first\nsecond")
    await handler.handle(event, make_ctx())
    [sent] = catcher[1][path]
    assert "@\u200deveryone listen (sonic)" == sent["title"]
    assert "song.completed for task-1\nLyrics:\nfirst\nsecond" == sent["message"]


async def test_markdown_and_html_bodies_escape_provider_text(
    catcher: Catcher, make_ctx: MakeContext
) -> None:
    """Markup in a title is shown literally in the chosen body format."""
    event = make_event(title="*Loud* <b>")
    for body_format, expected in (("markdown", r"\*Loud\* \<b\>"), ("html", "*Loud* &lt;b&gt;")):
        url, path = target(catcher)
        await notifier(url, body="{title}", body_format=body_format).handle(event, make_ctx())
        assert expected == catcher[1][path][0]["message"]


@pytest.mark.parametrize(
    ("kind", "error", "reason"),
    [("song.failed", "content policy", "content policy"), ("task.timed_out", None, "timed out")],
)
async def test_failures_use_the_failure_templates(
    catcher: Catcher, make_ctx: MakeContext, kind: str, error: str | None, reason: str
) -> None:
    """A failed or timed-out song sends the failure title and its reason."""
    url, path = target(catcher)
    await notifier(url).handle(make_event(kind, error=error), make_ctx())
    [sent] = catcher[1][path]
    assert "⚠️ Night Drive failed" == sent["title"]
    assert f"Reason: {reason}\nPrompt: a calm song" == sent["message"]


async def test_submitted_task_is_skipped(catcher: Catcher, make_ctx: MakeContext) -> None:
    """`task.submitted` notifies nobody and says so in its result."""
    url, path = target(catcher)
    result = await notifier(url).handle(make_event("task.submitted"), make_ctx())
    assert {"skipped": "task.submitted"} == result
    assert [] == catcher[1][path]


async def test_refusing_service_is_retryable_and_its_url_stays_secret(
    catcher: Catcher, make_ctx: MakeContext
) -> None:
    """A 500 is a retryable failure that names scheme and host, never the user or path."""
    url, path = target(catcher, "500")
    secret_url = url.replace("json://", "json://robot:Pa55word-Secret@")
    with pytest.raises(HandlerError) as caught:
        await notifier(secret_url).handle(make_event(), make_ctx())
    error = caught.value
    assert (True, "unavailable") == (error.retryable, error.blame)
    assert f"json://{catcher[0].removeprefix('http://')} (failure: " in error.message
    assert "500" in error.message
    for secret in ("Pa55word-Secret", "robot", path.rsplit("/", 1)[1]):
        assert secret not in error.message


async def test_retry_notifies_only_the_urls_that_failed(
    catcher: Catcher, make_ctx: MakeContext
) -> None:
    """After a partial failure the next attempt of the delivery skips the URL already told."""
    (good, good_path), (flaky, flaky_path) = target(catcher), target(catcher, "flaky")
    handler = notifier(f"{good}, {flaky}")
    with pytest.raises(HandlerError, match="could not notify 1 of 2"):
        await handler.handle(make_event(), make_ctx())
    assert {"notified": 2} == await handler.handle(make_event(), make_ctx())
    assert (1, 1) == (len(catcher[1][good_path]), len(catcher[1][flaky_path]))
    await handler.handle(make_event(), make_ctx())  # a replay tells everyone again
    assert (2, 2) == (len(catcher[1][good_path]), len(catcher[1][flaky_path]))


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("nope://tok-5ecret-123456", "nope:// is not a scheme Apprise knows"),
        ("discord://", "a discord:// URL is incomplete or malformed"),
        ("tok-5ecret-123456", "not an Apprise URL"),
        ("json://ok.example/x tgram://tok-5ecret-123456", "URL #2 of 2: a tgram:// URL"),
    ],
)
def test_bad_url_is_refused_naming_only_its_scheme(url: str, needle: str) -> None:
    """A URL Apprise cannot use fails validation without showing the URL."""
    with pytest.raises(pydantic.ValidationError) as caught:
        AppriseHandler.Config(urls=[url])
    assert needle in str(caught.value)
    assert "5ecret" not in str(caught.value)


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"body": "{title} {colour} {title.__class__}"}, "{colour}, {title.__class__}"),
        ({"failure_title": "{error!r}"}, "no format spec or conversion"),
        ({"title": "{title"}, "not a valid template"),
        ({"body_format": "rst"}, "body_format"),
        ({"urls": []}, "at least 1"),
    ],
)
def test_bad_options_are_refused_naming_the_problem(options: dict[str, Any], needle: str) -> None:
    """Unknown template fields, conversions and formats are config errors."""
    with pytest.raises(pydantic.ValidationError) as caught:
        AppriseHandler.Config(**{"urls": ["json://ok.example/x"], **options})
    assert needle in str(caught.value)


@pytest.mark.parametrize("body_format", ["text", "markdown", "html"])
async def test_provider_text_cannot_mention_anyone(
    body_format: str, catcher: Catcher, make_ctx: MakeContext
) -> None:
    """Mentions in title, tags, lyrics, reason and links arrive defused in every format: Apprise's
    Discord plugin finds nothing to ping, no raw mention syntax is left, and the text reads the
    same once the invisible joiners are removed."""
    url, path = target(catcher)
    handler = notifier(
        url,
        failure_title="{title}",
        failure_body="{tags}\n{lyrics}\n{error}\n{audio_url}\n{stored_urls}",
        body_format=body_format,
    )
    event = make_event(
        "song.failed",
        error="<@&7> refused @here",
        title=HOSTILE,
        tags="<@U024BE7LH> <!channel> @channel",
        lyrics="<#555> @room @all @someone foo@everyone",
        audio_url="https://cdn.example/@everyone/<@&9>.mp3",
    )
    ctx = make_ctx(results={"bucket": {"url": "s3://songs/@here/<@&8>.mp3"}})
    await handler.handle(event, ctx)
    [sent] = catcher[1][path]
    for text in (sent["title"], sent["message"]):
        assert ({}, []) == (DISCORD.ping_payload(text), MENTION.findall(text))
    shown = html.escape(HOSTILE) if body_format == "html" else HOSTILE
    assert shown == sent["title"].replace("\u200d", "")


async def test_mentions_written_in_the_template_still_ping(
    catcher: Catcher, make_ctx: MakeContext
) -> None:
    """A mention the operator wrote in relay.toml is kept; the one in the clip title is not."""
    url, path = target(catcher)
    handler = notifier(url, title="<@&999> {title}", body="@here {title}", body_format="text")
    await handler.handle(make_event(title=HOSTILE), make_ctx())
    [sent] = catcher[1][path]
    assert sent["title"].startswith("<@&999> hi <")
    pinged = DISCORD.ping_payload(sent["message"])["allow_mentions"]
    assert ([], ["here"], []) == (pinged["roles"], pinged["parse"], pinged["users"])
    assert {"roles": ["999"], "parse": [], "users": []} == DISCORD.ping_payload(sent["title"])[
        "allow_mentions"
    ]


def dead_event(title: str = "Rainy Office", error: str = "AccessDenied") -> Event:
    """A `delivery.dead` alert: the S3 handler `bucket` gave up on clip-1's song."""
    about = make_event(title=title)
    notice = DeadNotice.for_death(
        dataclasses.replace(about, task_ref="t1"),
        handler="bucket",
        handler_type="s3",
        delivery_id="d-9",
        error=error,
        blame="destination",
        attempts=1,
        public_url="https://relay.example",
    )
    return dataclasses.replace(about, kind="delivery.dead", clip=notice.as_clip(), error=error)


async def test_dead_letter_alert_names_handler_song_error_blame_and_replay_link(
    catcher: Catcher, make_ctx: MakeContext
) -> None:
    """A dead letter is told with its own built-in message, whatever the song templates say."""
    url, path = target(catcher)
    handler = notifier(url, failure_title="{title} broke", failure_body="{error}")
    await handler.handle(dead_event(), make_ctx())
    [sent] = catcher[1][path]
    assert "⚠️ bucket: the S3 upload of “Rainy Office” failed after 1 attempt" == sent["title"]
    assert (
        "Error: AccessDenied\n"
        "Blame: destination — the destination refused it\n"
        "Event: song.completed of clip clip-1 (task task-1)\n"
        "Replay: <https://relay.example/admin/tasks/t1>"
    ) == sent["message"]


@pytest.mark.parametrize("body_format", ["text", "markdown", "html"])
async def test_dead_letter_alert_cannot_mention_anyone(
    body_format: str, catcher: Catcher, make_ctx: MakeContext
) -> None:
    """A hostile title or error in an alert arrives defused in every format."""
    url, path = target(catcher)
    handler = notifier(url, body_format=body_format)
    await handler.handle(dead_event(title=HOSTILE, error="<@&7> refused @here"), make_ctx())
    [sent] = catcher[1][path]
    for text in (sent["title"], sent["message"]):
        assert ({}, []) == (DISCORD.ping_payload(text), MENTION.findall(text))
    assert "refused" in sent["message"]
