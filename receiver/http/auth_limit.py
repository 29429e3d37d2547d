"""Failed admin-token attempts, limited per client address (the `/api` bearer check and the
dashboard's sign-in share one budget: it is the same secret being guessed).

Each address has a *decaying count* of failures: a failure adds one, and the count drains by
`limit` every `window_s` (one every 6 s with the defaults, 10 per 60 s). When it is full, every
attempt from that address gets a 429 with `Retry-After` — the right token too, which is then
not even compared: answering it would tell a guesser which of its guesses was right. Refused
attempts are not counted, so hammering a block cannot prolong it: it ends by itself at most
`window_s / limit` seconds after the last checked failure, and the owner of the token never
waits longer than that (nor than `window_s` in any case). A guesser gets `limit` attempts at
once and then one per drained slot: 14,400 a day, never a burst.

The address is `request.client.host`: what uvicorn's proxy-header handling makes of
`X-Forwarded-For` (`FORWARDED_ALLOW_IPS`). Where that header is believed from anyone, a guesser
can claim a new address per attempt, so all addresses also share a ceiling (`global_limit`
failures per window, across every address). Past it, addresses that have not presented the
right token lately are refused as well; one that did (`KNOWN_GOOD_S`) keeps working, so a
flood of guesses does not lock the owner out. IPv6 addresses are counted per /64 (one host
usually holds a whole /64); what is not an IP address at all is counted as one address.

Memory is bounded: at most `max_addresses` are tracked (one float each), dropping the one that
failed longest ago. State is per process; with N web processes a guesser gets N times the
budget (README: "Admin sign-in limits and sessions"). Times come from `clock` (monotonic),
so tests can move it.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable

from starlette.applications import Starlette
from starlette.requests import Request

from receiver.logging import get_logger

__all__ = [
    "FAILURES",
    "GLOBAL_FAILURES",
    "KNOWN_GOOD_S",
    "MAX_ADDRESSES",
    "WINDOW_S",
    "AttemptLimiter",
    "client_address",
    "limiter_for",
    "retry_after_s",
]

log = get_logger("aimusic_relay.auth")

FAILURES = 10
"""Failed attempts an address may make per `WINDOW_S` before it is refused."""
WINDOW_S = 60.0
"""The window the counts drain over, in seconds."""
GLOBAL_FAILURES = 100
"""Failed attempts per `WINDOW_S` across all addresses before unknown addresses are refused."""
MAX_ADDRESSES = 10_000
"""Addresses tracked at most (a float each); the one that failed longest ago goes first."""
KNOWN_GOOD_S = 12 * 3600.0
"""How long an address that presented the right token stays exempt from the global ceiling."""
_MAX_KNOWN_GOOD = 1_000

_GLOBAL = "*"
_UNPARSED = "not-an-ip"


def client_address(request: Request) -> str:
    """The key an attempt counts under: the client's IPv4 address or IPv6 /64."""
    host = request.client.host if request.client is not None else ""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return _UNPARSED
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def retry_after_s(wait_s: float) -> int:
    """`wait_s` as a `Retry-After` value: whole seconds, at least 1."""
    return max(1, math.ceil(wait_s))


class AttemptLimiter:
    """Decaying failure counts per address, plus one shared ceiling. Not thread-safe: one per
    app, used from its event loop."""

    def __init__(
        self,
        *,
        limit: int = FAILURES,
        window_s: float = WINDOW_S,
        global_limit: int = GLOBAL_FAILURES,
        max_addresses: int = MAX_ADDRESSES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if limit < 1 or global_limit < 1 or window_s <= 0 or max_addresses < 1:
            raise ValueError("limits and the window must be positive")
        self._limit = limit
        self._global_limit = global_limit
        self._slot_s = window_s / limit
        self._global_slot_s = window_s / global_limit
        self._max = max_addresses
        self._clock = clock
        self._drained_at: OrderedDict[str, float] = OrderedDict()
        """Per address, when its count will be back to zero (so its count is the time left
        divided by the slot): one float instead of a list of failure times."""
        self._global_drained_at = 0.0
        self._known_good: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        """How many addresses are tracked now."""
        return len(self._drained_at)

    def blocked_for(self, address: str) -> float | None:
        """Seconds until `address` may try again, or None when it may try now."""
        now = self._clock()
        waits = [self._wait(self._drained_at.get(address, 0.0), self._slot_s, self._limit, now)]
        if not self._known(address, now):
            waits.append(
                self._wait(self._global_drained_at, self._global_slot_s, self._global_limit, now)
            )
        wait = max(waits)
        return wait if wait > 0 else None

    def failed(self, address: str) -> None:
        """Count one checked attempt that presented a wrong token."""
        now = self._clock()
        drained_at = max(self._drained_at.pop(address, 0.0), now) + self._slot_s
        self._drained_at[address] = drained_at
        while len(self._drained_at) > self._max:
            self._drained_at.popitem(last=False)
        self._global_drained_at = max(self._global_drained_at, now) + self._global_slot_s
        wait = self._wait(drained_at, self._slot_s, self._limit, now)
        if wait > 0:
            log.warning(
                "admin token attempts limited",
                client=address,
                retry_after_s=retry_after_s(wait),
            )
        elif self._wait(self._global_drained_at, self._global_slot_s, self._global_limit, now):
            log.warning("admin token attempts limited for unknown addresses", client=address)

    def succeeded(self, address: str) -> None:
        """`address` presented the right token: exempt it from the shared ceiling a while.
        Its own failures are not forgiven (a guesser may share it, behind one NAT)."""
        self._known_good.pop(address, None)
        self._known_good[address] = self._clock() + KNOWN_GOOD_S
        while len(self._known_good) > _MAX_KNOWN_GOOD:
            self._known_good.popitem(last=False)

    def _known(self, address: str, now: float) -> bool:
        until = self._known_good.get(address)
        return until is not None and until > now

    @staticmethod
    def _wait(drained_at: float, slot_s: float, limit: int, now: float) -> float:
        """How long until a count draining to zero at `drained_at` has a free slot."""
        return drained_at - now - (limit - 1) * slot_s


def limiter_for(app: Starlette) -> AttemptLimiter:
    """The app's limiter, made on first use and kept on `app.state` (one per app, so two apps
    in one process count apart; a test may put its own there before serving)."""
    limiter = getattr(app.state, "auth_limiter", None)
    if not isinstance(limiter, AttemptLimiter):
        limiter = AttemptLimiter()
        app.state.auth_limiter = limiter
    return limiter
