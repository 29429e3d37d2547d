"""The one backoff policy every retry loop uses: steps, cap, jitter kinds and the floor."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from receiver.delivery.dispatch import STORE_OUTAGE_BACKOFF
from receiver.retry import Backoff

SAMPLES = 2000


@pytest.fixture(autouse=True)
def seeded() -> Iterator[None]:
    """Jitter draws from `random`: seed it so a run is repeatable, and put it back after."""
    state = random.getstate()
    random.seed(14)
    yield
    random.setstate(state)


def test_the_step_doubles_from_base_and_stops_at_the_cap() -> None:
    """Attempt 1 waits `base`, each later one twice as long, none longer than `cap`."""
    backoff = Backoff(2.0, 600.0)
    assert [2.0, 4.0, 8.0, 16.0, 512.0, 600.0, 600.0] == [
        backoff.step(n) for n in (1, 2, 3, 4, 9, 10, 40)
    ]


def test_attempts_below_one_count_as_the_first() -> None:
    """A caller counting from zero still gets `base`, not half of it."""
    assert Backoff(15.0, 60.0).step(0) == Backoff(15.0, 60.0).step(1) == 15.0


def test_full_jitter_spreads_over_the_whole_step() -> None:
    """Full jitter draws anywhere from 0 to the step, and uses all of that range."""
    backoff = Backoff(1.0, 100.0, "full")
    draws = [backoff.delay(4) for _ in range(SAMPLES)]
    assert all(0.0 <= d <= 8.0 for d in draws)
    assert min(draws) < 0.5
    assert max(draws) > 7.5


def test_equal_jitter_never_waits_less_than_half_the_step() -> None:
    """Equal jitter draws from half the step to the step: no tight loop, still spread."""
    backoff = Backoff(15.0, 60.0, "equal")
    draws = [backoff.delay(2) for _ in range(SAMPLES)]
    assert all(15.0 <= d <= 30.0 for d in draws)
    assert min(draws) < 16.0
    assert max(draws) > 29.0


def test_no_jitter_waits_the_step_itself() -> None:
    """`none` is deterministic: the step, capped."""
    backoff = Backoff(0.2, 10.0, "none")
    assert [0.2, 0.4, 0.8, 10.0] == [backoff.delay(n) for n in (1, 2, 3, 10)]


@pytest.mark.parametrize("jitter", ["full", "equal", "none"])
def test_the_floor_wins_even_past_the_cap(jitter: str) -> None:
    """A destination's Retry-After is honoured whatever the policy would have chosen."""
    backoff = Backoff(2.0, 10.0, jitter)  # type: ignore[arg-type]  # parametrised Literal
    assert all(backoff.delay(n, floor=45.0) == 45.0 for n in range(1, 8))


def test_a_floor_below_the_draw_changes_nothing() -> None:
    """A small or absent floor leaves the draw alone."""
    backoff = Backoff(4.0, 4.0, "equal")
    assert all(2.0 <= backoff.delay(1, floor=0.5) <= 4.0 for _ in range(SAMPLES))
    assert Backoff(4.0, 4.0, "none").delay(1, floor=None) == 4.0


def test_the_store_outage_backoff_keeps_its_schedule() -> None:
    """The dispatcher and poller back off 1, 2, 4 ... 30 s while the database is down."""
    assert [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0] == [
        STORE_OUTAGE_BACKOFF.delay(n) for n in range(1, 8)
    ]
