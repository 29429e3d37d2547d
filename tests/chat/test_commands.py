"""`/song` text read into one typed request, or a refusal that says how to write it."""

from __future__ import annotations

import unicodedata

import pytest

from receiver.chat.commands import (
    PROMPT_LIMIT,
    Credits,
    Help,
    Lyrics,
    Parsed,
    Refused,
    Song,
    Status,
    cost,
    parse,
    usage,
)
from receiver.states import Family

PRODUCER, SONIC = Family.PRODUCER, Family.SONIC
UNKNOWN_OPTION_HINT = (
    "use `--sonic`, `family:producer` or `family:sonic` (`/song help` shows every form)."
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", Help()),
        ("   \n\t ", Help()),
        ("help", Help()),
        ("  HeLp  ", Help()),
        ("help --sonic", Help()),
        ("credits", Credits()),
        ("Credits", Credits()),
        ("status", Status()),
        ("status family:sonic", Status()),
        # Only alone are they subcommands: a prompt may start with the same word.
        ("status quo rock anthem", Song("status quo rock anthem", PRODUCER)),
        ("help me sleep, a lullaby", Song("help me sleep, a lullaby", PRODUCER)),
        ("credits roll over the city", Song("credits roll over the city", PRODUCER)),
        ("lyrics a lullaby for a cat", Lyrics("a lullaby for a cat")),
        ("LYRICS  rain\n on   roofs ", Lyrics("rain on roofs")),
        ("a sea shanty about coffee", Song("a sea shanty about coffee", PRODUCER)),
        ("  lo-fi   beats\nfor study  ", Song("lo-fi beats for study", PRODUCER)),
        ("--sonic a sea shanty", Song("a sea shanty", SONIC)),
        ("a sea --sonic shanty", Song("a sea shanty", SONIC)),
        ("a sea shanty --sonic", Song("a sea shanty", SONIC)),
        ("a sea shanty --SONIC", Song("a sea shanty", SONIC)),
        ("a sea shanty \u2014sonic", Song("a sea shanty", SONIC)),  # em dash: Slack autocorrect
        ("a sea shanty \u2013sonic", Song("a sea shanty", SONIC)),  # en dash
        ("family:sonic a sea shanty", Song("a sea shanty", SONIC)),
        ("a sea family:Sonic shanty", Song("a sea shanty", SONIC)),
        ("a sea shanty family:producer", Song("a sea shanty", PRODUCER)),
        ("--sonic family:sonic a sea shanty", Song("a sea shanty", SONIC)),
        ("a -- dash, and C-- and — alone", Song("a -- dash, and C-- and — alone", PRODUCER)),
        ("café ☕ für Oma 🎂 東京の夜", Song("café ☕ für Oma 🎂 東京の夜", PRODUCER)),
        ("--sonic 東京の夜", Song("東京の夜", SONIC)),
        ("lyrics Ода радости", Lyrics("Ода радости")),
    ],
)
def test_parse_reads_each_form(text: str, expected: Parsed) -> None:
    """Subcommands, lyrics and prompts, with the family option anywhere in the text."""
    assert expected == parse(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "lyrics",
            "Tell me what the lyrics should be about, "
            "e.g. `/song lyrics a lullaby for a sleepy cat`.",
        ),
        (
            "lyrics   ",
            "Tell me what the lyrics should be about, "
            "e.g. `/song lyrics a lullaby for a sleepy cat`.",
        ),
        (
            "lyrics --sonic rain",
            "`/song lyrics` writes lyrics only and takes no `--sonic`; "
            "leave it out, e.g. `/song lyrics a lullaby for a sleepy cat`.",
        ),
        (
            "--sonic",
            "Tell me what the song should be about, "
            "e.g. `/song --sonic a sea shanty about coffee`.",
        ),
        (
            "family:producer",
            "Tell me what the song should be about, "
            "e.g. `/song --sonic a sea shanty about coffee`.",
        ),
        (
            "a sea shanty --sonic family:producer",
            "`--sonic` and `family:producer` ask for different families; keep one of them.",
        ),
        (
            "family:producer a sea shanty --sonic",
            "`family:producer` and `--sonic` ask for different families; keep one of them.",
        ),
        (
            "a sea shanty family:xyz",
            "`family:xyz` is not a family; use `family:producer` or `family:sonic`.",
        ),
        (
            "a sea shanty family:",
            "`family:` is not a family; use `family:producer` or `family:sonic`.",
        ),
        (
            "a sea shanty family:nuro",
            "nuro was retired by the provider: use `family:sonic` for vocal songs "
            "or `family:producer` for background music.",
        ),
        ("a sea shanty --loud", f"`--loud` is not an option; {UNKNOWN_OPTION_HINT}"),
        ("a sea shanty --producer", f"`--producer` is not an option; {UNKNOWN_OPTION_HINT}"),
        (
            "x" * (PROMPT_LIMIT + 1),
            "That prompt is 401 characters; the limit is 400. Shorten it and send it again.",
        ),
        (
            "lyrics " + "y" * 450,
            "That idea is 450 characters; the limit is 400. Shorten it and send it again.",
        ),
        (
            "🎵" * (PROMPT_LIMIT + 1),
            "That prompt is 401 characters; the limit is 400. Shorten it and send it again.",
        ),
    ],
)
def test_parse_refuses_with_how_to_fix(text: str, message: str) -> None:
    """Each mistake is refused before anything is sent, with a message that shows the fix."""
    assert Refused(message) == parse(text)


def test_the_prompt_limit_counts_characters_after_the_options_are_taken_out() -> None:
    """A prompt of exactly the limit passes (options do not count); one more is refused;
    accents count once however the client composed them."""
    exact = "é" * PROMPT_LIMIT
    assert Song(exact, SONIC) == parse(f"--sonic {exact}")
    decomposed = unicodedata.normalize("NFD", exact)
    assert 2 * PROMPT_LIMIT == len(decomposed)
    assert Song(exact, PRODUCER) == parse(decomposed)
    assert isinstance(parse(exact + "é"), Refused)
    # Nor does whitespace folded away: 133 words of "ab" are 662 characters as typed, 398 read.
    assert Song(" ".join(["ab"] * 133), PRODUCER) == parse("   ".join(["ab"] * 133))


def test_messages_name_the_configured_command() -> None:
    """A Slack app configured with another command shows that command in its hints."""
    assert Refused(
        "Tell me what the lyrics should be about, e.g. `/tune lyrics a lullaby for a sleepy cat`."
    ) == parse("lyrics", command="/tune")
    assert "`/tune help` shows every form" in _message(parse("x --loud", command="/tune"))


@pytest.mark.parametrize(
    ("request_", "credits"),
    [
        (Song("a", PRODUCER), 10.0),
        (Song("a", SONIC), 15.0),
        (Lyrics("a"), 1.0),
    ],
)
def test_cost_follows_the_price_list(request_: Song | Lyrics, credits: float) -> None:
    """Producer 10, sonic 15 (two songs), lyrics 1: what the guard charges a budget."""
    assert credits == cost(request_)


def test_usage_lists_every_form_with_its_price() -> None:
    """One text both apps show for help, naming the command as configured."""
    assert usage() == (
        "How to use `/song`:\n"
        "• `/song <what the song is about>`: one song (10 credits)\n"
        "• `/song --sonic <prompt>` or `family:sonic`: two songs (15 credits)\n"
        "• `/song lyrics <idea>`: lyrics only (1 credit)\n"
        "• `/song credits`: the credits left\n"
        "• `/song status`: the songs still being made\n"
        "• `/song help`: this text\n"
        "A prompt or idea has at most 400 characters."
    )
    assert "/song" not in usage("/tune") and usage("/tune").startswith("How to use `/tune`:")


def test_requests_are_frozen() -> None:
    """A parsed request is a value: it cannot be changed on its way to the upstream call."""
    song = parse("a sea shanty")
    assert isinstance(song, Song)
    with pytest.raises(AttributeError):
        song.prompt = "something else"  # type: ignore[misc]


def _message(parsed: Parsed) -> str:
    assert isinstance(parsed, Refused), parsed
    return parsed.message
