"""Admin hardening (issue #12, points 5 and 6) over HTTP on loopback: failed bearer tokens and
sign-ins are limited per client address, and a session ends for good on logout.

The limiter tests serve the real app in this process (`create_app` under uvicorn) so they can
hand it a limiter with a clock they move: the block's end is tested without sleeping for it.
The session tests run `serve` processes, as an operator's browser would meet them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from receiver.app import create_app
from receiver.config import load_settings
from tests.conftest import Relay
from tests.servers import free_port, run_asgi

pytestmark = pytest.mark.slow


class FakeClock:
    """A monotonic clock that only moves when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclasses.dataclass
class Served:
    """A relay app served in this process: its URL, admin token and limiter (None: default)."""

    url: str
    token: str
    app: Any

    def api(self, token: str | None, address: str | None = None) -> httpx.Response:
        """GET /api/tasks with `token` (None: no Authorization header), from `address`."""
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        if address is not None:
            headers["X-Forwarded-For"] = address  # uvicorn believes loopback's proxy headers
        return httpx.get(f"{self.url}/api/tasks", headers=headers, timeout=10, trust_env=False)

    def browser(self, address: str | None = None) -> httpx.Client:
        headers = {"X-Forwarded-For": address} if address is not None else {}
        return httpx.Client(
            base_url=self.url, headers=headers, timeout=10, follow_redirects=False, trust_env=False
        )


@pytest.fixture
def serve_app(tmp_path: Path) -> Iterator[Callable[..., Served]]:
    """Factory: `serve_app(**limiter_options)` builds and serves one relay app (SQLite, no
    dispatcher). With options, its limiter is `AttemptLimiter(**options)`; else the default."""
    with contextlib.ExitStack() as stack:

        def factory(**limiter: Any) -> Served:
            work = tmp_path / f"app{free_port()}"
            work.mkdir()
            (work / "relay.toml").write_text(
                f'[[handlers]]\nname = "disk"\ntype = "disk"\npath = "{work / "songs"}"\n'
            )
            token = secrets.token_urlsafe(16)
            settings = load_settings(
                {
                    "DATABASE_URL": f"sqlite:///{work / 'relay.db'}",
                    "RELAY_SECRET_KEY": secrets.token_urlsafe(16),
                    "RELAY_ADMIN_TOKEN": token,
                    "RELAY_CONFIG": str(work / "relay.toml"),
                    "RELAY_SPOOL_DIR": str(work / "spool"),
                }
            )
            app = create_app(settings, run_dispatcher=False)
            if limiter:
                from receiver.http.auth_limit import AttemptLimiter

                app.state.auth_limiter = AttemptLimiter(**limiter)
            url = stack.enter_context(run_asgi(app))
            return Served(url, token, app)

        yield factory


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "the page has no CSRF field"
    return found.group(1)


def sign_in(client: httpx.Client, token: str) -> httpx.Response:
    """GET the login form, then POST `token` with its CSRF token."""
    form = client.get("/admin/login")
    assert 200 == form.status_code, form.text
    return client.post(
        "/admin/login", data={"csrf": csrf_of(form.text), "token": token, "next": "/admin"}
    )


def retry_after(answer: httpx.Response) -> int:
    return int(answer.headers["retry-after"])


def test_wrong_bearer_tokens_are_limited_per_address_with_429(
    serve_app: Callable[..., Served],
) -> None:
    """Ten wrong bearer tokens from one address are each a 401; the next attempt from there —
    the right token included, which is not even checked — is a 429 with Retry-After and the
    contract's JSON body. Another address is not affected, and no body echoes a token."""
    relay = serve_app()
    attacker, owner = "203.0.113.7", "198.51.100.20"
    guesses = [secrets.token_urlsafe(16) for _ in range(10)]
    for guess in guesses:
        answer = relay.api(guess, attacker)
        assert (401, "unauthorized") == (answer.status_code, answer.json()["error"])

    for token in (secrets.token_urlsafe(16), relay.token):
        limited = relay.api(token, attacker)
        assert 429 == limited.status_code
        assert {"error", "detail"} == set(limited.json())
        assert "too_many_attempts" == limited.json()["error"]
        assert 1 <= retry_after(limited) <= 60
        assert f"{retry_after(limited)} s" in limited.json()["detail"]
        assert relay.token not in limited.text
        assert all(guess not in limited.text for guess in guesses)

    assert 200 == relay.api(relay.token, owner).status_code
    # A request without any Authorization header is not a guess: it is never counted.
    for _ in range(15):
        assert 401 == relay.api(None, owner).status_code
    assert 200 == relay.api(relay.token, owner).status_code


def test_the_block_ends_by_itself_and_waiting_in_it_gains_nothing(
    serve_app: Callable[..., Served],
) -> None:
    """The block lasts as long as Retry-After says and then the right token works again;
    attempts refused during the block are not counted (so they cannot prolong it), and a
    guesser gains one checked attempt per drained slot, never a burst."""
    clock = FakeClock()
    relay = serve_app(limit=10, window_s=60.0, clock=clock)
    address = "203.0.113.8"
    for _ in range(10):
        assert 401 == relay.api("wrong", address).status_code
    blocked = relay.api(relay.token, address)
    assert 429 == blocked.status_code
    wait = retry_after(blocked)
    assert 6 == wait  # one slot of 10-per-60-s drains every 6 s

    for _ in range(100):  # hammering during the block changes nothing
        assert 429 == relay.api("wrong", address).status_code
    clock.advance(wait - 1)
    still = relay.api(relay.token, address)
    assert (429, 1) == (still.status_code, retry_after(still))
    clock.advance(1)
    assert 200 == relay.api(relay.token, address).status_code

    # One slot has drained: one guess is checked, and the next attempt is refused again.
    assert 401 == relay.api("wrong", address).status_code
    assert 429 == relay.api("wrong", address).status_code
    clock.advance(wait)
    assert 401 == relay.api("wrong", address).status_code
    assert 429 == relay.api("wrong", address).status_code
    clock.advance(60)  # a full window: every slot drained
    for _ in range(10):
        assert 401 == relay.api("wrong", address).status_code
    assert 429 == relay.api("wrong", address).status_code


def test_dashboard_sign_in_is_limited_likewise(serve_app: Callable[..., Served]) -> None:
    """Ten wrong tokens on the login form are each a 401; then the form answers 429 with
    Retry-After and says when to retry, opens no session even for the right token, and the
    same address's bearer tokens are refused too (one budget per address). Once the block
    has drained, the right token signs in."""
    clock = FakeClock()
    relay = serve_app(clock=clock)
    with relay.browser("203.0.113.9") as browser:
        for _ in range(10):
            wrong = sign_in(browser, "not-the-token")
            assert 401 == wrong.status_code
            assert "That is not the admin token." in wrong.text
        blocked = sign_in(browser, relay.token)
        assert 429 == blocked.status_code
        wait = retry_after(blocked)
        assert "Too many failed sign-ins" in blocked.text
        assert f"Try again in {wait} s" in blocked.text
        assert relay.token not in blocked.text
        assert 303 == browser.get("/admin").status_code  # not signed in
        assert 429 == relay.api(relay.token, "203.0.113.9").status_code

        clock.advance(wait)
        signed_in = sign_in(browser, relay.token)
        assert (303, "/admin") == (signed_in.status_code, signed_in.headers["location"])
        assert 200 == browser.get("/admin").status_code


def test_many_addresses_share_a_ceiling_but_known_good_addresses_keep_working(
    serve_app: Callable[..., Served],
) -> None:
    """Addresses are whatever the proxy headers say, so a guesser can claim a new one per
    attempt: past a ceiling of failures across all addresses every *unknown* address gets a
    429, while one that used the right token before keeps its access."""
    clock = FakeClock()
    relay = serve_app(global_limit=20, clock=clock)
    owner = "198.51.100.30"
    assert 200 == relay.api(relay.token, owner).status_code
    for n in range(20):
        assert 401 == relay.api("wrong", f"203.0.113.{n + 1}").status_code
    newcomer = relay.api(relay.token, "192.0.2.99")
    assert 429 == newcomer.status_code
    assert 1 <= retry_after(newcomer) <= 60
    assert 200 == relay.api(relay.token, owner).status_code
    clock.advance(retry_after(newcomer))
    assert 200 == relay.api(relay.token, "192.0.2.99").status_code


def test_the_limiter_tracks_a_bounded_number_of_addresses(
    serve_app: Callable[..., Served],
) -> None:
    """Memory stays flat: past `max_addresses` the address that failed longest ago is dropped;
    IPv6 addresses count per /64, so one host cannot claim a fresh address per guess."""
    clock = FakeClock()
    relay = serve_app(max_addresses=8, clock=clock)
    limiter = relay.app.state.auth_limiter
    for n in range(20):
        assert 401 == relay.api("wrong", f"203.0.113.{n + 1}").status_code
    assert 8 == len(limiter)

    for n in range(10):
        assert 401 == relay.api("wrong", f"2001:db8:1:2::{n + 1:x}").status_code
    assert 429 == relay.api(relay.token, "2001:db8:1:2:ffff::1").status_code
    assert 200 == relay.api(relay.token, "2001:db8:1:3::1").status_code


# --- sessions -------------------------------------------------------------------------------


def session_cookie(client: httpx.Client) -> str:
    value = client.cookies.get("relay_admin")
    assert value, "no session cookie"
    return value


def with_cookie(relay: Relay, value: str) -> httpx.Client:
    """A second browser holding a copy of someone's session cookie."""
    client = httpx.Client(base_url=relay.url, timeout=15, follow_redirects=False)
    client.cookies.set("relay_admin", value, domain="127.0.0.1", path="/admin")
    return client


@contextlib.contextmanager
def signed_in_browser(relay: Relay) -> Iterator[httpx.Client]:
    """A browser that has just signed in with the relay's admin token; closed afterwards."""
    with httpx.Client(base_url=relay.url, timeout=15, follow_redirects=False) as browser:
        answer = sign_in(browser, relay.env["RELAY_ADMIN_TOKEN"])
        assert (303, "/admin") == (answer.status_code, answer.headers["location"])
        yield browser


def log_out(browser: httpx.Client) -> None:
    home = browser.get("/admin")
    assert 200 == home.status_code
    out = browser.post("/admin/logout", data={"csrf": csrf_of(home.text)})
    assert (303, "/admin/login") == (out.status_code, out.headers["location"])


def test_logout_revokes_a_copied_session_cookie(make_relay: Callable[..., Relay]) -> None:
    """A copy of the session cookie works until its owner signs out; from then on it is
    refused (a 303 to the login form), whatever the copy's own signature and age say."""
    relay = make_relay()
    with signed_in_browser(relay) as owner:
        copied = session_cookie(owner)
        with with_cookie(relay, copied) as thief:
            assert 200 == thief.get("/admin").status_code
            log_out(owner)
            refused = thief.get("/admin")
            assert 303 == refused.status_code
            assert "/admin/login?next=/admin" == refused.headers["location"]
            assert 303 == thief.get("/admin/deliveries").status_code


def test_logout_in_one_process_ends_the_session_in_another(
    make_relay: Callable[..., Relay], make_pg_url: Callable[[], str]
) -> None:
    """Two web processes on one PostgreSQL database: a session opened on one works on the
    other, and signing out on one ends it on both (the revocation lives in the database)."""
    url = make_pg_url()
    key = secrets.token_urlsafe(16)
    token = secrets.token_urlsafe(16)
    one = make_relay(DATABASE_URL=url, RELAY_SECRET_KEY=key, RELAY_ADMIN_TOKEN=token)
    two = make_relay(DATABASE_URL=url, RELAY_SECRET_KEY=key, RELAY_ADMIN_TOKEN=token)
    with signed_in_browser(one) as browser, with_cookie(two, session_cookie(browser)) as copy:
        assert 200 == copy.get("/admin").status_code
        log_out(browser)
        assert 303 == copy.get("/admin").status_code


def test_rotating_the_admin_token_ends_earlier_sessions(
    make_relay: Callable[..., Relay],
) -> None:
    """After a restart with a new RELAY_ADMIN_TOKEN a session opened with the old one is
    refused (the cookie is bound to the token); the new token signs in."""
    relay = make_relay()
    with signed_in_browser(relay) as browser:
        copied = session_cookie(browser)
    relay.stop()
    relay.env["RELAY_ADMIN_TOKEN"] = secrets.token_urlsafe(16)
    relay.start()
    with with_cookie(relay, copied) as old:
        assert 303 == old.get("/admin").status_code
    with signed_in_browser(relay) as fresh:
        assert 200 == fresh.get("/admin").status_code


def test_a_session_ends_12_hours_after_sign_in_even_when_used(
    make_relay: Callable[..., Relay],
) -> None:
    """The cookie is re-signed on every page, so its own age would slide for ever; the server
    counts from the sign-in: a session opened more than 12 h ago is refused."""
    relay = make_relay()
    with signed_in_browser(relay) as browser:
        assert 200 == browser.get("/admin").status_code
        with sqlite3.connect(relay.db_path) as conn:
            changed = conn.execute(
                "UPDATE admin_sessions SET opened_at = ?", (time.time() - 12 * 3600 - 1,)
            ).rowcount
        assert 1 == changed
        assert 303 == browser.get("/admin").status_code
