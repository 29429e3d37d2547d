"""The guard rails in front of every chat request that costs money: who may ask, how often, and
how many credits a person and a channel may spend in a UTC day.

Pure: the caller passes the app's `Limits`, who is asking, what the request costs and what was
already spent (read from the store), and `now`; `check` answers `None` (go ahead) or a
`Refusal` whose message says why and when it resets. Nothing is sent upstream on a refusal, so
a refused request costs nothing. Keeping the clock and the records out makes every boundary
(midnight, exactly one hour, a budget met exactly) a plain table test.

The checks run in a fixed order and the first that fails answers: the allow-lists (channel,
then user, then role), the per-user rate, the user's daily budget, the channel's. Each
allow-list is its own gate: with both users and roles listed, a person must pass both.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Iterable
from datetime import UTC, datetime

__all__ = [
    "WINDOW_S",
    "Limits",
    "Reason",
    "Refusal",
    "Requester",
    "Spent",
    "check",
]

WINDOW_S = 3600.0
"""The per-user rate limit's sliding window: the last hour."""


@dataclasses.dataclass(frozen=True, slots=True)
class Limits:
    """One chat app's guard rails; None or an empty set turns that rail off."""

    user_daily_credits: float | None = None
    channel_daily_credits: float | None = None
    allowed_channels: frozenset[str] = frozenset()
    allowed_users: frozenset[str] = frozenset()
    allowed_roles: frozenset[str] = frozenset()
    user_songs_per_hour: int | None = None
    """Requests that cost credits (songs and lyrics alike) one person may make per hour."""

    def __post_init__(self) -> None:
        for name in ("user_daily_credits", "channel_daily_credits", "user_songs_per_hour"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0 (or unset to turn it off), not {value}")


@dataclasses.dataclass(frozen=True, slots=True)
class Requester:
    """Who asks, as the chat platform names them; Slack has no roles, so its `roles` is empty."""

    user: str
    channel: str
    roles: frozenset[str] = frozenset()


@dataclasses.dataclass(frozen=True, slots=True)
class Spent:
    """One earlier chat request that cost credits: who, where, how much, when (Unix time)."""

    user: str
    channel: str
    credits: float
    at: float


class Reason(enum.StrEnum):
    """Which rail refused a request."""

    CHANNEL_NOT_ALLOWED = "channel_not_allowed"
    USER_NOT_ALLOWED = "user_not_allowed"
    ROLE_NOT_ALLOWED = "role_not_allowed"
    RATE_LIMITED = "rate_limited"
    USER_BUDGET = "user_budget"
    CHANNEL_BUDGET = "channel_budget"


@dataclasses.dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request was refused, said to the requester; `resets_at` (Unix time) is when asking
    again can succeed, None for an allow-list (only an admin changes that)."""

    reason: Reason
    message: str
    resets_at: float | None


def check(
    limits: Limits,
    requester: Requester,
    cost: float,
    spent: Iterable[Spent],
    now: float,
) -> Refusal | None:
    """None if `requester` may spend `cost` credits now, else the first rail that refuses.

    A free request (`cost` 0: help, credits, status) meets only the allow-lists. `spent` must
    hold every priced request since the earlier of today's UTC midnight and an hour ago, for
    every user and channel (older ones are ignored); `now` and `Spent.at` are Unix times.
    """
    refusal = _allow_lists(limits, requester)
    if refusal is not None or cost <= 0:
        return refusal
    records = tuple(spent)
    mine = [record for record in records if record.user == requester.user]
    return (
        _rate(limits.user_songs_per_hour, mine, now)
        or _budget(Reason.USER_BUDGET, limits.user_daily_credits, mine, cost, now)
        or _budget(
            Reason.CHANNEL_BUDGET,
            limits.channel_daily_credits,
            [record for record in records if record.channel == requester.channel],
            cost,
            now,
        )
    )


def _allow_lists(limits: Limits, requester: Requester) -> Refusal | None:
    if limits.allowed_channels and requester.channel not in limits.allowed_channels:
        return Refusal(
            Reason.CHANNEL_NOT_ALLOWED,
            "Songs can't be made in this channel; use a channel where the app is allowed, "
            "or ask an admin to allow this one.",
            None,
        )
    if limits.allowed_users and requester.user not in limits.allowed_users:
        return Refusal(
            Reason.USER_NOT_ALLOWED,
            "You are not on the list of people who can make songs here; ask an admin to add you.",
            None,
        )
    if limits.allowed_roles and not limits.allowed_roles & requester.roles:
        return Refusal(
            Reason.ROLE_NOT_ALLOWED,
            "Making songs here needs one of the allowed roles; ask an admin for one.",
            None,
        )
    return None


def _rate(per_hour: int | None, mine: list[Spent], now: float) -> Refusal | None:
    """A sliding hour: a request exactly one hour old has left the window."""
    if per_hour is None:
        return None
    if per_hour == 0:
        return Refusal(
            Reason.RATE_LIMITED,
            "Making songs here is turned off (the hourly limit is 0); ask an admin to raise it.",
            None,
        )
    times = sorted(record.at for record in mine if record.at > now - WINDOW_S)
    if len(times) < per_hour:
        return None
    # Asking again works once enough requests have left the window to drop below the limit;
    # with the limit just reached that is the oldest one.
    resets_at = times[len(times) - per_hour] + WINDOW_S
    return Refusal(
        Reason.RATE_LIMITED,
        f"You have made {_amount(len(times), 'request')} in the last hour "
        f"(the limit is {per_hour}); try again {_when(resets_at, now)}.",
        resets_at,
    )


def _budget(
    reason: Reason, budget: float | None, records: list[Spent], cost: float, now: float
) -> Refusal | None:
    """Refuse when this request would take the day's spend past `budget`; meeting it is fine."""
    if budget is None:
        return None
    midnight = _midnight(now)
    used = sum(record.credits for record in records if record.at >= midnight)
    if used + cost <= budget:
        return None
    resets_at = midnight + 86400.0
    who, whose = (
        ("you have", "your") if reason is Reason.USER_BUDGET else ("this channel has", "its")
    )
    of_budget = f"of {whose} {_number(budget)} daily credits"
    if used >= budget:
        said = f"{who.capitalize()} used {_number(used)} {of_budget}"
    else:
        left = _number(budget - used)
        said = f"This costs {_amount(cost, 'credit')} and {who} {left} {of_budget} left"
    return Refusal(reason, f"{said}; resets {_when(resets_at, now)}.", resets_at)


def _midnight(now: float) -> float:
    """The start of `now`'s UTC day."""
    day = datetime.fromtimestamp(now, tz=UTC).date()
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()


def _when(at: float, now: float) -> str:
    """`at 00:00 UTC (in 3 h 12 min)`, rounded up to the minute so it is never too early."""
    minutes = max(1, math.ceil((at - now) / 60))
    clock = datetime.fromtimestamp(math.ceil(at / 60) * 60, tz=UTC)
    hours, rest = divmod(minutes, 60)
    parts = []
    if hours:
        parts.append(f"{hours} h")
    if rest:
        parts.append(f"{rest} min")
    return f"at {clock:%H:%M} UTC (in {' '.join(parts)})"


def _number(amount: float) -> str:
    """20 → "20", 2.5 → "2.5": credits as a person writes them."""
    return f"{amount:.2f}".rstrip("0").rstrip(".")


def _amount(count: float, unit: str) -> str:
    """`1 credit`, `15 credits`."""
    return f"{_number(count)} {unit}{'' if count == 1 else 's'}"
