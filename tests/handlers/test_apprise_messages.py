"""What Apprise is sent for each event, built without sending: titles and bodies written out."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest

from handlers.apprise import AppriseHandler
from handlers.apprise_messages import check_template, dead, defuse, escape, message
from receiver.delivery.alerts import DeadNotice
from receiver.models import Event

AUDIO = "https://cdn.example/song.mp3?sig=a&b=1"
TASK_URL = "https://relay.example/admin/tasks/t-1"
STORED = {"bucket": {"url": "https://b.example/1.mp3"}, "log": {"path": "/x"}}


def song(kind: str = "song.completed", error: str | None = None, **clip: Any) -> Event:
    """A real event of `kind` for clip-1 of task-1 ("Night_Drive"); `clip` overrides fields."""
    return Event(
        id="evt-1",
        kind=kind,  # type: ignore[arg-type]
        task_id="task-1",
        clip_id="clip-1",
        platform="producer",
        clip={"title": "Night_Drive", "audio_url": AUDIO, "duration": 125.4, **clip},
        source="callback",
        received_at=datetime(2024, 5, 6, 23, 30, tzinfo=UTC),
        task_ref="t-1",
        prompt="a calm synthwave song",
        error=error,
    )


def templates(**options: Any) -> AppriseHandler.Config:
    """The handler's real options, with one harmless URL."""
    return AppriseHandler.Config(urls=["json://localhost/x"], **options)


def test_the_default_markdown_body_lists_facts_and_links() -> None:
    """Duration, tags (markdown-escaped), the audio, each stored copy and the dashboard; the
    title is plain text, so its underscore is not escaped."""
    told = message(song(tags="synth*wave"), templates(), task_url=TASK_URL, results=STORED)
    assert (
        "🎵 Night_Drive",
        "Duration: 2:05\n"
        "Tags: synth\\*wave\n"
        "Listen: <https://cdn.example/song.mp3?sig=a&b=1>\n"
        "Stored: [bucket](<https://b.example/1.mp3>)\n"
        "Dashboard: <https://relay.example/admin/tasks/t-1>",
    ) == told


def test_lines_whose_fields_are_all_empty_are_dropped() -> None:
    """A custom text body loses the lines with nothing to say; a failure uses its templates."""
    options = templates(
        body_format="text",
        failure_title="{title}: {error}",
        failure_body="Prompt: {prompt}\nTags: {tags}\nSee {task_url}",
    )
    told = message(song("song.failed", error="quota"), options)
    assert ("Night_Drive: quota", "Prompt: a calm synthwave song") == told
    timed_out = message(song("task.timed_out"), options)
    assert ("Night_Drive: timed out", "Prompt: a calm synthwave song") == timed_out


def test_html_bodies_escape_provider_text_and_defuse_mentions() -> None:
    """In HTML the provider's markup is text and `@everyone` cannot ping; the operator's
    template markup stays markup."""
    told = message(
        song(title="<b>@everyone</b>"),
        templates(body_format="html", title="{title}", body="<i>{title}</i> {duration}"),
    )
    shown = "&lt;b&gt;@\u200deveryone&lt;/b&gt;"
    assert (shown, f"<i>{shown}</i> 2:05") == told


def test_kinds_apprise_does_not_tell_give_none() -> None:
    """`task.submitted` is not sent: only songs, failures and dead letters are."""
    assert message(song("task.submitted"), templates()) is None


def test_a_dead_letter_has_its_own_built_in_alert() -> None:
    """Who gave up on which song, the error, the blame in words, and where to replay it."""
    notice = DeadNotice.for_death(
        song(),
        handler="bucket",
        handler_type="s3",
        delivery_id="d-1",
        error="S3 refused",
        blame="unavailable",
        attempts=3,
        public_url="https://relay.example",
    )
    title, body = dead(notice, "text")
    assert title.startswith("⚠️ bucket: the S3 upload of “Night_Drive” failed")
    assert (
        "Error: S3 refused\n"
        "Blame: unavailable — the destination was down or too slow\n"
        "Event: song.completed of clip clip-1 (task task-1)\n"
        "Replay: https://relay.example/admin/tasks/t-1"
    ) == body


def test_escape_and_defuse() -> None:
    """Mentions get a zero-width joiner; URLs get their unsafe characters percent-encoded."""
    assert "<\u200d@\u200dU1> mail@\u200dx" == defuse("<@U1> mail@x")
    assert "\\[x\\](y) \\*bold\\*" == escape("[x](y) *bold*", "markdown", url=False)
    assert "https://x.example/a%20b%3C%40" == escape("https://x.example/a b<@", "text", url=True)


@pytest.mark.parametrize(
    ("template", "needle"),
    [
        ("{title} {colour}", "unknown body field {colour}"),
        ("{title!r}", "no format spec or conversion"),
        ("{title", "not a valid template"),
    ],
)
def test_check_template_names_the_problem(template: str, needle: str) -> None:
    """A template with an unknown field, a conversion or broken braces is refused, by key."""
    with pytest.raises(ValueError, match=re.escape(needle)):
        check_template("body", template)
