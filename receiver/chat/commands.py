"""What a person typed after `/song`, read into one typed request both chat apps act on.

Pure: no HTTP and no store, so Slack and Discord read a command the same way and every rule is
tested as a table. A mistake never reaches the provider (where it would cost a round trip or
credits): it comes back as `Refused` with a message that says how to write it instead.

The rules: nothing or `help` asks for help; `credits` and `status` alone are those
subcommands; `lyrics <idea>` writes lyrics only; anything else is a song prompt. Anywhere in a
prompt, `--sonic` or `family:sonic` picks sonic (two songs) and `family:producer` picks
producer (one song, the default). Whitespace is folded to single spaces and the text is
NFC-normalised, so a length is the same however the client composed its accents. Slack's smart
punctuation turns `--` into a dash, so an em or en dash before `sonic` counts as `--sonic`.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from typing import TypeAlias

from receiver import costs
from receiver.states import Family

__all__ = [
    "CHAT_FAMILIES",
    "PROMPT_LIMIT",
    "Credits",
    "Help",
    "Lyrics",
    "Parsed",
    "Refused",
    "Request",
    "Song",
    "Status",
    "cost",
    "parse",
    "usage",
]

PROMPT_LIMIT = 400
"""Characters in a prompt or a lyrics idea. A chat prompt is a description, which sonic sends as
`gpt_description_prompt` (at most 400, ../shared/upstream-api.md) and lyrics-create as `prompt`
(at most 400, `receiver.sandbox.lyrics`); producer documents no limit for `sound`, so the
strictest one holds for both and a prompt never fails upstream on length alone."""

CHAT_FAMILIES: tuple[Family, ...] = (Family.PRODUCER, Family.SONIC)
"""The families a chat prompt may pick: the live ones (nuro is retired)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Help:
    """`/song` or `/song help`: show `usage()`."""


@dataclasses.dataclass(frozen=True, slots=True)
class Credits:
    """`/song credits`: the credits left upstream."""


@dataclasses.dataclass(frozen=True, slots=True)
class Status:
    """`/song status`: the songs still being made."""


@dataclasses.dataclass(frozen=True, slots=True)
class Lyrics:
    """`/song lyrics <idea>`: lyrics only, no audio."""

    idea: str


@dataclasses.dataclass(frozen=True, slots=True)
class Song:
    """`/song <prompt>`: one producer song, or two with sonic."""

    prompt: str
    family: Family


@dataclasses.dataclass(frozen=True, slots=True)
class Refused:
    """The command cannot be run as written; `message` says how to write it."""

    message: str


Request: TypeAlias = Help | Credits | Status | Lyrics | Song
"""A command that can be run."""
Parsed: TypeAlias = Request | Refused
"""What `parse` answers."""

_SIMPLE: dict[str, type[Help | Credits | Status]] = {
    "help": Help,
    "credits": Credits,
    "status": Status,
}
_DASHES = re.compile(r"^(?:--|\u2014|\u2013)(?=\w)")
"""`--`, an em dash or an en dash right before a word: an option, as typed or as autocorrected."""
_FAMILY_KEY = "family:"


def parse(text: str, command: str = "/song") -> Parsed:
    """Read the text after `command` (as the app is configured to call it) into a request."""
    words: list[str] = []
    options: list[str] = []
    for token in unicodedata.normalize("NFC", text).split():
        (options if _is_option(token) else words).append(token)
    if not words and not options:
        return Help()
    head = words[0].casefold() if words else ""
    if len(words) == 1 and head in _SIMPLE:
        return _SIMPLE[head]()  # an option beside these changes nothing they show
    if head == "lyrics":
        return _lyrics(" ".join(words[1:]), options, command)
    family = _family(options, command)
    if isinstance(family, Refused):
        return family
    prompt = " ".join(words)
    if not prompt:
        return Refused(
            "Tell me what the song should be about, "
            f"e.g. `{command} --sonic a sea shanty about coffee`."
        )
    return _too_long("prompt", prompt) or Song(prompt=prompt, family=family)


def cost(request: Song | Lyrics) -> float:
    """Credits the request spends upstream (before any refund): what chat budgets charge."""
    if isinstance(request, Lyrics):
        return costs.LYRICS
    return costs.task_cost(request.family, "create_music")


def usage(command: str = "/song") -> str:
    """The forms a command takes, one a line, in markup Slack and Discord both render."""
    producer = _credits(costs.task_cost(Family.PRODUCER, "create_music"))
    sonic = _credits(costs.task_cost(Family.SONIC, "create_music"))
    return "\n".join(
        [
            f"How to use `{command}`:",
            f"• `{command} <what the song is about>`: one song ({producer} credits)",
            f"• `{command} --sonic <prompt>` or `family:sonic`: two songs ({sonic} credits)",
            f"• `{command} lyrics <idea>`: lyrics only ({_credits(costs.LYRICS)} credit)",
            f"• `{command} credits`: the credits left",
            f"• `{command} status`: the songs still being made",
            f"• `{command} help`: this text",
            f"A prompt or idea has at most {PROMPT_LIMIT} characters.",
        ]
    )


def _is_option(token: str) -> bool:
    return token.casefold().startswith(_FAMILY_KEY) or _DASHES.match(token) is not None


def _lyrics(idea: str, options: list[str], command: str) -> Parsed:
    if options:
        return Refused(
            f"`{command} lyrics` writes lyrics only and takes no `{options[0]}`; "
            f"leave it out, e.g. `{command} lyrics a lullaby for a sleepy cat`."
        )
    if not idea:
        return Refused(
            "Tell me what the lyrics should be about, "
            f"e.g. `{command} lyrics a lullaby for a sleepy cat`."
        )
    return _too_long("idea", idea) or Lyrics(idea=idea)


def _family(options: list[str], command: str) -> Family | Refused:
    """The one family `options` pick (producer if none), or why they cannot be read."""
    asked: dict[Family, str] = {}  # each family picked, with the first token that picked it
    for token in options:
        folded = token.casefold()
        if folded.startswith(_FAMILY_KEY):
            name = folded.removeprefix(_FAMILY_KEY)
            if name == Family.NURO:
                return Refused(
                    "nuro was retired by the provider: use `family:sonic` for vocal songs "
                    "or `family:producer` for background music."
                )
            if name not in CHAT_FAMILIES:
                return Refused(f"`{token}` is not a family; use {_families()}.")
            asked.setdefault(Family(name), token)
        elif _DASHES.sub("", folded) == Family.SONIC:
            asked.setdefault(Family.SONIC, token)
        else:
            return Refused(
                f"`{token}` is not an option; use `--sonic`, {_families()} "
                f"(`{command} help` shows every form)."
            )
    if len(asked) > 1:
        first, second = asked.values()
        return Refused(f"`{first}` and `{second}` ask for different families; keep one of them.")
    return next(iter(asked), Family.PRODUCER)


def _families() -> str:
    return " or ".join(f"`{_FAMILY_KEY}{family}`" for family in CHAT_FAMILIES)


def _too_long(what: str, text: str) -> Refused | None:
    if len(text) <= PROMPT_LIMIT:
        return None
    return Refused(
        f"That {what} is {len(text)} characters; the limit is {PROMPT_LIMIT}. "
        "Shorten it and send it again."
    )


def _credits(amount: float) -> str:
    return f"{amount:g}"
