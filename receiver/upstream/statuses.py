"""How the relay answers its own callers when the AI Music API refused: one table for the
API's `{"error", "detail"}` and the dashboard's sentence, so both give the same status."""

from __future__ import annotations

import dataclasses

from receiver.errors import (
    InsufficientCredits,
    RateLimited,
    TaskGone,
    Unauthorized,
    UpstreamError,
    UpstreamForbidden,
    UpstreamRejected,
)

__all__ = ["UPSTREAM_STATUSES", "UpstreamStatus", "upstream_status"]


@dataclasses.dataclass(frozen=True, slots=True)
class UpstreamStatus:
    """What one kind of upstream error becomes: an HTTP status, the API's machine-readable
    `error` code and the dashboard's words for an operator (the provider's message follows)."""

    kind: type[UpstreamError]
    status: int
    code: str
    wording: str


UPSTREAM_STATUSES: tuple[UpstreamStatus, ...] = (
    UpstreamStatus(
        UpstreamRejected, 400, "upstream_rejected", "The AI Music API rejected the request"
    ),
    UpstreamStatus(
        InsufficientCredits,
        402,
        "insufficient_credits",
        "The AI Music API account is out of credits",
    ),
    UpstreamStatus(
        UpstreamForbidden, 403, "upstream_forbidden", "The AI Music API refused the request"
    ),
    UpstreamStatus(TaskGone, 410, "gone", "That task type is retired upstream"),
    UpstreamStatus(
        RateLimited,
        429,
        "rate_limited",
        "The AI Music API is rate-limiting us; try again in a minute",
    ),
    UpstreamStatus(
        Unauthorized,
        502,
        "upstream_unauthorized",
        "The AI Music API refused our API key: check AIMUSIC_API_KEY",
    ),
)
"""Every upstream error a caller can act on; none is a subclass of another, so order is free."""

_OTHER = UpstreamStatus(
    UpstreamError, 502, "upstream_error", "The AI Music API could not be reached or failed"
)


def upstream_status(exc: UpstreamError) -> UpstreamStatus:
    """The row for `exc`; 502 `upstream_error` for any other (unreachable, 5xx, unknown)."""
    return next((row for row in UPSTREAM_STATUSES if isinstance(exc, row.kind)), _OTHER)
