"""Deterministic text the provider would have invented: titles, lyrics and tags.

Everything derives from a hash of the input, so the same prompt always gives the same song.
"""

from __future__ import annotations

import hashlib
import string

__all__ = ["derive_title", "generate_lyrics", "generate_tags", "lyric_title"]

_WORDS = (
    "neon", "river", "midnight", "echo", "paper", "satellite", "velvet", "harbor",
    "ember", "glass", "summer", "signal", "orbit", "lantern", "static", "wildflower",
)  # fmt: skip
_GENRES = (
    "synthwave", "indie pop", "lo-fi", "folk", "disco", "dream pop", "ambient", "funk",
)  # fmt: skip
_MAX_TITLE = 80


def _pick(digest: bytes, offset: int, words: tuple[str, ...] = _WORDS) -> str:
    return words[digest[offset] % len(words)]


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


def derive_title(sound: str, lyrics: str) -> str:
    """A title from the prompt, as the provider invents one when none is given."""
    source = sound.strip() or next((ln for ln in lyrics.splitlines() if ln.strip()), "")
    # Markers such as #fail steer the sandbox; they are not part of the song's name.
    words = [w.strip(string.punctuation) for w in source.split() if not w.startswith("#")]
    words = [w for w in words if w][:5]
    if not words:
        digest = _digest(source)
        words = [_pick(digest, 0), _pick(digest, 1)]
    return " ".join(words).title()[:_MAX_TITLE]


def lyric_title(lyrics: str) -> str:
    """A title from the first sung line of `lyrics` (section headers like `[Verse]` skipped)."""
    sung = (ln for ln in lyrics.splitlines() if ln.strip() and not ln.strip().startswith("["))
    return derive_title(next(sung, ""), "")


def generate_lyrics(sound: str, instrumental: bool) -> str:
    """A few deterministic lines, so a style-only prompt still gets lyrics like upstream."""
    if instrumental:
        return "[Instrumental]"
    digest = _digest(sound)
    return "\n".join(
        [
            "[Verse]",
            f"{_pick(digest, 0)} lights over the {_pick(digest, 1)}".capitalize(),
            f"we follow the {_pick(digest, 2)} home".capitalize(),
            "[Chorus]",
            f"{_pick(digest, 3)} and {_pick(digest, 4)}, sing it again".capitalize(),
        ]
    )


def generate_tags(description: str) -> str:
    """Two style tags for a song the service describes itself (sonic `custom_mode=false`)."""
    digest = _digest(description)
    first, second = _pick(digest, 5, _GENRES), _pick(digest, 6, _GENRES)
    return first if first == second else f"{first}, {second}"
