"""Where the s3 handler puts a song and what metadata it writes, built without a bucket."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import unquote

import pytest

from handlers.base import HandlerError
from handlers.s3_keys import check_key_text, key_segment, metadata, render_key
from receiver.models import Event

DEFAULT = "{prefix}{date}/{task_id}/{clip_id}.{ext}"


def song(title: str = "Night Drive", clip_id: str = "clip-1") -> Event:
    """A real finished-song event for `clip_id` of task-1, received on 6 May 2024 (UTC)."""
    return Event(
        id="evt-1",
        kind="song.completed",  # type: ignore[arg-type]
        task_id="task-1",
        clip_id=clip_id,
        platform="producer",
        clip={"title": title, "audio_url": "https://cdn.example/a.mp3"},
        source="callback",
        received_at=datetime(2024, 5, 6, 23, 30, tzinfo=UTC),
    )


def test_the_default_template_files_by_date_task_and_clip() -> None:
    """`{prefix}{date}/{task_id}/{clip_id}.{ext}` with a prefix and the event's UTC date."""
    assert "songs/2024-05-06/task-1/clip-1.mp3" == render_key(DEFAULT, "songs/", song(), "mp3")


def test_provider_values_are_one_segment_each() -> None:
    """A title's slashes cannot add folders or climb; the slug is ASCII words and dashes."""
    key = render_key("{title}/{slug}.{ext}", "", song("AC/DC: ../Back"), "mp3")
    assert "AC_DC: .._Back/ac-dc-back.mp3" == key


def test_a_key_over_s3s_limit_is_a_permanent_error() -> None:
    """A rendered key longer than 1024 bytes fails for good, naming the clip."""
    long_template = "x" * 1020 + "/{clip_id}.{ext}"
    with pytest.raises(HandlerError, match="clip clip-1 is not usable") as caught:
        render_key(long_template, "", song(), "mp3")
    assert caught.value.retryable is False


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("a/b\\c", "a_b_c"),
        ("  ..hidden  name ", "hidden name"),
        ("tab\there\x00", "tabhere"),  # control characters go, tab included
        ("", "untitled"),
        ("é" * 150, "é" * 100),
    ],
)
def test_key_segment(value: str, expected: str) -> None:
    """No separators, control characters, leading dots, runs of spaces, or over 200 bytes."""
    assert expected == key_segment(value)


def test_metadata_is_ascii_and_reads_back() -> None:
    """Every value is printable ASCII; `unquote` gives the title back."""
    written = metadata(song("Café ☕ 100%"))
    assert {
        "task-id": "task-1",
        "clip-id": "clip-1",
        "title": "Caf%C3%A9 %E2%98%95 100%25",
        "platform": "producer",
        "event-id": "evt-1",
    } == written
    assert "Café ☕ 100%" == unquote(written["title"])


@pytest.mark.parametrize(
    ("text", "needle"),
    [("/abs/", "must not start with '/'"), ("a/../b", "'..' segment"), ("a\nb", "control")],
)
def test_check_key_text_refuses_what_could_escape(text: str, needle: str) -> None:
    """An absolute prefix, a climbing segment or a control character is a config error."""
    with pytest.raises(ValueError, match=needle):
        check_key_text("prefix", text)
