"""What the `discord` handler sends, as pure rendering: content, embed, buttons, mentions, and
the escaping and length limits that keep a provider's text from pinging or breaking."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from handlers.discord_messages import (
    CONTENT_CHARS,
    escape,
    fit,
    link,
    lyrics_quote,
    mention,
    render,
)
from receiver.models import Event

USER = "80351110224678912"


def event(
    kind: str = "song.completed",
    *,
    platform: str = "sonic",
    task_ref: str | None = "a" * 32,
    error: str | None = None,
    **clip: Any,
) -> Event:
    fields = {
        "title": "Night Drive",
        "audio_url": "https://cdn.example/song.mp3",
        "image_url": "https://cdn.example/cover.png",
        "duration": 95,
        "tags": "synthwave",
        "lyrics": "[Verse]\nneon on the water\nwe drive until the dawn\n[Chorus]\nnight drive",
        **clip,
    }
    return Event(
        id="evt-1",
        kind=kind,  # type: ignore[arg-type]
        task_id="up-1",
        clip_id="clip-1",
        platform=platform,
        clip={k: v for k, v in fields.items() if v is not None},
        source="callback",
        received_at=datetime(2026, 5, 6, 23, 30, tzinfo=UTC),
        task_ref=task_ref,
        prompt="night drive",
        error=error,
    )


def test_generating_names_and_pings_only_the_requester() -> None:
    message = render(event("task.submitted", title=None), requester=USER)
    assert message is not None
    assert f"🎵 Generating “night drive” — requested by <@{USER}>" == message.content
    assert {"parse": [], "users": [USER]} == message.body()["allowed_mentions"]
    plain = render(event("task.submitted", title=None))
    assert plain is not None
    assert ("🎵 Generating “night drive”", []) == (plain.content, plain.users)


@pytest.mark.parametrize("requester", ["everyone", "&123456789012345678", "<@1>", "U123ABC"])
def test_only_a_user_id_becomes_a_mention(requester: str) -> None:
    """A role, `everyone` or a Slack id from a misrouted task is not turned into a ping."""
    assert mention(requester) is None
    message = render(event("task.submitted"), requester=requester)
    assert message is not None and "requested by" not in message.content
    assert [] == message.users


def test_a_finished_song_has_its_embed_and_buttons() -> None:
    """Title linking the audio, cover thumbnail, duration, style, requester, lyrics (section
    markers skipped, more marked), links (stored copy, dashboard) and the buttons."""
    message = render(
        event(),
        requester=USER,
        task_url="https://relay.example/admin/tasks/t1",
        results={"s3": {"url": "https://bucket.example/night-drive.mp3"}},
    )
    assert message is not None
    assert f"🎵 “Night Drive” is ready — requested by <@{USER}>" == message.content
    [embed] = message.embeds
    assert ("🎵 Night Drive", "https://cdn.example/song.mp3") == (embed["title"], embed["url"])
    assert {"url": "https://cdn.example/cover.png"} == embed["thumbnail"]
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert {
        "Duration": "1:35",
        "Style": "synthwave",
        "Requested by": f"<@{USER}>",
        "Links": "[▶ listen](<https://cdn.example/song.mp3>) · "
        "[stored copy](<https://bucket.example/night-drive.mp3>) · "
        "[dashboard](<https://relay.example/admin/tasks/t1>)",
    } == fields
    assert "> neon on the water\n> we drive until the dawn\n> night drive" == embed["description"]
    [row] = message.components
    assert ["🔁 Regenerate", "⏩ Extend", "🎨 Remix"] == [b["label"] for b in row["components"]]
    assert f"song:extend:{'a' * 32}:clip-1" == row["components"][1]["custom_id"]
    assert all(len(b["custom_id"]) <= 100 for b in row["components"])


def test_buttons_fit_the_song() -> None:
    """Producer: no Extend; no lyrics: no Remix; `buttons=False` or no relay task: none."""
    producer = render(event(platform="producer", lyrics=None))
    assert producer is not None
    assert ["🔁 Regenerate"] == [b["label"] for b in producer.components[0]["components"]]
    off = render(event(), buttons=False)
    untracked = render(event(task_ref=None))
    assert off is not None and untracked is not None
    assert ([], []) == (off.components, untracked.components)


def test_provider_text_cannot_ping_or_format() -> None:
    """`@everyone`, `@here`, a role mention and markdown in a title or style are shown as
    typed, not acted on."""
    hostile = "@everyone **bold** <@&123456789012345678> @here"
    message = render(event(title=hostile, tags="__under__ `code`"))
    assert message is not None
    assert "@everyone" not in message.content and "@here" not in message.content
    assert "\\*\\*bold\\*\\*" in message.content
    assert "\\<@&123456789012345678\\>" in message.content
    style = {f["name"]: f["value"] for f in message.embeds[0]["fields"]}["Style"]
    assert "\\_\\_under\\_\\_ \\`code\\`" == style
    assert "@\u200deveryone" in escape("@everyone")


def test_an_image_or_link_that_is_not_http_is_left_out() -> None:
    message = render(event(image_url="javascript:alert(1)", audio_url="file:///etc/passwd"))
    assert message is not None
    [embed] = message.embeds
    assert "thumbnail" not in embed and "url" not in embed
    assert "Links" not in {f["name"] for f in embed["fields"]}
    assert link("https://x.example/a b)<c>", "x") == "[x](<https://x.example/a%20b%29%3Cc%3E>)"


def test_a_failure_says_why() -> None:
    failed = render(event("song.failed", error="Prompt **blocked** by moderation"), requester=USER)
    timed_out = render(event("task.timed_out"))
    assert failed is not None and timed_out is not None
    assert (
        f"⚠️ “Night Drive” failed — requested by <@{USER}>: Prompt \\*\\*blocked\\*\\* by "
        "moderation" == failed.content
    )
    assert "⏱ “Night Drive” timed out: no result in time" == timed_out.content
    assert ([], []) == (failed.embeds, failed.components)


def test_every_text_fits_discords_limits() -> None:
    """A 5,000-character title and 500 lyric lines still make a message Discord accepts."""
    lyrics = "\n".join(f"line {n} " + "la " * 40 for n in range(500))
    message = render(event(title="T" * 5000, lyrics=lyrics), lyrics_lines=50)
    assert message is not None
    [embed] = message.embeds
    assert len(message.content) <= CONTENT_CHARS
    assert len(embed["title"]) <= 256
    assert len(embed["description"]) <= 4096
    assert embed["description"].endswith("\n> …")
    assert all(len(f["value"]) <= 1024 for f in embed["fields"])


def test_fit_never_leaves_a_lone_backslash() -> None:
    """A cut right after an escaping backslash would escape the ellipsis instead."""
    assert "ab…" == fit("ab\\*cdef", 4)
    assert "ab\\\\…" == fit("ab\\\\cdef", 5)
    assert "short" == fit("short", 10)


def test_other_kinds_are_not_told() -> None:
    assert render(event("delivery.dead")) is None
    assert "" == lyrics_quote("[Intro]\n\n[Outro]", 4)
