"""The slack handler posts, threads and edits the right messages, escaped, and fails typed."""

# STYLE.md asks for `assert expected == actual`, which ruff's SIM300 calls a Yoda condition.

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pydantic
import pytest

from handlers.base import Handler, HandlerError
from handlers.slack import SlackHandler, escape
from receiver.delivery.alerts import DeadNotice
from receiver.models import Event
from receiver.sandbox.slack import WEBHOOK_PATH, SlackCatcher
from tests.conftest import MakeContext
from tests.servers import free_port, run_asgi

TOKEN = "xoxb-catcher-token"
AUDIO = "https://cdn.example/song.mp3?sig=a&b=1"
COVER = "https://cdn.example/cover.png"
TASK_URL = "https://relay.example/admin/tasks/t-1"
STORED = "https://bucket.example/aimusic/clip-1.mp3"


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[SlackCatcher, str]]:
    """One catcher on loopback for the module, and its base URL."""
    catcher = SlackCatcher(TOKEN)
    with run_asgi(catcher.app) as url:
        yield catcher, url


@pytest.fixture
def catcher(server: tuple[SlackCatcher, str]) -> SlackCatcher:
    """The catcher with nothing recorded and no faults pending."""
    server[0].reset()
    return server[0]


@pytest.fixture
def url(server: tuple[SlackCatcher, str]) -> str:
    """The catcher's base URL."""
    return server[1]


def make_event(kind: str = "song.completed", error: str | None = None, **clip: Any) -> Event:
    """An event of `kind` whose clip fields can be overridden (None drops a field)."""
    fields = {
        "title": "Night Drive",
        "audio_url": AUDIO,
        "image_url": COVER,
        "duration": 125.4,
        "tags": "synthwave, dreamy",
        "lyrics": "[Verse]\nNeon on the water\n\nEngines hum\nCity lights\nStay awake\nLast line",
        **clip,
    }
    return Event(
        id="evt-1",
        kind=kind,  # type: ignore[arg-type]
        task_id="task-1",
        clip_id="-" if kind == "task.submitted" else "clip-1",
        platform="producer",
        clip={k: v for k, v in fields.items() if v is not None},
        source="relay",
        received_at=datetime(2024, 5, 6, 23, 30, tzinfo=UTC),
        task_ref="t-1",
        prompt="a calm synthwave song",
        error=error,
    )


def webhook(url: str, **options: Any) -> SlackHandler:
    """A handler in incoming-webhook mode posting to the catcher."""
    return SlackHandler("team-chat", SlackHandler.Config(webhook_url=url + WEBHOOK_PATH, **options))


def bot(url: str, **options: Any) -> SlackHandler:
    """A handler in bot mode posting to #music through the catcher's Web API."""
    config = {"token": TOKEN, "channel": "#music", "api_base_url": url + "/api/", **options}
    return SlackHandler("team-chat", SlackHandler.Config(**config))


async def test_webhook_song_message_shows_every_part(
    catcher: SlackCatcher, url: str, make_ctx: MakeContext
) -> None:
    """Title, cover, duration, tags, four sung lines and the three links, as Block Kit."""
    ctx = make_ctx(
        results={"bucket": {"bucket": "b", "key": "k", "url": STORED}}, task_url=TASK_URL
    )
    result = await webhook(url).handle(make_event(), ctx)
    assert {"posted": True} == result
    [sent] = catcher.sent("webhook")
    assert "🎵 “Night Drive” is ready" == sent.body["text"]
    assert [
        {"type": "header", "text": {"type": "plain_text", "text": "🎵 Night Drive"}},
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": "*Duration:* 2:05\n*Style:* synthwave, dreamy"},
            "accessory": {"type": "image", "image_url": COVER, "alt_text": "cover of Night Drive"},
        },
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": ">Neon on the water\n>Engines hum\n>City lights\n>Stay awake\n>…",
            },
        },
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": "<https://cdn.example/song.mp3?sig=a&amp;b=1|▶ listen>"
                f" · <{STORED}|stored copy> · <{TASK_URL}|dashboard>",
            },
        },
    ] == sent.body["blocks"]
    assert (False, False) == (sent.body["unfurl_links"], sent.body["unfurl_media"])


async def test_webhook_mode_skips_submitted(
    catcher: SlackCatcher, url: str, make_ctx: MakeContext
) -> None:
    """A webhook cannot thread or edit, so "generating…" is not posted at all."""
    result = await webhook(url).handle(make_event("task.submitted"), make_ctx())
    assert {"skipped": "webhook mode cannot thread"} == result
    assert [] == catcher.sent()


async def test_bot_posts_generating_then_replies_in_its_thread(
    catcher: SlackCatcher, url: str, make_ctx: MakeContext
) -> None:
    """The song is a thread reply under the "generating…" message of the same task."""
    handler = bot(url, username="relay", icon_emoji=":notes:")
    submitted = await handler.handle(make_event("task.submitted"), make_ctx())
    assert submitted is not None
    ctx = make_ctx(task_results={"team-chat": submitted})
    done = await handler.handle(make_event(), ctx)
    first, second = catcher.sent("chat.postMessage")
    assert f"Bearer {TOKEN}" == first.headers["authorization"]
    assert ("#music", "🎵 Generating “Night Drive”…", "relay", ":notes:") == (
        first.body["channel"],
        first.body["text"],
        first.body["username"],
        first.body["icon_emoji"],
    )
    link = "https://catcher.slack.com/archives/C0MUSIC/p1700000000000001"
    assert {
        "event": "task.submitted",
        "channel": "C0MUSIC",
        "ts": "1700000000.000001",
        "permalink": link,  # the dashboard links the message
    } == submitted
    assert ("C0MUSIC", "1700000000.000001") == (second.body["channel"], second.body["thread_ts"])
    assert {
        "event": "song.completed",
        "channel": "C0MUSIC",
        "ts": "1700000000.000002",
        "thread_ts": "1700000000.000001",
        "permalink": "https://catcher.slack.com/archives/C0MUSIC/p1700000000000002",
    } == done


async def test_generating_falls_back_to_the_prompt(
    catcher: SlackCatcher, url: str, make_ctx: MakeContext
) -> None:
    """Without a title, "generating…" names the prompt."""
    await bot(url).handle(make_event("task.submitted", title=None), make_ctx())
    assert "🎵 Generating “a calm synthwave song”…" == catcher.sent()[0].body["text"]


async def test_update_mode_edits_the_generating_message(
    catcher: SlackCatcher, url: str, make_ctx: MakeContext
) -> None:
    """With on_done = "update" the song replaces "generating…"; a second clip then replies."""
    handler = bot(url, on_done="update", username="relay")
    submitted = await handler.handle(make_event("task.submitted"), make_ctx())
    assert submitted is not None
    first = await handler.handle(make_event(), make_ctx(task_results={"team-chat": submitted}))
    assert first is not None
    [update] = catcher.sent("chat.update")
    assert ("C0MUSIC", submitted["ts"]) == (update.body["channel"], update.body["ts"])
    assert "header" == update.body["blocks"][0]["type"]
    assert not {"unfurl_links", "username"} & set(update.body)  # chat.update takes neither
    # an edit keeps the message, and so its link
    assert {
        "event": "song.completed",
        "channel": "C0MUSIC",
        "ts": submitted["ts"],
        "permalink": submitted["permalink"],
    } == first
    second = await handler.handle(make_event(), make_ctx(task_results={"team-chat": first}))
    assert second is not None
    assert submitted["ts"] == second["thread_ts"]
    assert 2 == len(catcher.sent("chat.postMessage"))


@pytest.mark.parametrize(
    ("kind", "error", "clip", "header", "reason"),
    [
        (
            "song.failed",
            "content <b>policy</b> & more",
            {},
            "⚠️ Night Drive failed",
            "content &lt;b&gt;policy&lt;/b&gt; &amp; more",
        ),
        (
            "song.failed",
            None,
            {"error_message": "no credits"},
            "⚠️ Night Drive failed",
            "no credits",
        ),
        (
            "task.timed_out",
            None,
            {"title": None},
            "⏱ a calm synthwave song timed out",
            "no result in time",
        ),
    ],
)
async def test_failure_message_says_why(
    catcher: SlackCatcher,
    url: str,
    make_ctx: MakeContext,
    kind: str,
    error: str | None,
    clip: dict[str, Any],
    header: str,
    reason: str,
) -> None:
    """A failure or timeout shows the name, the escaped reason and the dashboard link."""
    event = make_event(kind, error=error, **clip)
    await webhook(url, mention="<!here>").handle(event, make_ctx(task_url=TASK_URL))
    [sent] = catcher.sent()
    assert [
        {"type": "header", "text": {"type": "plain_text", "text": header}},
        {"type": "section", "text": {"type": "mrkdwn", "text": f"<!here> *Reason:* {reason}"}},
        {"type": "section", "text": {"type": "mrkdwn", "text": f"<{TASK_URL}|dashboard>"}},
    ] == sent.body["blocks"]
    assert f"<!here> {header}: {reason}" == sent.body["text"]


async def test_provider_text_cannot_ping_or_break_formatting(
    catcher: SlackCatcher, url: str, make_ctx: MakeContext
) -> None:
    """`<`, `&`, `<!channel>`, `<@U123>` and a bare @channel/@here arrive inert."""
    title = "Tom & Jerry <3 <!channel> <@U123> @channel @Here"
    event = make_event(title=title, tags="<!everyone> rock", lyrics="hey @everyone\n<b>x</b>")
    await webhook(url).handle(event, make_ctx())
    [sent] = catcher.sent()
    inert = "Tom &amp; Jerry &lt;3 &lt;!channel&gt; &lt;@U123&gt; @\u200dchannel @\u200dHere"
    assert f"🎵 “{inert}” is ready" == sent.body["text"]
    assert f"🎵 {inert}" == sent.body["blocks"][0]["text"]["text"]
    assert (
        "*Duration:* 2:05\n*Style:* &lt;!everyone&gt; rock"
        == sent.body["blocks"][1]["text"]["text"]
    )
    assert ">hey @\u200deveryone\n>&lt;b&gt;x&lt;/b&gt;" == sent.body["blocks"][2]["text"]["text"]
    assert "a &amp; b" == escape("a & b")


async def test_mention_is_the_only_ping(
    catcher: SlackCatcher, url: str, make_ctx: MakeContext
) -> None:
    """A configured mention leads the text and the details, unescaped."""
    await webhook(url, mention="<!subteam^S123>").handle(make_event(duration=None), make_ctx())
    [sent] = catcher.sent()
    assert sent.body["text"].startswith("<!subteam^S123> 🎵")
    assert "<!subteam^S123>\n*Style:* synthwave, dreamy" == sent.body["blocks"][1]["text"]["text"]


@pytest.mark.parametrize("mode", ["webhook", "bot"])
async def test_rate_limit_is_handed_to_the_dispatcher(
    catcher: SlackCatcher, url: str, make_ctx: MakeContext, mode: str
) -> None:
    """A 429 raises a retryable error carrying Retry-After; slack-sdk does not retry it."""
    handler = webhook(url) if mode == "webhook" else bot(url)
    catcher.fail_next(1, 429, retry_after=7)
    with pytest.raises(HandlerError) as caught:
        await handler.handle(make_event(), make_ctx())
    assert (True, 7.0, "unavailable") == (
        caught.value.retryable,
        caught.value.retry_after,
        caught.value.blame,
    )
    assert 1 == len(catcher.sent())


@pytest.mark.parametrize("mode", ["webhook", "bot"])
async def test_server_error_is_retryable(
    catcher: SlackCatcher, url: str, make_ctx: MakeContext, mode: str
) -> None:
    """A 500 is the destination being down: retry later, no Retry-After."""
    handler = webhook(url) if mode == "webhook" else bot(url)
    catcher.fail_next(1, 500)
    with pytest.raises(HandlerError) as caught:
        await handler.handle(make_event(), make_ctx())
    assert (True, None, "unavailable") == (
        caught.value.retryable,
        caught.value.retry_after,
        caught.value.blame,
    )
    assert "internal_error (HTTP 500)" in caught.value.message


@pytest.mark.parametrize("mode", ["webhook", "bot"])
async def test_html_error_page_is_retryable_with_its_retry_after(
    catcher: SlackCatcher, url: str, make_ctx: MakeContext, mode: str
) -> None:
    """A proxy's 503 page (not Slack's JSON) is "unavailable" and its Retry-After holds."""
    handler = webhook(url) if mode == "webhook" else bot(url)
    catcher.fail_next(1, 503, retry_after=3, html=True)
    with pytest.raises(HandlerError) as caught:
        await handler.handle(make_event(), make_ctx())
    assert (True, 3.0, "unavailable") == (
        caught.value.retryable,
        caught.value.retry_after,
        caught.value.blame,
    )
    assert caught.value.message.endswith(": HTTP 503, retry after 3 s")


async def test_invalid_auth_is_permanent_and_keeps_the_token_secret(
    catcher: SlackCatcher, url: str, make_ctx: MakeContext
) -> None:
    """A wrong token dead-letters at once, blames the destination and never shows the token."""
    handler = bot(url, token="xoxb-wrong-secret")
    with pytest.raises(HandlerError) as caught:
        await handler.handle(make_event(), make_ctx())
    assert (False, "destination") == (caught.value.retryable, caught.value.blame)
    assert "slack chat.postMessage: invalid_auth (HTTP 200)" == caught.value.message
    assert "xoxb-wrong-secret" not in repr(handler.config)


async def test_webhook_refusal_names_the_code_not_the_url(
    catcher: SlackCatcher, url: str, make_ctx: MakeContext
) -> None:
    """A webhook that no longer exists is permanent; the secret URL is not in the message."""
    handler = SlackHandler("team-chat", SlackHandler.Config(webhook_url=url + "/services/T/B/gone"))
    with pytest.raises(HandlerError) as caught:
        await handler.handle(make_event(), make_ctx())
    assert (False, "destination") == (caught.value.retryable, caught.value.blame)
    assert "slack incoming webhook: no_service (HTTP 404)" == caught.value.message


async def test_nothing_secret_is_logged_even_at_debug(
    catcher: SlackCatcher, url: str, make_ctx: MakeContext, caplog: pytest.LogCaptureFixture
) -> None:
    """With logging at DEBUG, neither the webhook URL nor the bot token reaches a log line."""
    caplog.set_level(logging.DEBUG)
    await webhook(url).handle(make_event(), make_ctx())
    await bot(url).handle(make_event(), make_ctx())
    assert 2 == len(catcher.sent())
    assert (False, False) == (WEBHOOK_PATH in caplog.text, TOKEN in caplog.text)


async def test_unreachable_slack_is_retryable(make_ctx: MakeContext) -> None:
    """Nothing listening is "unavailable" and retryable; the webhook URL stays out of it."""
    dead = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(HandlerError) as caught:
        await webhook(dead).handle(make_event(), make_ctx())
    assert (True, "unavailable") == (caught.value.retryable, caught.value.blame)
    assert caught.value.message.startswith("slack incoming webhook unreachable: ")
    assert WEBHOOK_PATH not in caught.value.message


@pytest.mark.parametrize("mode", ["webhook", "bot"])
async def test_unfetchable_cover_is_dropped_not_fatal(
    catcher: SlackCatcher, url: str, make_ctx: MakeContext, mode: str
) -> None:
    """When Slack answers invalid_blocks for the image, the message goes out without it."""
    catcher.reject_images = True
    handler = webhook(url) if mode == "webhook" else bot(url)
    await handler.handle(make_event(), make_ctx())
    rejected, accepted = catcher.sent()
    assert "accessory" in rejected.body["blocks"][1]
    assert "accessory" not in accepted.body["blocks"][1]
    assert rejected.body["blocks"][2:] == accepted.body["blocks"][2:]


async def test_bot_replay_edits_instead_of_posting_again(
    catcher: SlackCatcher, url: str, make_ctx: MakeContext
) -> None:
    """A replayed delivery updates its own earlier message with one chat.update."""
    handler = bot(url)
    first = await handler.handle(make_event(), make_ctx())
    assert first is not None
    again = await handler.handle(make_event(), make_ctx(previous_result=first))
    assert first == again
    assert (1, 1) == (len(catcher.sent("chat.postMessage")), len(catcher.sent("chat.update")))
    assert first["ts"] == catcher.sent("chat.update")[0].body["ts"]


async def test_webhook_replay_sends_nothing(
    catcher: SlackCatcher, url: str, make_ctx: MakeContext
) -> None:
    """A webhook cannot edit, so a replay returns the earlier result and sends nothing."""
    result = await webhook(url).handle(make_event(), make_ctx(previous_result={"posted": True}))
    assert {"posted": True} == result
    assert [] == catcher.sent()


async def test_edit_of_a_deleted_message_posts_anew(
    catcher: SlackCatcher, url: str, make_ctx: MakeContext
) -> None:
    """If the message to edit is gone, the song is posted as a new message instead."""
    gone = {"event": "song.completed", "channel": "C0MUSIC", "ts": "1600000000.000001"}
    result = await bot(url).handle(make_event(), make_ctx(previous_result=gone))
    assert result is not None
    assert ["chat.update", "chat.postMessage"] == [r.method for r in catcher.sent()]
    assert "thread_ts" not in catcher.sent()[1].body
    assert "1700000000" == result["ts"].split(".")[0]


async def test_bot_posts_in_the_labelled_channel_and_names_the_requester(
    catcher: SlackCatcher, url: str, make_ctx: MakeContext
) -> None:
    """With `channel_label`, a task's own channel label wins over `channel`; an event
    without it goes to `channel`; the `requester_label` user is named in the message."""
    handler = bot(url, channel_label="chat.channel", requester_label="chat.user")
    labelled = dataclasses.replace(
        make_event("task.submitted"), labels={"chat.channel": "C0ASKED", "chat.user": "U7"}
    )
    await handler.handle(labelled, make_ctx())
    await handler.handle(make_event("task.submitted"), make_ctx())
    first, second = catcher.sent("chat.postMessage")
    assert ("C0ASKED", "🎵 Generating “Night Drive” — requested by <@U7>") == (
        first.body["channel"],
        first.body["text"],
    )
    assert ("#music", "🎵 Generating “Night Drive”…") == (
        second.body["channel"],
        second.body["text"],
    )


def test_a_channel_label_stands_in_for_the_channel() -> None:
    """A bot with `channel_label` needs no fixed `channel`."""
    config = SlackHandler.Config(token="xoxb-1", channel_label="chat.channel")
    assert (None, "chat.channel") == (config.channel, config.channel_label)


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({}, "webhook_url"),
        ({"webhook_url": "https://hooks.example/x", "token": "xoxb-1"}, "token"),
        ({"token": "xoxb-1"}, "channel"),
        ({"channel": "#music"}, "token"),
        ({"webhook_url": "https://hooks.example/x", "channel": "#music"}, "channel"),
        (
            {"webhook_url": "https://hooks.example/x", "channel_label": "chat.channel"},
            "channel_label",
        ),
        ({"webhook_url": "hooks.example/x"}, "webhook_url"),
        ({"webhook_url": "https://hooks.example/x", "mention": "@here"}, "mention"),
        ({"webhook_url": "https://hooks.example/x", "colour": "red"}, "colour"),
    ],
)
def test_config_errors_name_the_key(options: dict[str, Any], key: str) -> None:
    """A config that is neither mode, or both, or half of one, fails at the key to fix."""
    with pytest.raises(pydantic.ValidationError) as caught:
        SlackHandler.Config(**options)
    assert [(key,)] == [error["loc"] for error in caught.value.errors()]
    assert "https://hooks.example/x" not in str(caught.value)


def test_slack_is_a_handler_with_its_own_default_events() -> None:
    """It satisfies the protocol and also hears task.submitted by default."""
    handler = SlackHandler("c", SlackHandler.Config(webhook_url="https://hooks.example/x"))
    assert isinstance(handler, Handler)
    expected = ("task.submitted", "song.completed", "song.failed", "task.timed_out")
    assert expected == SlackHandler.default_events


def dead_event(title: str = "Rainy Office", error: str = "AccessDenied", **fields: Any) -> Event:
    """A `delivery.dead` alert: the S3 handler `bucket` gave up on clip-1's song."""
    about = make_event(title=title)
    notice = DeadNotice.for_death(
        about,
        handler="bucket",
        handler_type="s3",
        delivery_id="d-9",
        error=error,
        blame="destination",
        attempts=3,
        public_url="https://relay.example",
    )
    clip = {**notice.as_clip(), **fields}
    return dataclasses.replace(about, id="evt-dead", kind="delivery.dead", clip=clip, error=error)


async def test_dead_letter_alert_names_handler_song_error_blame_and_replay_link(
    catcher: SlackCatcher, url: str, make_ctx: MakeContext
) -> None:
    """The alert says which handler gave up on which song, why, whom to blame, where to replay."""
    await webhook(url).handle(dead_event(), make_ctx(task_url=TASK_URL))
    [sent] = catcher.sent("webhook")
    assert (
        "⚠️ bucket: the S3 upload of “Rainy Office” failed after 3 attempts: AccessDenied"
        f" (blame: destination) — replay: <{TASK_URL}|dashboard>"
    ) == sent.body["text"]
    assert [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": "⚠️ S3 upload failed: Rainy Office"},
        },
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": "*Handler:* bucket (s3)\n"
                "*Event:* song.completed of clip clip-1 (task task-1)\n"
                "*Error:* AccessDenied\n"
                "*Blame:* destination — the destination refused it",
            },
        },
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": f"Replay it from the <{TASK_URL}|dashboard>"},
        },
    ] == sent.body["blocks"]


async def test_dead_letter_alert_text_is_escaped_and_pings_only_the_mention(
    catcher: SlackCatcher, url: str, make_ctx: MakeContext
) -> None:
    """A hostile title or error reaches the channel inert; a plugin's action is a `delivery`."""
    event = dead_event(title="<!channel> & co", error="<@U1> said no", handler_type="my.plugin:X")
    await webhook(url, mention="<!here>").handle(event, make_ctx())
    [sent] = catcher.sent("webhook")
    assert sent.body["text"].startswith(
        "<!here> ⚠️ bucket: the delivery of “&lt;!channel&gt; &amp; co” failed after 3 attempts:"
        " &lt;@U1&gt; said no (blame: destination)"
    )


async def test_bot_posts_a_dead_letter_alert_to_the_channel_not_a_song_thread(
    catcher: SlackCatcher, url: str, make_ctx: MakeContext
) -> None:
    """An alert is its own message, even when the task has a "generating…" thread; a replayed
    alert edits the alert, not the song."""
    handler = bot(url, on_done="update")
    generating = await handler.handle(make_event("task.submitted"), make_ctx())
    assert generating is not None
    task_results = {"team-chat": generating}
    alert = await handler.handle(dead_event(), make_ctx(task_results=task_results))
    assert alert is not None
    [first, second] = catcher.sent("chat.postMessage")
    assert "thread_ts" not in second.body and "C0MUSIC" == alert["channel"]
    assert alert["ts"] != generating["ts"]
    await handler.handle(dead_event(), make_ctx(task_results=task_results, previous_result=alert))
    [edit] = catcher.sent("chat.update")
    assert alert["ts"] == edit.body["ts"]
    assert first.body["text"].startswith("🎵 Generating")


async def test_a_permalink_that_cannot_be_fetched_does_not_fail_the_post(
    catcher: SlackCatcher, url: str, make_ctx: MakeContext
) -> None:
    """The message is out; a failed link lookup must not fail (and so repost) the delivery."""
    catcher.permalinks_fail = True
    done = await bot(url).handle(make_event(), make_ctx())
    assert done is not None and "permalink" not in done
    assert (1, 1) == (len(catcher.sent("chat.postMessage")), len(catcher.sent("chat.getPermalink")))
