"""The provider's price list in credits, written once for every part that counts money.

The upstream client records the price on each create call, the dashboard estimates spend from
stored tasks, and the chat apps charge budgets before anything is sent; one table keeps the
three from drifting apart. Prices are from ../shared/upstream-api.md. The sandbox keeps its own
copy on purpose (`receiver.sandbox.options`): it plays the provider, so it must not follow the
relay's belief; `tests/test_costs.py` checks that the two agree.
"""

from __future__ import annotations

from receiver.states import Family

__all__ = [
    "LYRICS",
    "LYRICS_TASK_TYPES",
    "PRODUCER_CREATE",
    "SONIC_CONCAT",
    "SONIC_CREATE",
    "task_cost",
]

PRODUCER_CREATE = 10.0
"""One producer `create_music` (one song); refunded when the task fails."""
SONIC_CREATE = 15.0
"""One sonic task of any type but `concat_music` (two songs); refunded when it fails."""
SONIC_CONCAT = 2.0
"""One sonic `concat_music` task."""
LYRICS = 1.0
"""One producer `lyrics-create` (or sonic `lyrics`): lyrics only, no audio."""

LYRICS_TASK_TYPES: frozenset[str] = frozenset({"lyrics", "lyrics-create", "lyrics_create"})
"""Task types under which a stored lyrics task may appear."""


def task_cost(family: str, task_type: str | None) -> float:
    """What one task of `family` and `task_type` costs before any refund; 0 if unpriced.

    Nuro is retired and an unknown family is not priced: the relay never pays for either.
    """
    if family == "lyrics" or task_type in LYRICS_TASK_TYPES:
        return LYRICS
    if family == Family.SONIC:
        return SONIC_CONCAT if task_type == "concat_music" else SONIC_CREATE
    if family == Family.PRODUCER:
        return PRODUCER_CREATE
    return 0.0
