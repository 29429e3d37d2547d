"""The guard rails before a chat request costs money: allow-lists, the hourly rate, the daily
budgets, each refusal saying why and when it resets."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from receiver.chat.guard import Limits, Reason, Refusal, Requester, Spent, check

NOW = datetime(2026, 3, 14, 20, 48, tzinfo=UTC).timestamp()
"""A Saturday evening, 3 h 12 min before the next UTC midnight."""
MIDNIGHT = datetime(2026, 3, 14, tzinfo=UTC).timestamp()
NEXT_MIDNIGHT = datetime(2026, 3, 15, tzinfo=UTC).timestamp()
HOUR = 3600.0
ME = Requester(user="U1", channel="C1")
RESETS = "resets at 00:00 UTC (in 3 h 12 min)."

CHANNEL_REFUSAL = Refusal(
    Reason.CHANNEL_NOT_ALLOWED,
    "Songs can't be made in this channel; use a channel where the app is allowed, "
    "or ask an admin to allow this one.",
    None,
)
USER_REFUSAL = Refusal(
    Reason.USER_NOT_ALLOWED,
    "You are not on the list of people who can make songs here; ask an admin to add you.",
    None,
)
ROLE_REFUSAL = Refusal(
    Reason.ROLE_NOT_ALLOWED,
    "Making songs here needs one of the allowed roles; ask an admin for one.",
    None,
)


def spent(credits: float, at: float, user: str = "U1", channel: str = "C1") -> Spent:
    """One earlier priced request; by me in my channel unless said otherwise."""
    return Spent(user=user, channel=channel, credits=credits, at=at)


@pytest.mark.parametrize(
    ("limits", "requester", "expected"),
    [
        (Limits(), Requester("U9", "C9", frozenset({"R9"})), None),
        (Limits(allowed_channels=frozenset(), allowed_users=frozenset()), ME, None),
        (Limits(allowed_channels=frozenset({"C1", "C2"})), ME, None),
        (Limits(allowed_channels=frozenset({"C2"})), ME, CHANNEL_REFUSAL),
        (Limits(allowed_users=frozenset({"U1"})), ME, None),
        (Limits(allowed_users=frozenset({"U2"})), ME, USER_REFUSAL),
        (
            Limits(allowed_roles=frozenset({"R1"})),
            Requester("U1", "C1", frozenset({"R2", "R1"})),
            None,
        ),
        (
            Limits(allowed_roles=frozenset({"R1"})),
            Requester("U1", "C1", frozenset({"R2"})),
            ROLE_REFUSAL,
        ),
        # No roles given (Slack has none) against a role allow-list: refused.
        (Limits(allowed_roles=frozenset({"R1"})), ME, ROLE_REFUSAL),
        # In order: channel, then user, then role; each list is its own gate.
        (
            Limits(allowed_channels=frozenset({"C2"}), allowed_users=frozenset({"U2"})),
            ME,
            CHANNEL_REFUSAL,
        ),
        (
            Limits(allowed_users=frozenset({"U2"}), allowed_roles=frozenset({"R1"})),
            ME,
            USER_REFUSAL,
        ),
        (
            Limits(allowed_users=frozenset({"U1"}), allowed_roles=frozenset({"R1"})),
            ME,
            ROLE_REFUSAL,
        ),
    ],
)
def test_allow_lists(limits: Limits, requester: Requester, expected: Refusal | None) -> None:
    """An empty list lets everyone through; a listed one lets only its members through."""
    assert expected == check(limits, requester, 10.0, [], NOW)


def test_allow_lists_hold_for_free_requests_too() -> None:
    """`/song credits` in a channel that is not allowed is refused, but a free request is not
    held to the rate or the budgets."""
    limits = Limits(user_daily_credits=0, user_songs_per_hour=1)
    many = [spent(10, NOW - 60)] * 5
    assert CHANNEL_REFUSAL == check(Limits(allowed_channels=frozenset({"C2"})), ME, 0.0, [], NOW)
    assert None is check(limits, ME, 0.0, many, NOW)


@pytest.mark.parametrize(
    ("limits", "records", "cost", "expected"),
    [
        # Exactly reached by this request: allowed.
        (Limits(user_daily_credits=20), [spent(10, NOW - HOUR)], 10.0, None),
        # Exceeded by this request.
        (
            Limits(user_daily_credits=20),
            [spent(10, NOW - HOUR)],
            15.0,
            Refusal(
                Reason.USER_BUDGET,
                f"This costs 15 credits and you have 10 of your 20 daily credits left; {RESETS}",
                NEXT_MIDNIGHT,
            ),
        ),
        # Already used up.
        (
            Limits(user_daily_credits=20),
            [spent(10, MIDNIGHT), spent(10, NOW - 1)],
            1.0,
            Refusal(
                Reason.USER_BUDGET,
                f"You have used 20 of your 20 daily credits; {RESETS}",
                NEXT_MIDNIGHT,
            ),
        ),
        (
            Limits(user_daily_credits=20),
            [spent(19.5, NOW - HOUR)],
            1.0,
            Refusal(
                Reason.USER_BUDGET,
                f"This costs 1 credit and you have 0.5 of your 20 daily credits left; {RESETS}",
                NEXT_MIDNIGHT,
            ),
        ),
        # Other people's spending is not mine; yesterday's (even at 23:59:59) is gone.
        (
            Limits(user_daily_credits=20),
            [spent(50, NOW - 60, user="U2"), spent(20, MIDNIGHT - 1)],
            20.0,
            None,
        ),
        # No budget: no limit.
        (Limits(), [spent(10_000, NOW - 60)], 15.0, None),
        # The channel's budget counts everyone in it, and only it.
        (
            Limits(channel_daily_credits=100),
            [
                spent(45, NOW - 60, user="U2"),
                spent(45, NOW - 60, user="U3"),
                spent(500, NOW - 60, user="U2", channel="C2"),
            ],
            10.0,
            None,
        ),
        (
            Limits(channel_daily_credits=100),
            [spent(45, NOW - 60, user="U2"), spent(45, NOW - 60, user="U3")],
            15.0,
            Refusal(
                Reason.CHANNEL_BUDGET,
                "This costs 15 credits and this channel has 10 of its 100 daily credits left; "
                + RESETS,
                NEXT_MIDNIGHT,
            ),
        ),
        (
            Limits(channel_daily_credits=100),
            [spent(100, NOW - 60, user="U2")],
            10.0,
            Refusal(
                Reason.CHANNEL_BUDGET,
                f"This channel has used 100 of its 100 daily credits; {RESETS}",
                NEXT_MIDNIGHT,
            ),
        ),
        # Both budgets spent: the user's answers first.
        (
            Limits(user_daily_credits=20, channel_daily_credits=20),
            [spent(20, NOW - 60)],
            10.0,
            Refusal(
                Reason.USER_BUDGET,
                f"You have used 20 of your 20 daily credits; {RESETS}",
                NEXT_MIDNIGHT,
            ),
        ),
    ],
)
def test_daily_budgets(
    limits: Limits, records: list[Spent], cost: float, expected: Refusal | None
) -> None:
    """A request may bring the day's spend up to the budget, not past it."""
    assert expected == check(limits, ME, cost, records, NOW)


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (
            NEXT_MIDNIGHT - 30,
            Refusal(
                Reason.USER_BUDGET,
                "You have used 20 of your 20 daily credits; resets at 00:00 UTC (in 1 min).",
                NEXT_MIDNIGHT,
            ),
        ),
        (NEXT_MIDNIGHT - 0.001, "refused"),
        (NEXT_MIDNIGHT, None),
        (NEXT_MIDNIGHT + 1, None),
    ],
)
def test_the_day_turns_at_midnight_utc(now: float, expected: Refusal | str | None) -> None:
    """What was spent today stops counting at 00:00 UTC sharp."""
    limits = Limits(user_daily_credits=20)
    answer = check(limits, ME, 10.0, [spent(20, NEXT_MIDNIGHT - HOUR)], now)
    if expected == "refused":
        assert answer is not None and NEXT_MIDNIGHT == answer.resets_at
    else:
        assert expected == answer


def test_a_new_day_shows_a_full_day_until_the_reset() -> None:
    """Spent out right at midnight, the reset is a whole day away."""
    records = [spent(20, NEXT_MIDNIGHT)]
    assert Refusal(
        Reason.USER_BUDGET,
        "You have used 20 of your 20 daily credits; resets at 00:00 UTC (in 24 h).",
        NEXT_MIDNIGHT + 24 * HOUR,
    ) == check(Limits(user_daily_credits=20), ME, 1.0, records, NEXT_MIDNIGHT)


@pytest.mark.parametrize(
    ("per_hour", "records", "expected"),
    [
        (2, [spent(10, NOW - 1000)], None),
        # A request exactly one hour old has left the window.
        (2, [spent(10, NOW - HOUR), spent(10, NOW - 1000)], None),
        (
            2,
            [spent(10, NOW - 1000), spent(10, NOW - HOUR + 1)],
            Refusal(
                Reason.RATE_LIMITED,
                "You have made 2 requests in the last hour (the limit is 2); "
                "try again at 20:49 UTC (in 1 min).",
                NOW + 1,
            ),
        ),
        (
            1,
            [spent(1, NOW - 1200)],
            Refusal(
                Reason.RATE_LIMITED,
                "You have made 1 request in the last hour (the limit is 1); "
                "try again at 21:28 UTC (in 40 min).",
                NOW + 2400,
            ),
        ),
        # Over the limit (it was lowered): wait until enough have left, not just the oldest.
        (
            2,
            [spent(10, NOW - 1000), spent(10, NOW - 3000), spent(10, NOW - 2000)],
            Refusal(
                Reason.RATE_LIMITED,
                "You have made 3 requests in the last hour (the limit is 2); "
                "try again at 21:15 UTC (in 27 min).",
                NOW - 2000 + HOUR,
            ),
        ),
        # Other people's requests are theirs.
        (1, [spent(10, NOW - 60, user="U2")], None),
        (
            0,
            [],
            Refusal(
                Reason.RATE_LIMITED,
                "Making songs here is turned off (the hourly limit is 0); "
                "ask an admin to raise it.",
                None,
            ),
        ),
    ],
)
def test_hourly_rate_is_a_sliding_window(
    per_hour: int, records: list[Spent], expected: Refusal | None
) -> None:
    """At most `per_hour` priced requests in any hour; the refusal says when one frees up."""
    assert expected == check(Limits(user_songs_per_hour=per_hour), ME, 10.0, records, NOW)


def test_asking_again_at_resets_at_succeeds() -> None:
    """The rate refusal's `resets_at` is exact: a second before it refused, at it allowed."""
    limits = Limits(user_songs_per_hour=2)
    records = [spent(10, NOW - 1000), spent(10, NOW - 1800)]
    refusal = check(limits, ME, 10.0, records, NOW)
    assert refusal is not None and NOW - 1800 + HOUR == refusal.resets_at
    assert check(limits, ME, 10.0, records, refusal.resets_at - 1) is not None
    assert None is check(limits, ME, 10.0, records, refusal.resets_at)


def test_the_rate_answers_before_the_budgets() -> None:
    """Too fast and out of credits: the rate is what is said (checks run in order)."""
    limits = Limits(user_daily_credits=10, user_songs_per_hour=1)
    refusal = check(limits, ME, 10.0, [spent(10, NOW - 60)], NOW)
    assert refusal is not None and Reason.RATE_LIMITED == refusal.reason


def test_spent_may_be_any_iterable_read_once() -> None:
    """The caller may stream records from the store: a generator is read once, for all rails."""
    limits = Limits(channel_daily_credits=25, user_songs_per_hour=5)
    records = (spent(10, NOW - 60 * n) for n in (1, 2))
    refusal = check(limits, ME, 10.0, records, NOW)
    assert refusal is not None and Reason.CHANNEL_BUDGET == refusal.reason


@pytest.mark.parametrize(
    "field", ["user_daily_credits", "channel_daily_credits", "user_songs_per_hour"]
)
def test_negative_limits_are_refused(field: str) -> None:
    """A negative budget or rate is a configuration mistake, said with the field's name."""
    with pytest.raises(ValueError, match=f"^{field} must be >= 0"):
        Limits(**{field: -1})
