"""The relay's one price list agrees with the provider the sandbox plays."""

from __future__ import annotations

import pytest

from receiver import costs
from receiver.sandbox import options


@pytest.mark.parametrize(
    ("family", "task_type", "credits"),
    [
        ("producer", "create_music", 10.0),
        ("producer", None, 10.0),
        ("producer", "lyrics-create", 1.0),
        ("lyrics", None, 1.0),
        ("sonic", "create_music", 15.0),
        ("sonic", "extend_music", 15.0),
        ("sonic", "concat_music", 2.0),
        ("nuro", "create_music", 0.0),
        ("mystery", None, 0.0),
    ],
)
def test_task_cost_prices_each_family(family: str, task_type: str | None, credits: float) -> None:
    """Producer 10, sonic 15 (concat 2), lyrics 1; retired or unknown families are unpriced."""
    assert credits == costs.task_cost(family, task_type)


def test_the_price_list_matches_the_sandbox() -> None:
    """The sandbox charges what the relay believes; a price changed in one place only fails."""
    assert (
        options.PRODUCER_CREATE_COST,
        options.SONIC_CREATE_COST,
        options.SONIC_CONCAT_COST,
        options.LYRICS_COST,
    ) == (costs.PRODUCER_CREATE, costs.SONIC_CREATE, costs.SONIC_CONCAT, costs.LYRICS)
