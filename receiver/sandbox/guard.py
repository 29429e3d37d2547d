"""What stands in front of every `/api` route: auth, the rate limit and injected failures.

They run in the provider's order (auth, rate limit, error rate) and before any validation, so
a 429 or an injected 500 never creates a task or spends credits.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import math
import random
import time

from receiver.sandbox.options import SandboxOptions
from receiver.sandbox.validation import Rejected

__all__ = ["Guard", "RateLimiter"]

_RATE_LIMIT_PER_S = 2


class RateLimiter:
    """At most `limit` requests per `window_s` per key, over a sliding window.

    Refused requests are not counted, so a client that waits `Retry-After` always gets through.
    """

    def __init__(self, limit: int = _RATE_LIMIT_PER_S, window_s: float = 1.0) -> None:
        self._limit = limit
        self._window_s = window_s
        self._seen: dict[str, collections.deque[float]] = {}

    def retry_after(self, key: str, now: float) -> int | None:
        """Record a request; None if allowed, else whole seconds (>= 1) to wait."""
        seen = self._seen.setdefault(key, collections.deque())
        while seen and seen[0] <= now - self._window_s:
            seen.popleft()
        if len(seen) >= self._limit:
            return max(1, math.ceil(seen[0] + self._window_s - now))
        seen.append(now)
        return None


class Guard:
    """Decides whether an API request gets past the door; raises `Rejected` if not."""

    def __init__(self, options: SandboxOptions) -> None:
        self._options = options
        self._limiter = RateLimiter()
        self._dice = random.Random(options.seed)  # noqa: S311 - fault injection, not security

    def check(self, authorization: str | None) -> None:
        """Return if the request may proceed, else raise `Rejected` (a 429 with `retry_after`)."""
        key = _bearer(authorization)
        if key is None:
            raise Rejected(401, "Unauthorized: send the header Authorization: Bearer <api key>.")
        expected = self._options.api_key
        if expected is not None and not hmac.compare_digest(
            key.encode("utf-8"), expected.encode("utf-8")
        ):
            raise Rejected(401, "Unauthorized: the API key is invalid.")
        if self._options.rate_limit:
            # Keyed by a digest so the key itself is never kept in memory longer than needed.
            bucket = hashlib.sha256(key.encode("utf-8")).hexdigest()
            wait = self._limiter.retry_after(bucket, time.monotonic())
            if wait is not None:
                raise Rejected(
                    429,
                    f"Too many requests: at most {_RATE_LIMIT_PER_S} per second; "
                    f"retry after {wait} s.",
                    retry_after=wait,
                )
        if self._options.error_rate and self._dice.random() < self._options.error_rate:
            raise Rejected(500, "Internal server error (sandbox error_rate).")


def _bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token
