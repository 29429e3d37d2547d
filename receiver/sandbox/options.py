"""How a sandbox behaves: one frozen value passed from the CLI (or a test) into the app factory.

Nothing here is global, so a test can run two sandboxes with different behaviour in one process.
"""

from __future__ import annotations

import dataclasses

__all__ = [
    "LYRICS_COST",
    "PRODUCER_CREATE_COST",
    "SONIC_CONCAT_COST",
    "SONIC_CREATE_COST",
    "SandboxOptions",
]

PRODUCER_CREATE_COST = 10.0
"""Credits one producer create costs upstream; refunded when the task fails."""
SONIC_CREATE_COST = 15.0
"""Credits one sonic task costs (any task type but concat); refunded when it fails."""
SONIC_CONCAT_COST = 2.0
"""Credits one sonic `concat_music` task costs."""
LYRICS_COST = 1.0
"""Credits one producer `lyrics-create` costs; the sandbox charges sonic `lyrics` the same."""


@dataclasses.dataclass(frozen=True, slots=True)
class SandboxOptions:
    """Knobs for the emulated AI Music API; the defaults behave like a healthy provider."""

    api_key: str | None = None
    """None: any non-empty bearer key is accepted; otherwise the key must match exactly."""
    delay_s: float = 3.0
    """Seconds from create to the final state (PENDING for the first 20%, then RUNNING)."""
    rate_limit: bool = False
    """At most 2 API requests per second per key; beyond that 429 with `Retry-After`."""
    error_rate: float = 0.0
    """Fraction of API requests answered 500 before anything is created or charged."""
    credits: float = 10_000
    """Starting balance; producer create 10, sonic 15 (concat 2), lyrics 1; failures refunded."""
    out_of_credits_status: int = 402
    """The producer page documents 402, the general error page 403: pick which to emulate."""
    slow_callback_s: float = 8.0
    """Extra wait before the final callback of a `#slowcallback` task."""
    callback_retry_delays: tuple[float, ...] = (1.0, 2.0, 4.0)
    """Waits before each retry of a callback that was not answered 2xx."""
    callback_timeout_s: float = 10.0
    """How long one callback delivery may take before it counts as failed."""
    default_secret: str = "sandbox-default-secret"  # noqa: S105 - a public sandbox value
    """Signs callbacks of tasks created without `webhook_secret` (the provider's hidden default)."""
    audio_seconds: float = 3.0
    """Length of the synthesised WAV of every clip."""
    public_url: str | None = None
    """Base URL put in media links; None: the base URL of the create request."""
    seed: int | None = None
    """Seeds the `error_rate` dice so a flaky run can be replayed."""
    subscription_active: bool = True
    """False: every paid call (creates, lyrics) answers 403 `no active subscription`."""
    never_finish_marker: str | None = "#never"
    """A prompt holding this stays RUNNING forever (timeout tests); None turns it off."""

    def __post_init__(self) -> None:
        # Explicit checks, not asserts: a bad CLI flag must fail loudly even under `python -O`.
        if self.api_key is not None and not self.api_key.strip():
            raise ValueError("api_key must be non-empty when given")
        if self.delay_s < 0:
            raise ValueError("delay_s must be >= 0")
        if not 0.0 <= self.error_rate <= 1.0:
            raise ValueError("error_rate must be between 0 and 1")
        if self.credits < 0:
            raise ValueError("credits must be >= 0")
        if self.out_of_credits_status not in (402, 403):
            raise ValueError("out_of_credits_status must be 402 or 403")
        if self.slow_callback_s < 0 or any(d < 0 for d in self.callback_retry_delays):
            raise ValueError("callback waits must be >= 0")
        if self.callback_timeout_s <= 0:
            raise ValueError("callback_timeout_s must be > 0")
        if not self.default_secret:
            raise ValueError("default_secret must be non-empty")
        if self.never_finish_marker is not None and not self.never_finish_marker.strip():
            raise ValueError("never_finish_marker must be non-empty when given")
        if not 0 < self.audio_seconds <= 600:
            raise ValueError("audio_seconds must be in (0, 600]")
