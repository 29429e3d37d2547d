"""What Slack is sent for each event, built without Slack: texts and blocks written out."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from handlers.slack_messages import (
    Message,
    dead,
    escape,
    fit,
    link,
    lyrics_quote,
    payload,
    render,
    without_images,
)
from receiver.delivery.alerts import DeadNotice
from receiver.models import Event

AUDIO = "https://cdn.example/song.mp3?sig=a&b=1"
COVER = "https://cdn.example/cover.png"


def song(kind: str = "song.completed", error: str | None = None, **clip: Any) -> Event:
    """A real event of `kind` for clip-1 of task-1 ("Night Drive"); `clip` overrides fields."""
    return Event(
        id="evt-1",
        kind=kind,  # type: ignore[arg-type]
        task_id="task-1",
        clip_id="clip-1",
        platform="producer",
        clip={"title": "Night Drive", "audio_url": AUDIO, "duration": 125.4, **clip},
        source="callback",
        received_at=datetime(2024, 5, 6, 23, 30, tzinfo=UTC),
        task_ref="t-1",
        prompt="a calm synthwave song",
        error=error,
    )


def test_a_finished_song_has_its_facts_cover_lyrics_and_links() -> None:
    """Title header, duration and style beside the cover, the first sung lines, then the
    listen, stored-copy and dashboard links in one line."""
    event = song(tags="synthwave", image_url=COVER, lyrics="[Verse]\nNeon\nHum\nLights")
    message = render(
        event,
        mention="<!here>",
        lyrics_lines=2,
        task_url="https://relay.example/admin/tasks/t-1",
        results={"bucket": {"url": "https://b.example/1.mp3"}, "log": {"path": "/x"}},
    )
    cover = {"type": "image", "image_url": COVER, "alt_text": "cover of Night Drive"}
    assert (
        Message(
            "<!here> 🎵 “Night Drive” is ready",
            [
                {"type": "header", "text": {"type": "plain_text", "text": "🎵 Night Drive"}},
                {
                    "type": "section",
                    "text": {
                        "type": "mrkdwn",
                        "text": "<!here>\n*Duration:* 2:05\n*Style:* synthwave",
                    },
                    "accessory": cover,
                },
                {"type": "section", "text": {"type": "mrkdwn", "text": ">Neon\n>Hum\n>…"}},
                {
                    "type": "section",
                    "text": {
                        "type": "mrkdwn",
                        "text": "<https://cdn.example/song.mp3?sig=a&amp;b=1|▶ listen>"
                        " · <https://b.example/1.mp3|stored copy>"
                        " · <https://relay.example/admin/tasks/t-1|dashboard>",
                    },
                },
            ],
        )
        == message
    )


def test_a_failure_gives_its_reason_and_provider_text_cannot_ping() -> None:
    """A failed song says why; `@channel` and `<!here>` in provider text arrive inert."""
    event = song("song.failed", error="<!here> @channel quota", title="Loud @here")
    assert Message(
        "⚠️ Loud @\u200dhere failed: &lt;!here&gt; @\u200dchannel quota",
        [
            {
                "type": "header",
                "text": {"type": "plain_text", "text": "⚠️ Loud @\u200dhere failed"},
            },
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": "*Reason:* &lt;!here&gt; @\u200dchannel quota",
                },
            },
        ],
    ) == render(event)


def test_placeholders_are_one_line_and_a_timeout_has_a_default_reason() -> None:
    """Submitted and streaming are a single text line; a timeout without an error says so."""
    assert Message("🎵 Generating “Night Drive”…", []) == render(song("task.submitted"))
    assert Message(
        "▶ “Night Drive” is streaming "
        "<https://cdn.example/song.mp3?sig=a&amp;b=1|listen while it finishes>",
        [],
    ) == render(song("song.streaming"))
    timed_out = render(song("task.timed_out"))
    assert timed_out is not None
    assert "⏱ Night Drive timed out: no result in time" == timed_out.text


def test_a_dead_letter_names_handler_error_blame_and_replay() -> None:
    """The alert for a dead letter says who gave up on which song, why, and links the replay."""
    notice = DeadNotice.for_death(
        song(),
        handler="bucket",
        handler_type="s3",
        delivery_id="d-1",
        error="S3 refused: AccessDenied",
        blame="destination",
        attempts=3,
        public_url="https://relay.example",
    )
    message = dead(notice, "")
    assert message.text.startswith("⚠️ bucket: the S3 upload of “Night Drive” failed")
    assert message.text.endswith(
        ": S3 refused: AccessDenied (blame: destination)"
        " — replay: <https://relay.example/admin/tasks/t-1|dashboard>"
    )
    facts = message.blocks[1]["text"]["text"]
    assert (
        "*Handler:* bucket (s3)\n"
        "*Event:* song.completed of clip clip-1 (task task-1)\n"
        "*Error:* S3 refused: AccessDenied\n"
        "*Blame:* destination — the destination refused it"
    ) == facts


def test_lyrics_quote_skips_section_markers_and_says_when_it_cut() -> None:
    """Sung lines only, each quoted and escaped; `>…` marks that more lines follow."""
    assert ">One\n>Two &amp; three" == lyrics_quote("[Intro]\nOne\n\n  Two  &  three \n", 4)
    assert ">One\n>…" == lyrics_quote("One\n[Chorus]\nTwo", 1)
    assert "" == lyrics_quote("[Instrumental]", 4)


def test_fit_never_cuts_an_entity_in_half() -> None:
    """Cut text ends with an ellipsis, and an `&amp;` is dropped whole, not left as `&am`."""
    assert "short" == fit("short", 10)
    assert "abcd…" == fit("abcdefgh", 5)
    assert "ab…" == fit("ab&amp;cd", 6)


def test_links_and_escaping_cannot_break_the_markup() -> None:
    """`|`, `<`, `>` and spaces in a URL are encoded; non-web URLs give no link at all."""
    assert "<https://x.example/a%7Cb%3C%3E%20c|go>" == link("https://x.example/a|b<> c", "go")
    assert link("javascript:alert(1)", "go") is None
    assert link(None, "go") is None
    assert "a &lt;b&gt; &amp; @\u200deveryone" == escape("a <b> & @everyone")


def test_without_images_drops_covers_and_payload_omits_empty_blocks() -> None:
    """The fallback when Slack cannot fetch a cover keeps every other block; a text-only
    message sends no `blocks` key."""
    blocks = [
        {"type": "section", "text": "x", "accessory": {"type": "image"}},
        {"type": "image", "image_url": COVER},
    ]
    assert [{"type": "section", "text": "x"}] == without_images(blocks)
    assert {"text": "hi", "blocks": None} == payload("hi", [])


def test_the_requester_is_named_in_every_message_and_only_a_user_id_pings() -> None:
    """A chat task's requester is mentioned in the placeholder, the song and the failure;
    anything that is not a Slack user id is left out rather than turned into markup."""
    submitted = render(song("task.submitted"), requester="U1")
    assert submitted == Message("🎵 Generating “Night Drive” — requested by <@U1>", [])
    ready = render(song(), requester="U1")
    assert ready is not None
    assert ready.text == "🎵 “Night Drive” is ready — requested by <@U1>"
    assert "*Requested by:* <@U1>" in ready.blocks[1]["text"]["text"]
    failed = render(song("song.failed", error="boom"), requester="U1")
    assert failed is not None
    assert failed.text == "⚠️ Night Drive failed — requested by <@U1>: boom"
    assert "*Requested by:* <@U1>" in failed.blocks[1]["text"]["text"]
    assert render(song("task.submitted"), requester="<!channel>") == render(song("task.submitted"))
