"""One exception tree for the relay, so callers choose behaviour by type, never by message."""

from __future__ import annotations

from collections.abc import Collection

__all__ = [
    "ConfigError",
    "InsufficientCredits",
    "LeaseLost",
    "OutcomeUnknown",
    "RateLimited",
    "RelayError",
    "SignatureError",
    "StoreUnavailable",
    "TaskGone",
    "TaskNotFound",
    "Unauthorized",
    "UpstreamError",
    "UpstreamForbidden",
    "UpstreamRejected",
    "UpstreamUnavailable",
]


class RelayError(Exception):
    """Base of every error the relay raises on purpose."""


class ConfigError(RelayError):
    """A setting or the handler file is wrong; the message names the key, the problem and where."""


class SignatureError(RelayError):
    """A callback failed verification; `reason` is a short code safe to return to the caller."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class StoreUnavailable(RelayError):
    """The database cannot be reached or refused the write; callers answer 503 and lose nothing."""


class LeaseLost(RelayError):
    """Our lease on these deliveries ran out and another worker claimed them: what we did is
    not recorded, and they are no longer ours to work on."""

    def __init__(self, delivery_ids: Collection[str]) -> None:
        self.delivery_ids = tuple(delivery_ids)
        super().__init__(
            f"lease lost on {', '.join(self.delivery_ids)}: another worker owns it now"
        )


class UpstreamError(RelayError):
    """The AI Music API answered with an error, or could not be reached."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class UpstreamRejected(UpstreamError):
    """400: the request was invalid; the message is the provider's explanation."""


class TaskNotFound(UpstreamError):
    """The provider does not know the task id (it answers 400 `task not found.`)."""


class Unauthorized(UpstreamError):
    """401: the API key is missing or wrong."""


class InsufficientCredits(UpstreamError):
    """402, or 403 with the credits message: the account cannot pay for the task."""


class UpstreamForbidden(UpstreamError):
    """Any other 403: no active subscription, lyrics rejected by moderation, ..."""


class TaskGone(UpstreamError):
    """410: a retired task type or API family; the message names the replacement."""


class RateLimited(UpstreamError):
    """429: nothing was created; try again after `retry_after` seconds."""

    def __init__(self, message: str, *, retry_after: float | None, status: int = 429) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class UpstreamUnavailable(UpstreamError):
    """5xx or a network failure on a call that is safe to repeat."""


class OutcomeUnknown(UpstreamError):
    """A create call timed out or got a 5xx: the task may exist upstream, so it is never re-sent."""
