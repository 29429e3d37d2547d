"""When to try again: one backoff policy for every loop that retries (deliveries, polls, the
store's outages, the LISTEN connection), and one reading of `Retry-After` for every place that
honours it (upstream, downloads, handlers)."""

from __future__ import annotations

import dataclasses
import email.utils
import math
import random
import time
from datetime import UTC
from typing import Literal

__all__ = ["Backoff", "parse_retry_after"]


@dataclasses.dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff: the step starts at `base` seconds, doubles per attempt and stops
    at `cap`. `jitter` spreads retries that failed together: `full` draws from 0 to the step
    (the fewest retries in a crowd, AWS's advice for contended resources), `equal` from half
    the step to the step (never a tight loop: the poller's choice), `none` waits the step
    itself (a single connection has no crowd to spread)."""

    base: float
    cap: float
    jitter: Literal["full", "equal", "none"] = "full"

    def step(self, attempt: int) -> float:
        """The un-jittered wait after the `attempt`-th failure (1 is the first; below 1
        counts as 1)."""
        return min(self.cap, self.base * 2.0 ** max(0, attempt - 1))

    def delay(self, attempt: int, floor: float | None = None) -> float:
        """Seconds to wait after the `attempt`-th failure, never less than `floor` (a
        destination's Retry-After: it asked, so it is honoured even past `cap`)."""
        step = self.step(attempt)
        if self.jitter == "full":
            wait = random.uniform(0, step)  # noqa: S311 - jitter, not cryptography
        elif self.jitter == "equal":
            wait = step / 2 + random.uniform(0, step / 2)  # noqa: S311 - jitter, not cryptography
        else:
            wait = step
        return max(wait, floor or 0.0)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from now: delta-seconds or an HTTP date; None when absent or unusable."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000" parses naive; HTTP dates are always GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - time.time())
